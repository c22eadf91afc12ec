"""ShardCore: everything one IMPU shard does, as a plain class that knows no Ray.

It holds the identities of its routing slots, each a virtual actor with its own mailbox (Impu),
writes them through to its store, reloads them on start, runs one timer for every deadline of
every identity (bindings, subscriptions, the UNREGISTERED validity) and delivers the reg
event's NOTIFYs in order per dialog. Its I/O comes in as callables (ShardIO), so the Ray actor
(shard.py) and a unit test host it alike.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass

from actors.auth.procedures import AuthContext
from actors.config import Config
from actors.hosts.dialog_queues import DialogQueues
from actors.hosts.kept_replies import KeptReplies
from actors.hosts.metrics import ShardMetrics
from actors.hosts.sar_retries import SarRetries
from actors.hosts.tally import Tally
from actors.hosts.timers import ExpiryHeap
from actors.reg_event.limits import SubscriptionLimits
from actors.reg_event.procedures import (
    EventContext,
    end_subscription,
    expire_subscriptions,
    notify_change,
    publish_reg,
    subscribe_to_reg,
)
from actors.reg_event.subscription import Subscription, subscription_key
from actors.rules import unregister as unreg
from actors.rules.charging import charging_addresses
from actors.rules.expires import ExpiresPolicy
from actors.rules.expiry import expire_bindings
from actors.rules.impu import Impu, RegisterRules, speaks_for_set
from actors.rules.lookup import find_binding, view
from actors.rules.network_dereg import (
    hss_targets,
    newly_barred,
    push_profile,
    terminate_registration,
)
from actors.rules.routing import SLOTS, jump_hash, shard_of
from actors.rules.save import SaveContext, save, save_unauthenticated, transient
from actors.rules.set_merge import merged
from actors.rules.state import IllegalTransition, next_state, set_update_event
from actors.rules.third_party import (
    RegistrationChange,
    deregisters_on_failure,
    fails,
    third_party_registers,
)
from actors.store.base import Store, WriteThrough
from actors.store.records import decode_impu, encode_impu
from actors.vocabulary import (
    Binding,
    ContactRequest,
    Deregistration,
    ImpuView,
    NotifyJob,
    PublishRequest,
    RegisterRequest,
    RegState,
    Reply,
    SetUpdate,
    SubscribeRequest,
)
from transport.diameter.cx import MaaResult, MarRequest, SaaResult, SarRequest
from transport.diameter.router import CxUnavailable
from transport.diameter.user_data import ApplicationServer

log = logging.getLogger(__name__)

INTERNAL_ERROR = Reply(500, "Server Internal Error")
# A SUBSCRIBE's NOTIFY leaves this long after the batch carrying its 200 OK has been returned.
# Returning is not delivering: Ray carries the reply to the transport and our NOTIFY call to it
# on separate paths, in no set order, so the NOTIFY gives the 200 a head start. The wait is
# counted from the reply, not from the NOTIFY's build, so a slow store write does not eat it.
AFTER_THE_200 = 0.05
# An identity whose expiry failed (or left a deadline in the past) is tried again this much later.
EXPIRY_RETRY = 1.0
# A load from the store that failed is tried again after this, doubling up to the ceiling.
LOAD_RETRY_FIRST, LOAD_RETRY_MAX = 1.0, 60.0
# A shard moving to another node waits this long for its NOTIFYs' answers (Timer F is 32 s):
# the stored subscriptions move with it, and the next NOTIFY carries the full state anyway.
HANDOVER_NOTIFY_GRACE = 2.0
# Identities gone over between two yields to the event loop in a pass over all of them (an RTR
# or PPR naming only an IMPI): 50,000 at once held REGISTERs back for 60-80 ms, enough for 503s.
PASS_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class ShardIO:
    """What a shard asks of the rest of the registrar."""

    sar: Callable[[SarRequest], Awaitable[SaaResult]]  # to the HSS; raises CxUnavailable
    mar: Callable[[MarRequest], Awaitable[MaaResult]]  # likewise, for authentication
    apply_to_shard: Callable[[int, list[SetUpdate]], Awaitable[None]]  # another shard's members
    send_notify: Callable[[str, NotifyJob], Awaitable[int]]  # (transport actor, job) -> status


def register_rules(config: Config) -> RegisterRules:
    reg = config.registrar
    return RegisterRules(
        expires=ExpiresPolicy(reg.default_expires, reg.default_expires_range, reg.min_expires, reg.max_expires),
        max_contacts=reg.max_contacts,
        replace_oldest=reg.max_contacts_policy == "replace_oldest",
        path_strict=reg.path_strict,
        user_data_always=bool(reg.user_data_always),
        store_profile_dereg=bool(reg.store_profile_dereg),
        sar_reregistration_interval=reg.sar_reregistration_interval,
    )


def subscription_expires(config: Config) -> ExpiresPolicy:
    """The reg event's subscription_* parameters as the policy the rules apply."""
    reg = config.registrar
    return ExpiresPolicy(reg.subscription_default_expires, reg.subscription_expires_range,
                         reg.subscription_min_expires, reg.subscription_max_expires)


