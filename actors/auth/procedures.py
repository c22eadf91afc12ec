"""Authentication of REGISTER as Kamailio's ims_auth does it beside ims_registrar_scscf
(TS 24.229 5.4.1.2): ims_www_challenge (MAR, then 401 with the vector kept pending),
ims_www_authorize (the UE's answer checked against it), the AKA resynchronisation, and
authorize_register, which picks among them for one REGISTER.

Pure: the MAR is injected (``AuthContext.mar``), time is passed in, and the vectors of an
identity live in its ``PendingChallenges``, which the caller keeps in the IMPU's mailbox.
"""
from __future__ import annotations

import base64
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from actors.auth.aka import AUTN_LENGTH, aka_nonce, decode_auts, split_aka_nonce
from actors.auth.challenges import AKA, MD5, AuthVector, PendingChallenges
from actors.auth.digest import (
    DigestCredentials,
    constant_time_equal,
    parse_authorization,
    response,
    www_authenticate,
)
from actors.auth.milenage import BLOCK
from actors.vocabulary import RETRY_AFTER, RegisterRequest, Reply
from transport.diameter.cx_base import MaaResult, MarRequest, ServerAssignmentType, SipAuthItem
from transport.diameter.router import CxUnavailable

# TS 24.229 5.4.1.2.1: what a P-CSCF puts in integrity-protected when the REGISTER came over
# the security association (or TLS session, or IP association) of a registered UE.
PROTECTED = frozenset({"yes", "tls-yes", "ip-assoc-yes"})
# registration_default_algorithm (and a UE's algorithm parameter) -> (algorithm, MAR scheme).
_ALGORITHMS = {"akav1-md5": (AKA, "Digest-AKAv1-MD5"), "md5": (MD5, "SIP Digest"),
               "hss-selected": (None, "Unknown")}
# SIP-Authentication-Scheme of an MAA item -> the Digest algorithm its vector is used with.
_ITEM_SCHEMES = {"digest-akav1-md5": AKA, "sip digest": MD5, "digest-md5": MD5, "digest": MD5}
_NONCE_BYTES = 16  # SIP Digest nonces are ours: random, base64
_HEX = frozenset("0123456789abcdef")

Mar = Callable[[MarRequest], Awaitable[MaaResult]]


class AuthSettings(Protocol):
    """The [auth] section (actors.config.AuthConfig has these attributes)."""

    enabled: bool
    registration_default_algorithm: str
    auth_data_timeout: int
    max_nonce_reuse: int
    av_request_at_once: int
    ignore_failed_auth: int
    registration_qop: str
    realm: str


@dataclass(frozen=True)
class AuthContext:
    """What does not change from one REGISTER to the next."""

    settings: AuthSettings
    server_name: str  # our SIP URI, the MAR's Server-Name
    mar: Mar  # raises CxUnavailable when no HSS answers
    random_bytes: Callable[[int], bytes] = secrets.token_bytes


@dataclass(frozen=True)
class AuthRequest:
    """What of a REGISTER the authentication looks at."""

    impi: str | None
    impu: str
    authorization: str | None  # the Authorization header value for our realm
    integrity_protected: str | None = None  # its integrity-protected parameter
    method: str = "REGISTER"
    body: bytes = b""  # for qop=auth-int

    @classmethod
    def of_register(cls, register: RegisterRequest, body: bytes = b"") -> AuthRequest:
        return cls(impi=register.impi, impu=register.aor, authorization=register.authorization,
                   integrity_protected=register.integrity_protected,
                   body=body)


# -- outcomes -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Authorized:
    """Go on with the registration (save, SAR)."""

    impi: str | None
    verified: bool  # False: let through without a digest (integrity-protected re-REGISTER,
    #                 authentication disabled, ignore_failed_auth)


@dataclass(frozen=True)
class Refusal:
    """A final response instead of the registration."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()

    def reply(self) -> Reply:
        return Reply(self.status, self.reason, list(self.headers))


@dataclass(frozen=True)
class Challenge(Refusal):
    """401 with WWW-Authenticate; the vector waits in PendingChallenges."""


@dataclass(frozen=True)
class Stale(Challenge):
    """401 with stale=TRUE and a fresh nonce: the UE's nonce is unknown, expired or used up."""


@dataclass(frozen=True)
class Forbidden(Refusal):
    """403. ``assignment`` is the SAR the HSS should hear, if any (TS 29.228 6.1.2:
    AUTHENTICATION_FAILURE after a wrong answer)."""

    assignment: ServerAssignmentType | None = None


@dataclass(frozen=True)
class Unavailable(Refusal):
    """503 with Retry-After: the HSS could not be asked."""


@dataclass(frozen=True)
class BadRequest(Refusal):
    """400: credentials the authentication cannot read."""


AuthOutcome = Authorized | Challenge | Stale | Forbidden | Unavailable | BadRequest


