"""SARs the HSS still has to hear, tried again with exponential back-off (pure: no clock, no I/O).

A de-registration (by the UE, by expiry or by the network) removes the bindings whether or not
the HSS answers (TS 24.229 5.4.1.4); its SAR then waits here until the HSS takes it, so the HSS
does not keep naming this S-CSCF for a user that is gone. One SAR per identity: a newer one
replaces it, a SAR sent meanwhile about the identity (a new registration) cancels it.

Kept in the shard's memory only: a shard restarting with SARs waiting loses them, and the HSS
learns of those users at their next registration or through its own timers.
"""
from __future__ import annotations

from dataclasses import dataclass

from actors.hosts.timers import ExpiryHeap
from transport.diameter.cx import SarRequest

FIRST_DELAY = 1.0  # seconds before the first retry
LONGEST_DELAY = 300.0  # the back-off doubles up to this, then stays


@dataclass(slots=True)
class _Waiting:
    request: SarRequest
    delay: float  # before the attempt after the next one fails


class SarRetries:
    __slots__ = ("_waiting", "_timers", "_first", "_longest")

    def __init__(self, first: float = FIRST_DELAY, longest: float = LONGEST_DELAY) -> None:
        self._waiting: dict[str, _Waiting] = {}  # by public identity
        self._timers = ExpiryHeap()
        self._first, self._longest = first, longest

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, request: SarRequest, now: float) -> None:
        """Schedules ``request`` ``first`` seconds from now, replacing the identity's last one."""
        identity = request.public_identity
        self._waiting[identity] = _Waiting(request, min(2 * self._first, self._longest))
        self._timers.schedule(identity, now + self._first)

    def cancel(self, identity: str) -> None:
        if self._waiting.pop(identity, None) is not None:
            self._timers.cancel(identity)

    def pending(self, identity: str) -> SarRequest | None:
        waiting = self._waiting.get(identity)
        return waiting.request if waiting else None

    def due(self, now: float) -> list[SarRequest]:
        """The SARs whose time has come; each stays waiting until ``done`` or ``failed``."""
        return [self._waiting[i].request for i in self._timers.due(now) if i in self._waiting]

    def done(self, request: SarRequest) -> None:
        """The HSS answered (or the SAR is no longer wanted): it is dropped, unless a newer one
        took its place meanwhile."""
        waiting = self._waiting.get(request.public_identity)
        if waiting is not None and waiting.request is request:
            self.cancel(request.public_identity)

    def failed(self, request: SarRequest, now: float) -> None:
        """Unanswered again: tried after the current delay, which then doubles."""
        waiting = self._waiting.get(request.public_identity)
        if waiting is None or waiting.request is not request:
            return
        self._timers.schedule(request.public_identity, now + waiting.delay)
        waiting.delay = min(2 * waiting.delay, self._longest)

    def next_deadline(self) -> float | None:
        return self._timers.next_deadline()
