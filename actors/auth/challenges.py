"""The authentication vectors one public identity holds between a 401 and the UE's answer (what
ims_auth keeps per IMPI and IMPU): those sent, keyed by nonce, each with its deadline
(auth_data_timeout) and use count (max_nonce_reuse), and the spare ones a MAR brought beyond
the first. Secrets (XRES, HA1, CK, IK) are never part of a repr.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from actors.auth.aka import split_aka_nonce
from actors.auth.digest import aka_ha1

AKA = "AKAv1-MD5"  # the Digest algorithm tokens of RFC 3310 and RFC 2617
MD5 = "MD5"
QOPS = frozenset({"auth", "auth-int"})
MAX_SENT = 4  # challenges one identity may have outstanding; the oldest goes first


@dataclass(frozen=True)
class AuthVector:
    """One vector as the S-CSCF holds it: what goes into the challenge and what checks the
    answer. AKA vectors carry XRES (and CK/IK for the P-CSCF), SIP Digest ones the HA1."""

    impi: str
    algorithm: str  # AKA or MD5
    realm: str
    nonce: str
    qop: str | None  # the qop offered, comma-separated; None offers none (RFC 2069 answers)
    xres: bytes | None = field(default=None, repr=False)
    ck: bytes | None = field(default=None, repr=False)
    ik: bytes | None = field(default=None, repr=False)
    ha1: str | None = field(default=None, repr=False)

    def expected_ha1(self, username: str) -> str:
        """H(A1) the UE's response must be built on: RES as the password for AKA."""
        if self.algorithm == AKA:
            return aka_ha1(username, self.realm, self.xres)
        return self.ha1

    @property
    def rand(self) -> bytes:
        """The RAND of an AKA vector, which a resynchronisation MAR sends back with AUTS."""
        return split_aka_nonce(self.nonce)[0]

    @property
    def offered_qops(self) -> frozenset[str]:
        """The qops offered that a response can be built with."""
        offered = {q.strip().lower() for q in (self.qop or "").split(",")}
        return frozenset(offered & QOPS)


@dataclass
class SentVector:
    vector: AuthVector
    expires_at: float
    uses: int = 0  # REGISTERs it authorized
    nc: int = 0  # the highest nonce count accepted (RFC 2617 3.2.2: it only goes up)


class PendingChallenges:
    """Vectors of one IMPU. Not thread-safe: it lives in the IMPU's mailbox."""

    __slots__ = ("_sent", "_spare")

    def __init__(self) -> None:
        self._sent: dict[str, SentVector] = {}
        self._spare: list[AuthVector] = []

    def send(self, vector: AuthVector, now: float, timeout: float) -> None:
        """Hold ``vector`` for ``timeout`` seconds as the one a 401 is carrying."""
        self.expire(now)
        while len(self._sent) >= MAX_SENT:
            del self._sent[next(iter(self._sent))]
        self._sent[vector.nonce] = SentVector(vector, now + timeout)

    def get(self, nonce: str, now: float) -> SentVector | None:
        """The vector sent with ``nonce``; one past its deadline is freed and not returned."""
        sent = self._sent.get(nonce)
        if sent is not None and sent.expires_at <= now:
            del self._sent[nonce]
            return None
        return sent

    def discard(self, nonce: str) -> None:
        self._sent.pop(nonce, None)

    def expire(self, now: float) -> None:
        """Free every sent vector past its deadline."""
        for nonce in [n for n, sent in self._sent.items() if sent.expires_at <= now]:
            del self._sent[nonce]

    def keep_spare(self, vectors: Iterable[AuthVector]) -> None:
        self._spare.extend(vectors)

    def take_spare(self, impi: str, algorithm: str | None) -> AuthVector | None:
        """The oldest spare vector of ``impi`` (AKA SQNs go up in that order), of
        ``algorithm`` unless None."""
        for index, vector in enumerate(self._spare):
            if vector.impi == impi and algorithm in (None, vector.algorithm):
                return self._spare.pop(index)
        return None

    def drop_spare(self, impi: str) -> None:
        """Forget the spare vectors of ``impi``: after a resynchronisation their SQNs are stale."""
        self._spare = [vector for vector in self._spare if vector.impi != impi]

    @property
    def next_expiry(self) -> float | None:
        """The earliest deadline of a sent vector, for a timer that calls expire()."""
        return min((sent.expires_at for sent in self._sent.values()), default=None)

    def __len__(self) -> int:
        return len(self._sent) + len(self._spare)

    def __repr__(self) -> str:
        return f"<PendingChallenges {len(self._sent)} sent, {len(self._spare)} spare>"