def _challenge(header: str, stale: bool) -> Challenge:
    kind = Stale if stale else Challenge
    return kind(401, "Unauthorized - Challenging the UE", (("WWW-Authenticate", header),))


def _unavailable(reason: str) -> Unavailable:
    return Unavailable(503, reason[:100], (("Retry-After", RETRY_AFTER),))


def _bad_request(reason: str) -> BadRequest:
    return BadRequest(400, f"Bad Request - {reason}")


# -- the REGISTER -------------------------------------------------------------------------------

async def authorize_register(pending: PendingChallenges, request: AuthRequest, *,
                             registered_with_impi: bool, now: float,
                             context: AuthContext) -> AuthOutcome:
    """Authorized, or the response to send instead, for one REGISTER.

    ``registered_with_impi``: the IMPU is registered now, by the IMPI of this request. Only
    then may a P-CSCF's integrity-protected spare the challenge: an initial REGISTER is
    always challenged, whatever that parameter claims.
    """
    settings = context.settings
    if not settings.enabled:
        return Authorized(request.impi, verified=False)
    if not request.impi:
        return Forbidden(403, "Forbidden - No private identity")
    if registered_with_impi and (request.integrity_protected or "").lower() in PROTECTED:
        return Authorized(request.impi, verified=False)
    if request.authorization is None:
        return await ims_www_challenge(pending, request, now=now, context=context)
    try:
        credentials = parse_authorization(request.authorization)
    except ValueError:
        return _bad_request("Malformed Authorization header")
    if credentials.is_resync:
        return await ims_www_resync_auth(pending, request, credentials, now=now, context=context)
    if credentials.is_initial:
        return await ims_www_challenge(pending, request, now=now, context=context,
                                       algorithm=credentials.algorithm)
    return await ims_www_authorize(pending, request, credentials, now=now, context=context)


async def ims_www_challenge(pending: PendingChallenges, request: AuthRequest, *, now: float,
                            context: AuthContext, algorithm: str | None = None,
                            stale: bool = False,
                            resync: bytes | None = None) -> Challenge | Forbidden | Unavailable:
    """A 401 carrying a vector: a spare one, or the first of a MAR's answer (the rest kept).

    ``algorithm`` is the UE's choice (an unknown one falls back to
    registration_default_algorithm); ``resync`` is RAND || AUTS for a resynchronisation MAR.
    """
    settings = context.settings
    wanted, scheme = _ALGORITHMS.get((algorithm or "").lower()) or _ALGORITHMS[
        settings.registration_default_algorithm.lower()]
    vector = None if resync else pending.take_spare(request.impi, wanted)
    if vector is None:
        vectors = await _ask_hss(request, scheme, resync, context)
        if isinstance(vectors, (Forbidden, Unavailable)):
            return vectors
        vector = vectors[0]
        pending.keep_spare(vectors[1:])
    pending.send(vector, now, settings.auth_data_timeout)
    aka = vector.algorithm == AKA
    return _challenge(www_authenticate(vector.realm, vector.nonce, vector.algorithm, vector.qop,
                                       stale=stale, ck=vector.ck if aka else None,
                                       ik=vector.ik if aka else None), stale)


async def ims_www_resync_auth(pending: PendingChallenges, request: AuthRequest,
                              credentials: DigestCredentials, *, now: float,
                              context: AuthContext) -> AuthOutcome:
    """RFC 3310 3.4: the UE found our SQN stale and sent AUTS; the HSS resynchronises on
    RAND || AUTS and a fresh AKA vector goes out. The RAND is that of the nonce the UE
    answered, pending or not: the HSS checks MAC-S over it, so a made-up RAND gains nothing."""
    try:
        auts = decode_auts(credentials.auts)
        rand = split_aka_nonce(credentials.nonce)[0]
    except ValueError:
        return _bad_request("Malformed auts or nonce")
    pending.discard(credentials.nonce)
    pending.drop_spare(request.impi)
    return await ims_www_challenge(pending, request, now=now, context=context, algorithm=AKA,
                                   resync=rand + auts)


