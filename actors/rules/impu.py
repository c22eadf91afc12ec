"""One public identity's registration state and the rules of REGISTER (pure: no Ray, no sockets).

RFC 3261 10.3 (binding updates, Call-ID/CSeq ordering, ``Contact: *``), RFC 5626 (a new flow of
the same ``+sip.instance``/``reg-id`` replaces the old one), RFC 3327 (Path per binding) and
TS 24.229 5.4.1 (which Server-Assignment-Type a REGISTER needs).
"""
from __future__ import annotations

import asyncio
import marshal
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from actors.auth.challenges import PendingChallenges
from actors.rules.expires import ExpiresPolicy
from actors.rules.set_merge import written_by
from actors.vocabulary import Binding, Profile, RegisterRequest, RegState, Reply
from transport.diameter.cx import ServerAssignmentType as SAT


@dataclass(frozen=True, slots=True)
class RegisterRules:
    expires: ExpiresPolicy
    max_contacts: int = 0
    replace_oldest: bool = False
    path_strict: bool = False
    user_data_always: bool = False
    store_profile_dereg: bool = False
    # A re-REGISTER that changes nothing the HSS must learn sends no SAR while the identity's
    # last SAR is younger than this (seconds); 0: a SAR on every re-REGISTER, as Kamailio.
    sar_reregistration_interval: float = 0.0


# An empty frozenset is 216 bytes and CPython builds a new one each time; most sets bar nothing.
_NONE_BARRED: frozenset[str] = frozenset()


def none_barred(barred) -> frozenset[str]:
    """The barred identities of a profile, the one shared empty set when there are none."""
    return frozenset(barred) if barred else _NONE_BARRED


# Values most bindings repeat (the P-CSCF's Path, Allow, User-Agent) kept once, not per
# binding: each parsed request brings its own copies. Bounded: cleared when full.
_SHARED_MAX = 4096
_shared: dict = {}


def shared(value):
    """The one kept copy of ``value`` (a string or a tuple of strings)."""
    kept = _shared.get(value)
    if kept is None:
        if len(_shared) >= _SHARED_MAX:
            _shared.clear()
        kept = _shared[value] = value
    return kept


def speaks_for_set(identity: str, profile: Profile | None) -> bool:
    """Whether ``identity`` is its implicit set's default IMPU (the first of the set), which
    alone tells the HSS of the set's expiry and counts the set's bindings: every member holds a
    copy of them."""
    return profile is None or not profile.identities or profile.identities[0] == identity


@dataclass(slots=True)
class RegisterPlan:
    """The binding set a REGISTER asks for, the live bindings it ends, and the SAR it needs."""

    bindings: dict[str, Binding]
    assignment: SAT | None
    user_data_already_available: bool
    removed: dict[str, Binding] = field(default_factory=dict)  # echoed with expires=0
    written: dict[str, Binding] = field(default_factory=dict)  # new or changed by the REGISTER


# The subscriptions of every identity that has none: most have none, and an empty dict of its
# own cost each of them 64 bytes.
NO_SUBSCRIPTIONS: Mapping = MappingProxyType({})


