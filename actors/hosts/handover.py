"""The door of a shard that moves to another node: open until the move starts, then every new
request is turned away (503 + Retry-After, or ShardMoving for calls that answer no SIP), and
the move waits for the requests already inside to finish before the shard's slots are flushed.
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from actors.vocabulary import RETRY_AFTER, Reply

MOVING = Reply(503, "Registrar shard moving", [("Retry-After", RETRY_AFTER)])


class ShardMoving(Exception):
    """The shard is handing its slots over; its successor will answer (look it up again)."""


class Door:
    def __init__(self) -> None:
        self.open = True
        self._inside = 0
        self._empty = asyncio.Event()
        self._empty.set()

    @contextmanager
    def entering(self) -> Iterator[None]:
        """Holds a request inside; raises ShardMoving once the door has closed."""
        if not self.open:
            raise ShardMoving("shard moving to another node")
        self._inside += 1
        self._empty.clear()
        try:
            yield
        finally:
            self._inside -= 1
            if not self._inside:
                self._empty.set()

    async def close(self) -> None:
        """Lets no one in from now on; returns once the last request inside has finished."""
        self.open = False
        await self._empty.wait()
