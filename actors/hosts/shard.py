"""ImpuShard: the Ray-hosted shell of a ShardCore (shard_core.py).

It gives the core its Ray-backed I/O (SARs through the Cx pool, set updates to other shards,
NOTIFYs through the transports, each over a Batcher), exports its statistics, and forwards every
remote method. ``ray.remote`` is applied where shards are created (actors/ops/deployment.py).
"""
from __future__ import annotations

import asyncio
import itertools

import ray

from actors.config import Config
from actors.hosts.batching import Batcher
from actors.hosts.metrics import export_forever, shard_tags
from actors.hosts.shard_core import ShardCore, ShardIO
from actors.store.base import open_store
from actors.vocabulary import (
    TRANSPORT_PREFIX,
    Binding,
    Deregistration,
    ImpuView,
    NotifyJob,
    PublishRequest,
    RegisterRequest,
    Reply,
    SetUpdate,
    SubscribeRequest,
    cx_pool_name,
    shard_name,
)


class ImpuShard:
    def __init__(self, index: int, config: Config) -> None:
        self.namespace = config.ray.namespace
        pools = [ray.get_actor(cx_pool_name(i), namespace=self.namespace)
                 for i in range(config.ray.cx_pool)]
        sar = itertools.cycle([_batcher(pool, "sar_batch") for pool in pools])
        mar = itertools.cycle([_batcher(pool, "mar_batch") for pool in pools])
        self._peers: dict[int, Batcher] = {}
        self._transports: dict[str, Batcher] = {}
        store = config.store
        self.core = ShardCore(
            index, config,
            ShardIO(sar=lambda request: next(sar).submit(request),
                    mar=lambda request: next(mar).submit(request),
                    apply_to_shard=self._apply_to_shard, send_notify=self._send_notify),
            open_store(store.backend, store.path, store.url, index, store.prefix),
            node_id=ray.get_runtime_context().get_node_id(),
        )
        self._export = asyncio.get_running_loop().create_task(
            export_forever(self.core.statistics, shard_tags(index, self.namespace)))

    async def ready(self) -> int:
        return await self.core.ready()

    async def close(self) -> None:
        await self.core.close()

    async def register_batch(self, requests: list[RegisterRequest]) -> list[Reply]:
        return await self.core.register_batch(requests)

    async def apply_batch(self, updates: list[SetUpdate]) -> list[None]:
        return await self.core.apply_batch(updates)

    async def subscribe_batch(self, requests: list[SubscribeRequest]) -> list[Reply]:
        return await self.core.subscribe_batch(requests)

    async def publish_batch(self, requests: list[PublishRequest]) -> list[Reply]:
        return await self.core.publish_batch(requests)

    async def view_batch(self, identities: list[str]) -> list[ImpuView]:
        return await self.core.view_batch(identities)

    async def find_contact(self, uri: str) -> Binding | None:
        return await self.core.find_contact(uri)

    async def unregister(self, identity: str) -> Deregistration:
        return await self.core.unregister(identity)

    async def assign_server_unreg(self, identity: str) -> int:
        return await self.core.assign_server_unreg(identity)

    async def counts(self) -> dict:
        return await self.core.counts()

    async def show(self, identity: str) -> dict | None:
        return await self.core.show(identity)

    async def statistics(self) -> dict:
        return await self.core.statistics()

    async def recent_expiry_lags(self) -> list[float]:
        return await self.core.recent_expiry_lags()

    async def _apply_to_shard(self, index: int, updates: list[SetUpdate]) -> None:
        if index not in self._peers:
            handle = ray.get_actor(shard_name(index), namespace=self.namespace)
            self._peers[index] = _batcher(handle, "apply_batch")
        await asyncio.gather(*(self._peers[index].submit(u) for u in updates))

    async def _send_notify(self, transport: str, job: NotifyJob) -> int:
        """``transport`` "": any transport (a third-party REGISTER after an expiry, before
        any REGISTER reached this shard)."""
        transport = transport or await asyncio.to_thread(self._any_transport)
        if transport not in self._transports:
            handle = ray.get_actor(transport, namespace=self.namespace)
            self._transports[transport] = _batcher(handle, "send_notifies")
        return await self._transports[transport].submit(job)

    def _any_transport(self) -> str:
        names = sorted(actor["name"] for actor in ray.util.list_named_actors(all_namespaces=True)
                       if actor["namespace"] == self.namespace
                       and actor["name"].startswith(TRANSPORT_PREFIX))
        if not names:
            raise LookupError("no SIP transport is running")
        return names[0]


def _batcher(handle, method: str) -> Batcher:
    remote = getattr(handle, method)
    return Batcher(lambda items: remote.remote(items))
