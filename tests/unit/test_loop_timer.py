"""LoopTimer on asyncio's loop and on uvloop's (the registrar's default): it fires once, at
the earliest time asked, and keeps that time even where uvloop's handle cannot tell it."""
import asyncio

import pytest

from actors.hosts.loop_timer import LoopTimer
from tests.unit.event_loops import LOOPS, run_on


@pytest.fixture(params=sorted(LOOPS))
def run(request):
    return lambda coro: run_on(LOOPS[request.param], coro)


def test_it_fires_once_at_the_earliest_time_asked(run):
    async def main():
        loop, fired = asyncio.get_running_loop(), []
        timer = LoopTimer(lambda: fired.append(loop.time()))
        start = loop.time()
        timer.fire_by(start + 0.2)
        timer.fire_by(start + 0.05)  # moved up
        timer.fire_by(start + 0.5)  # never back
        assert timer.armed and timer.at == start + 0.05
        await asyncio.sleep(0.3)  # a later timer of the same loop: by then it has fired
        return start, fired, timer.armed

    start, fired, armed = run(main())
    assert len(fired) == 1 and fired[0] >= start + 0.04 and not armed  # not before it was due


def test_a_time_already_come_fires_at_the_next_turn_and_is_moved_up_from(run):
    async def main():
        loop, fired = asyncio.get_running_loop(), []
        timer = LoopTimer(lambda: fired.append("now"))
        timer.fire_by(loop.time() - 1.0)  # uvloop answers this with a Handle without when()
        timer.fire_by(loop.time() + 5.0)  # kept: the earlier time stands
        at_once = list(fired)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return at_once, fired, timer.armed

    assert run(main()) == ([], ["now"], False)


def test_a_cancelled_timer_does_not_fire_and_can_be_armed_again(run):
    async def main():
        loop, fired = asyncio.get_running_loop(), []
        timer = LoopTimer(lambda: fired.append(1))
        timer.fire_by(loop.time() + 0.01)
        timer.cancel()
        assert not timer.armed
        await asyncio.sleep(0.05)
        cancelled = list(fired)
        timer.fire_by(loop.time() + 0.01)
        await asyncio.sleep(0.05)
        return cancelled, fired

    assert run(main()) == ([], [1])
