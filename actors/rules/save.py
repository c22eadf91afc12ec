"""``save()`` of ims_registrar_scscf: one REGISTER through plan, SAR, implicit set and 200 OK.

The I/O it needs (SAR to the HSS, updates to the other IMPUs of the implicit set) comes in as
coroutines, so this runs the same in a shard actor and in a unit test.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import cached_property

from actors.auth.procedures import (
    AuthContext,
    Authorized,
    AuthRequest,
    Forbidden,
    authorize_register,
)
from actors.reg_event.procedures import EventContext, notify_change
from actors.rules.charging import charging_addresses
from actors.rules.impu import (
    Impu,
    RegisterPlan,
    RegisterRules,
    name_addr,
    none_barred,
    ok_headers,
    plan_register,
)
from actors.rules.set_merge import merged
from actors.rules.state import RegEvent, next_state
from actors.rules.third_party import RegistrationChange, registration_change
from actors.vocabulary import (
    RETRY_AFTER,
    Profile,
    RegisterRequest,
    RegState,
    Reply,
    SetUpdate,
    StoreError,
)
from transport.diameter.cx import ResultCode, SaaResult, SarRequest
from transport.diameter.cx import ServerAssignmentType as SAT
from transport.diameter.router import CxUnavailable
from transport.diameter.user_data import UserDataError, parse_user_data
from transport.sip.errors import SipParseError
from transport.sip.uri import parse_uri

log = logging.getLogger(__name__)

# The other members of the implicit set take the set's new state, wherever their shards are.
Propagate = Callable[[list[SetUpdate]], Awaitable[None]]


@dataclass
class SaveContext:
    rules: RegisterRules
    scscf_name: str
    dest_realm: str
    sar: Callable[[SarRequest], Awaitable[SaaResult]]
    propagate: Propagate
    persist: Callable[[Impu], Awaitable[None]]  # write-through: durable before the reply
    clock: Callable[[], float]
    unreg_validity: float  # seconds an UNREGISTERED assignment lasts (registrar.unreg_validity)
    user_data_xsd: str | None = None
    user_data_dtd: str | None = None
    support_wildcard_psi: bool = False
    events: EventContext | None = None  # the reg event package: NOTIFYs on every change
    auth: AuthContext | None = None  # the [auth] procedures; None: no authentication
    # A SAR the HSS must still hear (it missed a de-registration): sent again later by the
    # host's retry queue. None: such a SAR is only logged.
    retry_sar: Callable[[SarRequest], None] | None = None
    # A registration began, was refreshed or ended: the host sends the third-party REGISTERs
    # its iFCs ask for, outside the mailbox. None: none are sent.
    registration_changed: Callable[[RegistrationChange], None] | None = None

    def sar_request(self, identity: str, impi: str | None, assignment: SAT,
                    user_data_already_available: bool = False) -> SarRequest:
        """A SAR from this S-CSCF (Server-Name, Destination-Realm) about one identity."""
        return SarRequest(public_identity=identity, user_name=impi, server_name=self.scscf_name,
                          assignment_type=assignment, destination_realm=self.dest_realm,
                          user_data_already_available=user_data_already_available)

    def profile(self, user_data: str) -> Profile:
        return profile_from_user_data(user_data, self.user_data_xsd, self.user_data_dtd,
                                      self.support_wildcard_psi)

    @cached_property
    def service_route(self) -> str:
        """One string for every 200 OK: each reply kept for retransmissions shares it."""
        scheme, rest = self.scscf_name.split(":", 1)
        return f"<{scheme}:orig@{rest};lr>"


async def save(impu: Impu, req: RegisterRequest, ctx: SaveContext) -> Reply:
    """Processes one REGISTER from a UE in the IMPU's mailbox: authentication first (as
    ims_auth's ims_www_authorize / ims_www_challenge before Kamailio's save()), then the
    bindings. A retransmission gets the same reply."""
    async with impu.mailbox:
        cached = impu.cached_reply(req.transaction)
        if cached is not None:
            return cached
        reply = await _authenticate(impu, req, ctx) or await _save(impu, req, ctx)
        impu.keep_reply(req.transaction, reply)
        return reply


async def save_unauthenticated(impu: Impu, req: RegisterRequest, ctx: SaveContext) -> Reply:
    """A binding change the registrar itself makes (a PUBLISH ending bindings): no UE to
    challenge, no retransmission to absorb."""
    async with impu.mailbox:
        return await _save(impu, req, ctx)


async def _authenticate(impu: Impu, req: RegisterRequest, ctx: SaveContext) -> Reply | None:
    """None when the REGISTER may go on, else the 401, 403, 400 or 503 to answer."""
    if ctx.auth is None:
        return None
    profile = impu.profile
    registered_impi = profile.impi if impu.state == RegState.REGISTERED and profile else None
    outcome = await authorize_register(
        impu.pending_challenges(), AuthRequest.of_register(req),
        registered_with_impi=registered_impi is not None and registered_impi == req.impi,
        now=ctx.clock(), context=ctx.auth)
    impu.expire_challenges(ctx.clock())
    if isinstance(outcome, Authorized):
        return None
    if isinstance(outcome, Forbidden) and outcome.assignment is not None:
        # TS 29.228 6.1.2: the HSS hears of a wrong answer (AUTHENTICATION_FAILURE)
        await inform_hss(ctx.sar_request(req.aor, req.impi, outcome.assignment), ctx)
    return outcome.reply()


async def _save(impu: Impu, req: RegisterRequest, ctx: SaveContext) -> Reply:
    now = ctx.clock()
    plan = plan_register(impu, req, now, ctx.rules)
    if isinstance(plan, Reply):
        return plan
    if not plan.bindings or plan.assignment is None:
        return await _remove(impu, req, plan, ctx)
    impi = req.impi or (impu.profile.impi if impu.profile else None)
    profile, user_data, charging = impu.profile, None, ()
    if _sar_needed(impu, req, plan, now, ctx.rules):
        try:
            saa = await ctx.sar(ctx.sar_request(req.aor, impi, plan.assignment,
                                                plan.user_data_already_available))
        except CxUnavailable as exc:
            return Reply(503, f"HSS unavailable: {exc}"[:100], [("Retry-After", RETRY_AFTER)])
        if not saa.success:
            return _sar_rejection(saa)
        impu.last_sar_at, user_data = now, saa.user_data
        charging = charging_addresses(saa.charging_information)
    if user_data:
        try:
            profile = ctx.profile(user_data)
        except UserDataError:
            return Reply(500, "Invalid user data from HSS")
    if profile is None:
        profile = Profile(impi, (req.aor,), frozenset(), None)
    if charging:  # kept with the profile, so that every refresh answers with it
        profile = replace(profile, charging=charging)
    if plan.bindings:
        refusal = None
        if req.aor not in profile.identities:
            refusal = Reply(403, "Identity not in the HSS profile")
        elif req.aor in profile.barred:
            refusal = Reply(403, "Public identity barred")
        if refusal:
            if plan.assignment == SAT.REGISTRATION:  # it must not keep this S-CSCF as the user's
                await inform_hss(ctx.sar_request(req.aor, impi, SAT.USER_DEREGISTRATION), ctx)
            return refusal
    return await _commit(impu, req, plan, profile, ctx)


async def _remove(impu: Impu, req: RegisterRequest, plan: RegisterPlan, ctx: SaveContext) -> Reply:
    """A REGISTER that only ends bindings (TS 24.229 5.4.1.4): they go first, whatever the HSS
    says or whether it answers, so calls stop forking to a phone that powered off; the HSS
    then hears of a de-registration, again later if it could not be reached."""
    if plan.removed:
        reply = await _commit(impu, req, plan, impu.profile, ctx)
    else:  # nothing of ours to end
        reply = Reply(200, "OK", ok_headers({}, req, None, ctx.clock(), ctx.service_route))
    # A device registering through another member meanwhile keeps the set registered.
    if reply.status == 200 and plan.assignment is not None and impu.state != RegState.REGISTERED:
        impi = req.impi or (impu.profile.impi if impu.profile else None)
        await inform_hss(ctx.sar_request(req.aor, impi, plan.assignment), ctx)
    return reply


async def _commit(impu: Impu, req: RegisterRequest, plan: RegisterPlan, profile: Profile | None,
                  ctx: SaveContext) -> Reply:
    """Applies the plan's change to the implicit set, the identity and the store, then
    answers. The change, not the plan's binding set, is what every member merges (set_merge):
    another member's update may have reached this one while its REGISTER waited for the HSS."""
    now = ctx.clock()
    others = [i for i in profile.identities if i != impu.identity] if profile else []
    if others:
        state, kept = _after(impu.state, bool(plan.bindings), profile, ctx.rules)
        try:
            await ctx.propagate([SetUpdate(i, state, plan.written, kept, "user", plan.removed)
                                 for i in others])
        except Exception:  # another shard unavailable: tell the UE to retry, apply nothing here
            return Reply(503, "Implicit set update failed", [("Retry-After", RETRY_AFTER)])
    bindings = merged(impu.bindings, plan.written, plan.removed, now)
    state, kept = _after(impu.state, bool(bindings), profile, ctx.rules)
    before = (impu.state, impu.bindings, impu.profile, impu.unreg_until)
    impu.apply(state, bindings, kept)
    if ctx.events:  # before the write, so the subscriptions' new versions are stored with it
        notify_change(impu, before[1], "user", ctx.events)
    try:
        await ctx.persist(impu)
    except StoreError:
        impu.apply(*before)
        return Reply(503, "Registration store unavailable", [("Retry-After", RETRY_AFTER)])
    reply = Reply(200, "OK", ok_headers(bindings, req, kept, now, ctx.service_route,
                                        plan.removed))
    if ctx.registration_changed is not None and profile is not None:
        ctx.registration_changed(registration_change(impu.identity, before[0], bindings,
                                                     profile, req, now, reply))
    return reply


