"""The reg event package on an IMPU: the guide's subscribe_to_reg / publish_reg and the NOTIFYs
every registration change sends (TS 24.229 5.4.2, RFC 3680). Pure apart from the I/O it is
handed: sending a NOTIFY through a transport and writing the IMPU through to the store.

NOTIFYs of one IMPU are built in its mailbox, so versions and CSeqs are assigned in order; they
are sent outside it, so a slow watcher never holds up a REGISTER.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from actors.reg_event.reginfo import ReginfoError, build_reginfo, parse_reginfo, registration_infos
from actors.reg_event.subscription import (
    END_REASONS,
    Subscription,
    can_publish_reg,
    can_subscribe_to_reg,
    notify_request,
    on_notify_failure,
    refresh,
    subscription_key,
)
from actors.rules.expires import ExpiresPolicy
from actors.rules.impu import Impu
from actors.vocabulary import Binding, NotifyJob, PublishRequest, Reply, SubscribeRequest
from transport.sip.uri import uri_equal

log = logging.getLogger(__name__)

# The NOTIFY a SUBSCRIBE triggers waits this long, so that the 200 OK (which makes the dialog at
# the watcher) leaves first. A NOTIFY before the 200 is legal (RFC 6665 4.1.2.4), but UAs,
# sipp among them, mishandle it.
AFTER_THE_200 = 0.05


@dataclass
class EventContext:
    policy: ExpiresPolicy
    scscf_uri: str  # our From URI and Contact in NOTIFYs
    send_notify: Callable[[str, NotifyJob], Awaitable[int]]  # (transport actor, job) -> status
    persist: Callable[[Impu], Awaitable[None]]
    clock: Callable[[], float]
    pending: set = field(default_factory=set)  # NOTIFY tasks in flight, kept from the GC


async def subscribe_to_reg(impu: Impu, req: SubscribeRequest, ctx: EventContext) -> Reply:
    """subscribe_to_reg (with can_subscribe_to_reg): 200 OK and a full-state NOTIFY, or a
    rejection: 480 nothing registered, 481 unknown dialog, 403 not the UE nor its P-CSCF."""
    async with impu.mailbox:
        now = ctx.clock()
        bindings = impu.live_bindings(now)
        key = subscription_key(req.call_id, req.from_tag, req.to_tag, req.event_id)
        sub = impu.subscriptions.get(key)
        if sub is None and not req.initial:
            return Reply(481, "Subscription does not exist")
        if not bindings:
            return Reply(480, "Temporarily Unavailable")  # TS 24.229 5.4.2.1.1 step 0
        if not can_subscribe_to_reg(impu.profile, bindings, req.asserted, req.watcher):
            return Reply(403, "Not authorised to subscribe to this registration")
        if sub is None:
            sub = Subscription(
                presentity=impu.identity, watcher=req.watcher, call_id=req.call_id,
                from_tag=req.from_tag, to_tag=req.to_tag, remote_target=req.remote_target,
                route_set=req.route_set, remote_cseq=req.cseq, expires_at=now,
                event_id=req.event_id, received=req.received, transport=req.transport,
            )
        granted = refresh(sub, req.cseq, req.expires, req.remote_target, ctx.policy, now)
        if isinstance(granted, Reply):
            return granted
        if granted:
            impu.subscriptions[key] = sub
            jobs = [_notify_job(impu, sub, bindings, bindings, "user", "active", None, now, ctx)]
        else:  # unsubscribe, or a one-time fetch: a last full state, then it ends
            impu.subscriptions.pop(key, None)
            jobs = [_notify_job(impu, sub, bindings, bindings, "user", "terminated",
                                END_REASONS["unsubscribed"], now, ctx)]
        await ctx.persist(impu)
        _send(impu, jobs, ctx, delay=AFTER_THE_200)
        return Reply(200, "OK", [("Expires", str(granted)), ("Contact", f"<{ctx.scscf_uri}>")])


async def publish_reg(impu: Impu, req: PublishRequest, now: float, ctx: EventContext,
                  remove: Callable[[Impu, list[str]], Awaitable[None]]) -> Reply:
    """publish_reg (with can_publish_reg): contacts the reginfo body marks terminated lose their
    binding; ``remove`` drops them, writes through and notifies, as any de-registration."""
    try:
        registrations = parse_reginfo(req.body)
    except ReginfoError as exc:
        return Reply(400, f"Bad reginfo body: {exc}"[:120])
    async with impu.mailbox:
        bindings = impu.live_bindings(now)
        if not can_publish_reg(impu.profile, bindings, req.asserted, req.watcher):
            return Reply(403, "Not authorised to publish this registration")
        ended = [b.key for b in bindings.values()
                 for reg in registrations for c in reg.contacts
                 if c.state == "terminated" and uri_equal(c.uri, b.uri)]
    if ended:
        await remove(impu, ended)
    granted = ctx.policy.choose(req.expires)
    etag = hashlib.blake2b(req.body, digest_size=8).hexdigest()
    return Reply(200, "OK", [("Expires", str(granted)), ("SIP-ETag", etag)])


def notify_change(impu: Impu, old: dict[str, Binding], reason: str, ctx: EventContext) -> None:
    """In the IMPU's mailbox, after its bindings changed: one NOTIFY per subscription. When no
    binding is left, that NOTIFY is the last one (terminated) and the subscriptions end."""
    if not impu.subscriptions:
        return
    now = ctx.clock()
    new = impu.live_bindings(now)
    if new:
        jobs = [_notify_job(impu, s, old, new, reason, "active", None, now, ctx)
                for s in impu.subscriptions.values()]
    else:
        jobs = [_notify_job(impu, s, old, new, reason, "terminated",
                            END_REASONS["registration-ended"], now, ctx)
                for s in impu.subscriptions.values()]
        impu.subscriptions.clear()
    _send(impu, jobs, ctx)


def expire_subscriptions(impu: Impu, ctx: EventContext) -> bool:
    """Ends the subscriptions past their expiry with a last NOTIFY; True when any ended."""
    now = ctx.clock()
    ended = [s for s in impu.subscriptions.values() if s.expires_at <= now]
    bindings = impu.live_bindings(now)
    jobs = []
    for sub in ended:
        del impu.subscriptions[sub.key]
        jobs.append(_notify_job(impu, sub, bindings, bindings, "user", "terminated",
                                END_REASONS["expired"], now, ctx))
    _send(impu, jobs, ctx)
    return bool(ended)


def _notify_job(impu: Impu, sub: Subscription, old: dict[str, Binding], new: dict[str, Binding],
                reason: str, state: str, end_reason: str | None, now: float,
                ctx: EventContext) -> tuple[Subscription, NotifyJob]:
    infos = registration_infos(impu.profile, impu.identity, old, new, now, reason)
    body = build_reginfo(sub.version, "full", infos)
    # The sending transport writes the Via (its address, a branch naming it) over this one.
    uri, headers, body = notify_request(sub, body, state, end_reason, now, ctx.scscf_uri,
                                        ctx.scscf_uri, "z9hG4bK")
    return sub, NotifyJob(sub.received, uri, headers, body)


def _send(impu: Impu, jobs: list[tuple[Subscription, NotifyJob]], ctx: EventContext,
          delay: float = 0.0) -> None:
    for sub, job in jobs:
        task = asyncio.get_running_loop().create_task(_deliver(impu, sub, job, ctx, delay))
        ctx.pending.add(task)
        task.add_done_callback(ctx.pending.discard)


async def _deliver(impu: Impu, sub: Subscription, job: NotifyJob, ctx: EventContext,
                   delay: float) -> None:
    await asyncio.sleep(delay)
    try:
        status = await ctx.send_notify(sub.transport, job)
    except Exception as exc:  # the transport is gone: as good as a timeout
        log.warning("NOTIFY to %s not sent: %s", sub.watcher, exc)
        status = 408
    if on_notify_failure(status) and impu.subscriptions.get(sub.key) is sub:
        async with impu.mailbox:
            impu.subscriptions.pop(sub.key, None)
            await ctx.persist(impu)
