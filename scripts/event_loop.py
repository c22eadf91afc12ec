"""The event loop of the registrar's own processes (`scscf serve`, `scscf hss`).

uvloop runs the same asyncio code on libuv. Ray runs its actors' loops on it when it is
installed (and RAY_USE_UVLOOP is not off; `[ray] uvloop` sets that for a local Ray); these
processes use it too. Measured on 2 cores, initial REGISTERs at 3,000/s: 5% less CPU per
REGISTER, every process of the registrar and the HSS emulator together.
"""
from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], use_uvloop: bool = True) -> T:
    """``asyncio.run(main)``, on uvloop's loop unless ``use_uvloop`` is off."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop if use_uvloop else None) as runner:
        return runner.run(main)
