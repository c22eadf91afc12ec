"""The IMPIs of one shard's identities, so an RTR or PPR naming only an IMPI finds them.

Kept in memory beside the shard's identities and rebuilt from their records on load (a
record's profile holds its IMPI), so it needs no store of its own and survives restarts.
"""
from __future__ import annotations


class ImpiIndex:
    def __init__(self) -> None:
        self._identities: dict[str, set[str]] = {}  # IMPI -> identities of this shard
        self._impi_of: dict[str, str] = {}  # identity -> its IMPI

    def __len__(self) -> int:
        return len(self._impi_of)

    def update(self, identity: str, impi: str | None) -> None:
        """The identity now belongs to ``impi`` (None: to none, it holds no profile)."""
        before = self._impi_of.get(identity)
        if before == impi:
            return
        if before is not None:
            held = self._identities[before]
            held.discard(identity)
            if not held:
                del self._identities[before]
            del self._impi_of[identity]
        if impi:
            self._impi_of[identity] = impi
            self._identities.setdefault(impi, set()).add(identity)

    def identities(self, impis) -> set[str]:
        """Every identity of this shard that belongs to one of ``impis``."""
        return set().union(*(self._identities.get(impi, ()) for impi in impis))
