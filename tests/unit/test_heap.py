"""Freed heap memory goes back to the system (actors/hosts/heap.py)."""
from __future__ import annotations

import asyncio
import os

import pytest

from actors.hosts import heap
from scripts.harness.processes import rss_bytes


def rss() -> int:
    return rss_bytes(os.getpid())


@pytest.mark.skipif(heap.malloc_trim() is None, reason="the C library has no malloc_trim")
def test_a_trim_returns_the_pages_freed_between_live_objects():
    # 2,000-byte objects come from malloc itself (pymalloc takes up to 512 bytes). Keeping
    # one in ten leaves the freed ones between live ones, where glibc does not return them.
    blocks = [bytes(2000) + bytes([i % 256]) for i in range(100_000)]
    kept = blocks[::10]
    del blocks
    before = rss()
    heap.malloc_trim()(0)
    after = rss()
    assert before - after > 100 * 2**20, (before, after)
    assert len(kept) == 10_000


def test_the_trimming_task_trims_each_interval(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(heap, "malloc_trim", lambda: calls.append)

    async def run():
        task = asyncio.get_running_loop().create_task(heap.trim_forever(interval=0.001))
        while len(calls) < 3:
            await asyncio.sleep(0.001)
        task.cancel()

    asyncio.run(asyncio.wait_for(run(), 10))
    assert calls[:3] == [0, 0, 0]


def test_without_malloc_trim_the_task_ends_at_once(monkeypatch):
    monkeypatch.setattr(heap, "malloc_trim", lambda: None)
    assert asyncio.run(asyncio.wait_for(heap.trim_forever(interval=3600), 10)) is None
