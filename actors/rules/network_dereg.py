"""What the HSS asks of registrations here: Registration-Termination (RTR, TS 29.228 6.1.3)
and Push-Profile (PPR, TS 29.228 6.2.2), as rules on one shard's identities.

An RTR or PPR is fanned out to every shard; each applies it to the identities it holds, one
identity per implicit set (its SetUpdates carry the change to the set's other members).
No SAR follows either: the HSS asked, so it knows.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from actors.reg_event.procedures import notify_change
from actors.rules.impu import Impu
from actors.rules.save import SaveContext, registration_ended
from actors.rules.state import RegEvent
from actors.rules.unregister import apply_to_set
from actors.vocabulary import Profile, RegState, SetUpdate
from transport.diameter.cx import DeregistrationReasonCode as Reason
from transport.sip.errors import SipParseError
from transport.sip.uri import parse_uri

# TS 24.229 5.4.1.5: each terminated <contact> of a network de-registration reads
# "deactivated" when the S-CSCF expects the UE to register again, "rejected" when it does not.
# TS 29.228 6.1.3: SERVER_CHANGE forces a new S-CSCF to be picked and NEW_SERVER_ASSIGNED says
# one was (the user stays a subscriber and registers there); PERMANENT_TERMINATION withdraws
# the subscription, and REMOVE_S-CSCF ends what this S-CSCF keeps of a user that is not
# registered. The values are keys of reginfo.REMOVAL_EVENTS.
REMOVAL_REASONS = {
    Reason.PERMANENT_TERMINATION: "rejected",
    Reason.NEW_SERVER_ASSIGNED: "network",
    Reason.SERVER_CHANGE: "network",
    Reason.REMOVE_S_CSCF: "rejected",
}


def canonical(identity: str) -> str | None:
    """A Public-Identity AVP as the key of its IMPU; None when it is no URI."""
    try:
        return parse_uri(identity).aor()
    except SipParseError:
        return None


def hss_targets(held: Mapping[str, Impu], of_impis: Iterable[str],
                listed: Iterable[str] = ()) -> list[str]:
    """The identities of this shard an RTR or PPR acts on, one per implicit set: the default
    identity of each set of the IMPIs named (``of_impis``: their identities here, found by
    the shard's profiles), of only the sets holding a ``listed`` Public-Identity when there
    are any. Only the shard holding the default acts, so a set spread over shards changes
    once; identities not registered here (nor UNREGISTERED) have nothing to change."""
    wanted = {i for i in (canonical(x) for x in listed) if i}
    chosen = []
    for identity in sorted(i for i in of_impis if i in held):
        impu = held[identity]
        members = impu.profile.identities if impu.profile else (identity,)
        if members[0] != identity or impu.state == RegState.NOT_REGISTERED:
            continue
        if not wanted or wanted.intersection(members):
            chosen.append(identity)
    return chosen


async def terminate_registration(impu: Impu, reason: str, ctx: SaveContext) -> str | None:
    """Ends the identity's registration (or UNREGISTERED state) and its set's, for an RTR:
    bindings gone, watchers told with ``reason`` (a REMOVAL_REASONS value) and their
    subscriptions terminated (TS 24.229 5.4.1.5), the record rewritten, and the application
    servers of a registered set told as of a de-registration (5.4.1.5 step 4). The IMPI of the
    set, or None when there was nothing to end (it ended meanwhile)."""
    async with impu.mailbox:
        if impu.state == RegState.NOT_REGISTERED:
            return None
        profile, registered = impu.profile, impu.state == RegState.REGISTERED
        await apply_to_set(impu, profile, RegEvent.HSS_DEREGISTER, None, ctx, reason)
        if registered:
            registration_ended(impu.identity, profile, ctx)
        return (profile.impi if profile else None) or ""


@dataclass(frozen=True, slots=True)
class ProfileChange:
    """What a pushed profile changes in an implicit set (TS 29.228 6.2.2)."""

    kept: tuple[str, ...]  # identities of the new set, which take the new profile
    removed: tuple[str, ...]  # identities the set lost: their bindings go
    barred: frozenset[str]  # identities barred by the new profile and not before


def profile_change(old: Profile, new: Profile) -> ProfileChange:
    removed = tuple(i for i in old.identities if i not in new.identities)
    return ProfileChange(new.identities, removed, newly_barred(old, new))


def newly_barred(old: Profile | None, new: Profile | None) -> frozenset[str]:
    """Identities of the set that ``new`` bars and ``old`` did not (a pushed profile)."""
    if old is None or new is None:
        return frozenset()
    return frozenset(i for i in new.barred if i not in old.barred and i in old.identities)


async def push_profile(impu: Impu, pushed: Profile | None, charging: tuple,
                       ctx: SaveContext) -> bool:
    """A PPR for the identity's implicit set: its user data (``pushed``) and charging function
    addresses, each replacing the set's when the PPR has it. Every identity of the new set
    takes it with the set's state and bindings (an identity added is registered with the
    others), an identity the set lost loses its bindings ("rejected": it is not expected
    back), and watchers hear the new state; a newly barred identity's registration reads
    terminated (TS 24.229 5.4.2.1.2). False when the identity holds no profile to replace."""
    async with impu.mailbox:
        old = impu.profile
        if old is None:
            return False
        profile = replace(pushed or old, charging=charging or old.charging)
        change = profile_change(old, profile)
        state, bindings = impu.state, impu.bindings
        updates = [SetUpdate(i, state, bindings, profile, "user")
                   for i in change.kept if i != impu.identity]
        updates += [SetUpdate(i, RegState.NOT_REGISTERED, {}, None, "rejected")
                    for i in change.removed if i != impu.identity]
        if updates:
            await ctx.propagate(updates)
        if impu.identity in change.removed:
            impu.apply(RegState.NOT_REGISTERED, {}, None)
            reason = "rejected"
        else:
            impu.apply(state, bindings, profile, impu.unreg_until)
            reason = "user"
        if ctx.events:
            notify_change(impu, bindings, reason, ctx.events, change.barred, listed=old)
        await ctx.persist(impu)
        return True
