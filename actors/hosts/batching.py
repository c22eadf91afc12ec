"""Adaptive batching across actor boundaries.

A Ray call costs about a millisecond of CPU whatever it carries, so one call per SIP message
caps the registrar near 1,300 messages/s. A Batcher keeps one call outstanding towards its
destination; whatever arrives meanwhile rides in the next call. At low load every call carries
one item (lowest latency); under load calls grow (highest throughput).

Under load a call returns in a millisecond or two with the next items already waiting, so
calls would still carry only a few. So no call starts within ``linger`` of the last one's start:
a busy destination gets at most one call per ``linger`` (items ride in tens), and an item that
finds the destination idle for longer goes at the end of the loop turn, with every item
submitted in that turn: a shard asks for the SARs of a batch of REGISTERs in one turn, and the
first one sent alone would leave the rest waiting for the next call, a linger later. The
spacing holds even when the last call returned to an empty queue: otherwise, at moderate
rates, each item arriving just after a call returned would get a call of its own.

A call that is slow to return (a SAR waiting for a dead HSS to time out) must not hold up the
items behind it: once every outstanding call is older than ``stall_after``, another may start,
up to ``max_in_flight``.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from actors.hosts.loop_timer import LoopTimer

# At most 100 calls a second to a destination. Each call wakes every process along the chain
# (transport, shard, its store thread, Cx pool, HSS), and on a 2-core box a wake-up costs more
# than the items it carries. Measured with scripts/bench_register.py --profile initial, pairs
# of 5 ms against 10 ms, CPU per REGISTER of every process and the HSS: at 1,000/s 1.00 against
# 0.76 ms (p50 8 against 16 ms), at 2,000/s 0.62 against 0.54 ms (p50 16 ms both), at 3,000/s
# 0.47-0.48 against 0.44 ms, at 4,000/s 0.43 against 0.41 ms. Spacing calls even after one
# returned to an empty queue: at 600/s p50 8-12 against 16-20 ms and 3-20% less CPU.
# A longer linger on the first hop (a transport's requests to a shard, whose batches every
# later hop carries on) only lengthens each batch's trip through the chain: 15 against 10 ms
# at 2,000/s, p50 24-28 against 16 ms for 0.52-0.61 against 0.53 ms of CPU; at 3,000/s and
# above calls take longer than either linger and their spacing is ``stall_after``'s.
LINGER = 0.010


class Batcher:
    def __init__(
        self,
        call: Callable[[list[Any]], Awaitable[list[Any]]],
        max_in_flight: int = 8,
        stall_after: float = 0.02,
        max_batch: int = 512,
        linger: float = LINGER,
    ) -> None:
        self._call = call
        self._max_in_flight = max_in_flight
        self._stall_after = stall_after
        self._max_batch = max_batch
        self._linger = linger
        self._hold_until = 0.0  # loop time before which no call starts: the last start + linger
        self._queue: list[tuple[Any, asyncio.Future]] = []
        self._started: list[float] = []  # start times of the calls in flight, oldest first
        self._recheck = LoopTimer(self._dispatch)

    async def submit(self, item: Any) -> Any:
        """Sends ``item`` in the next batch; returns its result, or raises the batch's error.

        A result that is an exception instance is raised here, so a batch call can fail items
        one by one without failing the whole batch.
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((item, future))
        if not self._recheck.armed:  # at the end of this loop turn, with what else arrives in it
            self._recheck.fire_by(loop.time())
        result = await future
        if isinstance(result, BaseException):
            raise result
        return result

    def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue and (start := self._next_start()) is not None and loop.time() >= start:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            started = loop.time()
            self._hold_until = started + self._linger
            self._started.append(started)
            loop.create_task(self._send(batch, started))
        if not self._queue or (start := self._next_start()) is None:
            return
        # A recheck set for a later start (a stall, while a call was in flight) is moved up:
        # the call's return allows the next one at the linger.
        self._recheck.fire_by(start)

    def _next_start(self) -> float | None:
        """When another call may start; None: not before one in flight returns."""
        if not self._started:
            return self._hold_until
        if len(self._started) >= self._max_in_flight:
            return None
        return max(self._started[-1] + self._stall_after, self._hold_until)

    async def _send(self, batch: list[tuple[Any, asyncio.Future]], started: float) -> None:
        try:
            results = await self._call([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} answered with {len(results)} results")
        except Exception as exc:  # the whole call failed: every item in it fails the same way
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)
        finally:
            self._started.remove(started)
            self._dispatch()
