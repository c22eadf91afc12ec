"""Milenage, the 3GPP example algorithm set for f1, f1*, f2, f3, f4, f5 and f5* (TS 35.206).

The HSS (or our emulation of it) and a test UE both need these functions; the kernel is
AES-128 on single blocks, taken from the ``cryptography`` package.
"""
from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16
SQN_LENGTH = 6
AMF_LENGTH = 2

# TS 35.206 4.1: rotations in bytes (r1..r5 = 64, 0, 32, 64, 96 bits) and constants c1..c5.
_R1, _R2, _R3, _R4, _R5 = 8, 0, 4, 8, 12
_C1, _C2, _C3, _C4, _C5 = (bytes(15) + bytes([value]) for value in (0, 1, 2, 4, 8))


def require_length(name: str, value: bytes, length: int) -> None:
    """Reject a wrong-sized input early, naming it, rather than computing garbage."""
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) != length:
        raise ValueError(f"{name} must be {length} bytes, got {len(value)}")


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _rotate(block: bytes, octets: int) -> bytes:
    """rot(x, r) of TS 35.206: cyclic shift towards the most significant end."""
    return block[octets:] + block[:octets]


def _encrypt(k: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(k), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def opc(k: bytes, op: bytes) -> bytes:
    """OPc = OP xor E_K(OP): what an operator stores per subscriber instead of OP."""
    require_length("K", k, BLOCK)
    require_length("OP", op, BLOCK)
    return xor(op, _encrypt(k, op))


class Milenage:
    """f1..f5* for one subscriber (K, OPc).

    Holds the key but never shows it: the default object repr names no field.
    """

    __slots__ = ("_cipher", "_opc")

    def __init__(self, k: bytes, opc: bytes) -> None:
        require_length("K", k, BLOCK)
        require_length("OPc", opc, BLOCK)
        self._cipher = Cipher(algorithms.AES(bytes(k)), modes.ECB())
        self._opc = bytes(opc)

    def f1(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        """MAC-A, the network's proof of knowing K (8 bytes)."""
        return self._out1(rand, sqn, amf)[:8]

    def f1_star(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        """MAC-S, the UE's proof on a resynchronisation (8 bytes)."""
        return self._out1(rand, sqn, amf)[8:]

    def f2(self, rand: bytes) -> bytes:
        """RES / XRES (8 bytes)."""
        return self._out(rand, _R2, _C2)[8:]

    def f3(self, rand: bytes) -> bytes:
        """CK, the cipher key (16 bytes)."""
        return self._out(rand, _R3, _C3)

    def f4(self, rand: bytes) -> bytes:
        """IK, the integrity key (16 bytes)."""
        return self._out(rand, _R4, _C4)

    def f5(self, rand: bytes) -> bytes:
        """AK, which conceals SQN in AUTN (6 bytes)."""
        return self._out(rand, _R2, _C2)[:6]

    def f5_star(self, rand: bytes) -> bytes:
        """AK*, which conceals SQN_MS in AUTS (6 bytes)."""
        return self._out(rand, _R5, _C5)[:6]

    def _encrypt(self, block: bytes) -> bytes:
        encryptor = self._cipher.encryptor()
        return encryptor.update(block) + encryptor.finalize()

    def _temp(self, rand: bytes) -> bytes:
        require_length("RAND", rand, BLOCK)
        return self._encrypt(xor(rand, self._opc))

    def _out1(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        require_length("SQN", sqn, SQN_LENGTH)
        require_length("AMF", amf, AMF_LENGTH)
        in1 = bytes(sqn) + bytes(amf) + bytes(sqn) + bytes(amf)
        mixed = xor(_rotate(xor(in1, self._opc), _R1), _C1)
        return xor(self._encrypt(xor(self._temp(rand), mixed)), self._opc)

    def _out(self, rand: bytes, rotation: int, constant: bytes) -> bytes:
        """OUT2..OUT5 differ only in rotation and constant."""
        mixed = xor(_rotate(xor(self._temp(rand), self._opc), rotation), constant)
        return xor(self._encrypt(mixed), self._opc)
