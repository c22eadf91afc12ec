"""IMS AKA (TS 33.102 6.3) on both sides, and its carriage in SIP Digest (RFC 3310).

The HSS side makes vectors and recovers SQN_MS from a resynchronisation; the UE side
checks the network and answers, which the tests and the test client use.
"""
from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field

from actors.auth.milenage import AMF_LENGTH, BLOCK, SQN_LENGTH, Milenage, require_length, xor

AUTN_LENGTH = 16
AUTS_LENGTH = SQN_LENGTH + 8
SQN_LIMIT = 1 << (8 * SQN_LENGTH)
RESYNC_AMF = bytes(AMF_LENGTH)  # TS 33.102 6.3.3: MAC-S uses a dummy all-zero AMF


class MacFailure(Exception):
    """AUTN's MAC-A is not what K gives: the challenge did not come from our home network."""


@dataclass(frozen=True)
class AkaVector:
    """One authentication vector: RAND and AUTN go to the UE, XRES/CK/IK stay in the network."""

    rand: bytes
    autn: bytes
    xres: bytes = field(repr=False)
    ck: bytes = field(repr=False)
    ik: bytes = field(repr=False)


@dataclass(frozen=True)
class UeAnswer:
    """What the USIM returns: RES/CK/IK and the SQN it accepted, or only AUTS on a
    synchronisation failure (the network's SQN was not fresh)."""

    res: bytes | None = field(default=None, repr=False)
    ck: bytes | None = field(default=None, repr=False)
    ik: bytes | None = field(default=None, repr=False)
    sqn: int | None = None
    auts: bytes | None = None

    @property
    def synchronisation_failure(self) -> bool:
        return self.auts is not None


def _sqn_bytes(name: str, sqn: int) -> bytes:
    if not 0 <= sqn < SQN_LIMIT:
        raise ValueError(f"{name} must be in [0, 2**48), got {sqn}")
    return sqn.to_bytes(SQN_LENGTH, "big")


def make_vector(k: bytes, opc: bytes, sqn: int, amf: bytes, rand: bytes) -> AkaVector:
    """HSS side: AUTN = (SQN xor AK) || AMF || MAC-A, with XRES, CK and IK for RAND."""
    sqn_octets = _sqn_bytes("SQN", sqn)
    milenage = Milenage(k, opc)
    autn = xor(sqn_octets, milenage.f5(rand)) + bytes(amf) + milenage.f1(rand, sqn_octets, amf)
    return AkaVector(rand=bytes(rand), autn=autn, xres=milenage.f2(rand),
                     ck=milenage.f3(rand), ik=milenage.f4(rand))


def make_auts(k: bytes, opc: bytes, rand: bytes, sqn_ms: int) -> bytes:
    """UE side of TS 33.102 6.3.3: AUTS = (SQN_MS xor AK*) || MAC-S."""
    return _auts(Milenage(k, opc), rand, _sqn_bytes("SQN_MS", sqn_ms))


def _auts(milenage: Milenage, rand: bytes, sqn_ms: bytes) -> bytes:
    return xor(sqn_ms, milenage.f5_star(rand)) + milenage.f1_star(rand, sqn_ms, RESYNC_AMF)


def resync_sqn(k: bytes, opc: bytes, rand: bytes, auts: bytes) -> int | None:
    """HSS side: the UE's SQN_MS from AUTS, or None when MAC-S does not verify.

    ``rand`` is the RAND of the challenge the UE rejected.
    """
    require_length("AUTS", auts, AUTS_LENGTH)
    milenage = Milenage(k, opc)
    sqn_octets = xor(auts[:SQN_LENGTH], milenage.f5_star(rand))
    expected = milenage.f1_star(rand, sqn_octets, RESYNC_AMF)
    if not hmac.compare_digest(expected, bytes(auts[SQN_LENGTH:])):
        return None
    return int.from_bytes(sqn_octets, "big")


def ue_respond(k: bytes, opc: bytes, rand: bytes, autn: bytes, sqn_ms: int) -> UeAnswer:
    """UE side: verify the network (MAC-A), then accept a SQN above ``sqn_ms`` (the highest
    the UE has accepted) or ask for resynchronisation with AUTS.

    Raises MacFailure when MAC-A does not verify.
    """
    require_length("AUTN", autn, AUTN_LENGTH)
    sqn_ms_octets = _sqn_bytes("SQN_MS", sqn_ms)
    milenage = Milenage(k, opc)
    sqn_octets = xor(autn[:SQN_LENGTH], milenage.f5(rand))
    amf, mac_a = autn[SQN_LENGTH:SQN_LENGTH + AMF_LENGTH], autn[SQN_LENGTH + AMF_LENGTH:]
    if not hmac.compare_digest(milenage.f1(rand, sqn_octets, amf), bytes(mac_a)):
        raise MacFailure("MAC-A in AUTN does not verify")
    sqn = int.from_bytes(sqn_octets, "big")
    if sqn <= sqn_ms:
        return UeAnswer(auts=_auts(milenage, rand, sqn_ms_octets))
    return UeAnswer(res=milenage.f2(rand), ck=milenage.f3(rand), ik=milenage.f4(rand), sqn=sqn)


def aka_nonce(rand: bytes, autn: bytes, server_data: bytes = b"") -> str:
    """RFC 3310 3.2: the Digest nonce is base64(RAND || AUTN || server data)."""
    require_length("RAND", rand, BLOCK)
    require_length("AUTN", autn, AUTN_LENGTH)
    return base64.b64encode(bytes(rand) + bytes(autn) + bytes(server_data)).decode("ascii")


def _b64decode(name: str, value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"{name} is not base64") from error


def split_aka_nonce(nonce: str) -> tuple[bytes, bytes, bytes]:
    """RAND, AUTN and server data back from an RFC 3310 nonce."""
    raw = _b64decode("nonce", nonce)
    if len(raw) < BLOCK + AUTN_LENGTH:
        raise ValueError(f"nonce too short for RAND and AUTN: {len(raw)} bytes")
    return raw[:BLOCK], raw[BLOCK:BLOCK + AUTN_LENGTH], raw[BLOCK + AUTN_LENGTH:]


def encode_auts(auts: bytes) -> str:
    """The value of the RFC 3310 ``auts`` Authorization parameter."""
    require_length("AUTS", auts, AUTS_LENGTH)
    return base64.b64encode(bytes(auts)).decode("ascii")


def decode_auts(value: str) -> bytes:
    """AUTS from an ``auts`` parameter; ValueError unless it is base64 of 14 bytes."""
    auts = _b64decode("auts", value)
    if len(auts) != AUTS_LENGTH:
        raise ValueError(f"auts must decode to {AUTS_LENGTH} bytes, got {len(auts)}")
    return auts
