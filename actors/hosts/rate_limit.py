"""Requests per source address over a sliding window, as Kamailio's pike module counts them.

A source sending more than ``density`` requests a second (averaged over ``window`` seconds) is
answered 503 with Retry-After; beyond ``drop_density`` its requests are dropped unanswered, so
a flood, spoofed or not, draws no answers at all. Every request counts, refused ones too: a
source is let through again only once it slows down. Sans-I/O: the caller passes ``now``.

The window slides by weighing the previous fixed window by how much of it still overlaps, so a
source costs two counters whatever its rate. Sources silent for two windows are forgotten.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

ADMIT, REFUSE, DROP = "admit", "refuse", "drop"


@dataclass(slots=True)
class _Counts:
    start: float  # of the current fixed window
    current: int
    previous: int


class SourceRateLimit:
    def __init__(self, density: int, window: float, drop_density: int = 0,
                 trusted: list[str] = ()) -> None:
        """``density``, ``drop_density``: requests a second (0: no such bound); ``trusted``:
        addresses or networks never limited (the P-CSCFs, each carrying many UEs)."""
        self.density = density
        self.drop_density = drop_density
        self.window = window
        self._trusted = [ipaddress.ip_network(t, strict=False) for t in trusted]
        self._exempt: dict[str, bool] = {}  # address -> trusted, parsed once
        self._sources: dict[str, _Counts] = {}
        self._swept = 0.0

    def check(self, source: str, now: float) -> str:
        """Counts one request from ``source``: ADMIT, REFUSE (503) or DROP."""
        if self._is_trusted(source):
            return ADMIT
        if now - self._swept >= self.window:
            self._sweep(now)
        counts = self._sources.get(source)
        if counts is None:
            counts = self._sources[source] = _Counts(now, 0, 0)
        elapsed = now - counts.start
        if elapsed >= self.window:  # roll to the window holding ``now``
            windows = int(elapsed // self.window)
            counts.previous = counts.current if windows == 1 else 0
            counts.current = 0
            counts.start += windows * self.window
            elapsed = now - counts.start
        counts.current += 1
        overlap = 1.0 - elapsed / self.window
        rate = (counts.previous * overlap + counts.current) / self.window
        if self.drop_density and rate > self.drop_density:
            return DROP
        if self.density and rate > self.density:
            return REFUSE
        return ADMIT

    def __len__(self) -> int:
        return len(self._sources)

    def _is_trusted(self, source: str) -> bool:
        trusted = self._exempt.get(source)
        if trusted is None:
            try:
                address = ipaddress.ip_address(source)
            except ValueError:
                trusted = False
            else:
                trusted = any(address in network for network in self._trusted)
            if len(self._exempt) > 4096:  # spoofed sources must not grow it without end
                self._exempt.clear()
            self._exempt[source] = trusted
        return trusted

    def _sweep(self, now: float) -> None:
        self._swept = now
        horizon = now - 2 * self.window
        self._sources = {s: c for s, c in self._sources.items() if c.start > horizon}
