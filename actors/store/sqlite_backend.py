"""SQLite store: one database file per shard, used from one dedicated thread.

sqlite3 blocks, so every call runs on a single worker thread: the event loop never waits on the
disk, and since that thread runs calls one at a time and in submission order, writes stay ordered.

When ``[ray] shards`` changes between starts, slots change shards while their records stay in
the old shard's file. So a shard loading its slots first takes the records of those slots out
of every other shard file in the directory: copied into its own file (committed), then deleted
there. A record already in its own file is newer (the shard writes only there) and wins; a
crash between the two steps leaves a copy that the next load deletes.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from actors.rules.routing import slot_of
from actors.store.base import batched, last_wins
from actors.vocabulary import StoreError

T = TypeVar("T")
log = logging.getLogger(__name__)

# Slots per SELECT: well under SQLite's limit on bound parameters, few round trips per shard.
SLOTS_PER_QUERY = 256

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS impu (identity TEXT PRIMARY KEY, slot INTEGER NOT NULL, data BLOB)",
    "CREATE INDEX IF NOT EXISTS impu_slot ON impu (slot)",
)
ADOPT = "INSERT OR IGNORE INTO impu (identity, slot, data) VALUES (?, ?, ?)"
SHARD_FILES = "shard-*.db"
# Seconds a shard waits for another shard's file to be free for the deletions of its records.
BUSY_TIMEOUT = 30.0
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
        slots = list(slots)
        for other in sorted(self.file.parent.glob(SHARD_FILES)):
            if other != self.file:
                await self._run(self._adopt, other, slots)
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

    def _select(self, slots: list[int], db: sqlite3.Connection | None = None,
                columns: str = "identity, data") -> list[tuple]:
        marks = ",".join("?" * len(slots))
        return (db or self._db).execute(
            f"SELECT {columns} FROM impu WHERE slot IN ({marks})", slots
        ).fetchall()

    def _adopt(self, other: Path, slots: list[int]) -> None:
        """Moves the records of ``slots`` from another shard's file into this one."""
        source = sqlite3.connect(other, timeout=BUSY_TIMEOUT)
        try:
            tables = source.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'impu'").fetchall()
            if not tables:  # a file another shard is creating right now: nothing of ours
                return
            rows = [row for chunk in batched(slots, SLOTS_PER_QUERY)
                    for row in self._select(chunk, source, "identity, slot, data")]
            if not rows:
                return
            with self._db:
                self._db.executemany(ADOPT, rows)
            with source:
                source.executemany("DELETE FROM impu WHERE identity = ?", [(r[0],) for r in rows])
            log.warning("%s: took %d identities of its slots from %s", self.file.name, len(rows),
                        other.name)
        finally:
            source.close()

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()  # the last connection checkpoints the log into the database file
            self._db = None