async def ims_www_authorize(pending: PendingChallenges, request: AuthRequest,
                            credentials: DigestCredentials, *, now: float,
                            context: AuthContext) -> AuthOutcome:
    """Check the UE's answer against the vector its nonce names."""
    settings = context.settings
    sent = pending.get(credentials.nonce, now)
    if sent is None or sent.vector.impi != credentials.username:
        return await _failed(pending, request, now, context, stale=True)
    vector = sent.vector
    # The uri is not held against the Request-URI: the response covers the uri the UE sent,
    # and UEs differ in what they put there (sipp, for one, the next hop's address).
    qop = credentials.qop.lower() if credentials.qop is not None else None
    offered = vector.offered_qops
    if not (qop in offered if offered else qop is None):  # RFC 2617 3.2.2: one of those offered
        pending.discard(vector.nonce)
        return await _failed(pending, request, now, context, stale=False)
    nc = int(credentials.nc, 16) if qop is not None else sent.nc + 1
    if nc <= sent.nc:  # a replay of an answer already accepted
        pending.discard(vector.nonce)
        return await _failed(pending, request, now, context, stale=True)
    expected = response(vector.expected_ha1(credentials.username), vector.nonce, request.method,
                        credentials.uri, credentials.qop, credentials.nc, credentials.cnonce,
                        request.body)
    if not constant_time_equal(expected, credentials.response.lower()):
        pending.discard(vector.nonce)
        return await _failed(pending, request, now, context, stale=False)
    sent.uses, sent.nc = sent.uses + 1, nc
    if sent.uses > settings.max_nonce_reuse:
        pending.discard(vector.nonce)
    return Authorized(request.impi, verified=True)


async def _failed(pending: PendingChallenges, request: AuthRequest, now: float,
                  context: AuthContext, *, stale: bool) -> AuthOutcome:
    """A nonce we cannot use (``stale``: a new challenge) or a wrong answer (403), unless
    ignore_failed_auth lets everything through."""
    if context.settings.ignore_failed_auth:
        return Authorized(request.impi, verified=False)
    if stale:
        return await ims_www_challenge(pending, request, now=now, context=context, stale=True)
    return Forbidden(403, "Forbidden - Authentication failed",
                     assignment=ServerAssignmentType.AUTHENTICATION_FAILURE)


# -- the MAR ------------------------------------------------------------------------------------

async def _ask_hss(request: AuthRequest, scheme: str, resync: bytes | None,
                   context: AuthContext) -> list[AuthVector] | Forbidden | Unavailable:
    settings = context.settings
    asked = settings.av_request_at_once
    try:
        maa = await context.mar(MarRequest(
            public_identity=request.impu, user_name=request.impi,
            server_name=context.server_name, auth_scheme=scheme, number_auth_items=asked,
            resync_authorization=resync))
    except CxUnavailable as exc:
        return _unavailable(f"HSS unavailable: {exc}")
    if not maa.success:
        return _maa_refusal(maa)
    vectors = [vector for item in maa.auth_items[:asked]
               if (vector := _vector(item, request.impi, settings, context.random_bytes))]
    if not vectors:
        return Forbidden(403, "Forbidden - HSS sent no usable authentication vector")
    return vectors


# (field, code) -> reason; Kamailio answers these 403 too.
_MAA_REFUSALS = {
    ("experimental", 5001): "Forbidden - HSS User Unknown",
    ("experimental", 5002): "Forbidden - HSS Identities don't match",
    ("experimental", 5006): "Forbidden - HSS Authentication Scheme not supported",
    ("result", 5003): "Forbidden - HSS Authorization Rejected",
    ("result", 5012): "Forbidden - HSS Unable to comply",
}


def _maa_refusal(maa: MaaResult) -> Forbidden | Unavailable:
    field, code = (("experimental", maa.experimental_result_code)
                   if maa.experimental_result_code is not None
                   else ("result", maa.result_code or 0))
    if 3000 <= code < 5000:  # protocol errors and transient failures: worth a retry
        return _unavailable(f"HSS answered {code}")
    return Forbidden(403, _MAA_REFUSALS.get((field, code), f"Forbidden - HSS answered {code}"))


def _vector(item: SipAuthItem, impi: str, settings: AuthSettings,
            random_bytes: Callable[[int], bytes]) -> AuthVector | None:
    """The vector of one SIP-Auth-Data-Item, or None for one we cannot use."""
    algorithm = _ITEM_SCHEMES.get(item.scheme.strip().lower())
    qop = settings.registration_qop.replace(" ", "") or None
    if algorithm == AKA:
        challenge = item.authenticate or b""  # RAND || AUTN
        if len(challenge) != BLOCK + AUTN_LENGTH or not item.authorization:
            return None
        nonce = aka_nonce(challenge[:BLOCK], challenge[BLOCK:])
        return AuthVector(impi, AKA, settings.realm, nonce, qop, xres=item.authorization,
                          ck=item.confidentiality_key, ik=item.integrity_key)
    if algorithm == MD5:
        ha1 = (item.digest_ha1 or "").lower()
        realm, hss_qop = item.digest_realm or settings.realm, item.digest_qop
        if len(ha1) != 32 or not _HEX.issuperset(ha1) or not _printable(realm, hss_qop or ""):
            return None
        nonce = base64.b64encode(random_bytes(_NONCE_BYTES)).decode("ascii")
        return AuthVector(impi, MD5, realm, nonce, hss_qop or qop, ha1=ha1)
    return None


def _printable(*texts: str) -> bool:
    """Fit for a quoted-string of WWW-Authenticate: no control characters."""
    return all(text.isprintable() for text in texts)
