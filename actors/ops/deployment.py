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
from actors.hosts.shard import ImpuShard
from actors.ops.http_status import StatusServer
from actors.ops.nodes import alive_nodes, pinned, start_transports, watch_joins
from actors.ops.registrar import Registrar
from actors.ops.rpc import RpcServer
from actors.ops.startup_errors import StartupError, listener_error, one_line
from actors.vocabulary import cx_pool_name, shard_name

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
    watcher: asyncio.Task | None = None  # transports for nodes that join later

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
        for handle in self.transports + self.shards + self.cx_pools:
            ray.kill(handle, no_restart=True)


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
    d.cx_pools = [
        cx_pool.options(name=cx_pool_name(i), namespace=ns).remote(i, config)
        for i in range(config.ray.cx_pool)
    ]
    await asyncio.gather(*(c.start.remote() for c in d.cx_pools))
    nodes = alive_nodes()
    shard = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)(ImpuShard)
    d.shards = [
        shard.options(name=shard_name(i), namespace=ns, scheduling_strategy=_spread(nodes, i))
        .remote(i, config)
        for i in range(config.ray.shards)
    ]
    await asyncio.gather(*(s.ready.remote() for s in d.shards))
    try:
        d.listeners = await start_transports(config, nodes, d.transports)
    except Exception as exc:
        raise listener_error(config.sip.listen, exc) from exc
    d.watcher = asyncio.get_running_loop().create_task(watch_joins(config, nodes, d.transports))
    if config.rpc.listen:
        rpc = RpcServer(Registrar(config))
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


def _spread(nodes: list[dict], index: int):
    """Shard i lives on node i mod N (nodes by name). Pinned: a restarted shard reloads its
    SQLite file from that node's disk. Ray's SPREAD strategy and soft affinity both left the
    zero-CPU shards of a two-node cluster on one node in some runs (measured)."""
    return pinned(nodes[index % len(nodes)])


async def _quietly(calls) -> None:
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.warning("stopping an actor failed: %s", result)
