"""Brings the registrar's actors up on a Ray cluster, and down again.

Order matters: the Cx pool before the shards (they look its actors up by name), the shards
before the transports open their sockets. The HSS, embedded or not, must already listen.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field, replace

import ray

from actors.config import Config
from actors.hosts.cx_pool import CxPool
from actors.ops.http_status import StatusServer
from actors.ops.nodes import alive_nodes, pinned, start_transports, watch_nodes
from actors.ops.off_loop import end_actors
from actors.ops.placement import Placement
from actors.ops.registrar import Registrar
from actors.ops.rpc import INVALID_PARAMS, RpcError, RpcServer
from actors.ops.startup_errors import StartupError, listener_error, one_line
from actors.vocabulary import cx_pool_name

log = logging.getLogger(__name__)


@dataclass
class Deployment:
    config: Config
    cx_pools: list = field(default_factory=list)
    shards: list = field(default_factory=list)
    transports: list = field(default_factory=list)
    listeners: list[str] = field(default_factory=list)
    rpc: RpcServer | None = None
    status: StatusServer | None = None  # [metrics] listen: /metrics, /health, /ready
    placement: Placement | None = None
    watcher: asyncio.Task | None = None  # transports for nodes that join, shards following

    async def stop(self) -> None:
        """Closes sockets first (no new work), then says DPR to the HSS, then ends the actors."""
        if self.watcher is not None:
            self.watcher.cancel()
        if self.rpc is not None:
            await self.rpc.stop()
        if self.status is not None:
            await self.status.stop()
        await _quietly(t.stop.remote() for t in self.transports)
        await _quietly(s.close.remote() for s in self.shards)
        await _quietly(c.stop.remote() for c in self.cx_pools)
        await end_actors(self.transports + self.shards + self.cx_pools)


    async def set_shards(self, count: str) -> dict:
        """JSON-RPC scscf.set_shards (ours): the shard count changed at run time (Redis)."""
        if not count.isdigit() or int(count) < 1:
            raise RpcError(INVALID_PARAMS, "Invalid params for scscf.set_shards: "
                                           f"a shard count of at least 1, not {count!r}")
        try:
            await self.placement.resize(int(count), alive_nodes())
        except ValueError as exc:
            raise RpcError(INVALID_PARAMS, f"Invalid params for scscf.set_shards: {exc}") from None
        if self.rpc is not None:
            self.rpc.registrar.forget_shards()
        return {"shards": int(count)}


async def start_registrar(config: Config) -> Deployment:
    deployment = Deployment(with_channel_secret(config))
    try:
        await _start(deployment)
    except BaseException:
        await deployment.stop()
        raise
    return deployment


async def _start(d: Deployment) -> None:
    config, ns = d.config, d.config.ray.namespace
    cx_pool = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)(CxPool)
    # On the driver's node: the shards of a node that dies start again elsewhere, and they
    # need a Cx pool that did not die with it (a pool Ray restarts must connect again first).
    here = {"NodeID": ray.get_runtime_context().get_node_id()}
    d.cx_pools = [
        cx_pool.options(name=cx_pool_name(i), namespace=ns, scheduling_strategy=pinned(here))
        .remote(i, config)
        for i in range(config.ray.cx_pool)
    ]
    await asyncio.gather(*(c.start.remote() for c in d.cx_pools))
    nodes = alive_nodes()
    placement = d.placement = Placement(config, d.transports)
    d.shards = placement.start(nodes)  # kept current as shards move
    await asyncio.gather(*(s.ready.remote() for s in d.shards))
    try:
        d.listeners = await start_transports(config, nodes, d.transports)
    except Exception as exc:
        raise listener_error(config.sip.listen, exc) from exc
    d.watcher = asyncio.get_running_loop().create_task(
        watch_nodes(config, nodes, d.transports, placement.follow))
    if config.rpc.listen:
        rpc = RpcServer(Registrar(config))
        rpc.methods["scscf.set_shards"] = d.set_shards
        try:
            await rpc.start(config.rpc.listen)
        except OSError as exc:
            raise StartupError("rpc.listen", config.rpc.listen, one_line(exc)) from exc
        d.rpc = rpc
    if config.metrics.listen:
        d.status = StatusServer(Registrar(config))
        try:
            await d.status.start(config.metrics.listen)
        except OSError as exc:
            raise StartupError("metrics.listen", config.metrics.listen, one_line(exc)) from exc


def with_channel_secret(config: Config) -> Config:
    """The secret the actors' channels are opened with: the configured one, or a new one for
    this start (actors Ray restarts get it again with their constructor arguments)."""
    if config.ray.channel_secret:
        return config
    return replace(config, ray=replace(config.ray, channel_secret=secrets.token_hex(32)))


async def _quietly(calls) -> None:
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.warning("stopping an actor failed: %s", result)
