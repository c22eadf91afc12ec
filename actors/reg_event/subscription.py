"""Subscriptions to the reg event package and their rules (pure: no Ray, no sockets).

A subscription is a dialog usage (RFC 6665) of the S-CSCF as notifier, created by a SUBSCRIBE
from the UE or its P-CSCF (TS 24.229 5.4.2.1.1). Its life:

- SUBSCRIBE accepted, new or refresh: 200 OK with the granted expiry, then at once a NOTIFY
  with the full state (RFC 6665 4.2.1); every NOTIFY we send carries full state, so
  a watcher that lost one is whole again with the next.
- SUBSCRIBE with Expires 0 (unsubscribe, or a fetch when it opens the dialog) and a
  subscription left to expire: a final full-state NOTIFY, ``terminated;reason=timeout``
  (RFC 6665 4.1.2.3, 4.2.2, reason codes 4.1.3), then the subscription is dropped.
- Every registration of the set terminated (user, expiry or network de-registration): the NOTIFY
  reporting it also ends the subscription (TS 24.229 5.4.2.1.2), ``terminated;reason=noresource``:
  the state watched no longer exists, and a new registration brings a new subscription (TS 24.229
  5.1.1.3, 5.2.3). ``deactivated`` would ask for an immediate re-SUBSCRIBE, which 5.4.2.1.1
  answers 480 while nothing is registered.
- Watcher no longer authorised (e.g. its identity became barred): ``terminated;reason=rejected``.
- NOTIFY failed: see on_notify_failure.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from functools import lru_cache

from actors.reg_event.reginfo import CONTENT_TYPE
from actors.rules.expires import ExpiresPolicy
from actors.vocabulary import Binding, Profile, Reply
from transport.diameter.user_data import UserDataError, parse_user_data
from transport.sip.errors import SipParseError
from transport.sip.headers import parse_name_addr, split_header_values
from transport.sip.uri import SipUri, parse_uri

EVENT_PACKAGE = "reg"
MAX_FORWARDS = "70"
# RFC 6665 4.1.3 reasons a terminated subscription may give.
TERMINATION_REASONS = frozenset(
    ("deactivated", "probation", "rejected", "timeout", "giveup", "noresource", "invariant"))
# Why a subscription ends -> the reason of its final NOTIFY (see the module docstring).
END_REASONS = {"unsubscribed": "timeout", "expired": "timeout",
               "registration-ended": "noresource", "unauthorised": "rejected"}
_DEFAULT_PORTS = {"sip": 5060, "sips": 5061}
# The URI parameter of our dialog Contact naming the presentity (base64url), so an in-dialog
# SUBSCRIBE sent to that Contact reaches the shard holding the dialog (RFC 6665 4.1.2.1).
DIALOG_PARAM = "reg-dialog"


@dataclass(slots=True)
class Subscription:
    presentity: str  # canonical IMPU watched
    watcher: str  # subscriber's URI (asserted identity or From): the To of our NOTIFYs
    call_id: str
    from_tag: str  # the subscriber's tag
    to_tag: str  # ours
    remote_target: str  # Contact URI of the SUBSCRIBE
    route_set: tuple[str, ...]  # Record-Route values of the SUBSCRIBE, in order (RFC 3261 12.1.1)
    remote_cseq: int
    expires_at: float
    event_id: str | None = None  # id parameter of the Event header
    received: str = ""  # transport:host:port the SUBSCRIBE came from: the watcher's flow
    local_cseq: int = 0  # CSeq of our last NOTIFY
    version: int = 0  # reginfo version of the next NOTIFY: 0 first, then +1 (RFC 3680 5.1)
    transport: str = ""  # name of the transport actor that sends this subscription's NOTIFYs

    @property
    def key(self) -> str:
        return subscription_key(self.call_id, self.from_tag, self.to_tag, self.event_id)

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.5))


def subscription_key(call_id: str, from_tag: str, to_tag: str, event_id: str | None) -> str:
    """A subscription is its dialog plus the id of its Event header (RFC 6665)."""
    return f"{call_id}|{from_tag}|{to_tag}|{event_id or ''}"



def dialog_contact(scscf_uri: str, presentity: str) -> str:
    """Our Contact in the dialogs watching ``presentity``: the S-CSCF's URI naming it."""
    uri = parse_uri(scscf_uri)
    token = base64.urlsafe_b64encode(presentity.encode()).rstrip(b"=").decode()
    uri.params = {**uri.params, DIALOG_PARAM: token}
    return str(uri)


def dialog_presentity(request_uri: SipUri) -> str | None:
    """The presentity an in-dialog request names in the Request-URI we gave as our Contact;
    None when the URI carries no such parameter. A parameter that does not decode raises the
    481 to answer: no dialog of ours looks like that."""
    token = request_uri.params.get(DIALOG_PARAM)
    if token is None:
        return None
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise SipParseError(481, "Subscription does not exist") from None


def can_subscribe_to_reg(
    profile: Profile | None, bindings: dict[str, Binding], asserted_identity: str | None,
) -> bool:
    """The guide's can_subscribe_to_reg (TS 24.229 5.4.2.1.1 step 1). The subscriber is whom
    the P-Asserted-Identity names (a trusted P-CSCF asserts it; a From proves nothing): the
    user, as one of its set's unbarred IMPUs; a P-CSCF on the Path of one of its bindings; or
    an application server its initial filter criteria name. Those two are network entities:
    the identity matches a hop by host (and user part, when the identity has one), whatever
    the port, as Kamailio finds the identity within the Path."""
    if not asserted_identity:
        return False
    if profile and asserted_identity in profile.associated_uris():
        return True
    entity = _user_host(asserted_identity)
    if entity is None:
        return False
    hops = [hop for b in bindings.values() for hop in b.path]
    if profile and profile.user_data:
        hops += application_servers(profile.user_data)
    return any(_same_entity(entity, _user_host(hop)) for hop in hops)


