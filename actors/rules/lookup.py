"""The terminating side of ims_registrar_scscf: where a request to a public identity goes (pure).

A shard hands out an ``ImpuView`` (a snapshot of one identity); everything here works on views,
so the rules of ``lookup``, ``lookup_path_to_contact``, ``impu_registered`` and
``reg_fetch_contacts`` run the same in a unit test, a driver or any actor. Return codes are
Kamailio's.
"""
from __future__ import annotations

from collections.abc import Iterable

from actors.rules.impu import Impu, ordered
from actors.vocabulary import (
    FOUND,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    Binding,
    ImpuView,
    RegState,
    Target,
)
from transport.sip.headers import parse_name_addr
from transport.sip.uri import SipUri, parse_uri


def view(impu: Impu | None, identity: str, now: float) -> ImpuView:
    """A barred identity shows no bindings: it shares its set's registration, but a request to
    it must never reach them (TS 23.228 4.3.3.4), so every terminating function finds none."""
    if impu is None or impu.profile is not None and identity in impu.profile.barred:
        state = impu.state if impu else RegState.NOT_REGISTERED
        return ImpuView(identity, state, ())
    return ImpuView(identity, impu.state, tuple(ordered(impu.live_bindings(now).values())))


def lookup(v: ImpuView, method: str | None, append_branches: bool,
           method_filtering: bool) -> tuple[int, list[Target]]:
    """``lookup()``: the highest-q contact (the most recent among equals) first, and with
    ``append_branches`` every other one as a further branch for forking."""
    if v.state != RegState.REGISTERED or not v.bindings:
        return NOT_FOUND, []
    usable = list(v.bindings)
    if method_filtering and method:
        usable = [b for b in usable if allows(b, method)]
        if not usable:
            return METHOD_NOT_ALLOWED, []
    chosen = usable if append_branches else usable[:1]
    return FOUND, [target(b) for b in chosen]


def allows(binding: Binding, method: str) -> bool:
    """A binding that named no methods (no Allow, no ``methods`` parameter) accepts them all."""
    return not binding.allow or method.upper() in binding.allow


def target(binding: Binding) -> Target:
    next_hop = str(parse_name_addr(binding.path[0]).uri) if binding.path else None
    return Target(binding.uri, next_hop, binding.path, binding.q, binding.instance)


def registered(v: ImpuView) -> int:
    """``impu_registered`` / ``term_impu_registered``."""
    return FOUND if v.state == RegState.REGISTERED and v.bindings else NOT_FOUND


def find_binding(impus: Iterable[Impu], contact_uri: str, now: float) -> Binding | None:
    """The live binding registered with this contact URI, for ``lookup_path_to_contact``."""
    wanted = canonical_contact(contact_uri)
    for impu in impus:
        if impu.state != RegState.REGISTERED:
            continue
        for binding in impu.live_bindings(now).values():
            if binding.uri == wanted:
                return binding
    return None


def canonical_contact(text: str) -> str:
    """The URI as the registrar stored it (parsed and written back)."""
    return str(bare_uri(text))


def bare_uri(text: str) -> SipUri:
    """A URI written alone or in angle brackets; raises SipParseError when it is none."""
    return parse_uri(text.strip().removeprefix("<").removesuffix(">"))


def contact_fields(binding: Binding) -> dict:
    """One contact of a ``reg_fetch_contacts`` profile, with the $imssulc attribute names.
    ``expires`` is absolute (Unix seconds) as in Kamailio; ``flags`` are Kamailio's script
    flags of a contact, which nothing here sets."""
    return {
        "uri": binding.uri,
        "expires": int(binding.expires_at),
        "q": binding.q,
        "path": list(binding.path),
        "received": binding.received,
        "user_agent": binding.user_agent,
        "callid": binding.call_id,
        "cseq": binding.cseq,
        "flags": 0,
    }
