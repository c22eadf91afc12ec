"""Where shards go when nodes join or leave (plan_moves), and the door a moving shard closes."""
from __future__ import annotations

import asyncio

import pytest

from actors.hosts.handover import Door, ShardMoving
from actors.ops.placement import plan_moves


def test_a_joining_node_takes_its_share_and_only_that_moves():
    assert plan_moves(["a", "b", "a", "b"], ["a", "b", "c"]) == {2: "c"}
    assert plan_moves(["a", "b", "a", "b", "a", "b"], ["a", "b", "c"]) == {4: "c", 5: "c"}


def test_a_balanced_placement_stays_and_a_lone_node_keeps_everything():
    assert plan_moves(["a", "b", "a"], ["a", "b"]) == {}
    assert plan_moves(["a", "b", "c", "a"], ["a", "b", "c"]) == {}
    assert plan_moves(["a", "a"], ["a"]) == {}


def test_shards_of_a_node_that_is_gone_go_to_the_least_loaded_survivors():
    assert plan_moves(["a", "b", "c", "a", "b", "c"], ["a", "c"]) == {1: "a", 4: "c"}
    assert plan_moves(["a", "b", "b", "b"], ["a", "c"]) == {1: "c", 2: "a", 3: "c"}
    assert plan_moves([None, "a"], ["a", "b"]) == {0: "b"}


def test_no_node_alive_moves_nothing():
    assert plan_moves(["a", "b"], []) == {}


def test_the_door_turns_requests_away_once_closed_and_waits_for_those_inside():
    async def scenario():
        door, release, log = Door(), asyncio.Event(), []

        async def request():
            with door.entering():
                await release.wait()
                log.append("request done")

        inside = asyncio.create_task(request())
        await asyncio.sleep(0)
        closing = asyncio.create_task(door.close())
        await asyncio.sleep(0.01)
        assert not closing.done() and not door.open
        with pytest.raises(ShardMoving), door.entering():
            pass
        release.set()
        await closing
        log.append("closed")
        await inside
        return log

    assert asyncio.run(scenario()) == ["request done", "closed"]
