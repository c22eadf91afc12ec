"""Shedding what cannot be answered in time (issue: overload answered 503 at once).

A UE retransmits a REGISTER over UDP after T1 (500 ms) without an answer; a registrar that
queues beyond that serves retransmissions on top of new work, and its goodput collapses.
So a transport answers 503 with Retry-After at once, and spends nothing downstream, on a new
request that would wait longer than ``max_delay`` in all:
- in the kernel: the datagram already waited that long before it was read (its timestamp);
- on the shards: Little's law, the requests waiting there over the rate at which the shards
  answer, is the wait of one more; beyond ``max_delay`` of it, it is refused.
  ``floor`` requests are always let through, so an idle registrar takes a burst at once
  before its rate is known.

The rate is the highest of the last ``memory`` intervals, not the last one alone: a pause of a
shard (a garbage collection of its young objects took 40-230 ms at 2,000 REGISTER/s) answers
nothing for a moment while requests keep arriving, and the rate of that moment would refuse
requests that the shards, once going again, answer well within ``max_delay``. Shards that
really slow down are followed one second later.
"""
from __future__ import annotations

from collections import deque

FLOOR = 256
INTERVAL = 0.25  # seconds the answer rate is counted over
MEMORY = 4  # intervals the rate is the highest of: one second


class OverloadGate:
    def __init__(self, max_delay: float, floor: int = FLOOR, interval: float = INTERVAL,
                 memory: int = MEMORY) -> None:
        self.max_delay = max_delay
        self._floor = floor
        self._interval = interval
        self._rate = 0.0  # answers a second: the highest of the recent full intervals
        self._recent: deque[float] = deque(maxlen=memory)  # their rates, newest last
        self._answers = 0
        self._since: float | None = None
        self.shed = 0  # requests refused so far

    def admit(self, queued: float, in_flight: int, now: float) -> bool:
        """Whether a new request that waited ``queued`` seconds before it was read, with
        ``in_flight`` requests waiting on the shards, may go on to them."""
        if self.refuses(queued, in_flight, now):
            self.shed += 1
            return False
        return True

    def refuses(self, queued: float, in_flight: int, now: float) -> bool:
        """Whether ``admit`` would refuse that request now; counts nothing (a transport asks
        before it parses the request, see TransportCore.refuse_unparsed)."""
        self._roll(now)
        return not (queued <= self.max_delay
                    and in_flight < max(self._floor, self._rate * self.max_delay))

    def answered(self, now: float) -> None:
        """A shard answered a request."""
        self._roll(now)
        self._answers += 1

    def _roll(self, now: float) -> None:
        if self._since is None:
            self._since = now
            return
        elapsed = now - self._since
        if elapsed >= self._interval:
            self._recent.append(self._answers / elapsed)
            self._rate = max(self._recent)
            self._answers = 0
            self._since = now
