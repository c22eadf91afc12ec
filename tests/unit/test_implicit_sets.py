"""Implicit sets changed through two members at once: the merge of one REGISTER's change
(actors/rules/set_merge.py), and two ShardCores wired to each other whose REGISTERs interleave
while both wait for the HSS."""
from __future__ import annotations

import asyncio
import itertools

import pytest

from actors.rules.routing import shard_of
from actors.rules.set_merge import merged
from actors.vocabulary import Binding, RegState
from tests.unit.test_shard_core import (
    ALICE,
    SHARDS,
    Clock,
    MemoryStore,
    Network,
    core_for,
    register,
)

TEL = "tel:+15550001"  # ALICE's set: the two live on different shards
NOW = 1000.0


def binding(uri: str, cseq: int = 1, call_id: str = "c1") -> Binding:
    return Binding(uri=uri, key=f"uri:{uri}", expires_at=NOW + 600, q=None, instance=None,
                   reg_id=None, params=(), call_id=call_id, cseq=cseq, path=(),
                   registered_at=NOW)


A, B = binding("sip:a@h", call_id="ca"), binding("sip:b@h", call_id="cb")
A2 = binding("sip:a@h", cseq=2, call_id="ca")


def keyed(*bindings: Binding) -> dict[str, Binding]:
    return {b.key: b for b in bindings}


def test_changes_to_different_bindings_commute():
    first, second = (keyed(A), {}), (keyed(B), {})
    for order in itertools.permutations([first, second]):
        held: dict[str, Binding] = {}
        for written, ended in order:
            held = merged(held, written, ended, NOW)
        assert held == keyed(A, B)


def test_a_later_register_of_the_same_ua_wins_whatever_the_order():
    assert merged(keyed(A2), keyed(A), {}, NOW) == keyed(A2)  # the older write arrives last
    assert merged(keyed(A), keyed(A2), {}, NOW) == keyed(A2)
    assert merged(keyed(A2, B), {}, keyed(A), NOW) == keyed(A2, B)  # ended as it was before
    assert merged(keyed(A, B), {}, keyed(A), NOW) == keyed(B)
    assert merged(keyed(A), {}, keyed(binding("sip:a@h", call_id="other")), NOW) == {}


def test_what_expired_meanwhile_is_dropped():
    assert merged(keyed(A, B), {}, {}, NOW + 600) == {}


class SlowHss(Network):
    """Holds every SAR until ``together`` of them are waiting, so two REGISTERs interleave."""

    def __init__(self, together: int) -> None:
        super().__init__()
        self.together = together
        self.arrived = asyncio.Event()

    async def sar(self, request):
        self.together -= 1
        if self.together <= 0:
            self.arrived.set()
        await self.arrived.wait()
        return await super().sar(request)


class Cluster:
    """A core per shard, each applying set updates to the others in memory."""

    def __init__(self, network: Network) -> None:
        store, clock = MemoryStore(), Clock()
        network.apply_to_shard = self.apply_to_shard  # before the cores take the network's I/O
        self.cores = {shard_of(i, SHARDS): core_for(i, network, store, clock) for i in (ALICE, TEL)}
        self.clock = clock

    async def apply_to_shard(self, index, updates):
        await self.cores[index].apply_batch(updates)

    def of(self, identity):
        return self.cores[shard_of(identity, SHARDS)]

    def bindings(self, identity) -> list[str]:
        return sorted(b.uri for b in self.of(identity).impus[identity].live_bindings(
            self.clock()).values())


@pytest.mark.parametrize("first, second", [(ALICE, TEL), (TEL, ALICE)])
def test_two_devices_through_two_members_at_once_both_stay_registered(first, second):
    network = SlowHss(together=2)
    cluster = Cluster(network)
    one, two = "sip:one@10.0.0.1:5090", "sip:two@10.0.0.2:5090"

    async def scenario():
        replies = await asyncio.gather(
            cluster.of(first).register_batch([register(one, call_id="c1", aor=first)]),
            cluster.of(second).register_batch([register(two, call_id="c2", aor=second)]))
        after_both = {i: cluster.bindings(i) for i in (ALICE, TEL)}
        network.together = 0  # from here on the HSS answers at once
        refreshed = await cluster.of(first).register_batch(
            [register(one, call_id="c1", cseq=2, aor=first)])
        counts = [await core.counts() for core in cluster.cores.values()]
        return replies, after_both, refreshed, counts

    replies, after_both, refreshed, counts = asyncio.run(scenario())
    assert [r.status for (r,) in replies] == [200, 200]
    assert after_both == {ALICE: [one, two], TEL: [one, two]}
    assert refreshed[0].status == 200
    assert {i: cluster.bindings(i) for i in (ALICE, TEL)} == {ALICE: [one, two], TEL: [one, two]}
    assert all(cluster.of(i).impus[i].state == RegState.REGISTERED for i in (ALICE, TEL))
    assert sum(c["contacts"] for c in counts) == 2  # two devices, however many members


def test_a_device_leaving_through_one_member_keeps_the_other_devices_binding():
    network = SlowHss(together=2)
    cluster = Cluster(network)
    one, two = "sip:one@10.0.0.1:5090", "sip:two@10.0.0.2:5090"

    async def scenario():
        await asyncio.gather(
            cluster.of(ALICE).register_batch([register(one, call_id="c1", aor=ALICE)]),
            cluster.of(TEL).register_batch([register(two, call_id="c2", aor=TEL)]))
        network.together = 0
        sars = len(network.sars)
        (gone,) = await cluster.of(ALICE).register_batch(
            [register(one, expires=0, call_id="c1", cseq=2, aor=ALICE)])
        return gone, network.sars[sars:]

    gone, sars = asyncio.run(scenario())
    assert gone.status == 200
    assert {i: cluster.bindings(i) for i in (ALICE, TEL)} == {ALICE: [two], TEL: [two]}
    assert sars == []  # the set is still registered: no de-registration for the HSS
