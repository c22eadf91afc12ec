"""LoopTimer: one ``loop.call_at`` at a time, which knows when it fires.

Moving a timer up needs its time. asyncio's call_at answers a TimerHandle that has when(), but
uvloop's, for a time already come, answers a plain Handle that has not: the time is kept here.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable


class LoopTimer:
    __slots__ = ("_callback", "_handle", "at")

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._handle: asyncio.Handle | None = None
        self.at = 0.0  # the loop time it fires at, while armed

    @property
    def armed(self) -> bool:
        return self._handle is not None

    def fire_by(self, when: float) -> None:
        """Fires at loop time ``when``, or at the earlier time it is already armed for."""
        if self._handle is not None:
            if self.at <= when:
                return
            self._handle.cancel()
        self._handle = asyncio.get_running_loop().call_at(when, self._fire)
        self.at = when

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        self._callback()
