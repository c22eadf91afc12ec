"""Write-through throughput of the IMPU store: many concurrent writers, per backend.

    python3 scripts/bench_store.py [--writers 1000] [--seconds 5] [--max-delay 0]
                                   [--backend sqlite --backend redis --backend none]
                                   [--redis-url redis://host:port/0]

Each writer rewrites its own identity in a loop and waits for every write to be durable, as a
shard does before it replies. Prints writes/s, flushes/s, records per flush and write latency.
Without --redis-url a throwaway redis-server (AOF on) is started on loopback. Not a test: numbers
vary with the machine.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.store.base import Store, WriteThrough, open_store  # noqa: E402
from scripts.harness.redis_server import RedisServer  # noqa: E402


class CountedStore:
    """Counts the flushes WriteThrough makes and the records they carry."""

    def __init__(self, store: Store) -> None:
        self.store, self.flushes, self.records = store, 0, 0

    async def put_many(self, items: list[tuple[str, bytes | None]]) -> None:
        self.flushes += 1
        self.records += len(items)
        await self.store.put_many(items)

    async def close(self) -> None:
        await self.store.close()


async def bench(store: Store, writers: int, seconds: float, max_delay: float, size: int) -> str:
    await store.open()
    counted = CountedStore(store)
    wt = WriteThrough(counted, max_delay=max_delay)
    identities = [f"sip:bench{n}@ims.example.net" for n in range(writers)]
    record = b"x" * size
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def writer(identity: str) -> None:
        while (start := time.perf_counter()) < stop:
            await wt.write(identity, record)
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*map(writer, identities))
    elapsed = time.perf_counter() - began
    flushes, records = counted.flushes, counted.records
    for identity in identities:  # leave nothing behind
        await wt.write(identity, None)
    await wt.close()
    quantiles = statistics.quantiles(latencies, n=100)
    return (
        f"{len(latencies) / elapsed:9.0f} writes/s  {flushes / elapsed:7.0f} flushes/s  "
        f"{records / max(flushes, 1):6.1f} records/flush  "
        f"latency p50 {quantiles[49] * 1e3:6.2f} ms  p99 {quantiles[98] * 1e3:6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", choices=["sqlite", "redis", "none"])
    parser.add_argument("--writers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-delay", type=float, default=0.0)
    parser.add_argument("--record-bytes", type=int, default=1500, help="about a realistic record")
    parser.add_argument("--redis-url")
    args = parser.parse_args()

    server = None
    if "redis" in (args.backend or ["redis"]) and not args.redis_url:
        server = RedisServer().start()
        args.redis_url = server.url
    try:
        with tempfile.TemporaryDirectory() as directory:
            for backend in args.backend or ["sqlite", "redis", "none"]:
                store = open_store(backend, directory, args.redis_url or "", 0,
                                   prefix=f"bench-{uuid.uuid4().hex}:")
                result = asyncio.run(bench(store, args.writers, args.seconds, args.max_delay,
                                           args.record_bytes))
                print(f"{backend:6}  writers {args.writers:5}  max_delay {args.max_delay:.3f}  "
                      f"{result}", flush=True)
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    main()
