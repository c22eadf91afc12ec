"""ImpuShard: the Ray-hosted shell of a ShardCore (shard_core.py).

It gives the core its Ray-backed I/O (SARs through the Cx pool, set updates to other shards,
NOTIFYs through the transports, each over a Batcher), exports its statistics, and forwards every
remote method. ``ray.remote`` is applied where shards are created (actors/ops/deployment.py).
A shard that moves to another node closes its door first (handover.py): from then on it turns
every request away, and the placement (actors/ops/placement.py) starts its successor once the
requests inside have finished and its writes are flushed.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable

import ray

from actors.config import Config
from actors.hosts.batching import Batcher
from actors.hosts.handover import MOVING, Door, ShardMoving
from actors.hosts.heap import trim_forever
from actors.hosts.metrics import export_forever, shard_tags
from actors.hosts.ray_channels import ChannelDirectory
from actors.hosts.restarts import restarts
from actors.hosts.shard_core import ShardCore, ShardIO
from actors.rules.routing import shard_of
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
from transport.diameter.router import CxUnavailable

log = logging.getLogger(__name__)

# Calls of NOTIFYs in flight to one transport. A call returns once each of its NOTIFYs has its
# final answer, which a watcher that does not answer gives only at Timer F (64*T1, 32 s), and
# every dialog with a NOTIFY out has one in flight: the Batcher's default of 8 calls let eight
# such calls hold every other dialog's NOTIFY back for 32 s while the shard queued more, so
# the dialog queues (and the shard's memory) grew without end. Stalled calls start at most
# one per stall_after (20 ms): this many cover Timer F at that pace.
NOTIFY_CALLS_IN_FLIGHT = 2048


class ImpuShard:
    def __init__(self, index: int, config: Config) -> None:
        self.namespace = config.ray.namespace
        self._channels = ChannelDirectory(config)
        pools = [(cx_pool_name(i), ray.get_actor(cx_pool_name(i), namespace=self.namespace))
                 for i in range(config.ray.cx_pool)]
        sar = itertools.cycle([self._batcher(*pool, "sar_batch") for pool in pools])
        mar = itertools.cycle([self._batcher(*pool, "mar_batch") for pool in pools])
        self._peers: dict[int, Batcher] = {}
        self._transports: dict[str, Batcher] = {}
        self._door = Door()
        store = config.store
        self.core = ShardCore(
            index, config,
            ShardIO(sar=lambda request: _from_cx_pool(next(sar).submit(request)),
                    mar=lambda request: _from_cx_pool(next(mar).submit(request)),
                    apply_to_shard=self._apply_to_shard, send_notify=self._send_notify),
            open_store(store.backend, store.path, store.url, index, store.prefix),
            node_id=ray.get_runtime_context().get_node_id(),
        )
        loop = asyncio.get_running_loop()
        self._export = loop.create_task(
            export_forever(self.core.statistics, shard_tags(index, self.namespace)))
        self._trim = loop.create_task(trim_forever())
        self._channel = self._channels.serve(
            {"register_batch": self.core.register_batch, "apply_batch": self.core.apply_batch,
             "subscribe_batch": self.core.subscribe_batch,
             "publish_batch": self.core.publish_batch})
        restarted = restarts()
        if restarted:  # reload now: the expiry timer must run before any call comes
            log.warning("%s restarted by Ray (restart %d): reloading its identities",
                        shard_name(index), restarted)
            self._reload = loop.create_task(self._reload_quietly())

    async def channel_address(self) -> tuple[str, int]:
        return await self._channel.address()

    async def ready(self) -> int:
        return await self.core.ready()

    async def _reload_quietly(self) -> None:
        try:
            await self.core.ready()
        except Exception:  # logged by the core, which tries again on the next call
            pass

    async def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        await self.core.close()

    async def hand_over(self) -> int:
        """Closes the door, waits for the requests inside, then readies the slots for the
        successor (ShardCore.hand_over); the caller then ends this actor."""
        await self._door.close()
        return await self.core.hand_over()

    async def register_batch(self, requests: list[RegisterRequest]) -> list[Reply]:
        return await self._answer(self.core.register_batch, requests, [r.aor for r in requests])

    async def apply_batch(self, updates: list[SetUpdate]) -> list[None]:
        with self._door.entering():
            return await self.core.apply_batch(updates)

    async def subscribe_batch(self, requests: list[SubscribeRequest]) -> list[Reply]:
        return await self._answer(self.core.subscribe_batch, requests,
                                  [r.presentity for r in requests])

    async def publish_batch(self, requests: list[PublishRequest]) -> list[Reply]:
        return await self._answer(self.core.publish_batch, requests,
                                  [r.presentity for r in requests])

    async def view_batch(self, identities: list[str]) -> list[ImpuView]:
        if not all(map(self._owns, identities)):
            raise ShardMoving("identities of another shard: the shard count changed")
        with self._door.entering():
            return await self.core.view_batch(identities)

    async def find_contact(self, uri: str) -> Binding | None:
        with self._door.entering():
            return await self.core.find_contact(uri)

    async def unregister(self, identity: str) -> Deregistration:
        with self._door.entering():
            return await self.core.unregister(identity)

    async def assign_server_unreg(self, identity: str) -> int:
        with self._door.entering():
            return await self.core.assign_server_unreg(identity)

    async def shard_moved(self, index: int) -> None:
        """Another shard was started anew elsewhere: its set updates look it up again."""
        self._peers.pop(index, None)

    async def terminate_registrations(self, impis: list[str], listed: list[str],
                                      reason: str) -> list[str]:
        return await self.core.terminate_registrations(impis, listed, reason)

    async def push_profile(self, impi: str, user_data: str | None,
                           charging_information: dict | None = None) -> int:
        return await self.core.push_profile(impi, user_data, charging_information)

    async def counts(self) -> dict:
        return await self.core.counts()

    async def show(self, identity: str) -> dict | None:
        with self._door.entering():
            return await self.core.show(identity)

    async def statistics(self) -> dict:
        return await self.core.statistics()

    async def recent_expiry_lags(self) -> list[float]:
        return await self.core.recent_expiry_lags()

    async def _answer(self, batch, requests: list, identities: list[str]) -> list[Reply]:
        """A SIP request batch: a moving shard answers each with 503 + Retry-After, and so
        does any shard for an identity it does not own (routed by an older shard count)."""
        if not self._door.open:
            return [MOVING] * len(requests)
        owned = [self._owns(i) for i in identities]
        mine = [r for r, own in zip(requests, owned) if own]
        with self._door.entering():
            replies = iter(await batch(mine) if mine else ())
        return [next(replies) if own else MOVING for own in owned]

    def _owns(self, identity: str) -> bool:
        return shard_of(identity, self.core.shards) == self.core.index

    async def _apply_to_shard(self, index: int, updates: list[SetUpdate]) -> None:
        peer = self._peers.get(index)
        if peer is None:  # ray.get_actor blocks on the GCS: not on the event loop
            name = shard_name(index)
            handle = await asyncio.to_thread(ray.get_actor, name, namespace=self.namespace)
            peer = self._peers[index] = self._batcher(name, handle, "apply_batch")
        try:
            await asyncio.gather(*(peer.submit(u) for u in updates))
        except Exception:  # restarting, or moved to another node: look it up afresh next time
            if self._peers.get(index) is peer:
                del self._peers[index]
            raise

    async def _send_notify(self, transport: str, job: NotifyJob) -> int:
        """``transport`` "": any transport (a third-party REGISTER after an expiry, before
        any REGISTER reached this shard)."""
        transport = transport or await asyncio.to_thread(self._any_transport)
        if transport not in self._transports:
            self._transports[transport] = self._batcher(
                transport, ray.get_actor(transport, namespace=self.namespace), "send_notifies",
                max_in_flight=NOTIFY_CALLS_IN_FLIGHT)
        return await self._transports[transport].submit(job)

    def _any_transport(self) -> str:
        names = sorted(actor["name"] for actor in ray.util.list_named_actors(all_namespaces=True)
                       if actor["namespace"] == self.namespace
                       and actor["name"].startswith(TRANSPORT_PREFIX))
        if not names:
            raise LookupError("no SIP transport is running")
        return names[0]

    def _batcher(self, name: str, handle, method: str, **options) -> Batcher:
        """Batches to one actor's method: over its channel, or as Ray calls without one."""
        channel = self._channels.client(name)
        if channel is not None:
            return Batcher(lambda items: channel.call(method, items), **options)
        remote = getattr(handle, method)
        return Batcher(lambda items: remote.remote(items), **options)


async def _from_cx_pool(answer: Awaitable):
    """A Cx pool that cannot be reached (restarting, its channel lost) is an HSS that cannot
    be: the REGISTER gets 503, as for an HSS that does not answer."""
    try:
        return await answer
    except CxUnavailable:
        raise
    except Exception as exc:
        raise CxUnavailable(f"Cx pool unavailable: {type(exc).__name__}") from exc
