"""The HSS side of Multimedia-Auth (TS 29.228 6.3, TS 29.229 6.1.7): which scheme a MAR gets,
AKA vectors made with Milenage (TS 33.102 6.3), SQN resynchronisation from AUTS, and SIP
Digest HA1 (TS 29.229 6.3.36). Identity checks are the emulator's; this is per subscriber.
"""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from actors.auth.aka import AUTS_LENGTH, SQN_LIMIT, make_vector, resync_sqn
from actors.auth.milenage import BLOCK
from scripts.hss_emulator.config import AKA, SCHEME_NAMES, SIP_DIGEST, SubscriberConfig
from transport.diameter.codec import ResultCode
from transport.diameter.cx_base import CxResult, SipAuthItem

MAX_AUTH_ITEMS = 16  # more vectors than this in one MAA is never useful
RESYNC_LENGTH = BLOCK + AUTS_LENGTH  # SIP-Authorization of a resynchronisation: RAND || AUTS
ANY_SCHEME = ("", "unknown")


@dataclass(frozen=True)
class Authentication:
    """The HSS's answer to one MAR: items, or the result code of a refusal."""
    items: tuple[SipAuthItem, ...] = ()
    result_code: int | None = None
    experimental_result_code: int | None = None

    @property
    def success(self) -> bool:
        return bool(self.items)


_SCHEME_NOT_SUPPORTED = Authentication(
    experimental_result_code=CxResult.DIAMETER_ERROR_AUTH_SCHEME_NOT_SUPPORTED)
# TS 33.102 6.3.5: MAC-S does not verify, so the HSS cannot trust the SQN in AUTS.
_RESYNC_REJECTED = Authentication(result_code=ResultCode.DIAMETER_AUTHORIZATION_REJECTED)


class SubscriberAuth:
    """One subscriber's credentials and SQN_HE, which advances with every vector made."""
    __slots__ = ("config", "sqn", "_random")

    def __init__(self, config: SubscriberConfig,
                 random_bytes: Callable[[int], bytes] = secrets.token_bytes):
        self.config = config
        self.sqn = config.aka.sqn if config.aka else None
        self._random = random_bytes

    def answer(self, requested_scheme: str, items: int, realm: str,
               resync: bytes | None = None) -> Authentication:
        """MAA for a MAR asking ``items`` vectors of ``requested_scheme``; ``resync`` is the
        RAND || AUTS of a UE that found our SQN stale."""
        scheme = self._scheme(requested_scheme)
        if scheme is None:
            return _SCHEME_NOT_SUPPORTED
        if scheme == SIP_DIGEST:
            return Authentication(items=(self._digest_item(realm),))
        if resync is not None and not self._resynchronise(resync):
            return _RESYNC_REJECTED
        count = max(1, min(items, MAX_AUTH_ITEMS))
        return Authentication(items=tuple(self._aka_item(n) for n in range(1, count + 1)))

    def _scheme(self, requested: str) -> str | None:
        supported = self.config.schemes
        if requested.strip().lower() in ANY_SCHEME:
            return supported[0] if supported else None
        scheme = SCHEME_NAMES.get(requested.strip().lower())
        return scheme if scheme in supported else None

    def _digest_item(self, realm: str) -> SipAuthItem:
        ha1 = hashlib.md5(f"{self.config.impi}:{realm}:{self.config.password}".encode())
        return SipAuthItem(scheme=SIP_DIGEST, item_number=1, digest_realm=realm,
                           digest_algorithm="MD5", digest_qop="auth", digest_ha1=ha1.hexdigest())

    def _aka_item(self, number: int) -> SipAuthItem:
        aka = self.config.aka
        vector = make_vector(aka.k, aka.opc, self.sqn, aka.amf, self._random(BLOCK))
        self.sqn = (self.sqn + 1) % SQN_LIMIT
        return SipAuthItem(scheme=AKA, item_number=number, authenticate=vector.rand + vector.autn,
                           authorization=vector.xres, confidentiality_key=vector.ck,
                           integrity_key=vector.ik)

    def _resynchronise(self, resync: bytes) -> bool:
        """TS 33.102 6.3.5: SQN_HE continues after the SQN_MS the UE reports, if MAC-S holds."""
        if len(resync) != RESYNC_LENGTH:
            return False
        aka = self.config.aka
        sqn_ms = resync_sqn(aka.k, aka.opc, resync[:BLOCK], resync[BLOCK:])
        if sqn_ms is None:
            return False
        self.sqn = (sqn_ms + 1) % SQN_LIMIT
        return True