class Impu:
    """A virtual actor: one public identity, its bindings and its mailbox (one writer)."""

    __slots__ = ("identity", "state", "bindings", "profile", "subscriptions", "unreg_until",
                 "challenges", "last_reply", "_mailbox", "last_sar_at", "hss_host", "counted")

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.state = RegState.NOT_REGISTERED  # changed only as actors/rules/state.py allows
        self.bindings: dict[str, Binding] = {}
        self.profile: Profile | None = None
        # reg-event Subscription by dialog key (reg_event/subscription.py); changed only
        # through keep_subscription and drop_subscription(s)
        self.subscriptions: Mapping = NO_SUBSCRIPTIONS
        self.unreg_until: float | None = None  # UNREGISTERED: when that state's validity ends
        self.challenges: PendingChallenges | None = None  # vectors of 401s sent, kept in memory
        self.last_reply: bytes | None = None  # keep_reply's packing of the last reply
        self._mailbox: asyncio.Lock | None = None  # made on first use, dropped when idle
        self.last_sar_at: float | None = None  # when the HSS last confirmed a SAR for it
        self.hss_host: str | None = None  # Origin-Host of the HSS whose SAA served it last
        # What the shard's counts hold of it (actors/hosts/tally.py): (registered, contacts,
        # subscriptions)
        self.counted: tuple[int, int, int] = (0, 0, 0)

    @property
    def mailbox(self) -> asyncio.Lock:
        """The one-writer lock of the identity's procedures."""
        if self._mailbox is None:
            self._mailbox = asyncio.Lock()
        return self._mailbox

    def drop_mailbox(self) -> None:
        """Frees the lock (~90 bytes, and most identities are idle): only once nothing holds
        or waits for it, which the caller counts (a released lock reads unlocked before its
        next waiter runs)."""
        self._mailbox = None

    def keep_subscription(self, sub) -> None:
        """Holds a reg-event Subscription under its dialog key (replacing one held there)."""
        if self.subscriptions is NO_SUBSCRIPTIONS:
            self.subscriptions = {}
        self.subscriptions[sub.key] = sub

    def drop_subscription(self, key: str) -> None:
        if key in self.subscriptions:
            del self.subscriptions[key]
            if not self.subscriptions:
                self.subscriptions = NO_SUBSCRIPTIONS

    def drop_subscriptions(self) -> None:
        """Ends every subscription's hold (their last NOTIFYs are the caller's)."""
        self.subscriptions = NO_SUBSCRIPTIONS

    def live_bindings(self, now: float) -> dict[str, Binding]:
        return {k: b for k, b in self.bindings.items() if b.expires_at > now}

    def keep_reply(self, transaction: tuple, reply: Reply) -> None:
        """Kept as one bytes object: a reply lives until Timer J while the identity lives on,
        and the dozen small objects of a Reply freed amid long-lived ones leave the shard's
        heap fragmented (about 700 bytes of RSS per identity registered at speed)."""
        self.last_reply = marshal.dumps((transaction, reply.status, reply.reason,
                                         tuple(reply.headers)))

    def cached_reply(self, transaction: tuple) -> Reply | None:
        if not transaction or self.last_reply is None:
            return None
        kept, status, reason, headers = marshal.loads(self.last_reply)
        return Reply(status, reason, list(headers)) if kept == transaction else None

    def apply(self, state: RegState, bindings: dict[str, Binding], profile: Profile | None,
              unreg_until: float | None = None) -> None:
        """Takes a new state; ``unreg_until`` is the validity of an UNREGISTERED one."""
        self.state = state
        self.bindings = bindings
        self.profile = profile
        self.unreg_until = unreg_until
        self.share_identity_with_profile()

    def share_identity_with_profile(self) -> None:
        """The profile names this identity with a string of its own (parsed from the user
        data, or from a record): it takes the Impu's equal one instead, a copy (~70 B) fewer
        per identity. Harmless to the set's other members sharing the profile: equal strings."""
        profile, identity = self.profile, self.identity
        if profile is None:
            return
        for at, member in enumerate(profile.identities):
            if member == identity:
                if member is not identity:
                    identities = profile.identities
                    profile.identities = identities[:at] + (identity,) + identities[at + 1:]
                return

    def deadlines(self) -> list[float]:
        """Every instant something of this identity ends: a binding, a subscription, the
        UNREGISTERED state. The shard's timer wakes it at the earliest."""
        found = [b.expires_at for b in self.bindings.values()]
        found += [s.expires_at for s in self.subscriptions.values()]
        if self.unreg_until is not None:
            found.append(self.unreg_until)
        if self.challenges is not None and self.challenges.next_expiry is not None:
            found.append(self.challenges.next_expiry)
        return found

    def pending_challenges(self) -> PendingChallenges:
        if self.challenges is None:
            self.challenges = PendingChallenges()
        return self.challenges

    def expire_challenges(self, now: float) -> None:
        """Frees the vectors of challenges left unanswered past auth_data_timeout."""
        if self.challenges is not None:
            self.challenges.expire(now)
            if not self.challenges:
                self.challenges = None


def plan_register(
    impu: Impu, req: RegisterRequest, now: float, rules: RegisterRules
) -> RegisterPlan | Reply:
    """Computes the new binding set of a REGISTER, or the rejection it deserves."""
    if req.path and rules.path_strict and not req.path_supported:
        return Reply(420, "Bad Extension", [("Unsupported", "path")])
    current = impu.live_bindings(now)
    if req.star:
        plan = _remove_all(current, req)
    else:
        plan = _update(current, req, now, rules)
    if isinstance(plan, Reply):
        return plan
    removed = {k: b for k, b in current.items() if k not in plan}
    removes_only = req.star or bool(req.contacts) and not any(c.key in plan for c in req.contacts)
    assignment = _assignment(impu.state, bool(current), bool(plan), removes_only, rules)
    return RegisterPlan(plan, *assignment, removed, written_by(plan, current))


def _remove_all(current: dict[str, Binding], req: RegisterRequest) -> dict[str, Binding] | Reply:
    if req.expires != 0:
        return Reply(400, "Contact * requires Expires: 0")
    for binding in current.values():
        if binding.call_id == req.call_id and req.cseq <= binding.cseq:
            return Reply(400, "Invalid CSeq number")
    return {}


