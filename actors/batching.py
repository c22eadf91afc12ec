"""Adaptive batching across actor boundaries.

A Ray call costs about a millisecond of CPU whatever it carries, so one call per SIP message
caps the registrar near 1,300 messages/s. A Batcher keeps at most ``max_in_flight`` calls
outstanding towards one destination; whatever arrives meanwhile rides in the next call. At low
load every call carries one item (lowest latency); under load calls grow (highest throughput).
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


class Batcher:
    def __init__(
        self,
        call: Callable[[list[Any]], Awaitable[list[Any]]],
        max_in_flight: int = 2,
        max_batch: int = 512,
    ) -> None:
        self._call = call
        self._max_in_flight = max_in_flight
        self._max_batch = max_batch
        self._queue: list[tuple[Any, asyncio.Future]] = []
        self._in_flight = 0

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
        while self._queue and self._in_flight < self._max_in_flight:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._send(batch))

    async def _send(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
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
            self._in_flight -= 1
            self._dispatch()
