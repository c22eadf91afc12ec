"""Registration changes the network makes: ``unregister``, ``assign_server_unreg`` and the end
of the UNREGISTERED state it gives.

Like save(), each runs in the identity's mailbox and gets its I/O (SAR, updates to the other
members of the implicit set, the store) through the SaveContext, so it runs the same in a
shard actor and in a unit test. Every member of a set assigned UNREGISTERED keeps the
validity's end in its own record, and the timer of its own shard ends it there.
"""
from __future__ import annotations

import logging

from actors.reg_event.procedures import notify_change
from actors.rules.impu import Impu
from actors.rules.save import SaveContext, inform_hss, registration_ended
from actors.rules.state import RegEvent, next_state
from actors.vocabulary import (
    FOUND,
    INTERNAL_ERROR,
    NOT_FOUND,
    Deregistration,
    Profile,
    RegState,
    SetUpdate,
)
from transport.diameter.cx import SaaResult
from transport.diameter.cx import ServerAssignmentType as SAT
from transport.diameter.router import CxUnavailable
from transport.diameter.user_data import UserDataError

log = logging.getLogger(__name__)


async def unregister(impu: Impu, ctx: SaveContext) -> Deregistration:
    """Network-initiated de-registration (TS 24.229 5.4.1.5): the identity and the rest of its
    implicit set lose every binding, then the HSS hears SAR ADMINISTRATIVE_DEREGISTRATION, the
    type TS 29.228 6.1.2 gives an S-CSCF that de-registers a user and keeps no profile. Reg
    event watchers see the contacts "deactivated" (the UE may register again). The bindings go
    even when the HSS cannot be told: the operator asked for it, and the SAR is sent again
    later (``retry_sar``)."""
    async with impu.mailbox:
        if impu.state != RegState.REGISTERED:
            return Deregistration(NOT_FOUND, 0, "")
        profile = impu.profile
        removed = len(impu.live_bindings(ctx.clock()))
        await apply_to_set(impu, profile, RegEvent.NETWORK_DEREGISTER, None, ctx, "network")
        registration_ended(impu.identity, profile, ctx)
        saa = await inform_hss(ctx.sar_request(impu.identity, profile.impi if profile else None,
                                               SAT.ADMINISTRATIVE_DEREGISTRATION), ctx)
        return Deregistration(FOUND, removed, saa.description if saa else "not sent: HSS unreachable")


async def assign_server_unreg(impu: Impu, ctx: SaveContext) -> int:
    """A request for an identity that is not registered (TS 24.229 5.4.3.3, 5.4.3.2): SAR
    UNREGISTERED_USER fetches the profile, and the identity with its implicit set is kept in
    the UNREGISTERED state so that the request can be served. 1 when the identity can be
    served (also when it already was), -1 when the HSS refuses it or it is barred, -3 when the
    HSS cannot be reached or sends unusable user data."""
    async with impu.mailbox:
        if impu.state != RegState.NOT_REGISTERED:
            return FOUND
        try:
            saa = await ctx.sar(ctx.sar_request(impu.identity, None, SAT.UNREGISTERED_USER))
        except CxUnavailable as exc:
            log.warning("unregistered-user assignment of %s failed: %s", impu.identity, exc)
            return INTERNAL_ERROR
        if not saa.success:
            return NOT_FOUND
        profile = _profile(saa, ctx)
        if profile is None:
            return INTERNAL_ERROR
        served = impu.identity in profile.identities or profile.wildcard_for(impu.identity)
        if not served or impu.identity in profile.barred:
            return NOT_FOUND
        await apply_to_set(impu, profile, RegEvent.ASSIGN_UNREGISTERED, profile, ctx)
        return FOUND


async def lapse_unregistered(impu: Impu, now: float, ctx: SaveContext) -> bool:
    """The UNREGISTERED state outlived its validity (by ``now``): the profile is dropped. No
    SAR: the HSS keeps naming this S-CSCF, so the next request for the user comes back and
    assigns again. Each member of the set lapses by its own timer, so nothing is propagated."""
    async with impu.mailbox:
        if impu.state != RegState.UNREGISTERED or (impu.unreg_until or 0.0) > now:
            return False
        impu.apply(next_state(impu.state, RegEvent.UNREGISTERED_VALIDITY_LAPSED), {}, None)
        await ctx.persist(impu)
        return True


async def apply_to_set(impu: Impu, members: Profile | None, event: RegEvent,
                        profile: Profile | None, ctx: SaveContext, reason: str = "user") -> None:
    """Every member of the implicit set shares one registration state (TS 23.228 5.2.1a).
    ``reason`` tells watchers why bindings went (a key of reginfo.REMOVAL_EVENTS)."""
    state = next_state(impu.state, event)
    others = [i for i in members.identities if i != impu.identity] if members else []
    if others:
        await ctx.propagate([SetUpdate(i, state, {}, profile, reason) for i in others])
    old = impu.bindings
    impu.apply(state, {}, profile, unreg_until(state, ctx))
    if ctx.events:  # before the write, as in save(): the subscriptions' versions go with it
        notify_change(impu, old, reason, ctx.events, listed=members)
    await ctx.persist(impu)


def unreg_until(state: RegState, ctx: SaveContext) -> float | None:
    """When an identity entering ``state`` now leaves it by itself: only UNREGISTERED does."""
    return ctx.clock() + ctx.unreg_validity if state == RegState.UNREGISTERED else None


def _profile(saa: SaaResult, ctx: SaveContext) -> Profile | None:
    if not saa.user_data:
        log.warning("SAA for an unregistered user came without user data")
        return None
    try:
        return ctx.profile(saa.user_data)
    except UserDataError as exc:
        log.warning("unusable user data from the HSS: %s", exc)
        return None