async def inform_hss(request: SarRequest, ctx: SaveContext) -> SaaResult | None:
    """Sends a SAR whose outcome changes nothing here (the bindings are gone already): one the
    HSS could not take (unreachable, or a transient 3xxx/4xxx answer) goes to ``retry_sar``.
    The answer, or None when none came."""
    try:
        saa = await ctx.sar(request)
    except CxUnavailable as exc:
        log.warning("%s of %s not sent: %s", request.assignment_type.name,
                    request.public_identity, exc)
        saa = None
    if saa is not None and not saa.success:
        log.warning("HSS refused %s of %s: %s", request.assignment_type.name,
                    request.public_identity, saa.description)
    if (saa is None or transient(saa)) and ctx.retry_sar is not None:
        ctx.retry_sar(request)
    return saa


def registration_ended(identity: str, profile: Profile | None, ctx: SaveContext) -> None:
    """The network ended the registration (expiry, administrative de-registration): the
    application servers hear of it as of a UE's de-registration."""
    if ctx.registration_changed is not None and profile is not None:
        ctx.registration_changed(registration_change(identity, RegState.REGISTERED, {},
                                                     profile, None, ctx.clock()))


def transient(saa: SaaResult) -> bool:
    """An answer worth asking again: protocol errors and transient failures (RFC 6733 7.1)."""
    code = saa.experimental_result_code or saa.result_code or 0
    return 3000 <= code < 5000