def _update(
    current: dict[str, Binding], req: RegisterRequest, now: float, rules: RegisterRules
) -> dict[str, Binding] | Reply:
    new = dict(current)
    for contact in req.contacts:
        old = new.get(contact.key)
        if old and old.call_id == req.call_id and req.cseq <= old.cseq:
            return Reply(400, "Invalid CSeq number")
        requested = contact.expires if contact.expires is not None else req.expires
        granted = rules.expires.choose(requested)
        if granted == 0:
            new.pop(contact.key, None)
            continue
        new[contact.key] = Binding(
            uri=contact.uri,
            key=contact.key,
            expires_at=now + granted,
            q=contact.q,
            instance=contact.instance,
            reg_id=contact.reg_id,
            params=contact.params,
            call_id=req.call_id,
            cseq=req.cseq,
            path=shared(req.path),
            registered_at=old.registered_at if old else now,
            received=shared(req.received),  # a P-CSCF's address, one for all behind it
            user_agent=req.user_agent and shared(req.user_agent),
            allow=shared(contact.allow or req.allow),
            visited_network=req.visited_network and shared(req.visited_network),
            icid=req.icid,
        )
    if rules.max_contacts and len(new) > rules.max_contacts:
        if not rules.replace_oldest:
            return Reply(403, "Too many registered contacts")
        asked = {c.key for c in req.contacts}
        oldest_first = sorted(
            (b for b in new.values() if b.key not in asked), key=lambda b: b.registered_at
        )
        for binding in oldest_first[: len(new) - rules.max_contacts]:
            del new[binding.key]
        if len(new) > rules.max_contacts:
            return Reply(403, "Too many registered contacts")
    return new


def _assignment(
    state: RegState, had_bindings: bool, has_bindings: bool, removes_only: bool,
    rules: RegisterRules
) -> tuple[SAT | None, bool]:
    """TS 24.229 5.4.1: the Server-Assignment-Type and User-Data-Already-Available of a REGISTER.
    Removing some of the bindings needs none (Kamailio sends none either); removing all, or
    asking to on an identity that holds none, is a de-registration the HSS hears of, since
    it may still name this S-CSCF (TS 24.229 5.4.1.4)."""
    registered = state == RegState.REGISTERED and had_bindings
    if has_bindings:
        if removes_only:
            return None, False
        if registered:
            return SAT.RE_REGISTRATION, not rules.user_data_always
        return SAT.REGISTRATION, False
    if registered or removes_only:
        if rules.store_profile_dereg:
            return SAT.USER_DEREGISTRATION_STORE_SERVER_NAME, False
        return SAT.USER_DEREGISTRATION, False
    return None, False


def ok_headers(
    bindings: dict[str, Binding], req: RegisterRequest, profile: Profile | None, now: float,
    service_route: str, removed: dict[str, Binding] | None = None,
) -> list[tuple[str, str]]:
    """Headers of the 200 OK: every current binding with its remaining expiry (RFC 3261 10.3),
    every binding the REGISTER ended with ``expires=0`` (as Kamailio answers: a P-CSCF drops
    its copy, and its security associations, only on seeing that), the request's Path
    (RFC 3327), Service-Route (RFC 3608), P-Associated-URI (RFC 3455) and the SAA's
    P-Charging-Function-Addresses."""
    headers = [("Contact", contact_value(b, now)) for b in ordered(bindings.values())]
    headers += [("Contact", contact_value(b, now, 0)) for b in ordered((removed or {}).values())]
    headers += [("Path", p) for p in req.path]
    if bindings:
        headers.append(("Service-Route", service_route))
        if profile:
            uris = p_associated_uris(profile)
            if uris:
                headers.append(("P-Associated-URI", ", ".join(uris)))
            addresses = profile.charging_function_addresses()
            if addresses:  # TS 24.229 5.4.1.2.2
                headers.append(("P-Charging-Function-Addresses", addresses))
    return headers


def p_associated_uris(profile: Profile) -> list[str]:
    """The set's unbarred identities as the HSS wrote them, display names and ``;user=phone``
    kept (the keys of the set are canonical; these are what the UE is told)."""
    if profile.written:
        return list(profile.written)
    return [f"<{uri}>" for uri in profile.associated_uris()]


def name_addr(display_name: str | None, uri: str) -> str:
    """A P-Associated-URI value: the display name as an RFC 3261 quoted-string, if any."""
    if not display_name:
        return f"<{uri}>"
    quoted = display_name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{uri}>'


def ordered(bindings) -> list[Binding]:
    """Highest q first (absent q counts as 1.0 for the caller's purposes), then most recent."""
    return sorted(bindings, key=lambda b: (-float(b.q or 1.0), -b.registered_at))


def contact_value(binding: Binding, now: float, expires: int | None = None) -> str:
    """The binding as a Contact value; ``expires`` None: its remaining seconds."""
    parts = [f"<{binding.uri}>"]
    for name, value in binding.params:
        parts.append(name if value is None else f"{name}={value}")
    parts.append(f"expires={binding.remaining(now) if expires is None else expires}")
    return ";".join(parts)
