"""The reg event package on an IMPU: the guide's subscribe_to_reg / publish_reg and the NOTIFYs
every registration change sends (TS 24.229 5.4.2, RFC 3680). Pure apart from the I/O it is
handed: writing the IMPU through to the store.

NOTIFYs of one IMPU are built in its mailbox, so versions and CSeqs are assigned in order, and
handed as data (OutgoingNotify) to ``EventContext.post``: the shard delivers them outside the
mailbox, so a slow watcher never holds up a REGISTER, one dialog's in the order they were built.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from actors.reg_event.limits import SubscriptionLimits, refuse_new
from actors.reg_event.reginfo import ReginfoError, build_reginfo, parse_reginfo, registration_infos
from actors.reg_event.subscription import (
    END_REASONS,
    Subscription,
    can_publish_reg,
    can_subscribe_to_reg,
    dialog_contact,
    next_hop,
    notify_request,
    refresh,
    subscription_key,
)
from actors.rules.expires import ExpiresPolicy
from actors.rules.impu import Impu
from actors.vocabulary import Binding, NotifyJob, Profile, PublishRequest, Reply, SubscribeRequest
from transport.sip.errors import SipParseError
from transport.sip.uri import parse_uri, uri_equal

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutgoingNotify:
    """A NOTIFY built for a subscription, for the shard to deliver through ``sub.transport``."""

    sub: Subscription
    job: NotifyJob
    # The NOTIFY of a SUBSCRIBE: it waits for that SUBSCRIBE's 200 OK, which makes the dialog at
    # the watcher. One before the 200 is legal (RFC 6665 4.1.2.4), but UAs, sipp among them,
    # mishandle it.
    after_reply: bool = False


@dataclass
class EventContext:
    policy: ExpiresPolicy
    scscf_uri: str  # our Contact in reg-event dialogs, with the presentity as a parameter
    post: Callable[[list[OutgoingNotify]], None]  # hands NOTIFYs to the shard, in build order
    persist: Callable[[Impu], Awaitable[None]]
    clock: Callable[[], float]
    limits: SubscriptionLimits = SubscriptionLimits()


async def subscribe_to_reg(impu: Impu, req: SubscribeRequest, ctx: EventContext) -> Reply:
    """subscribe_to_reg (with can_subscribe_to_reg): 200 OK and a full-state NOTIFY, or a
    rejection: 480 nothing registered, 481 unknown dialog, 403 not the UE nor its P-CSCF,
    403 or 503 over the subscription limits (limits.py)."""
    async with impu.mailbox:
        now = ctx.clock()
        bindings = impu.live_bindings(now)
        key = subscription_key(req.call_id, req.from_tag, req.to_tag, req.event_id)
        sub = impu.subscriptions.get(key)
        if sub is None and not req.initial:
            return Reply(481, "Subscription does not exist")
        if not bindings:
            return Reply(480, "Temporarily Unavailable")  # TS 24.229 5.4.2.1.1 step 0
        if not can_subscribe_to_reg(impu.profile, bindings, req.asserted):
            return Reply(403, "Not authorised to subscribe to this registration")
        if sub is None and req.expires != 0:  # a fetch (Expires 0) opens nothing to count
            refused = refuse_new(ctx.limits, impu.subscriptions.values(), req.watcher, now)
            if refused is not None:
                return refused
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
            impu.keep_subscription(sub)
            notify = _notify(impu, sub, bindings, bindings, "user", "active", None, now, ctx)
        else:  # unsubscribe, or a one-time fetch: a last full state, then it ends
            impu.drop_subscription(key)
            notify = _notify(impu, sub, bindings, bindings, "user", "terminated",
                             END_REASONS["unsubscribed"], now, ctx)
        # Posted before the write: a set update arriving meanwhile (it takes no mailbox) may
        # build this dialog's next NOTIFY, which must queue behind this one.
        ctx.post([OutgoingNotify(notify.sub, notify.job, after_reply=True)])
        await ctx.persist(impu)
        contact = dialog_contact(ctx.scscf_uri, impu.identity)
        return Reply(200, "OK", [("Expires", str(granted)), ("Contact", f"<{contact}>")])


async def publish_reg(impu: Impu, req: PublishRequest, now: float, ctx: EventContext,
                  remove: Callable[[Impu, list[str]], Awaitable[None]]) -> Reply:
    """publish_reg (with can_publish_reg): contacts the reginfo body marks terminated lose their
    binding; ``remove`` drops them, writes through and notifies, as any de-registration."""
    try:
        terminated = [parse_uri(c.uri) for reg in parse_reginfo(req.body) for c in reg.contacts
                      if c.state == "terminated"]
    except ReginfoError as exc:
        return Reply(400, f"Bad reginfo body: {exc}"[:120])
    except SipParseError:
        return Reply(400, "Bad reginfo body: a contact URI that does not parse")
    async with impu.mailbox:
        bindings = impu.live_bindings(now)
        if not can_publish_reg(impu.profile, bindings, req.asserted):
            return Reply(403, "Not authorised to publish this registration")
        ended = [b.key for b in bindings.values() for uri in terminated if uri_equal(uri, b.uri)]
    if ended:
        await remove(impu, ended)
    granted = ctx.policy.choose(req.expires)
    etag = hashlib.blake2b(req.body, digest_size=8).hexdigest()
    return Reply(200, "OK", [("Expires", str(granted)), ("SIP-ETag", etag)])


def notify_change(impu: Impu, old: dict[str, Binding], reason: str, ctx: EventContext,
                  ended: frozenset[str] = frozenset(), listed: Profile | None = None) -> None:
    """In the IMPU's mailbox, after its bindings (or profile) changed: one NOTIFY per
    subscription. When no binding is left, that NOTIFY is the last one (terminated) and the
    subscriptions end. ``ended``: identities of the set barred just now (registration_infos).
    ``listed``: the set whose identities the NOTIFY shows when the identity no longer holds a
    profile, gone with its bindings (TS 24.229 5.4.1.5: every identity de-registered)."""
    shown = impu.profile or listed
    if not impu.subscriptions:
        return
    now = ctx.clock()
    new = impu.live_bindings(now)
    if new:
        notifies = _each_built(impu, impu.subscriptions.values(), lambda s: _notify(
            impu, s, old, new, reason, "active", None, now, ctx, ended, shown))
    else:
        notifies = _each_built(impu, impu.subscriptions.values(), lambda s: _notify(
            impu, s, old, new, reason, "terminated", END_REASONS["registration-ended"], now,
            ctx, ended, shown))
        impu.drop_subscriptions()
    ctx.post(notifies)


def expire_subscriptions(impu: Impu, ctx: EventContext) -> bool:
    """Ends the subscriptions past their expiry with a last NOTIFY; True when any ended."""
    now = ctx.clock()
    ended = [s for s in impu.subscriptions.values() if s.expires_at <= now]
    bindings = impu.live_bindings(now)
    for sub in ended:
        impu.drop_subscription(sub.key)
    notifies = _each_built(impu, ended, lambda s: _notify(
        impu, s, bindings, bindings, "user", "terminated", END_REASONS["expired"], now, ctx))
    if notifies:
        ctx.post(notifies)
    return bool(ended)


async def end_subscription(impu: Impu, sub: Subscription, ctx: EventContext) -> bool:
    """A NOTIFY of ``sub`` failed for good (subscription.on_notify_failure): the subscription
    is dropped, unless it already ended or another took its place. True when it was dropped."""
    async with impu.mailbox:
        if impu.subscriptions.get(sub.key) is not sub:
            return False
        impu.drop_subscription(sub.key)
        await ctx.persist(impu)
        return True


def _each_built(impu: Impu, subs: Iterable[Subscription],
                build: Callable[[Subscription], OutgoingNotify]) -> list[OutgoingNotify]:
    """The NOTIFY of each subscription. One that cannot be built (a bug: input that would
    break it is refused) is logged naming the identity and left out, so the change it reports
    (a save, an expiry, a set update) still stands and is stored; the next NOTIFY is full state."""
    notifies = []
    for sub in subs:
        try:
            notifies.append(build(sub))
        except Exception:
            log.exception("NOTIFY of %s to %s not built", impu.identity, sub.watcher)
    return notifies


def _notify(impu: Impu, sub: Subscription, old: dict[str, Binding], new: dict[str, Binding],
            reason: str, state: str, end_reason: str | None, now: float,
            ctx: EventContext, ended: frozenset[str] = frozenset(),
            shown: Profile | None = None) -> OutgoingNotify:
    infos = registration_infos(impu.profile or shown, impu.identity, old, new, now, reason,
                               ended)
    body = build_reginfo(sub.version, "full", infos)
    # From is the dialog's local URI, the presentity (RFC 3261 12.1.1); Contact the URI that
    # brings the watcher's in-dialog requests back to this dialog.
    uri, headers, body = notify_request(sub, body, state, end_reason, now, sub.presentity,
                                        dialog_contact(ctx.scscf_uri, sub.presentity))
    return OutgoingNotify(sub, NotifyJob(sub.received, uri, headers, body,
                                         destination=next_hop(sub)))
