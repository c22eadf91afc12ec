"""Expiry of bindings (pure apart from the SAR and the store write it is handed).

Every member of an implicit set holds the set's bindings, so every member's timer fires; only
the default IMPU (the first of the set) tells the HSS, so one expiry is one SAR. TS 29.228
6.1.2 names that SAR TIMEOUT_DEREGISTRATION (Kamailio sends USER_DEREGISTRATION here).
"""
from __future__ import annotations

from actors.reg_event.procedures import notify_change
from actors.rules.impu import Impu, speaks_for_set
from actors.rules.save import SaveContext, inform_hss, registration_ended
from actors.rules.state import RegEvent, next_state
from actors.vocabulary import RegState
from transport.diameter.cx import ServerAssignmentType as SAT


async def expire_bindings(impu: Impu, now: float, ctx: SaveContext) -> list[float]:
    """Drops the identity's expired bindings in its mailbox; returns, for each, how late it
    went (seconds past its expiry)."""
    async with impu.mailbox:
        live = impu.live_bindings(now)
        lags = [now - b.expires_at for k, b in impu.bindings.items() if k not in live]
        if not lags:
            return lags
        was_registered = impu.state == RegState.REGISTERED
        profile, old = impu.profile, impu.bindings
        if live:  # still registered, with fewer bindings
            impu.apply(impu.state, live, profile)
        else:
            keep = profile if ctx.rules.store_profile_dereg else None
            impu.apply(next_state(impu.state, RegEvent.EXPIRE), {}, keep)
        if ctx.events:
            notify_change(impu, old, "expired", ctx.events)
        await ctx.persist(impu)
        if not live and was_registered and speaks_for_set(impu.identity, profile):
            registration_ended(impu.identity, profile, ctx)
            await _timeout_sar(impu.identity, profile.impi if profile else None, ctx)
        return lags


async def _timeout_sar(identity: str, impi: str | None, ctx: SaveContext) -> None:
    """The binding is gone either way; a SAR the HSS could not take is sent again later."""
    assignment = (SAT.TIMEOUT_DEREGISTRATION_STORE_SERVER_NAME if ctx.rules.store_profile_dereg
                  else SAT.TIMEOUT_DEREGISTRATION)
    await inform_hss(ctx.sar_request(identity, impi, assignment), ctx)