def subscription_limits(config: Config) -> SubscriptionLimits:
    reg = config.registrar
    return SubscriptionLimits(reg.max_subscriptions_per_identity,
                              reg.max_subscriptions_per_watcher)


class ShardCore:
    def __init__(self, index: int, config: Config, io: ShardIO, store: Store, *,
                 clock: Callable[[], float] = time.time, node_id: str = "",
                 expire_in_background: bool = True, after_the_200: float = AFTER_THE_200) -> None:
        """``expire_in_background`` False leaves the timer to whoever calls ``run_due``."""
        self.index = index
        self.shards = config.ray.shards
        self.impus: dict[str, Impu] = {}
        self._tally = Tally()  # what counts() answers, kept as the identities change
        self._users: Counter[str] = Counter()  # requests holding, or waiting for, each IMPU
        self._io = io
        self._clock = clock
        self._node_id = node_id
        self._after_the_200 = after_the_200
        self.metrics = ShardMetrics()
        self._backend = store
        self._store = WriteThrough(store)
        self._notifies = DialogQueues(io.send_notify, self._notify_failed)
        reg = config.registrar
        self.ctx = SaveContext(
            rules=register_rules(config),
            scscf_name=reg.scscf_name,
            dest_realm=reg.cxdx_dest_realm,
            sar=self._sar,
            propagate=self._propagate,
            persist=self._persist,
            clock=clock,
            unreg_validity=reg.unreg_validity,
            user_data_xsd=reg.user_data_xsd or None,
            user_data_dtd=reg.user_data_dtd or None,
            support_wildcard_psi=bool(reg.support_wildcardPSI),
            auth=(AuthContext(config.auth, reg.scscf_name, self._mar) if config.auth.enabled
                  else None),
            retry_sar=self._retry_sar,
        )
        self._sar_retries = SarRetries()
        self.events = EventContext(
            policy=subscription_expires(config),
            scscf_uri=reg.scscf_name,
            post=self._notifies.post,
            persist=self._persist,
            clock=clock,
            limits=subscription_limits(config),
        )
        self.ctx.events = self.events
        if reg.third_party_register:
            self.ctx.registration_changed = self._registration_changed
        self._transport = ""  # the last transport a REGISTER came through; it reaches the ASs
        self._to_servers: set[asyncio.Task] = set()  # third-party REGISTERs in flight
        self._timers = ExpiryHeap()
        self._replies = KeptReplies(64 * config.sip.t1)  # Timer J
        self._timer_changed = asyncio.Event()
        self._expire_in_background = expire_in_background
        self._tasks: set[asyncio.Task] = set()  # the timer loop and the expiries it started
        self._timer_loop: asyncio.Task | None = None
        self._loaded: asyncio.Task | None = None
        self.load_error: str | None = None  # why the last load failed; None once loaded
        self._load_retry = LOAD_RETRY_FIRST
        self._load_again_at = 0.0
        self.expired_contacts = 0
        self.expiry_lags: deque[float] = deque(maxlen=100_000)  # seconds past expiry, recent ones

    # -- Life cycle --

    async def ready(self) -> int:
        """Loads this shard's identities from the store, once per process start (including a
        restart by Ray), and starts the timer. Every entry point awaits it. A load that failed
        raises its error (answered 503) and is tried again by the first call after a back-off."""
        loaded = self._loaded
        if loaded is None or (loaded.done() and self.load_error is not None
                              and self._clock() >= self._load_again_at):
            self._loaded = loaded = asyncio.get_running_loop().create_task(self._load())
        await asyncio.shield(loaded)
        return len(self.impus)

    async def close(self) -> None:
        """Flushes every pending write; called on a graceful stop."""
        await self._store.close()

    async def hand_over(self, notify_grace: float = HANDOVER_NOTIFY_GRACE) -> int:
        """Readies the shard's slots for the shard that takes them over (the shell has stopped
        letting requests in): no timer fires here any more, the expiries under way finish,
        NOTIFYs get ``notify_grace`` seconds to be answered, every write is flushed. The SAR
        retry queue and pending challenges stay behind. Returns the identities handed over."""
        if self._timer_loop is not None:
            self._timer_loop.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self._notifies.idle(), notify_grace)
        except TimeoutError:
            log.info("shard %d hands over with %d NOTIFYs unanswered", self.index,
                     len(self._notifies))
        await self._store.close()
        return len(self.impus)

    async def notifies_delivered(self) -> None:
        """Returns once every NOTIFY built so far has its final answer."""
        await self._notifies.idle()

    async def _load(self) -> None:
        try:
            await self._load_once()
        except Exception as exc:
            self.impus.clear()  # what it loaded before failing: served by no one
            self._tally.clear()
            self.load_error = f"cannot load from the store: {exc}"
            self._load_again_at = self._clock() + self._load_retry
            log.warning("shard %d %s; trying again in %.0f s", self.index, self.load_error,
                        self._load_retry)
            self._load_retry = min(self._load_retry * 2, LOAD_RETRY_MAX)
            raise
        self.load_error = None

    async def _load_once(self) -> None:
        await self._backend.open()
        slots = [s for s in range(SLOTS) if jump_hash(s, self.shards) == self.index]
        now = self._clock()
        async for identity, data in self._backend.load_slots(slots):
            impu = self.impus[identity] = decode_impu(identity, data)
            if impu.state == RegState.UNREGISTERED and impu.unreg_until is None:
                impu.unreg_until = now + self.ctx.unreg_validity  # stored before validities were
            self._schedule(impu)
            self._tally.recount(impu, now)
        if self.impus:  # a restart (of the shard or the registrar): worth an operator's eye
            log.warning("shard %d reloaded %d identities", self.index, len(self.impus))
        else:
            log.info("shard %d loaded 0 identities", self.index)
        if self._expire_in_background:
            self._timer_loop = self._spawn(self._expire_forever())

    # -- The REGISTER path and implicit sets --

    async def register_batch(self, requests: list[RegisterRequest]) -> list[Reply]:
        await self.ready()
        return await asyncio.gather(*(self._register(r) for r in requests))

    async def _register(self, req: RegisterRequest) -> Reply:
        self._transport = req.transport or self._transport
        reply = await self._guarded(req.aor, save, req, self.ctx)
        impu = self.impus.get(req.aor)
        try:  # the reply stands: a bug after it costs no other request of the batch
            if impu is not None:
                if self._replies.keep(impu, self._clock()):
                    self._timer_changed.set()
                if impu.challenges is not None:
                    self._schedule(impu)  # a 401's vector is freed when auth_data_timeout ends
        except Exception:
            log.exception("after the reply to %s", req.aor)
        return self.metrics.count_reply(reply)

    async def apply_batch(self, updates: list[SetUpdate]) -> list[None]:
        """Implicit-set members registered by another IMPU. Applied without taking the member's
        mailbox: two members of one set registering at once on two shards would deadlock."""
        await self.ready()
        await asyncio.gather(*(self._apply(u) for u in updates))
        return [None] * len(updates)

    async def _apply(self, update: SetUpdate) -> None:
        with self._using(update.identity) as impu:
            bindings, set_state, profile = update.bindings, update.state, update.profile
            if update.ended is not None:  # a REGISTER's change: merged, so none is lost
                bindings = merged(impu.bindings, bindings, update.ended, self._clock())
                if bindings:  # another device of the set may still be bound here
                    set_state, profile = RegState.REGISTERED, profile or impu.profile
            try:
                state = next_state(impu.state, set_update_event(set_state))
            except IllegalTransition as exc:
                log.warning("%s keeps its state: %s", update.identity, exc)
                return
            old, before = impu.bindings, impu.profile
            impu.apply(state, bindings, profile, unreg.unreg_until(state, self.ctx))
            notify_change(impu, old, update.reason, self.events,
                          newly_barred(before, profile), listed=before)
            await self._persist(impu)

    async def _propagate(self, updates: list[SetUpdate]) -> None:
        by_shard: dict[int, list[SetUpdate]] = defaultdict(list)
        for update in updates:
            by_shard[shard_of(update.identity, self.shards)].append(update)
        await asyncio.gather(*(
            self.apply_batch(batch) if index == self.index else self._io.apply_to_shard(index, batch)
            for index, batch in by_shard.items()))

    async def _sar(self, request: SarRequest) -> SaaResult:
        self._sar_retries.cancel(request.public_identity)  # this one says what the HSS hears now
        impu = self._to_the_users_hss(request)
        saa = await self.metrics.time_sar(self._io.sar(request))
        if impu is not None and saa.success and saa.origin_host:
            impu.hss_host = saa.origin_host  # stored with the change the SAR was for
        return saa

    async def _mar(self, request: MarRequest) -> MaaResult:
        self._to_the_users_hss(request)
        return await self._io.mar(request)

    def _to_the_users_hss(self, request: SarRequest | MarRequest) -> Impu | None:
        """HSS affinity (TS 29.228 6.4): a request about an identity names the HSS whose SAA
        served it last as Destination-Host, so a realm of several HSSs keeps one per user
        (CxClient routes by realm when that HSS is one of its peers and down)."""
        impu = self.impus.get(request.public_identity)
        if impu is not None and impu.hss_host and not request.destination_host:
            request.destination_host = impu.hss_host
        return impu

    def _retry_sar(self, request: SarRequest) -> None:
        self._sar_retries.add(request, self._clock())
        self._timer_changed.set()

    def _retry_later(self, request: SarRequest) -> None:
        """Backs ``request`` off; the timer loop, asleep with no deadline when this retry was
        the only one, wakes for the new one."""
        self._sar_retries.failed(request, self._clock())
        self._timer_changed.set()

    async def _resend(self, request: SarRequest) -> None:
        """A SAR the HSS missed, sent again in the identity's mailbox (so it cannot overtake a
        REGISTER's); dropped if the identity registered again since (that SAR told the HSS)."""
        identity = request.public_identity
        with self._using(identity) as impu:
            async with impu.mailbox:
                if self._sar_retries.pending(identity) is not request:
                    return  # cancelled by a newer SAR while this waited for the mailbox
                if impu.state == RegState.REGISTERED:
                    self._sar_retries.done(request)
                    return
                try:
                    saa = await self.metrics.time_sar(self._io.sar(request))
                except CxUnavailable as exc:
                    log.info("%s of %s still not sent: %s", request.assignment_type.name,
                             identity, exc)
                    self._retry_later(request)
                    return
                if transient(saa):
                    self._retry_later(request)
                else:
                    self._sar_retries.done(request)

    # -- Third-party REGISTER to application servers (TS 24.229 5.4.1.7) --

    def _registration_changed(self, change: RegistrationChange) -> None:
        """Called in the IMPU's mailbox: the REGISTERs leave outside it, so no AS delays the
        UE's 200 OK."""
        try:
            jobs = third_party_registers(change, self.ctx.scscf_name)
        except Exception:  # the registration stands; only its application servers miss it
            log.exception("third-party REGISTERs for %s not built", change.identity)
            return
        loop = asyncio.get_running_loop()
        for server, job in jobs:
            task = loop.create_task(self._third_party_register(change, server, job))
            self._to_servers.add(task)
            task.add_done_callback(self._to_servers.discard)

    async def third_party_registers_sent(self) -> None:
        """Returns once every third-party REGISTER started so far has its outcome."""
        while self._to_servers:
            await asyncio.wait(set(self._to_servers))

    async def _third_party_register(self, change: RegistrationChange,
                                    server: ApplicationServer, job: NotifyJob) -> None:
        transport = change.request.transport if change.request is not None else ""
        try:
            status = await self._io.send_notify(transport or self._transport, job)
        except Exception as exc:  # no transport reachable: as good as no answer
            log.warning("third-party REGISTER to %s not sent: %s", server.server_name, exc)
            status = 408
        if fails(status):
            log.info("third-party REGISTER of %s to %s: %d", change.identity, server.server_name,
                     status)
        if deregisters_on_failure(change, server, status):
            log.warning("%s de-registered: %s answered the third-party REGISTER %d and its "
                        "DefaultHandling is SESSION_TERMINATED", change.identity,
                        server.server_name, status)
            await self.unregister(change.identity)

    # -- The reg event package --

    async def subscribe_batch(self, requests: list[SubscribeRequest]) -> list[Reply]:
        await self.ready()
        try:
            return await asyncio.gather(*(
                self._guarded(r.presentity, subscribe_to_reg, r, self.events) for r in requests))
        finally:  # the replies leave as this returns; their NOTIFYs a little later
            dialogs = [(r.presentity, subscription_key(r.call_id, r.from_tag, r.to_tag, r.event_id))
                       for r in requests]
            asyncio.get_running_loop().call_later(
                self._after_the_200, self._notifies.release, dialogs)

    async def publish_batch(self, requests: list[PublishRequest]) -> list[Reply]:
        await self.ready()
        return await asyncio.gather(*(self._guarded(
            r.presentity, publish_reg, r, self._clock(), self.events, self._remove_bindings)
            for r in requests))

    async def _remove_bindings(self, impu: Impu, keys: list[str]) -> None:
        """A PUBLISH ended these bindings: handled as the REGISTER that removes them would be
        (SAR, implicit set, store, NOTIFYs), under a Call-ID of its own so no CSeq clashes."""
        contacts = [ContactRequest(impu.bindings[k].uri, k, 0) for k in keys if k in impu.bindings]
        request = RegisterRequest(
            aor=impu.identity, impi=impu.profile.impi if impu.profile else None,
            call_id=f"publish-{time.time_ns()}", cseq=1, contacts=contacts, star=False, expires=0)
        reply = await save_unauthenticated(impu, request, self.ctx)
        if reply.status != 200:
            log.warning("PUBLISH removal for %s: %d %s", impu.identity, reply.status, reply.reason)

    async def _notify_failed(self, sub: Subscription) -> None:
        if sub.presentity in self.impus:
            with self._using(sub.presentity) as impu:
                await end_subscription(impu, sub, self.events)

    # -- The terminating side and administration --

    async def view_batch(self, identities: list[str]) -> list[ImpuView]:
        await self.ready()
        now = self._clock()
        return [view(self.impus.get(i), i, now) for i in identities]

    async def find_contact(self, uri: str) -> Binding | None:
        await self.ready()
        return find_binding(self.impus.values(), uri, self._clock())

    async def unregister(self, identity: str) -> Deregistration:
        await self.ready()
        with self._using(identity) as impu:
            return await unreg.unregister(impu, self.ctx)

    async def assign_server_unreg(self, identity: str) -> int:
        await self.ready()
        with self._using(identity) as impu:
            return await unreg.assign_server_unreg(impu, self.ctx)

    # -- Requests from the HSS (fanned out to every shard by the Cx pool) --

    async def terminate_registrations(self, impis: list[str], listed: list[str],
                                      reason: str) -> list[str]:
        """An RTR (actors/rules/network_dereg.py): ends the registrations of ``impis`` here, or
        of the ``listed`` public identities only; the IMPIs whose registrations ended."""
        await self.ready()
        ended = []
        for identity in hss_targets(self.impus, await self._identities_of(impis), listed):
            with self._using(identity) as impu:
                ended.append(await terminate_registration(impu, reason, self.ctx))
        return [impi or impis[0] for impi in ended if impi is not None]

    async def push_profile(self, impi: str, user_data: str | None,
                           charging_information: dict | None = None) -> int:
        """A PPR's user data (validated by the pool) and charging information for the sets of
        ``impi`` held here; how many sets took them."""
        await self.ready()
        targets = hss_targets(self.impus, await self._identities_of([impi]))
        profile = self.ctx.profile(user_data) if user_data is not None else None
        charging = charging_addresses(charging_information)
        applied = 0
        for identity in targets:
            with self._using(identity) as impu:
                applied += await push_profile(impu, profile, charging, self.ctx)
        return applied

    async def counts(self) -> dict:
        """A shard that could not load counts nothing and says why (``load_error``)."""
        try:
            await self.ready()
        except Exception:
            if self.load_error is None:
                raise
        tally = self._tally
        return {"shard": self.index, "load_error": self.load_error, "impus": tally.impus,
                "contacts": tally.contacts, "expired_contacts": self.expired_contacts,
                "subscriptions": tally.subscriptions}

    async def show(self, identity: str) -> dict | None:
        await self.ready()
        impu = self.impus.get(identity)
        if impu is None:
            return None
        now = self._clock()
        return {
            "identity": identity,
            "state": impu.state.name,
            "contacts": [
                {"uri": b.uri, "expires": b.remaining(now), "q": b.q, "path": list(b.path),
                 "visited_network": b.visited_network, "icid": b.icid}
                for b in impu.live_bindings(now).values()
            ],
            "associated": impu.profile.associated_uris() if impu.profile else [],
            "charging": impu.profile.charging_function_addresses() if impu.profile else None,
        }

    async def statistics(self) -> dict:
        """counts() with the REGISTER-path counters, the NOTIFYs in queue and the node."""
        return {**await self.counts(), **self.metrics.snapshot(),
                "notifies_in_q": len(self._notifies), "node_id": self._node_id}

    async def recent_expiry_lags(self) -> list[float]:
        """How late the recent expiries came (seconds past each binding's expiry)."""
        return list(self.expiry_lags)

    # -- One timer for every deadline --

    async def run_due(self, now: float) -> None:
        """Ends what is due at ``now``: bindings, subscriptions, UNREGISTERED validities. Each
        identity on its own, since one may wait seconds for a SAR to a dead HSS. SARs the
        HSS missed go again when due; replies kept for retransmissions go after Timer J."""
        self._replies.drop_due(now)
        await asyncio.gather(*(self._expire(identity, now) for identity in self._timers.due(now)),
                             *(self._resend(r) for r in self._sar_retries.due(now)))

    async def _expire_forever(self) -> None:
        """Sleeps until the earliest deadline (or an earlier one is scheduled), then starts
        ``run_due`` without waiting for it: a slow expiry holds up no later one."""
        while True:
            deadline = min((d for d in (self._timers.next_deadline(),
                                        self._sar_retries.next_deadline(),
                                        self._replies.next_deadline()) if d is not None),
                           default=None)
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            self._timer_changed.clear()
            try:
                await asyncio.wait_for(self._timer_changed.wait(), timeout)
            except TimeoutError:
                pass
            self._spawn(self.run_due(self._clock()))

    async def _expire(self, identity: str, now: float) -> None:
        if identity not in self.impus:
            return
        with self._using(identity) as impu:
            try:
                counted = speaks_for_set(identity, impu.profile)  # the profile may go with them
                lags = await expire_bindings(impu, now, self.ctx)
                self.expired_contacts += len(lags) if counted else 0
                self.expiry_lags.extend(lags)
                async with impu.mailbox:
                    if expire_subscriptions(impu, self.events):
                        await self._persist(impu)
                await unreg.lapse_unregistered(impu, now, self.ctx)
                impu.expire_challenges(now)
            except Exception:
                log.exception("expiring %s failed", identity)
            deadlines = impu.deadlines()
            if deadlines and min(deadlines) <= now:  # it failed, or could not end what was due
                self._timers.schedule(identity, now + EXPIRY_RETRY)
                self._timer_changed.set()  # the loop may be asleep with no deadline
            else:
                self._schedule(impu)

    def _schedule(self, impu: Impu) -> None:
        deadlines = impu.deadlines()
        if not deadlines:
            self._timers.cancel(impu.identity)
            return
        earliest = min(deadlines)
        next_before = self._timers.next_deadline()
        self._timers.schedule(impu.identity, earliest)
        if next_before is None or earliest < next_before:
            self._timer_changed.set()

    def _spawn(self, work: Coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- Identities in memory --

    async def _each_impu(self) -> AsyncIterator[Impu]:
        """Every IMPU held when the pass starts, yielding to the event loop between chunks, so
        requests wait for a chunk, not for the whole pass."""
        held = list(self.impus.values())
        for start in range(0, len(held), PASS_CHUNK):
            if start:
                await asyncio.sleep(0)
            for impu in held[start:start + PASS_CHUNK]:
                yield impu

    async def _identities_of(self, impis: Iterable[str]) -> list[str]:
        """The identities held here whose profile names one of ``impis``. RTRs and PPRs that
        name only an IMPI are rare: a pass over the identities costs less than an IMPI index
        kept for them (two dicts of every identity, 50-75 B each at 50,000 per shard)."""
        wanted = set(impis)
        return [impu.identity async for impu in self._each_impu()
                if impu.profile is not None and impu.profile.impi in wanted]

    async def _persist(self, impu: Impu) -> None:
        keep = impu.bindings or impu.profile is not None
        await self._store.write(impu.identity, encode_impu(impu) if keep else None)
        self._schedule(impu)

    async def _guarded(self, identity: str, procedure, *args) -> Reply:
        """Runs a procedure (save, subscribe_to_reg, publish_reg) on the identity's IMPU: a bug
        answers 500 instead of failing the whole batch; what changed was scheduled by _persist."""
        with self._using(identity) as impu:
            try:
                return await procedure(impu, *args)
            except Exception:
                log.exception("%s for %s failed", procedure.__name__, identity)
                return INTERNAL_ERROR

    def _using(self, identity: str) -> _Holding:
        """``with self._using(identity) as impu``: the identity's IMPU for one request. It
        stays in memory while any request holds it or waits for its mailbox: counted, since a
        lock just released reads unlocked before its next waiter runs, and forgetting the IMPU
        then would lose that waiter's update."""
        return _Holding(self, identity)

    def _hold(self, identity: str) -> Impu:
        impu = self.impus.get(identity)
        if impu is None:
            impu = self.impus[identity] = Impu(identity)
        self._users[identity] += 1
        return impu

    def _release(self, identity: str, impu: Impu) -> None:
        self._users[identity] -= 1
        self._recount(impu)  # every change is made while a request holds the IMPU
        if not self._users[identity]:
            del self._users[identity]
            impu.drop_mailbox()
            self._forget_if_unused(impu)

    def _recount(self, impu: Impu) -> None:
        if self.impus.get(impu.identity) is impu:  # not one a failed load let go of
            self._tally.recount(impu, self._clock())

    def _forget_if_unused(self, impu: Impu) -> None:
        """Rejected or fully de-registered identities hold no memory."""
        if (impu.state == RegState.NOT_REGISTERED and not impu.bindings and impu.profile is None
                and not impu.subscriptions and impu.challenges is None
                and self.impus.get(impu.identity) is impu):
            del self.impus[impu.identity]


class _Holding:
    """What ShardCore._using returns: a class, not a generator-based context manager, whose
    setup and teardown showed as a tenth of a shard's time per REGISTER under a profiler."""
    __slots__ = ("_core", "_identity", "_impu")

    def __init__(self, core: ShardCore, identity: str) -> None:
        self._core, self._identity = core, identity

    def __enter__(self) -> Impu:
        self._impu = self._core._hold(self._identity)
        return self._impu

    def __exit__(self, *exc_info) -> None:
        self._core._release(self._identity, self._impu)
