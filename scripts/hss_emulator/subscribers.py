"""Subscribers of the HSS emulator: identities, registration state, and the SAR rules (the MAR
rules are in authentication.py).

The registration state is kept per IMPI, each IMPI owning one implicit registration set.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from scripts.hss_emulator.authentication import SubscriberAuth
from scripts.hss_emulator.config import HssConfig, SubscriberConfig
from transport.diameter.codec import ResultCode
from transport.diameter.cx_base import CxResult, ServerAssignmentType
from transport.diameter.user_data import (
    IDENTITY_TYPE_WILDCARDED_PSI,
    PublicIdentity,
    ServiceProfile,
    build_user_data,
    initial_filter_criterion,
    wildcard_regex,
)

_T = ServerAssignmentType
_DEREGISTRATIONS = {_T.TIMEOUT_DEREGISTRATION, _T.USER_DEREGISTRATION,
                    _T.ADMINISTRATIVE_DEREGISTRATION, _T.DEREGISTRATION_TOO_MUCH_DATA}
_DEREGISTRATIONS_KEEPING_SERVER = {_T.TIMEOUT_DEREGISTRATION_STORE_SERVER_NAME,
                                   _T.USER_DEREGISTRATION_STORE_SERVER_NAME}
_AUTHENTICATION_ENDED = {_T.AUTHENTICATION_FAILURE, _T.AUTHENTICATION_TIMEOUT}


@dataclass(frozen=True)
class Assignment:
    """The HSS's answer to one SAR."""
    result_code: int | None = ResultCode.DIAMETER_SUCCESS
    experimental_result_code: int | None = None
    with_user_data: bool = False
    server_name: str | None = None  # the S-CSCF already assigned, when refusing another


def _refused_for(server_name: str) -> Assignment:
    # TS 29.228 8.1: another S-CSCF is assigned; only a REGISTRATION (or MAR) may replace it.
    return Assignment(ResultCode.DIAMETER_UNABLE_TO_COMPLY, server_name=server_name)


class Subscriber:
    __slots__ = ("config", "auth", "server_name", "registered", "diameter_client", "_user_data")

    def __init__(self, config: SubscriberConfig):
        self.config = config
        self.auth = SubscriberAuth(config)
        self.server_name: str | None = None
        self.registered = False
        self.diameter_client: str | None = None  # Origin-Host of the assigned S-CSCF
        self._user_data: bytes | None = None

    @property
    def impi(self) -> str:
        return self.config.impi

    @property
    def user_data(self) -> bytes:
        """The IMSSubscription XML, built once: every SAA of this subscriber reuses it."""
        if self._user_data is None:
            c = self.config
            identities = [PublicIdentity(impu) for impu in c.impus]
            identities += [PublicIdentity(impu, barred=True) for impu in c.barred]
            identities += [PublicIdentity(w, identity_type=IDENTITY_TYPE_WILDCARDED_PSI,
                                          wildcarded_psi=w) for w in c.wildcards]
            ifcs = [initial_filter_criterion(priority, server)
                    for priority, server in enumerate(c.application_servers)]
            self._user_data = build_user_data(c.impi, [ServiceProfile(identities, ifcs)]).encode()
        return self._user_data

    def replace_user_data(self, xml: str):
        self._user_data = xml.encode()

    def assign(self, kind: ServerAssignmentType, server_name: str, client: str | None,
               user_data_available: bool) -> Assignment:
        """Apply a SAR per TS 29.228 6.1.2 and say what to answer."""
        elsewhere = self.server_name is not None and self.server_name != server_name
        with_data = not user_data_available
        if kind is _T.REGISTRATION or (kind is _T.RE_REGISTRATION
                                       and not (elsewhere and self.registered)):
            self.server_name, self.diameter_client, self.registered = server_name, client, True
            return Assignment(with_user_data=with_data)
        if kind in _AUTHENTICATION_ENDED:
            if not self.registered:  # a registered user keeps its S-CSCF
                self.server_name = self.diameter_client = None
            return Assignment()
        if kind not in _DEREGISTRATIONS | _DEREGISTRATIONS_KEEPING_SERVER | {
                _T.UNREGISTERED_USER, _T.NO_ASSIGNMENT, _T.RE_REGISTRATION}:
            return Assignment(None, CxResult.DIAMETER_ERROR_IN_ASSIGNMENT_TYPE)
        if elsewhere and (self.registered or kind is not _T.UNREGISTERED_USER):
            return _refused_for(self.server_name)
        if kind is _T.UNREGISTERED_USER:
            self.server_name, self.diameter_client = server_name, client
            return Assignment(with_user_data=with_data)
        if kind is _T.NO_ASSIGNMENT:
            return Assignment(with_user_data=with_data)
        self.registered = False
        if kind in _DEREGISTRATIONS:
            self.server_name = self.diameter_client = None
        return Assignment()

    def deregister(self):
        self.registered = False
        self.server_name = self.diameter_client = None

    def state(self) -> dict:
        c = self.config
        return {"impi": c.impi, "impus": list(c.impus), "barred": list(c.barred),
                "wildcards": list(c.wildcards), "server_name": self.server_name,
                "registered": self.registered, "diameter_client": self.diameter_client,
                "sqn": self.auth.sqn}


_AUTO_IMPU = re.compile(r"sip:([^@;:?>\s]+)@([^@;:?>\s]+)", re.IGNORECASE)


class SubscriberDirectory:
    """Finds subscribers by IMPI or by public identity (exact, wildcarded PSI, auto-provision)."""

    def __init__(self, config: HssConfig):
        self._auto_domain = (config.auto_provision_domain or "").lower() or None
        self._by_impi: dict[str, Subscriber] = {}
        self._by_identity: dict[str, Subscriber] = {}
        self._wildcards: list[tuple[re.Pattern, str, Subscriber]] = []
        for sub_config in config.subscribers:
            self._add(Subscriber(sub_config))

    def _add(self, sub: Subscriber) -> Subscriber:
        self._by_impi[sub.impi] = sub
        for identity in (*sub.config.impus, *sub.config.barred, *sub.config.wildcards):
            self._by_identity[identity] = sub
        self._wildcards += [(wildcard_regex(w), w, sub) for w in sub.config.wildcards]
        return sub

    def by_impi(self, impi: str, provision: bool = True) -> Subscriber | None:
        """`provision=False` only finds subscribers already known (no auto-provisioning)."""
        sub = self._by_impi.get(impi)
        if sub is None and provision and self._auto_domain and "@" in impi:
            if impi.rpartition("@")[2].lower() == self._auto_domain:
                sub = self._add(Subscriber(SubscriberConfig.auto_provisioned(
                    impi, (f"sip:{impi}",))))
        return sub

    def by_identity(self, identity: str) -> tuple[Subscriber, str | None] | None:
        """(subscriber, the wildcarded PSI that matched or None) for a public identity."""
        sub = self._by_identity.get(identity)
        if sub is not None:
            return sub, None
        for regex, wildcard, sub in self._wildcards:
            if regex.fullmatch(identity):
                return sub, wildcard
        auto = _AUTO_IMPU.fullmatch(identity)
        if auto and self._auto_domain and auto.group(2).lower() == self._auto_domain:
            impi = f"{auto.group(1)}@{auto.group(2)}"
            if impi not in self._by_impi:
                return self._add(Subscriber(SubscriberConfig.auto_provisioned(
                    impi, (identity,)))), None
        return None