# The guide's can_publish_reg admits the same entities as can_subscribe_to_reg.
can_publish_reg = can_subscribe_to_reg


@lru_cache(maxsize=1024)
def application_servers(user_data: str) -> tuple[str, ...]:
    """The ServerName of every initial filter criterion in a profile's Cx user data; none when
    the data does not parse (it was checked when stored)."""
    try:
        subscription = parse_user_data(user_data)
    except UserDataError:
        return ()
    return tuple(server for profile in subscription.service_profiles
                 for server in profile.application_servers())


def _user_host(value: str) -> tuple[str | None, str] | None:
    """User part and host (lower case) of a SIP URI or name-addr; None for anything else."""
    try:
        uri = parse_name_addr(value).uri
    except SipParseError:
        return None
    if uri.scheme not in _DEFAULT_PORTS or not uri.host:
        return None
    return uri.user, uri.host.lower()


def _same_entity(identity: tuple[str | None, str], hop: tuple[str | None, str] | None) -> bool:
    return hop is not None and identity[1] == hop[1] and identity[0] in (None, hop[0])


def refresh(
    sub: Subscription, cseq: int, requested: int | None, remote_target: str | None,
    policy: ExpiresPolicy, now: float,
) -> int | Reply:
    """Applies an in-dialog SUBSCRIBE and returns the seconds granted (0: unsubscribed), or the
    rejection of a request out of order (RFC 3261 12.2.2)."""
    if cseq < sub.remote_cseq:
        return Reply(500, "Server Internal Error")
    granted = policy.choose(requested)
    sub.remote_cseq = cseq
    sub.expires_at = now + granted
    if remote_target:  # SUBSCRIBE is a target refresh request (RFC 6665)
        sub.remote_target = remote_target
    return granted


def notify_request(
    sub: Subscription, body: bytes, state: str, reason: str | None, now: float,
    local_uri: str, contact_uri: str,
) -> tuple[str, list[tuple[str, str]], bytes]:
    """Request-URI, headers and body of the next NOTIFY (RFC 6665 4.2.2), but its Via: the
    transport that sends it writes that (its sent-by, a branch naming it).

    `body` carries version `sub.version`; this call advances the version and our CSeq. The
    Request-URI is the remote target and the Route the route set: IMS routes loosely (RFC 3261
    12.2.1.1). Content-Length is the serializer's.
    """
    if state == "active" and reason is None:
        subscription_state = f"active;expires={sub.remaining(now)}"
    elif state == "terminated" and (reason is None or reason in TERMINATION_REASONS):
        subscription_state = "terminated" if reason is None else f"terminated;reason={reason}"
    else:
        raise ValueError(f"bad Subscription-State {state!r} reason {reason!r}")
    sub.local_cseq += 1
    sub.version += 1
    event = EVENT_PACKAGE if sub.event_id is None else f"{EVENT_PACKAGE};id={sub.event_id}"
    request_uri = sub.remote_target
    routes = [value for header in sub.route_set for value in split_header_values(header)]
    if routes and "lr" not in _first_route(sub).params:  # a strict router (RFC 3261 12.2.1.1)
        request_uri, routes = str(_first_route(sub)), [*routes[1:], f"<{sub.remote_target}>"]
    headers = [
        ("Max-Forwards", MAX_FORWARDS),
        ("From", f"<{local_uri}>;tag={sub.to_tag}"),
        ("To", f"<{sub.watcher}>;tag={sub.from_tag}"),
        ("Call-ID", sub.call_id),
        ("CSeq", f"{sub.local_cseq} NOTIFY"),
        *(("Route", route) for route in routes),
        ("Contact", f"<{contact_uri}>"),
        ("Event", event),
        ("Subscription-State", subscription_state),
        ("Content-Type", CONTENT_TYPE),
    ]
    return request_uri, headers, body


def next_hop(sub: Subscription) -> str:
    """Where the NOTIFYs of ``sub`` go, as ``proto:host:port`` ("" for nowhere known): the
    first hop of the route set, or the remote target when there is none (RFC 3261 12.2.1.1,
    8.1.2). Its transport is the URI's ``transport`` parameter, else the SUBSCRIBE's flow's."""
    uri = _first_route(sub) if sub.route_set else parse_uri(sub.remote_target)
    if not uri.host:  # no SIP URI to route on: back along the SUBSCRIBE's flow
        return ""
    proto = (uri.params.get("transport") or sub.received.partition(":")[0] or "udp").lower()
    if proto not in ("udp", "tcp"):
        proto = "tcp"  # the reliable transports we have: TLS, SCTP and WS flows are not ours
    host = uri.host[1:-1] if uri.host.startswith("[") else uri.host
    return f"{proto}:{host}:{uri.port or _DEFAULT_PORTS.get(uri.scheme, 5060)}"


def _first_route(sub: Subscription) -> SipUri:
    return parse_name_addr(split_header_values(sub.route_set[0])[0]).uri


def on_notify_failure(status: int) -> bool:
    """Whether a NOTIFY's final response (408 for a transaction timeout, RFC 3261 8.1.3.1)
    removes the subscription. RFC 6665 4.2.2: a failed NOTIFY removes a SUBSCRIBE-made
    subscription, which the watcher's next refresh re-creates. 401/407 only challenge that one
    request (RFC 5057: transaction-only responses) and we hold no credentials to answer: the
    subscription stays."""
    return status >= 300 and status not in (401, 407)
