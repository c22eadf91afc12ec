"""The IMPIs of one shard's identities, so an RTR or PPR naming only an IMPI finds them.

Kept in memory beside the shard's identities and rebuilt from their records on load (a
record's profile holds its IMPI), so it needs no store of its own and survives restarts.
"""
from __future__ import annotations


class ImpiIndex:
    def __init__(self) -> None:
        # IMPI -> its identity of this shard, or a set of them when several: most IMPIs have
        # one here, and an empty set alone is 216 bytes
        self._identities: dict[str, str | set[str]] = {}
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
            if isinstance(held, str):
                del self._identities[before]
            else:
                held.discard(identity)
                if len(held) == 1:
                    self._identities[before] = held.pop()
            del self._impi_of[identity]
        if impi:
            self._impi_of[identity] = impi
            held = self._identities.get(impi)
            if held is None:
                self._identities[impi] = identity
            elif isinstance(held, str):
                self._identities[impi] = {held, identity}
            else:
                held.add(identity)

    def identities(self, impis) -> set[str]:
        """Every identity of this shard that belongs to one of ``impis``."""
        found: set[str] = set()
        for impi in impis:
            held = self._identities.get(impi)
            if isinstance(held, str):
                found.add(held)
            elif held:
                found |= held
        return found
