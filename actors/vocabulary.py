"""The registrar's shared vocabulary: every message that crosses an actor call, the return codes
of Kamailio's functions, the names actors are found by, and constants defined once.

Everything here is plain data (slotted dataclasses, enums, strings): no Ray, no sockets, no I/O.
Every other module of the registrar may import it; it imports nothing of the registrar.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from enum import IntEnum
from operator import attrgetter

# -- Return codes of ims_registrar_scscf's functions (lookup, unregister, assign_server_unreg...)
FOUND = 1
NOT_FOUND = -1
METHOD_NOT_ALLOWED = -2
INTERNAL_ERROR = -3

# -- Constants of the SIP side
RETRY_AFTER = "5"  # seconds a UE waits after a 503 (HSS, store or shard unavailable)
SERVER = "ray-scscf"  # our Server header
ALLOW = "REGISTER, SUBSCRIBE, PUBLISH, OPTIONS"  # the methods the transports answer


def crosses_actors(cls: type) -> type:
    """A dataclass that pickles as its class and its field values in order, rebuilt through
    its constructor: the default state of a slotted dataclass is a dict of every field by
    name. A RegisterRequest with one contact: 242 -> 171 bytes, 6.3 -> 2.7 us to pickle and
    unpickle."""
    names = [f.name for f in fields(cls)]
    values = attrgetter(*names)
    single = len(names) == 1  # attrgetter of one name answers the value, not a tuple

    def __reduce__(self):
        return cls, (values(self),) if single else values(self)
    cls.__reduce__ = __reduce__
    return cls


# -- Names actors are found by (in the registrar's Ray namespace)
def shard_name(index: int) -> str:
    return f"impu-shard-{index}"


def cx_pool_name(index: int) -> str:
    return f"cx-pool-{index}"


TRANSPORT_PREFIX = "sip-transport-"  # every transport actor's name starts with it


def transport_name(node_name: str, index: int) -> str:
    return f"{TRANSPORT_PREFIX}{node_name}-{index}"


# A NOTIFY's branch names the transport that sent it, so a response reaching another transport
# is forwarded to its owner: z9hG4bK~<owner transport>~<token>.
BRANCH_SEPARATOR = "~"


def notify_branch(owner: str, token: str) -> str:
    return f"z9hG4bK{BRANCH_SEPARATOR}{owner}{BRANCH_SEPARATOR}{token}"


def response_to_tag(call_id: str, cseq: int) -> str:
    """The To tag of our responses: deterministic, so the reply to a retransmission carries the
    same tag on any transport, and a third-party REGISTER can quote the 200 OK as sent."""
    return hashlib.blake2b(f"{call_id}|{cseq}".encode(), digest_size=8).hexdigest()


def branch_owner(branch: str) -> str | None:
    """The transport named in a branch built by ``notify_branch``, else None."""
    parts = branch.split(BRANCH_SEPARATOR)
    return parts[1] if len(parts) == 3 and parts[0] == "z9hG4bK" else None


# -- Registration state of one public identity (the transitions: actors/rules/state.py)
class RegState(IntEnum):
    NOT_REGISTERED = 0
    REGISTERED = 1
    UNREGISTERED = 2  # assigned to serve a terminating request of an unregistered user


# -- REGISTER: transport -> shard, and the answer back
@crosses_actors
@dataclass(slots=True)
class ContactRequest:
    """One Contact of a REGISTER, as the transport extracted it."""

    uri: str
    key: str  # binding identity: instance + reg-id when present, else the normalised URI
    expires: int | None  # the Contact's expires parameter
    q: str | None = None
    instance: str | None = None
    reg_id: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()  # every header param but expires
    allow: tuple[str, ...] = ()  # its `methods` parameter (RFC 3840), upper case


@crosses_actors
@dataclass(slots=True)
class RegisterRequest:
    """What the registrar needs of a REGISTER; small so that it crosses actor calls cheaply."""

    aor: str  # canonical IMPU of the To header
    impi: str | None
    call_id: str
    cseq: int
    contacts: list[ContactRequest]
    star: bool  # "Contact: *"
    expires: int | None  # Expires header
    path: tuple[str, ...] = ()
    path_supported: bool = False
    transaction: tuple = ()  # (Call-ID, CSeq, branch): a retransmission gets the same reply
    received: str = ""  # transport:host:port the request came from
    user_agent: str | None = None
    allow: tuple = ()  # the Allow header, upper case
    authorization: str | None = None  # the Authorization header value for our realm
    integrity_protected: str | None = None  # its integrity-protected parameter (TS 24.229)
    icid: str | None = None  # icid-value of its P-Charging-Vector (TS 24.229 5.4.1.2.2)
    visited_network: str | None = None  # its P-Visited-Network-ID
    transport: str = ""  # the transport actor that took it: it sends the third-party REGISTERs
    message: bytes = b""  # the REGISTER as received: iFC SIPHeader/RequestURI, message/sip


@crosses_actors
@dataclass(slots=True)
class Reply:
    """A final response for the transport to build: status, reason and extra headers."""

    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)


# -- One identity's data, as it crosses shard to shard (implicit sets) and shard to driver
@crosses_actors
@dataclass(slots=True)
class Binding:
    uri: str
    key: str
    expires_at: float
    q: str | None
    instance: str | None
    reg_id: int | None
    params: tuple[tuple[str, str | None], ...]
    call_id: str
    cseq: int
    path: tuple[str, ...]
    registered_at: float
    received: str = ""
    user_agent: str | None = None
    allow: tuple[str, ...] = ()  # methods the contact accepts; () = all (no Allow, no methods)
    visited_network: str | None = None  # P-Visited-Network-ID of the REGISTER that made it
    icid: str | None = None  # icid-value of that REGISTER's P-Charging-Vector

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.5))


@crosses_actors
@dataclass(slots=True)
class Profile:
    """What the HSS said of the identity's implicit registration set (shared by its members)."""

    impi: str | None
    identities: tuple[str, ...]  # every IMPU of the set, default first
    barred: frozenset[str]
    user_data: str | None
    wildcards: tuple[str, ...] = ()  # wildcarded PSIs of the set, kept with support_wildcardPSI
    # P-Associated-URI values: the unbarred identities as the HSS wrote them (display names,
    # ``;user=phone``), built with the profile so a refresh never parses the user data again
    written: tuple[str, ...] = ()
    # The SAA's Charging-Information: (ccf|ecf, address) pairs, primary first (TS 29.229 6.3.19)
    charging: tuple[tuple[str, str], ...] = ()

    def associated_uris(self) -> list[str]:
        return [i for i in self.identities if i not in self.barred]

    def charging_function_addresses(self) -> str | None:
        """The P-Charging-Function-Addresses value (RFC 7315 4.5), None without addresses."""
        if not self.charging:
            return None
        return ";".join(f'{kind}="{address}"' for kind, address in self.charging)

    def wildcard_for(self, identity: str) -> str | None:
        """The wildcarded PSI that ``identity`` falls under, if any (TS 23.003 13.5)."""
        from transport.diameter.user_data import (
            wildcard_regex,  # lxml stays out of the REGISTER rules
        )

        return next((w for w in self.wildcards if wildcard_regex(w).fullmatch(identity)), None)


