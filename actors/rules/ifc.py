"""Initial filter criteria for REGISTER (TS 29.228 annex B, TS 24.229 5.4.1.7): which
application servers hear of a registration, a re-registration or a de-registration (pure).

A REGISTER is evaluated as an originating request of a registered user: SessionCase 0, and the
iFCs of the registered part of the profile. Its method is REGISTER, its registration type
narrows a Method SPT that lists some (the RegistrationType extension); SIPHeader and RequestURI
SPTs look at the REGISTER the UE sent, and match nothing when the network de-registers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

from transport.diameter.user_data import (
    PROFILE_PART_REGISTERED,
    ApplicationServer,
    InitialFilterCriteria,
    ServicePointTrigger,
    TriggerPoint,
    parse_user_data,
)
from transport.sip.errors import SipParseError
from transport.sip.uri import parse_uri

SESSION_CASE_ORIGINATING = 0


class RegistrationType(IntEnum):
    """TS 29.228 B.2.2 RegistrationType values."""

    INITIAL = 0
    RE_REGISTRATION = 1
    DE_REGISTRATION = 2


@dataclass(frozen=True, slots=True)
class RegisterFacts:
    """What SPTs can look at: the registration type, and the REGISTER when a UE sent one."""

    registration_type: RegistrationType
    request_uri: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # (name, value) in message order

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [value for header, value in self.headers if header.lower() == name]


def matching_servers(user_data: str, identity: str,
                     facts: RegisterFacts) -> list[ApplicationServer]:
    """The application servers whose iFCs in the profile of ``identity`` match, in priority
    order (one per iFC: an AS named twice hears twice, as the iFCs say)."""
    return [ifc.application_server for ifc in filter_criteria(user_data, identity)
            if ifc_matches(ifc, facts)]


@lru_cache(maxsize=4096)
def filter_criteria(user_data: str, identity: str) -> tuple[InitialFilterCriteria, ...]:
    """The iFCs of the service profile of ``identity`` (canonical, as the registrar keys it;
    the user data may write it otherwise), highest priority first."""
    subscription = parse_user_data(user_data)
    profile = next((sp for sp in subscription.service_profiles
                    if any(_canonical(pi.identity) == identity for pi in sp.public_identities)),
                   None) or subscription.profile_of(identity)  # else under a wildcarded PSI
    return tuple(profile.filter_criteria()) if profile is not None else ()


def _canonical(identity: str) -> str | None:
    try:
        return parse_uri(identity).aor()
    except SipParseError:
        return None


def ifc_matches(ifc: InitialFilterCriteria, facts: RegisterFacts) -> bool:
    if ifc.profile_part not in (None, PROFILE_PART_REGISTERED):
        return False
    return ifc.trigger_point is None or trigger_point_matches(ifc.trigger_point, facts)


def trigger_point_matches(trigger: TriggerPoint, facts: RegisterFacts) -> bool:
    """CNF: every group has a true SPT; DNF: some group has only true SPTs. An SPT in several
    groups counts in each."""
    groups: dict[int, list[bool]] = {}
    for spt in trigger.spts:
        outcome = spt_matches(spt, facts)
        for group in spt.groups:
            groups.setdefault(group, []).append(outcome)
    if not groups:
        return True
    if trigger.cnf:
        return all(any(outcomes) for outcomes in groups.values())
    return any(all(outcomes) for outcomes in groups.values())


def spt_matches(spt: ServicePointTrigger, facts: RegisterFacts) -> bool:
    return _spt_holds(spt, facts) != spt.negated


def _spt_holds(spt: ServicePointTrigger, facts: RegisterFacts) -> bool:
    if spt.method is not None:
        if spt.method.upper() != "REGISTER":
            return False
        return not spt.registration_types or facts.registration_type in spt.registration_types
    if spt.session_case is not None:
        return spt.session_case == SESSION_CASE_ORIGINATING
    if spt.header is not None:
        values = facts.header_values(spt.header)
        if spt.header_content is None:
            return bool(values)
        pattern = _regex(spt.header_content)
        return any(pattern.search(value) for value in values)
    if spt.request_uri is not None:
        return facts.request_uri is not None and bool(_regex(spt.request_uri).search(
            facts.request_uri))
    return False


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern:
    return re.compile(pattern)  # checked when the user data was parsed
