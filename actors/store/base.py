"""The store interface, its null backend and write-through batching.

A shard writes every state change through to its store before it replies, and a restarted shard
reloads the records of its routing slots. Records are opaque bytes here (see records.py).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from itertools import islice
from typing import Literal, Protocol


class Store(Protocol):
    async def open(self) -> None:
        """Connects and creates whatever the backend needs; raises StoreError when it cannot."""

    async def put_many(self, items: list[tuple[str, bytes | None]]) -> None:
        """Stores all items atomically and durably; ``None`` deletes the identity. Items apply in
        order, so the last item of an identity wins."""

    def load_slots(self, slots: Iterable[int]) -> AsyncIterator[tuple[str, bytes]]:
        """``(identity, record)`` of every identity whose routing slot is in ``slots``."""

    async def close(self) -> None:
        """Finishes pending work and releases the backend."""


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Lists of up to ``size`` consecutive items (``itertools.batched`` arrives in Python 3.12)."""
    items = iter(items)
    while batch := list(islice(items, size)):
        yield batch


def last_wins(items: list[tuple[str, bytes | None]]) -> tuple[dict[str, bytes], list[str]]:
    """What a batch leaves behind: the records to write and the identities to delete."""
    final = dict(items)
    written = {i: d for i, d in final.items() if d is not None}
    return written, [i for i, d in final.items() if d is None]


class NullStore:
    """Keeps nothing: measures the registrar without persistence."""

    async def open(self) -> None:
        pass

    async def put_many(self, items: list[tuple[str, bytes | None]]) -> None:
        pass

    async def load_slots(self, slots: Iterable[int]) -> AsyncIterator[tuple[str, bytes]]:
        for _ in ():  # an async generator that yields nothing
            yield _

    async def close(self) -> None:
        pass


class WriteThrough:
    """Group commit in front of a store.

    ``write`` returns once its record is durable. At most one ``put_many`` is in flight; writes
    arriving meanwhile form the next group, so under load a flush carries many records and at low
    load each write flushes almost alone. A group keeps the last record of each identity, and
    groups are flushed strictly one after another, so the writes of one identity are never
    reordered.

    ``max_delay`` is how long the first write to an idle writer waits for others to join its
    group. The default 0 takes only the writes issued in the same loop turn: batching already
    comes from the flush in flight, and a wait is paid by every write that finds the writer idle
    (measured: one writer, 0.08 ms per write without a wait against 2.3 ms with 2 ms; 100 writers,
    100,000 against 29,000 writes/s). A wait only saves flushes, for a store where those are dear.
    """

    def __init__(self, store: Store, max_delay: float = 0.0) -> None:
        self._store = store
        self._max_delay = max_delay
        self._pending: dict[str, bytes | None] = {}
        # One future per write of the pending group, all resolved when it is stored: a write
        # whose caller is cancelled drops only its own (asyncio.shield on one shared future
        # did the same for two more callbacks per write).
        self._waiters: list[asyncio.Future] = []
        self._flusher: asyncio.Task | None = None

    async def write(self, identity: str, data: bytes | None) -> None:
        """Stores ``data`` for ``identity`` (``None`` deletes it); raises StoreError on failure."""
        loop = asyncio.get_running_loop()
        self._pending[identity] = data
        stored = loop.create_future()
        self._waiters.append(stored)
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        await stored

    async def close(self) -> None:
        """Waits for pending writes, then closes the store."""
        if self._flusher is not None:
            await self._flusher
        await self._store.close()

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(self._max_delay)
            while self._pending:
                items, waiters = list(self._pending.items()), self._waiters
                self._pending, self._waiters = {}, []
                try:
                    await self._store.put_many(items)
                except Exception as exc:
                    for stored in waiters:
                        if not stored.done():
                            stored.set_exception(exc)
                else:
                    for stored in waiters:
                        if not stored.done():
                            stored.set_result(None)
        finally:
            self._flusher = None


def open_store(
    backend: Literal["sqlite", "redis", "none"], path: str, url: str, shard: int,
    prefix: str = "scscf:",
) -> Store:
    """The store of one shard, not yet opened: SQLite keeps one file per shard under ``path``;
    Redis is shared by all shards at ``url``, its keys under ``prefix``."""
    if backend == "sqlite":
        from actors.store.sqlite_backend import SqliteStore

        return SqliteStore(SqliteStore.shard_file(path, shard))
    if backend == "redis":
        from actors.store.redis_backend import RedisStore

        return RedisStore(url, prefix=prefix)
    if backend == "none":
        return NullStore()
    raise ValueError(f"unknown store backend {backend!r}")