def _sar_needed(impu: Impu, req: RegisterRequest, plan: RegisterPlan, now: float,
                rules: RegisterRules) -> bool:
    """A re-REGISTER may skip its SAR (as Clearwater's hss_reregistration_time) when the HSS
    would learn nothing: same IMPI, no binding removed, user data not asked for
    (user_data_always), and the identity's last SAR younger than sar_reregistration_interval.
    Registration, de-registration and expiry always send theirs."""
    if plan.assignment != SAT.RE_REGISTRATION or not plan.user_data_already_available:
        return True
    fresh = (impu.last_sar_at is not None
             and now - impu.last_sar_at < rules.sar_reregistration_interval)
    same_impi = impu.profile is not None and req.impi in (None, impu.profile.impi)
    kept = impu.live_bindings(now).keys() <= plan.bindings.keys()
    return not (fresh and same_impi and kept)


def _after(state: RegState, bound: bool, profile: Profile,
           rules: RegisterRules) -> tuple[RegState, Profile | None]:
    """The state and profile the REGISTER leaves (a binding left registers or refreshes)."""
    if bound:
        event = RegEvent.REFRESH if state == RegState.REGISTERED else RegEvent.REGISTER
        return next_state(state, event), profile
    return next_state(state, RegEvent.DEREGISTER), profile if rules.store_profile_dereg else None


