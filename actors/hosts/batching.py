"""Adaptive batching across actor boundaries.

A Ray call costs about a millisecond of CPU whatever it carries, so one call per SIP message
caps the registrar near 1,300 messages/s. A Batcher keeps one call outstanding towards its
destination; whatever arrives meanwhile rides in the next call. At low load every call carries
one item (lowest latency); under load calls grow (highest throughput).

A call that is slow to return (a SAR waiting for a dead HSS to time out) must not hold up the
items behind it: once every outstanding call is older than ``stall_after``, another may start,
up to ``max_in_flight``.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


class Batcher:
    def __init__(
        self,
        call: Callable[[list[Any]], Awaitable[list[Any]]],
        max_in_flight: int = 8,
        stall_after: float = 0.02,
        max_batch: int = 512,
    ) -> None:
        self._call = call
        self._max_in_flight = max_in_flight
        self._stall_after = stall_after
        self._max_batch = max_batch
        self._queue: list[tuple[Any, asyncio.Future]] = []
        self._started: list[float] = []  # start times of the calls in flight, oldest first
        self._recheck: asyncio.TimerHandle | None = None

    async def submit(self, item: Any) -> Any:
        """Sends ``item`` in the next batch; returns its result, or raises the batch's error.

        A result that is an exception instance is raised here, so a batch call can fail items
        one by one without failing the whole batch.
        """
        future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._dispatch()
        result = await future
        if isinstance(result, BaseException):
            raise result
        return result

    def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue and self._may_start(loop.time()):
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            started = loop.time()
            self._started.append(started)
            loop.create_task(self._send(batch, started))
        if self._queue and self._recheck is None and len(self._started) < self._max_in_flight:
            delay = self._started[-1] + self._stall_after - loop.time()
            self._recheck = loop.call_later(max(delay, 0.0), self._on_recheck)

    def _may_start(self, now: float) -> bool:
        if not self._started:
            return True
        return len(self._started) < self._max_in_flight and now - self._started[-1] >= self._stall_after

    def _on_recheck(self) -> None:
        self._recheck = None
        self._dispatch()

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
