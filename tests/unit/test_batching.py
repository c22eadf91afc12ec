import asyncio

import pytest

from actors.hosts.batching import Batcher
from tests.unit.event_loops import LOOPS, run_on

loop_factory = asyncio.new_event_loop


@pytest.fixture(autouse=True, params=sorted(LOOPS))
def on_each_loop(request):
    global loop_factory
    loop_factory = LOOPS[request.param]
    yield
    loop_factory = asyncio.new_event_loop


def run(coro):
    return run_on(loop_factory, coro)


async def started(calls: list) -> None:
    """Until the destination has a call: the Batcher sends at the end of the loop turn."""
    for _ in range(100):
        if calls:
            return
        await asyncio.sleep(0)
    raise AssertionError("no call started")


class Destination:
    """A batch method that records each call; calls that ``held`` selects wait for
    ``release``, as a call waiting downstream (a SAR to a dead HSS, a shard's SARs)."""

    def __init__(self, held=lambda items: items == [0]) -> None:
        self.calls: list[list] = []
        self.release = asyncio.Event()
        self._held = held

    async def __call__(self, items):
        self.calls.append(list(items))
        if self._held(items):
            await self.release.wait()
        return items


def test_low_load_sends_one_item_per_call():
    calls = []

    async def call(items):
        calls.append(list(items))
        return [i * 2 for i in items]

    async def main():
        b = Batcher(call, max_in_flight=2)
        return [await b.submit(i) for i in range(3)]

    assert run(main()) == [0, 2, 4]
    assert calls == [[0], [1], [2]]


def test_items_arriving_while_calls_are_in_flight_ride_together():
    calls = []
    release = None

    async def call(items):
        calls.append(list(items))
        await release.wait()
        return [i + 100 for i in items]

    async def main():
        nonlocal release
        release = asyncio.Event()
        b = Batcher(call, max_in_flight=1)
        tasks = [asyncio.create_task(b.submit(0))]
        await started(calls)
        tasks += [asyncio.create_task(b.submit(i)) for i in range(1, 10)]
        await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(*tasks)

    assert run(main()) == [i + 100 for i in range(10)]
    assert calls[0] == [0]
    assert calls[1] == list(range(1, 10))


def test_items_submitted_in_one_loop_turn_ride_in_one_call_to_an_idle_destination():
    """A shard's batch of REGISTERs asks for its SARs in one turn: one call carries them all,
    where sending the first at once would leave the rest for the next call, a linger later."""
    dest = Destination(held=lambda items: False)

    async def main():
        b = Batcher(dest, max_in_flight=1, linger=0.5)
        return await asyncio.gather(*(b.submit(i) for i in range(5)))

    assert run(main()) == [0, 1, 2, 3, 4]
    assert dest.calls == [[0, 1, 2, 3, 4]]


def test_failed_call_fails_each_item_and_exception_results_raise_one_item():
    async def failing(items):
        raise ConnectionError("down")

    async def mixed(items):
        return [ValueError("bad") if i == 1 else i for i in items]

    async def main():
        b = Batcher(failing)
        with pytest.raises(ConnectionError):
            await b.submit(1)
        m = Batcher(mixed, max_in_flight=1)
        t0 = asyncio.create_task(m.submit(0))
        t1 = asyncio.create_task(m.submit(1))
        assert await t0 == 0
        with pytest.raises(ValueError):
            await t1
        # the batcher still works after failures
        assert await m.submit(5) == 5

    run(main())


def test_a_stalled_call_does_not_hold_up_later_items():
    dest = Destination()

    async def main():
        b = Batcher(dest, max_in_flight=4, stall_after=0.01)
        stuck = asyncio.create_task(b.submit(0))
        await started(dest.calls)
        later = [asyncio.create_task(b.submit(i)) for i in (1, 2)]
        assert await asyncio.wait_for(asyncio.gather(*later), 1.0) == [1, 2]
        dest.release.set()
        assert await stuck == 0

    run(main())
    assert dest.calls == [[0], [1, 2]]


def test_calls_younger_than_stall_after_keep_batching():
    async def call(items):
        await asyncio.sleep(0.005)
        return items

    sizes = []

    async def recording(items):
        sizes.append(len(items))
        return await call(items)

    async def main():
        b = Batcher(recording, max_in_flight=8, stall_after=1.0)
        first = asyncio.create_task(b.submit(0))
        await started(sizes)
        await asyncio.gather(first, *(b.submit(i) for i in range(1, 50)))

    run(main())
    assert sizes == [1, 49]


def test_a_busy_destination_gets_the_next_call_after_the_linger_full_of_items():
    dest = Destination()

    async def main():
        b = Batcher(dest, max_in_flight=1, linger=0.5)
        first = asyncio.create_task(b.submit(0))
        await started(dest.calls)
        queued = asyncio.create_task(b.submit(1))  # waits behind call [0]: the load
        await asyncio.sleep(0)
        dest.release.set()
        await first  # returned with an item queued: the next call lingers
        later = [asyncio.create_task(b.submit(i)) for i in range(2, 10)]
        await asyncio.gather(queued, *later)
        return dest.calls

    assert run(main()) == [[0], list(range(1, 10))]


def test_no_call_starts_within_the_linger_of_the_last_start_even_from_an_empty_queue():
    dest = Destination(held=lambda items: False)  # every call returns at once

    async def main():
        b = Batcher(dest, max_in_flight=1, linger=0.2)
        await b.submit(0)  # idle: sent at once, returned to an empty queue
        second = asyncio.create_task(b.submit(1))
        for _ in range(5):
            await asyncio.sleep(0)
        held_back = list(dest.calls)  # the linger since [0] started has not passed
        await second
        await asyncio.sleep(0.3)  # idle for longer than the linger
        third = asyncio.create_task(b.submit(2))
        for _ in range(5):
            await asyncio.sleep(0)
        sent_at_once = list(dest.calls)
        await third
        return held_back, sent_at_once

    held_back, sent_at_once = run(main())
    assert held_back == [[0]]
    assert sent_at_once == [[0], [1], [2]]


def test_a_call_returning_within_the_linger_lets_the_next_start_at_the_linger():
    dest = Destination()

    async def main():
        b = Batcher(dest, max_in_flight=2, stall_after=3600.0, linger=0.01)
        first = asyncio.create_task(b.submit(0))
        await started(dest.calls)
        queued = asyncio.create_task(b.submit(1))  # a stall recheck is set for an hour on
        await asyncio.sleep(0)
        dest.release.set()
        await first  # returned with an item queued: the next call starts at the linger
        return await asyncio.wait_for(queued, 10)

    assert run(main()) == 1
    assert dest.calls == [[0], [1]]


def test_an_item_arriving_in_the_turn_a_call_returns_goes_at_the_linger():
    async def main():
        destination = Destination()
        b = Batcher(destination, linger=0.05)
        first = asyncio.ensure_future(b.submit(0))
        await started(destination.calls)
        second = asyncio.ensure_future(b.submit(1))  # queued in the next turn, and then...
        destination.release.set()  # ...the call returns, in that same turn
        return await first, await second, destination.calls

    assert run(main()) == (0, 1, [[0], [1]])
