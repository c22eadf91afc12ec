"""The cluster's nodes and the SIP transports each runs; a node that joins later gets its own.

Transports are per node (pinned there, ``transports_per_node`` of them sharing the node's
listeners), so a new node takes SIP traffic on its listeners as soon as its transports are up.
Every look at the nodes also lets the shards follow them (placement.py).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.config import Config
from actors.hosts.transport import SipTransport
from actors.ops.off_loop import off_loop
from actors.vocabulary import transport_name

log = logging.getLogger(__name__)

# Restarted when it dies; a call it was running fails rather than being replayed.
SipTransportActor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)(SipTransport)


def alive_nodes() -> list[dict]:
    """Alive nodes in a stable order: by name (`ray start --node-name`, by default the IP)."""
    return sorted((n for n in ray.nodes() if n["Alive"]),
                  key=lambda n: (n["NodeName"], n["NodeID"]))


def pinned(node: dict) -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)


async def start_transports(config: Config, nodes: list[dict], into: list) -> list[str]:
    """Starts the transports of each node, each bound to ``[sip] listen_per_node`` of the node's
    name or else ``listen``. Handles go into ``into`` before they start, so that a failed start
    still gets them stopped. Returns the listeners as 'udp:host:port'."""
    handles = [
        SipTransportActor.options(name=transport_name(node["NodeName"], i),
                                  namespace=config.ray.namespace, scheduling_strategy=pinned(node))
        .remote(config, config.sip.listen_per_node.get(node["NodeName"]))
        for node in nodes for i in range(config.ray.transports_per_node)
    ]
    into.extend(handles)
    bound = await asyncio.gather(*(t.start.remote() for t in handles))
    return sorted({spec for specs in bound for spec in specs})


async def watch_nodes(config: Config, nodes: list[dict], transports: list,
                      follow: Callable[[list[dict]], Awaitable[None]]) -> None:
    """Until cancelled, every ``[ray] placement_interval``: transports for every node that
    joined after ``nodes``, then ``follow(alive nodes)`` (the shards' placement)."""
    known = {n["NodeID"] for n in nodes}
    while True:
        await asyncio.sleep(config.ray.placement_interval)
        alive = await off_loop(alive_nodes)
        joined = [n for n in alive if n["NodeID"] not in known]
        if joined:
            known.update(n["NodeID"] for n in joined)
            names = ", ".join(n["NodeName"] for n in joined)
            try:
                listeners = await start_transports(config, joined, transports)
            except Exception:
                log.exception("starting transports on joining node(s) %s failed", names)
            else:
                log.warning("node(s) %s joined: SIP on %s", names, " ".join(listeners))
        try:
            await follow(alive)
        except Exception:
            log.exception("moving shards to follow the nodes failed")
