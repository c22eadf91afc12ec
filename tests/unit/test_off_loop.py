"""off_loop: Ray's control calls run in daemon threads, so neither the loop nor the exit waits
for a GCS that does not answer."""
import asyncio
import threading

import pytest

from actors.ops.off_loop import off_loop
from tests.unit.event_loops import LOOPS, run_on


@pytest.mark.parametrize("loop_factory", LOOPS.values(), ids=LOOPS.keys())
def test_returns_the_result_and_raises_the_error(loop_factory):
    def fails():
        raise ValueError("no GCS")

    async def both():
        result = await off_loop(sum, [1, 2, 3])
        with pytest.raises(ValueError, match="no GCS"):
            await off_loop(fails)
        return result

    assert run_on(loop_factory, both()) == 6


@pytest.mark.parametrize("loop_factory", LOOPS.values(), ids=LOOPS.keys())
def test_the_loop_runs_while_the_call_waits(loop_factory):
    released = threading.Event()
    seen = []

    def waits():
        seen.append(threading.current_thread().daemon)
        released.wait(10)
        return "answered"

    async def meanwhile():
        call = asyncio.ensure_future(off_loop(waits))
        await asyncio.sleep(0.01)  # the loop turns while the thread waits
        assert not call.done()
        released.set()
        return await call

    assert run_on(loop_factory, meanwhile()) == "answered"
    assert seen == [True]


def test_a_call_outliving_its_loop_is_dropped_quietly():
    released = threading.Event()

    def outlives():
        released.wait(10)

    async def gives_up():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(off_loop(outlives), 0.01)

    errors = []
    threading.excepthook, hook = (lambda args: errors.append(args)), threading.excepthook
    try:
        asyncio.run(gives_up())  # returns without joining the thread: it is the loop's no more
        (thread,) = [t for t in threading.enumerate() if t.name == "outlives"]
        assert thread.daemon
        released.set()
        thread.join(10)  # it answered a closed loop
        assert not thread.is_alive()
    finally:
        threading.excepthook = hook
    assert not errors
