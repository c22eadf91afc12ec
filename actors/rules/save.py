"""``save()`` of ims_registrar_scscf: one REGISTER through plan, SAR, implicit set and 200 OK.

The I/O it needs (SAR to the HSS, updates to the other IMPUs of the implicit set) comes in as
coroutines, so this runs the same in a shard actor and in a unit test.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from actors.reg_event.procedures import EventContext, notify_change
from actors.rules.impu import Impu, RegisterPlan, RegisterRules, ok_headers, plan_register
from actors.vocabulary import (
    RETRY_AFTER,
    Binding,
    Profile,
    RegisterRequest,
    RegState,
    Reply,
    StoreError,
)
from transport.diameter.cx import SaaResult, SarRequest
from transport.diameter.cx import ServerAssignmentType as SAT
from transport.diameter.router import CxUnavailable
from transport.diameter.user_data import UserDataError, parse_user_data
from transport.sip.errors import SipParseError
from transport.sip.uri import parse_uri

# (other members of the set, their new state, bindings and profile, why bindings went)
Propagate = Callable[[list[str], RegState, dict[str, Binding], Profile | None, str], Awaitable[None]]


@dataclass
class SaveContext:
    rules: RegisterRules
    scscf_name: str
    dest_realm: str
    sar: Callable[[SarRequest], Awaitable[SaaResult]]
    propagate: Propagate
    persist: Callable[[Impu], Awaitable[None]]  # write-through: durable before the reply
    clock: Callable[[], float]
    user_data_xsd: str | None = None
    user_data_dtd: str | None = None
    support_wildcard_psi: bool = False
    events: EventContext | None = None  # the reg event package: NOTIFYs on every change

    def sar_request(self, identity: str, impi: str | None, assignment: SAT,
                    user_data_already_available: bool = False) -> SarRequest:
        """A SAR from this S-CSCF (Server-Name, Destination-Realm) about one identity."""
        return SarRequest(public_identity=identity, user_name=impi, server_name=self.scscf_name,
                          assignment_type=assignment, destination_realm=self.dest_realm,
                          user_data_already_available=user_data_already_available)

    def profile(self, user_data: str) -> Profile:
        return profile_from_user_data(user_data, self.user_data_xsd, self.user_data_dtd,
                                      self.support_wildcard_psi)

    @property
    def service_route(self) -> str:
        scheme, rest = self.scscf_name.split(":", 1)
        return f"<{scheme}:orig@{rest};lr>"


async def save(impu: Impu, req: RegisterRequest, ctx: SaveContext) -> Reply:
    """Processes one REGISTER in the IMPU's mailbox; a retransmission gets the same reply."""
    async with impu.mailbox:
        cached = impu.cached_reply(req.transaction)
        if cached is not None:
            return cached
        reply = await _save(impu, req, ctx)
        impu.last_reply = (req.transaction, reply)
        return reply