@crosses_actors
@dataclass(frozen=True, slots=True)
class SetUpdate:
    """A member of an implicit set registered through another IMPU takes the set's new state."""

    identity: str
    state: RegState
    bindings: dict[str, Binding]  # the set's bindings; with ``ended``: those the change wrote
    profile: Profile | None
    reason: str  # why bindings went, a key of reginfo.REMOVAL_EVENTS ("user", "network"...)
    # A REGISTER's change, merged into what the member holds (actors/rules/set_merge.py): the
    # bindings it ended, as it saw them. None: ``bindings`` replace the member's.
    ended: dict[str, Binding] | None = None


# -- The reg event: transport -> shard, and the NOTIFYs shard -> transport
@crosses_actors
@dataclass(slots=True)
class SubscribeRequest:
    presentity: str  # canonical IMPU of the Request-URI
    watcher: str  # From URI
    asserted: str | None  # P-Asserted-Identity, canonical
    call_id: str
    from_tag: str
    to_tag: str  # the request's, or the one our response gives it
    initial: bool  # no To tag: it creates a dialog
    remote_target: str
    route_set: tuple[str, ...]
    cseq: int
    expires: int | None
    event_id: str | None
    received: str  # flow the SUBSCRIBE came on; NOTIFYs go back on it
    transport: str  # name of the transport actor that took it: it sends the NOTIFYs
    transaction: tuple = ()


@crosses_actors
@dataclass(slots=True)
class PublishRequest:
    presentity: str
    watcher: str
    asserted: str | None
    body: bytes
    expires: int | None
    transaction: tuple = ()


@crosses_actors
@dataclass(slots=True)
class NotifyJob:
    """One NOTIFY (or third-party REGISTER) for a transport to send as a client transaction;
    answered with its final status."""

    received: str  # the SUBSCRIBE's flow
    request_uri: str
    headers: list[tuple[str, str]]
    body: bytes
    method: str = "NOTIFY"  # or REGISTER: a third-party REGISTER to an application server
    destination: str = ""  # proto:host:port of the next hop (route set or remote target)


# -- The terminating side: shard -> Registrar handle
@crosses_actors
@dataclass(frozen=True, slots=True)
class ImpuView:
    """One identity at one instant: its state and its live bindings, best first."""

    identity: str
    state: RegState
    bindings: tuple[Binding, ...]


@crosses_actors
@dataclass(frozen=True, slots=True)
class Target:
    """Where one branch of a terminating request goes."""

    uri: str  # the Request-URI: the registered contact
    dst_uri: str | None  # the next hop: the first Path entry (RFC 3327); None: the uri itself
    path: tuple[str, ...]  # the Route set towards the UE, as the REGISTER's Path listed it
    q: str | None
    instance: str | None


@crosses_actors
@dataclass(frozen=True, slots=True)
class Deregistration:
    code: int  # FOUND: bindings removed; NOT_FOUND: the identity was not registered
    removed: int  # live bindings the identity held
    hss: str  # the SAA's result, or why no answer came


# -- Storage
class StoreError(Exception):
    """The store failed or holds something unreadable; the message names what and where."""