# Experimental-Result codes of TS 29.229 6.2.2 that say the user may not register here.
_FORBIDDEN = {5001: "User unknown", 5002: "Identities don't match", 5003: "Identity not registered",
              5004: "Roaming not allowed", 5007: "Error in assignment type"}


def _sar_rejection(saa: SaaResult) -> Reply:
    """As Kamailio: the HSS refusing the user (a permanent Experimental-Result, TS 29.229
    6.2.2) is 403; the HSS failing to serve the request (a 5xxx Result-Code such as
    DIAMETER_UNABLE_TO_COMPLY 5012) is 500, Kamailio's "SAR failed". Protocol errors and
    transient failures (3xxx, 4xxx: DIAMETER_TOO_BUSY 3004...) are 503 with Retry-After,
    like an HSS that does not answer: the same REGISTER may succeed in a moment."""
    code = saa.experimental_result_code or saa.result_code or 0
    if saa.experimental_result_code is not None and code in _FORBIDDEN:
        return Reply(403, _FORBIDDEN[code])
    if transient(saa):  # the UE may try again soon
        return Reply(503, f"HSS answered {code}", [("Retry-After", RETRY_AFTER)])
    if saa.experimental_result_code is None:
        if code == ResultCode.DIAMETER_AUTHORIZATION_REJECTED:
            return Reply(403, "Authorization rejected")
        return Reply(500, f"SAR failed ({code})")
    return Reply(403, f"Server assignment rejected ({code})")


def profile_from_user_data(xml: str, xsd_path: str | None = None, dtd_path: str | None = None,
                           wildcards: bool = False) -> Profile:
    """The implicit registration set of an SAA's User-Data: every public user identity, default
    first. Wildcarded PSIs are patterns, not identities one registers: with ``wildcards`` (the
    guide's support_wildcardPSI) they are kept, so identities under them can be served.

    The user data itself is kept only when it has iFCs (third-party REGISTER and reg-event
    authorisation read them); everything else is read here, once."""
    subscription = parse_user_data(xml, xsd_path, dtd_path)
    identities: list[str] = []
    barred: set[str] = set()
    patterns: list[str] = []
    written: dict[str, str] = {}  # canonical identity -> P-Associated-URI value
    has_ifcs = False
    for profile in subscription.service_profiles:
        profile.filter_criteria()  # an unusable iFC refuses the user data now, not at its use
        has_ifcs = has_ifcs or bool(profile.ifc_xml)
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
            else:
                written.setdefault(aor, name_addr(pid.display_name, pid.identity))
    if not identities and not patterns:
        raise UserDataError("user data lists no public identity")
    values = tuple(written.values())
    if values == tuple(f"<{uri}>" for uri in identities if uri not in barred):
        values = ()  # what p_associated_uris() builds anyway: not kept for every set
    return Profile(subscription.private_id, tuple(identities), none_barred(barred),
                   xml if has_ifcs else None, tuple(patterns), values)
