"""Where the shards run, and moving them so that they follow the cluster's nodes.

Shards start round-robin over the nodes present (by node name), each pinned to its node. With
a store every node reaches (Redis), the placement then follows the cluster: a node that joins
takes its share of the shards, and the shards of a node that left or died are started again on
the survivors, where they load their slots from the store. With SQLite a shard's file is on
its node's disk, so shards stay where they started.

A move keeps every acknowledged change and fires every timer once: the old shard turns new
requests away (503 + Retry-After), finishes those inside, stops its timer and flushes its
writes (ImpuShard.hand_over); only then is it ended and its successor started under the same
name, which loads the slots from the store. Transports and shards look a shard up by name
again after a failed call, so they find the successor by themselves.
"""
from __future__ import annotations

import asyncio
import logging
import time

import ray

from actors.config import Config
from actors.hosts.shard import ImpuShard
from actors.ops.nodes import pinned
from actors.ops.off_loop import end_actors, off_loop
from actors.vocabulary import shard_name

log = logging.getLogger(__name__)

# Seconds the old shard of a move gets to finish its requests and flush; then it is ended anyway.
HANDOVER_TIMEOUT = 15.0
# Seconds a successor waits for Ray to free the name of the shard it replaces.
NAME_TIMEOUT = 30.0

# Restarted by Ray when its process dies (on its node); a call it was running fails rather
# than being replayed.
ShardActor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)(ImpuShard)


def plan_moves(placed: list[str | None], nodes: list[str]) -> dict[int, str]:
    """Shard index -> the node it should move to. ``placed`` holds the node each shard runs
    on (None: nowhere), ``nodes`` the alive nodes in a stable order. Shards of nodes that are
    gone go to the least loaded nodes; then one shard at a time moves from the most loaded
    node to the least loaded until no two nodes differ by more than one shard. Ties go to the
    earlier node; the shard that moves is the highest-numbered of its node."""
    if not nodes:
        return {}
    rank = {node: i for i, node in enumerate(nodes)}
    on: dict[str, list[int]] = {node: [] for node in nodes}
    homeless = []
    for index, node in enumerate(placed):
        on.get(node, homeless).append(index)
    moves = {}

    def least() -> str:
        return min(nodes, key=lambda n: (len(on[n]), rank[n]))

    for index in homeless:
        target = least()
        on[target].append(index)
        moves[index] = target
    while True:
        fullest = max(nodes, key=lambda n: (len(on[n]), -rank[n]))
        target = least()
        if len(on[fullest]) - len(on[target]) <= 1:
            return moves
        index = max(on[fullest])
        on[fullest].remove(index)
        on[target].append(index)
        moves[index] = target


class Placement:
    """The shards' actors and the node each was started on; ``handles`` is kept current."""

    def __init__(self, config: Config, transports: list) -> None:
        """``transports``: the deployment's transports, told of every shard started anew."""
        self.config = config
        self.follows = config.store.backend == "redis"
        self.transports = transports
        self.handles: list = []
        self.node_of: list[str | None] = []  # NodeID per shard
        self._changing = asyncio.Lock()  # one move round or resize at a time
        self._resized = False

    def start(self, nodes: list[dict]) -> list:
        """Shard i on node i mod N (nodes by name). Ray's SPREAD strategy and soft affinity
        both left the zero-CPU shards of a two-node cluster on one node in some runs
        (measured), hence pinned."""
        for index in range(self.config.ray.shards):
            node = nodes[index % len(nodes)]
            self.handles.append(self._create(index, node))
            self.node_of.append(node["NodeID"])
        return self.handles

    async def follow(self, nodes: list[dict]) -> None:
        """Moves the shards to follow ``nodes`` (alive, by name); does nothing with SQLite."""
        if not self.follows:
            return
        if self._resized:  # a transport Ray restarted routes by the count it was created with
            for transport in self.transports:
                transport.reshard.remote(self.config.ray.shards)
        by_id = {n["NodeID"]: n for n in nodes}
        async with self._changing:
            moves = plan_moves(self.node_of, list(by_id))
            await asyncio.gather(*(self._move(index, by_id[node], self.node_of[index] in by_id)
                                   for index, node in moves.items()))

    async def resize(self, shards: int, nodes: list[dict]) -> None:
        """Runs ``shards`` shards from now on (Redis only), spread over ``nodes``: every shard
        hands over and ends, the transports route by the new count, then the new shards start
        and load their slots. Every identity gets 503 + Retry-After for those seconds; a caller
        still routing by the old count gets 503 from the new shards, never a second copy."""
        if not self.follows:
            raise ValueError("the shard count changes at run time with store.backend 'redis' "
                             "only; with SQLite restart with the new [ray] shards")
        async with self._changing:
            await asyncio.gather(*(self._end(handle) for handle in self.handles))
            self.config.ray.shards = shards  # this driver's Registrar and later transports
            self._resized = True
            told = [asyncio.ensure_future(t.reshard.remote(shards)) for t in self.transports]
            if told:  # a transport of a dead node never answers: not waited for long
                await asyncio.wait(told, timeout=HANDOVER_TIMEOUT)
            self.handles[:] = await asyncio.gather(*(
                self._successor(i, nodes[i % len(nodes)]) for i in range(shards)))
            self.node_of[:] = [nodes[i % len(nodes)]["NodeID"] for i in range(shards)]
            loaded = await asyncio.gather(*(h.ready.remote() for h in self.handles),
                                          return_exceptions=True)
        log.warning("now %d shards; identities loaded: %s", shards, loaded)

    async def _end(self, handle) -> None:
        """Hands a live shard's slots over, then ends it; one that cannot is ended anyway:
        what it acknowledged is in the store."""
        try:
            await asyncio.wait_for(handle.hand_over.remote(), HANDOVER_TIMEOUT)
        except Exception as exc:
            log.warning("a shard did not hand over cleanly: %s", exc)
        await end_actors([handle])

    async def _move(self, index: int, node: dict, alive: bool) -> None:
        """``alive``: the shard's node is still up, so the shard hands over before it ends."""
        started = time.monotonic()
        if alive:
            await self._end(self.handles[index])
        else:
            await end_actors([self.handles[index]])
        try:
            new = await self._successor(index, node)
        except Exception:
            log.exception("shard %d could not be started on %s", index, node["NodeName"])
            self.node_of[index] = None  # nowhere: the next round starts it again
            return
        self.handles[index], self.node_of[index] = new, node["NodeID"]
        # Told without waiting (a transport of a dead node never answers): the callers then
        # find the successor on their next call, instead of failing one call on the old handle.
        for caller in self.transports + [h for i, h in enumerate(self.handles) if i != index]:
            caller.shard_moved.remote(index)
        try:
            identities = await new.ready.remote()
        except Exception as exc:  # it answers 503 and loads again on a later call
            log.warning("shard %d started on %s but cannot load yet: %s", index,
                        node["NodeName"], exc)
            return
        log.warning("shard %d %s %s with %d identities in %.1f s", index,
                    "moved to" if alive else "started again on", node["NodeName"], identities,
                    time.monotonic() - started)

    async def _successor(self, index: int, node: dict):
        """The shard started anew under its name, once Ray has freed the name."""
        deadline = time.monotonic() + NAME_TIMEOUT
        while True:
            try:  # creating a named actor asks the GCS: not on the event loop
                return await off_loop(self._create, index, node)
            except ValueError:  # the name is still taken by the actor being ended
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    def _create(self, index: int, node: dict):
        return ShardActor.options(name=shard_name(index), namespace=self.config.ray.namespace,
                                  scheduling_strategy=pinned(node)).remote(index, self.config)
