"""Ray's control calls off the event loop, in daemon threads.

``ray.nodes()``, ``ray.kill()`` and ``ray.shutdown()`` wait for the GCS, up to a minute when
the cluster is gone. Called in the loop, they keep it from hearing a SIGTERM; called through
the loop's default executor, they hold up the exit, which joins that executor's threads. A
daemon thread of their own does neither.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def off_loop(call: Callable[..., T], *args) -> T:
    """``call(*args)`` in a daemon thread; its result or its exception."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def settle(result, error) -> None:
        if not done.done():  # the caller may have given up (cancelled) meanwhile
            if error is None:
                done.set_result(result)
            else:
                done.set_exception(error)

    def run() -> None:
        try:
            outcome = (call(*args), None)
        except BaseException as exc:  # handed to the caller, whatever it is
            outcome = (None, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop is closed: nobody waits for this any more
            pass

    threading.Thread(target=run, name=getattr(call, "__name__", "ray-call"), daemon=True).start()
    return await done


async def end_actors(handles: list) -> None:
    """Ends each actor for good (no restart), off the loop."""
    await off_loop(_kill, handles)


def _kill(handles: list) -> None:
    import ray  # here: this module stays importable without Ray

    for handle in handles:
        ray.kill(handle, no_restart=True)