async def _save(impu: Impu, req: RegisterRequest, ctx: SaveContext) -> Reply:
    now = ctx.clock()
    plan = plan_register(impu, req, now, ctx.rules)
    if isinstance(plan, Reply):
        return plan
    if plan.assignment is None:  # removing bindings of an identity that has none
        return Reply(200, "OK", ok_headers({}, req, None, now, ctx.service_route))
    impi = req.impi or (impu.profile.impi if impu.profile else None)
    try:
        saa = await ctx.sar(ctx.sar_request(req.aor, impi, plan.assignment,
                                            plan.user_data_already_available))
    except CxUnavailable as exc:
        return Reply(503, f"HSS unavailable: {exc}"[:100], [("Retry-After", RETRY_AFTER)])
    if not saa.success:
        return _sar_rejection(saa)
    profile = impu.profile
    if saa.user_data:
        try:
            profile = ctx.profile(saa.user_data)
        except UserDataError:
            return Reply(500, "Invalid user data from HSS")
    if profile is None:
        profile = Profile(impi, (req.aor,), frozenset(), None)
    if plan.bindings:
        refusal = None
        if req.aor not in profile.identities:
            refusal = Reply(403, "Identity not in the HSS profile")
        elif req.aor in profile.barred:
            refusal = Reply(403, "Public identity barred")
        if refusal:
            if plan.assignment == SAT.REGISTRATION:  # the HSS just recorded a registration
                await _undo_registration(req, impi, ctx)
            return refusal
    state, kept = _after(plan, profile, ctx.rules)
    others = [i for i in profile.identities if i != impu.identity]
    if others:
        try:
            await ctx.propagate(others, state, plan.bindings, kept, "user")
        except Exception:  # another shard unavailable: tell the UE to retry, apply nothing here
            return Reply(503, "Implicit set update failed", [("Retry-After", RETRY_AFTER)])
    before = (impu.state, impu.bindings, impu.profile)
    impu.apply(state, plan.bindings, kept)
    if ctx.events:  # before the write, so the subscriptions' new versions are stored with it
        notify_change(impu, before[1], "user", ctx.events)
    try:
        await ctx.persist(impu)
    except StoreError:
        impu.apply(*before)
        return Reply(503, "Registration store unavailable", [("Retry-After", RETRY_AFTER)])
    return Reply(200, "OK", ok_headers(plan.bindings, req, kept, now, ctx.service_route))


def _after(plan: RegisterPlan, profile: Profile, rules: RegisterRules) -> tuple[RegState, Profile | None]:
    if plan.bindings:
        return RegState.REGISTERED, profile
    if rules.store_profile_dereg:
        return RegState.NOT_REGISTERED, profile
    return RegState.NOT_REGISTERED, None


async def _undo_registration(req: RegisterRequest, impi: str | None, ctx: SaveContext) -> None:
    """A REGISTER refused after its SAR REGISTRATION succeeded: the HSS must not keep this
    S-CSCF as the user's registered one, so it hears USER_DEREGISTRATION (best effort)."""
    try:
        await ctx.sar(ctx.sar_request(req.aor, impi, SAT.USER_DEREGISTRATION))
    except CxUnavailable:
        pass  # the HSS will learn at the user's next registration


# Experimental-Result codes of TS 29.229 6.2.2 that say the user may not register here.
_FORBIDDEN = {5001: "User unknown", 5002: "Identities don't match", 5003: "Identity not registered",
              5004: "Roaming not allowed", 5007: "Error in assignment type"}


def _sar_rejection(saa: SaaResult) -> Reply:
    code = saa.experimental_result_code or saa.result_code or 0
    if code in _FORBIDDEN:
        return Reply(403, _FORBIDDEN[code])
    if 3000 <= code < 5000:  # protocol errors and transient failures: worth a retry
        return Reply(503, f"HSS answered {code}", [("Retry-After", RETRY_AFTER)])
    return Reply(403, f"Server assignment rejected ({code})")


def profile_from_user_data(xml: str, xsd_path: str | None = None, dtd_path: str | None = None,
                           wildcards: bool = False) -> Profile:
    """The implicit registration set of an SAA's User-Data: every public user identity, default
    first. Wildcarded PSIs are patterns, not identities one registers: with ``wildcards`` (the
    guide's support_wildcardPSI) they are kept, so identities under them can be served."""
    subscription = parse_user_data(xml, xsd_path, dtd_path)
    identities: list[str] = []
    barred: set[str] = set()
    patterns: list[str] = []
    for profile in subscription.service_profiles:
        for pid in profile.public_identities:
            if pid.wildcarded_psi:
                if wildcards:
                    patterns.append(pid.wildcarded_psi)
                continue
            try:
                aor = parse_uri(pid.identity).aor()
            except SipParseError as exc:
                raise UserDataError(f"bad public identity {pid.identity!r}: {exc.reason}") from exc
            if aor not in identities:
                identities.append(aor)
            if pid.barred:
                barred.add(aor)
    if not identities and not patterns:
        raise UserDataError("user data lists no public identity")
    return Profile(subscription.private_id, tuple(identities), frozenset(barred), xml,
                   tuple(patterns))
