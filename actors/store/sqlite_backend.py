"""SQLite store: one database file per shard, used from one dedicated thread.

sqlite3 blocks, so every call runs on a single worker thread: the event loop never waits on the
disk, and since that thread runs calls one at a time and in submission order, writes stay ordered.
"""
from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from actors.rules.routing import slot_of
from actors.store.base import batched, last_wins
from actors.vocabulary import StoreError

T = TypeVar("T")

# Slots per SELECT: well under SQLite's limit on bound parameters, few round trips per shard.
SLOTS_PER_QUERY = 256

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS impu (identity TEXT PRIMARY KEY, slot INTEGER NOT NULL, data BLOB)",
    "CREATE INDEX IF NOT EXISTS impu_slot ON impu (slot)",
)
UPSERT = (
    "INSERT INTO impu (identity, slot, data) VALUES (?, ?, ?)"
    " ON CONFLICT (identity) DO UPDATE SET data = excluded.data"
)


class SqliteStore:
    def __init__(self, file: str | Path) -> None:
        self.file = Path(file)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._db: sqlite3.Connection | None = None

    @staticmethod
    def shard_file(directory: str | Path, shard: int) -> Path:
        return Path(directory) / f"shard-{shard}.db"

    async def open(self) -> None:
        await self._run(self._open)

    async def put_many(self, items: list[tuple[str, bytes | None]]) -> None:
        await self._run(self._put_many, items)

    async def load_slots(self, slots: Iterable[int]) -> AsyncIterator[tuple[str, bytes]]:
        for chunk in batched(slots, SLOTS_PER_QUERY):
            for row in await self._run(self._select, chunk):
                yield row

    async def close(self) -> None:
        try:
            await self._run(self._close)
        finally:
            self._thread.shutdown()

    async def _run(self, call: Callable[..., T], *args) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, call, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite {self.file}: {exc}") from exc

    # The methods below run on the store's thread only.

    def _open(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.file)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL syncs the log at every commit, so a record written before the 200 OK survives
            # a power failure too, as the README promises (NORMAL would lose the last commits).
            # Write-through group commit makes that one fsync per batch, not per registration.
            db.execute("PRAGMA synchronous=FULL")
            with db:
                for statement in SCHEMA:
                    db.execute(statement)
        except sqlite3.Error:
            db.close()
            raise
        self._db = db

    def _put_many(self, items: list[tuple[str, bytes | None]]) -> None:
        written, deleted = last_wins(items)
        with self._db:  # one transaction: all or nothing
            self._db.executemany(UPSERT, [(i, slot_of(i), d) for i, d in written.items()])
            self._db.executemany("DELETE FROM impu WHERE identity = ?", [(i,) for i in deleted])

    def _select(self, slots: list[int]) -> list[tuple[str, bytes]]:
        marks = ",".join("?" * len(slots))
        return self._db.execute(
            f"SELECT identity, data FROM impu WHERE slot IN ({marks})", slots
        ).fetchall()

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()  # the last connection checkpoints the log into the database file
            self._db = None
