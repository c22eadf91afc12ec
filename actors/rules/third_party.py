"""Third-party REGISTER (TS 24.229 5.4.1.7): the REGISTER the S-CSCF sends an application
server whose iFC matched a registration, a re-registration or a de-registration, and what the
AS's answer means under the iFC's DefaultHandling (pure: built here, sent by a transport).
"""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from xml.sax.saxutils import escape

from actors.rules.ifc import RegisterFacts, RegistrationType, filter_criteria, matching_servers
from actors.vocabulary import (
    SERVER,
    NotifyJob,
    Profile,
    RegisterRequest,
    RegState,
    Reply,
    response_to_tag,
)
from transport.diameter.user_data import SESSION_TERMINATED, ApplicationServer
from transport.sip.errors import SipParseError
from transport.sip.message import Request, make_response
from transport.sip.parser import parse_message
from transport.sip.uri import parse_uri

log = logging.getLogger(__name__)

SERVICE_INFO_TYPE = "application/3gpp-ims+xml"
MESSAGE_SIP_TYPE = "message/sip"


@dataclass(frozen=True, slots=True)
class RegistrationChange:
    """A registration of ``identity`` began, was refreshed or ended (``expires`` 0); the
    REGISTER that did it, when a UE sent one."""

    identity: str
    registration_type: RegistrationType
    expires: int
    profile: Profile
    request: RegisterRequest | None = None
    reply: Reply | None = None  # the 200 OK the UE got for it


def third_party_registers(change: RegistrationChange, scscf_uri: str
                          ) -> list[tuple[ApplicationServer, NotifyJob]]:
    """One REGISTER per AS whose iFC matches, highest priority first. A profile without user
    data (no iFCs) has none; an AS whose ServerName cannot be reached (no sip URI) is skipped."""
    user_data = change.profile.user_data
    if user_data is None or not filter_criteria(user_data, change.identity):
        return []  # most users: the REGISTER is not parsed again
    request = change.request
    message = parse_message(request.message) if request is not None and request.message \
        else None
    facts = RegisterFacts(change.registration_type,
                          message.uri if message is not None else None,
                          tuple(message.headers) if message is not None else ())
    jobs = []
    for server in matching_servers(user_data, change.identity, facts):
        target = server_target(server.server_name)
        if target is None:
            log.warning("iFC of %s names %r, no sip URI over UDP or TCP: no third-party "
                        "REGISTER", change.identity, server.server_name)
        else:
            headers, body = _headers_and_body(change, server, scscf_uri, message)
            jobs.append((server, NotifyJob(target, server.server_name, headers, body,
                                           method="REGISTER")))
    return jobs


def server_target(server_name: str) -> str | None:
    """'udp:HOST:PORT' (or tcp, by its transport parameter) of an AS's SIP URI, else None."""
    try:
        uri = parse_uri(server_name)
    except SipParseError:
        return None
    if uri.scheme != "sip":
        return None
    proto = (uri.params.get("transport") or "udp").lower()
    if proto not in ("udp", "tcp"):
        return None
    return f"{proto}:{uri.host.strip('[]')}:{uri.port or 5060}"


def _headers_and_body(change: RegistrationChange, server: ApplicationServer, scscf_uri: str,
                      message: Request | None) -> tuple[list[tuple[str, str]], bytes]:
    """From the S-CSCF, To the registered identity, Contact the S-CSCF, Expires as granted;
    the charging headers of the registration; as body the ServiceInfo, else the UE's REGISTER
    or our 200 OK to it when the AS asks for one (Kamailio's ims_isc picks in that order)."""
    headers = [
        ("Max-Forwards", "70"),
        ("From", f"<{scscf_uri}>;tag={secrets.token_hex(6)}"),
        ("To", f"<{change.identity}>"),
        ("Call-ID", secrets.token_hex(12)),
        ("CSeq", "1 REGISTER"),
        ("Contact", f"<{scscf_uri}>"),
        ("Expires", str(change.expires)),
    ]
    request = change.request
    if request is not None and request.visited_network:  # as Kamailio's ims_isc passes it on
        headers.append(("P-Visited-Network-ID", request.visited_network))
    if request is not None and request.icid:
        headers.append(("P-Charging-Vector", f"icid-value={request.icid}"))
    addresses = change.profile.charging_function_addresses()
    if addresses:
        headers.append(("P-Charging-Function-Addresses", addresses))
    if server.service_info is not None:
        body = (f'<?xml version="1.0" encoding="UTF-8"?><ims-3gpp version="1">'
                f"<service-info>{escape(server.service_info)}</service-info></ims-3gpp>").encode()
        headers.append(("Content-Type", SERVICE_INFO_TYPE))
        return headers, body
    if message is None:  # the network ended the registration: no REGISTER to quote
        return headers, b""
    if server.include_register_request:
        headers.append(("Content-Type", MESSAGE_SIP_TYPE))
        return headers, message.wire
    if server.include_register_response and change.reply is not None:
        headers.append(("Content-Type", MESSAGE_SIP_TYPE))
        return headers, _ok_as_sent(message, change.reply, request.received)
    return headers, b""


def _ok_as_sent(register: Request, reply: Reply, received: str) -> bytes:
    """The 200 OK the transport built for ``register``, but for its Date header."""
    host, _, port = received.partition(":")[2].rpartition(":")  # transport:host:port
    response = make_response(register, reply.status, reply.reason,
                             to_tag=response_to_tag(register.call_id, register.cseq[0]),
                             source=(host, int(port)))
    for name, value in reply.headers:
        response.headers.add(name, value)
    response.headers.add("Server", SERVER)
    return response.to_bytes()


def fails(status: int) -> bool:
    """TS 24.229 5.4.1.7: a 408, a 5xx or no answer at all (counted 408) is a failure."""
    return status == 408 or status >= 500


def deregisters_on_failure(change: RegistrationChange, server: ApplicationServer,
                           status: int) -> bool:
    """SESSION_TERMINATED: a failed third-party REGISTER de-registers the user; a failed
    third-party de-registration has nothing left to end."""
    return (change.registration_type != RegistrationType.DE_REGISTRATION
            and server.default_handling == SESSION_TERMINATED and fails(status))


def registration_change(identity: str, state_before, bindings: dict, profile: Profile,
                        request: RegisterRequest | None, now: float,
                        reply: Reply | None = None) -> RegistrationChange:
    """What a REGISTER that left ``bindings`` did: registered (Expires: the longest binding),
    refreshed a registration, or ended it (Expires: 0)."""
    if not bindings:
        return RegistrationChange(identity, RegistrationType.DE_REGISTRATION, 0, profile, request,
                                  reply)
    kind = (RegistrationType.RE_REGISTRATION if state_before == RegState.REGISTERED
            else RegistrationType.INITIAL)
    expires = max(b.remaining(now) for b in bindings.values())
    return RegistrationChange(identity, kind, expires, profile, request, reply)
