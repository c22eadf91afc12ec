"""ImpuShard: a Ray actor hosting many virtual IMPU actors (one mailbox each)."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque

import ray

from actors.config import Config
from actors.hosts.batching import Batcher
from actors.hosts.metrics import ShardMetrics, export_forever, shard_tags
from actors.hosts.timers import ExpiryHeap
from actors.reg_event.procedures import (
    EventContext,
    expire_subscriptions,
    notify_change,
    publish_reg,
    subscribe_to_reg,
)
from actors.reg_event.subscription import subscription_expires
from actors.rules import unregister as unreg
from actors.rules.expires import ExpiresPolicy
from actors.rules.expiry import expire_bindings
from actors.rules.impu import Impu, RegisterRules
from actors.rules.lookup import find_binding, view
from actors.rules.routing import SLOTS, jump_hash, shard_of
from actors.rules.save import SaveContext, save
from actors.store.base import WriteThrough, open_store
from actors.store.records import decode_impu, encode_impu
from actors.vocabulary import (
    Binding,
    ContactRequest,
    ImpuView,
    NotifyJob,
    Profile,
    PublishRequest,
    RegisterRequest,
    RegState,
    Reply,
    SubscribeRequest,
    cx_pool_name,
    shard_name,
)

log = logging.getLogger(__name__)

INTERNAL_ERROR = Reply(500, "Server Internal Error")


def register_rules(config: Config) -> RegisterRules:
    reg = config.registrar
    return RegisterRules(
        expires=ExpiresPolicy(reg.default_expires, reg.default_expires_range, reg.min_expires, reg.max_expires),
        max_contacts=reg.max_contacts,
        replace_oldest=reg.max_contacts_policy == "replace_oldest",
        path_strict=reg.path_strict,
        user_data_always=bool(reg.user_data_always),
        store_profile_dereg=bool(reg.store_profile_dereg),
    )


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class ImpuShard:
    def __init__(self, index: int, config: Config) -> None:
        self.index = index
        self.shards = config.ray.shards
        self.namespace = config.ray.namespace
        self.impus: dict[str, Impu] = {}
        self._cx = [
            _batcher(ray.get_actor(cx_pool_name(i), namespace=self.namespace), "sar_batch")
            for i in range(config.ray.cx_pool)
        ]
        self._next_cx = 0
        self._peers: dict[int, Batcher] = {}
        self.ctx = SaveContext(
            rules=register_rules(config),
            scscf_name=config.registrar.scscf_name,
            dest_realm=config.registrar.cxdx_dest_realm,
            sar=self._sar,
            propagate=self._propagate,
            persist=self._persist,
            clock=time.time,
            user_data_xsd=config.registrar.user_data_xsd or None,
            user_data_dtd=config.registrar.user_data_dtd or None,
            support_wildcard_psi=bool(config.registrar.support_wildcardPSI),
        )
        self.events = EventContext(
            policy=subscription_expires(config.registrar),
            scscf_uri=config.registrar.scscf_name,
            send_notify=self._send_notify,
            persist=self._persist,
            clock=time.time,
        )
        self.ctx.events = self.events
        self._transports: dict[str, Batcher] = {}
        store = config.store
        self._backend = open_store(store.backend, store.path, store.url, index, store.prefix)
        self._store = WriteThrough(self._backend)
        self._timers = ExpiryHeap()
        self._timer_changed: asyncio.Event | None = None
        self._loaded: asyncio.Task | None = None
        self.expired_contacts = 0
        self.expiry_lags: deque[float] = deque(maxlen=100_000)  # seconds past expiry, recent ones
        self._expiring: set[asyncio.Task] = set()
        self.metrics = ShardMetrics()
        self._export = asyncio.get_running_loop().create_task(
            export_forever(self.statistics, shard_tags(index, self.namespace)))
        self._unreg_validity = config.registrar.unreg_validity
        self._lapses: dict[str, asyncio.TimerHandle] = {}  # UNREGISTERED identities' validity

    async def ready(self) -> int:
        """Loads this shard's identities from the store, once per process start (including a
        restart by Ray), and starts the expiry timer. Every entry point awaits it."""
        if self._loaded is None:
            self._loaded = asyncio.get_running_loop().create_task(self._load())
        await asyncio.shield(self._loaded)
        return len(self.impus)

    async def recent_expiry_lags(self) -> list[float]:
        """How late the recent expiries came (seconds past each binding's expiry)."""
        return list(self.expiry_lags)

    async def close(self) -> None:
        """Flushes every pending write; called on a graceful stop."""
        await self._store.close()

    async def register_batch(self, requests: list[RegisterRequest]) -> list[Reply]:
        await self.ready()
        return await asyncio.gather(*(self._register(r) for r in requests))

    async def apply_batch(self, updates: list[tuple]) -> list[None]:
        """Implicit-set members registered by another IMPU. Applied without taking the member's
        mailbox: two members of one set registering at once on two shards would deadlock."""
        await self.ready()
        changed = []
        for identity, state, bindings, profile, reason in updates:
            impu = self._impu(identity)
            old = impu.bindings
            impu.apply(state, bindings, profile)
            notify_change(impu, old, reason, self.events)
            changed.append(self._persist(impu))
        await asyncio.gather(*changed)
        return [None] * len(updates)

    async def counts(self) -> dict:
        await self.ready()
        now = time.time()
        registered = [i for i in self.impus.values() if i.state == RegState.REGISTERED]
        return {
            "shard": self.index,
            "impus": len(registered),
            "contacts": sum(len(i.live_bindings(now)) for i in registered),
            "expired_contacts": self.expired_contacts,
            "subscriptions": sum(len(i.subscriptions) for i in self.impus.values()),
        }

    async def show(self, identity: str) -> dict | None:
        await self.ready()
        impu = self.impus.get(identity)
        if impu is None:
            return None
        now = time.time()
        return {
            "identity": identity,
            "state": impu.state.name,
            "contacts": [
                {"uri": b.uri, "expires": b.remaining(now), "q": b.q, "path": list(b.path)}
                for b in impu.live_bindings(now).values()
            ],
            "associated": impu.profile.associated_uris() if impu.profile else [],
        }

    async def _load(self) -> None:
        await self._backend.open()
        slots = [s for s in range(SLOTS) if jump_hash(s, self.shards) == self.index]
        async for identity, data in self._backend.load_slots(slots):
            impu = self.impus[identity] = decode_impu(identity, data)
            self._schedule(impu)
        log.info("shard %d loaded %d identities", self.index, len(self.impus))
        self._timer_changed = asyncio.Event()
        asyncio.get_running_loop().create_task(self._expiry_loop())

    async def _persist(self, impu: Impu) -> None:
        keep = impu.bindings or impu.profile is not None
        await self._store.write(impu.identity, encode_impu(impu) if keep else None)
        self._schedule(impu)

    def _schedule(self, impu: Impu) -> None:
        deadlines = [b.expires_at for b in impu.bindings.values()]
        deadlines += [s.expires_at for s in impu.subscriptions.values()]
        if deadlines:
            earliest = min(deadlines)
            next_before = self._timers.next_deadline()
            self._timers.schedule(impu.identity, earliest)
            if self._timer_changed and (next_before is None or earliest < next_before):
                self._timer_changed.set()
        else:
            self._timers.cancel(impu.identity)

    async def _expiry_loop(self) -> None:
        """Sleeps until the earliest binding expires (or an earlier one is scheduled)."""
        while True:
            deadline = self._timers.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.time())
            self._timer_changed.clear()
            try:
                await asyncio.wait_for(self._timer_changed.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            now = time.time()
            # Each expiry may wait for a SAR (seconds, with a dead HSS): none waits for another.
            for identity in self._timers.due(now):
                task = asyncio.get_running_loop().create_task(self._expire(identity, now))
                self._expiring.add(task)
                task.add_done_callback(self._expiring.discard)

    async def _expire(self, identity: str, now: float) -> None:
        impu = self.impus.get(identity)
        if impu is None:
            return
        try:
            lags = await expire_bindings(impu, now, self.ctx)
            self.expired_contacts += len(lags)
            self.expiry_lags.extend(lags)
            async with impu.mailbox:
                if expire_subscriptions(impu, self.events):
                    await self._persist(impu)
            self._schedule(impu)
        except Exception:
            log.exception("expiring %s failed", identity)
        self._forget_if_unused(impu)

    async def _register(self, req: RegisterRequest) -> Reply:
        return self.metrics.count_reply(await self._guarded(req.aor, save, req, self.ctx))

    def _impu(self, identity: str) -> Impu:
        impu = self.impus.get(identity)
        if impu is None:
            impu = self.impus[identity] = Impu(identity)
        return impu

    def _forget_if_unused(self, impu: Impu) -> None:
        """Rejected or fully de-registered identities hold no memory."""
        if (impu.state == RegState.NOT_REGISTERED and not impu.bindings and impu.profile is None
                and not impu.subscriptions and not impu.mailbox.locked()):
            self.impus.pop(impu.identity, None)

    async def _sar(self, request):
        batcher = self._cx[self._next_cx]
        self._next_cx = (self._next_cx + 1) % len(self._cx)
        return await self.metrics.time_sar(batcher.submit(request))

    async def _propagate(
        self, identities: list[str], state: RegState, bindings: dict[str, Binding],
        profile: Profile | None, reason: str,
    ) -> None:
        by_shard: dict[int, list[tuple]] = defaultdict(list)
        for identity in identities:
            by_shard[shard_of(identity, self.shards)].append(
                (identity, state, bindings, profile, reason))
        remote = []
        for index, updates in by_shard.items():
            if index == self.index:
                await self.apply_batch(updates)
            else:
                remote += [self._peer(index).submit(u) for u in updates]
        await asyncio.gather(*remote)

    def _peer(self, index: int) -> Batcher:
        if index not in self._peers:
            handle = ray.get_actor(shard_name(index), namespace=self.namespace)
            self._peers[index] = _batcher(handle, "apply_batch")
        return self._peers[index]

    # -- The terminating side and administration (actors/lookup.py, actors/unregister.py) --

    async def view_batch(self, identities: list[str]) -> list[ImpuView]:
        await self.ready()
        now = time.time()
        return [view(self.impus.get(i), i, now) for i in identities]

    async def find_contact(self, uri: str) -> Binding | None:
        await self.ready()
        return find_binding(self.impus.values(), uri, time.time())

    async def unregister(self, identity: str) -> unreg.Deregistration:
        await self.ready()
        impu = self._impu(identity)
        try:
            return await unreg.unregister(impu, self.ctx)
        finally:
            self._forget_if_unused(impu)

    async def assign_server_unreg(self, identity: str) -> int:
        await self.ready()
        impu = self._impu(identity)
        before = impu.state
        try:
            code = await unreg.assign_server_unreg(impu, self.ctx)
        finally:
            self._forget_if_unused(impu)
        # A fresh assignment restarts the validity; one reloaded from the store gets a timer too.
        if impu.state == RegState.UNREGISTERED and (
                before == RegState.NOT_REGISTERED or identity not in self._lapses):
            if identity in self._lapses:
                self._lapses[identity].cancel()
            self._lapses[identity] = asyncio.get_running_loop().call_later(
                self._unreg_validity, lambda: asyncio.ensure_future(self._lapse(identity)))
        return code

    async def statistics(self) -> dict:
        """counts() with the REGISTER-path counters, the NOTIFYs in flight and the node."""
        return {**await self.counts(), **self.metrics.snapshot(),
                "notifies_in_q": len(self.events.pending),
                "node_id": ray.get_runtime_context().get_node_id()}

    async def _lapse(self, identity: str) -> None:
        self._lapses.pop(identity, None)
        impu = self.impus.get(identity)
        if impu is None:
            return
        try:
            await unreg.lapse_unregistered(impu, self.ctx)
        except Exception:
            log.exception("ending the unregistered state of %s failed", identity)
        self._forget_if_unused(impu)

    # -- The reg event package (actors/reg_event.py) --

    async def subscribe_batch(self, requests: list[SubscribeRequest]) -> list[Reply]:
        await self.ready()
        return await asyncio.gather(*(self._guarded(r.presentity, subscribe_to_reg, r, self.events)
                                      for r in requests))

    async def publish_batch(self, requests: list[PublishRequest]) -> list[Reply]:
        await self.ready()
        return await asyncio.gather(*(self._guarded(
            r.presentity, publish_reg, r, time.time(), self.events, self._remove_bindings)
            for r in requests))

    async def _guarded(self, identity: str, procedure, *args) -> Reply:
        """Runs a procedure (save, subscribe_to_reg, publish_reg) on the identity's IMPU: a bug
        answers 500 instead of failing the whole batch; what changed was scheduled by _persist."""
        impu = self._impu(identity)
        try:
            return await procedure(impu, *args)
        except Exception:
            log.exception("%s for %s failed", procedure.__name__, identity)
            return INTERNAL_ERROR
        finally:
            self._forget_if_unused(impu)

    async def _remove_bindings(self, impu: Impu, keys: list[str]) -> None:
        """A PUBLISH ended these bindings: handled as the REGISTER that removes them would be
        (SAR, implicit set, store, NOTIFYs), under a Call-ID of its own so no CSeq clashes."""
        contacts = [ContactRequest(impu.bindings[k].uri, k, 0) for k in keys if k in impu.bindings]
        request = RegisterRequest(
            aor=impu.identity, impi=impu.profile.impi if impu.profile else None,
            call_id=f"publish-{time.time_ns()}", cseq=1, contacts=contacts, star=False, expires=0)
        reply = await save(impu, request, self.ctx)
        if reply.status != 200:
            log.warning("PUBLISH removal for %s: %d %s", impu.identity, reply.status, reply.reason)

    async def _send_notify(self, transport: str, job: NotifyJob) -> int:
        batcher = self._transports.get(transport)
        if batcher is None:
            handle = ray.get_actor(transport, namespace=self.namespace)
            batcher = self._transports[transport] = _batcher(handle, "send_notifies")
        return await batcher.submit(job)


def _batcher(handle, method: str) -> Batcher:
    remote = getattr(handle, method)
    return Batcher(lambda items: remote.remote(items))
