"""Base protocol messages (RFC 6733 5, 7.2): capabilities exchange, watchdog, disconnect and
error answers, with the local and remote node descriptions they carry."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import IntEnum

from diameter.message import Avp, Message, MessageHeader
from diameter.message.constants import (
    AVP_AUTH_APPLICATION_ID,
    AVP_DISCONNECT_CAUSE,
    AVP_ERROR_MESSAGE,
    AVP_FAILED_AVP,
    AVP_HOST_IP_ADDRESS,
    AVP_ORIGIN_HOST,
    AVP_ORIGIN_REALM,
    AVP_ORIGIN_STATE_ID,
    AVP_PRODUCT_NAME,
    AVP_SESSION_ID,
    AVP_SUPPORTED_VENDOR_ID,
    AVP_VENDOR_ID,
    AVP_VENDOR_SPECIFIC_APPLICATION_ID,
)

from .codec import (
    CX_APPLICATION_ID,
    VENDOR_3GPP,
    AvpReader,
    Command,
    ResultCode,
    avp,
    new_answer,
    new_request,
    origin_avps,
    read_result,
    result_avp,
    vendor_specific_application_id,
)
from .errors import PeerDown, ProtocolError

RELAY_APPLICATION_ID = 0xFFFFFFFF


class DisconnectCause(IntEnum):
    REBOOTING = 0
    BUSY = 1
    DO_NOT_WANT_TO_TALK_TO_YOU = 2


@dataclass(frozen=True)
class LocalNode:
    """How this node presents itself to its peers."""
    origin_host: str
    origin_realm: str
    host_ip: str | None = None  # advertised Host-IP-Address; None: the socket's local address
    product_name: str = "ray-scscf"
    vendor_id: int = VENDOR_3GPP
    origin_state_id: int = field(default_factory=lambda: int(time.time()) & 0xFFFFFFFF)
    # (vendor, Auth-Application-Id) pairs advertised as Vendor-Specific-Application-Id.
    applications: tuple[tuple[int, int], ...] = ((VENDOR_3GPP, CX_APPLICATION_ID),)

    def supports(self, application_id: int) -> bool:
        return application_id == 0 or any(app == application_id for _, app in self.applications)


@dataclass(frozen=True)
class PeerInfo:
    """What the remote node advertised in its CER or CEA."""
    origin_host: str
    origin_realm: str
    host_ip_addresses: tuple[str, ...]
    vendor_id: int
    product_name: str | None
    applications: frozenset[int]  # Auth-Application-Ids, plain or vendor-specific

    def supports(self, application_id: int) -> bool:
        return application_id in self.applications or RELAY_APPLICATION_ID in self.applications

    def shares_application_with(self, local: LocalNode) -> bool:
        return any(self.supports(app) for _, app in local.applications)


def _capability_avps(local: LocalNode, host_ip: str) -> list[Avp]:
    vendors = sorted({vendor for vendor, _ in local.applications})
    return [*origin_avps(local.origin_host, local.origin_realm),
            avp(AVP_HOST_IP_ADDRESS, local.host_ip or host_ip),
            avp(AVP_VENDOR_ID, local.vendor_id),
            avp(AVP_PRODUCT_NAME, local.product_name, mandatory=False),  # M bit forbidden (5.3.7)
            avp(AVP_ORIGIN_STATE_ID, local.origin_state_id),
            *(avp(AVP_SUPPORTED_VENDOR_ID, vendor) for vendor in vendors),
            *(vendor_specific_application_id(vendor, app) for vendor, app in local.applications)]


def build_cer(local: LocalNode, host_ip: str) -> Message:
    return new_request(Command.CAPABILITIES_EXCHANGE, _capability_avps(local, host_ip),
                       application_id=0, proxiable=False)


def build_cea(request: MessageHeader, local: LocalNode, host_ip: str, result_code: int) -> Message:
    return new_answer(request, [result_avp(result_code), *_capability_avps(local, host_ip)],
                      error=3000 <= result_code < 4000)


def parse_capabilities(msg: Message) -> PeerInfo:
    reader = AvpReader(msg.avps)
    origin_host, origin_realm = reader.text(AVP_ORIGIN_HOST), reader.text(AVP_ORIGIN_REALM)
    if not origin_host or not origin_realm:
        raise ProtocolError(ResultCode.DIAMETER_MISSING_AVP,
                            "capabilities exchange without Origin-Host/Origin-Realm")
    applications = set(reader.values(AVP_AUTH_APPLICATION_ID))
    for group in reader.groups(AVP_VENDOR_SPECIFIC_APPLICATION_ID):
        applications.update(group.values(AVP_AUTH_APPLICATION_ID))
    return PeerInfo(origin_host=origin_host, origin_realm=origin_realm,
                    host_ip_addresses=tuple(addr for _, addr in reader.values(AVP_HOST_IP_ADDRESS)),
                    vendor_id=reader.value(AVP_VENDOR_ID) or 0,
                    product_name=reader.text(AVP_PRODUCT_NAME),
                    applications=frozenset(applications))


def answer_cer(cer: Message, local: LocalNode, host_ip: str,
               allowed_peers: frozenset[str] | None = None) -> tuple[Message, PeerInfo | None]:
    """The CEA for a CER, with the peer's capabilities when the exchange succeeds.
    ``allowed_peers``: the Origin-Hosts accepted (RFC 6733 5.3: others get
    DIAMETER_UNKNOWN_PEER); None accepts any."""
    try:
        info = parse_capabilities(cer)
    except ProtocolError as err:
        return build_cea(cer.header, local, host_ip, err.result_code), None
    if allowed_peers is not None and info.origin_host not in allowed_peers:
        return build_cea(cer.header, local, host_ip, ResultCode.DIAMETER_UNKNOWN_PEER), None
    if not info.shares_application_with(local):
        return build_cea(cer.header, local, host_ip,
                         ResultCode.DIAMETER_NO_COMMON_APPLICATION), None
    return build_cea(cer.header, local, host_ip, ResultCode.DIAMETER_SUCCESS), info


def accept_cea(cea: Message, local: LocalNode) -> PeerInfo:
    """The peer's capabilities from its CEA; PeerDown unless it accepted us."""
    result = answer_result(cea)
    if result != ResultCode.DIAMETER_SUCCESS:
        raise PeerDown(f"CEA result {result}")
    info = parse_capabilities(cea)
    if not info.shares_application_with(local):
        raise PeerDown(f"{info.origin_host} shares no application with us")
    return info


def answer_result(msg: Message) -> int | None:
    """Result-Code of a base protocol answer (CEA, DWA, DPA)."""
    return read_result(AvpReader(msg.avps))[0]


def build_dwr(local: LocalNode) -> Message:
    return new_request(Command.DEVICE_WATCHDOG,
                       [*origin_avps(local.origin_host, local.origin_realm),
                        avp(AVP_ORIGIN_STATE_ID, local.origin_state_id)],
                       application_id=0, proxiable=False)


def build_dwa(request: MessageHeader, local: LocalNode) -> Message:
    return new_answer(request, [result_avp(ResultCode.DIAMETER_SUCCESS),
                                *origin_avps(local.origin_host, local.origin_realm),
                                avp(AVP_ORIGIN_STATE_ID, local.origin_state_id)])


def build_dpr(local: LocalNode, cause: int = DisconnectCause.REBOOTING) -> Message:
    return new_request(Command.DISCONNECT_PEER,
                       [*origin_avps(local.origin_host, local.origin_realm),
                        avp(AVP_DISCONNECT_CAUSE, cause)],
                       application_id=0, proxiable=False)


def build_dpa(request: MessageHeader, local: LocalNode) -> Message:
    return new_answer(request, [result_avp(ResultCode.DIAMETER_SUCCESS),
                                *origin_avps(local.origin_host, local.origin_realm)])


def build_error_answer(request: MessageHeader, local: LocalNode, result_code: int, message: str,
                       *, failed_avp: bytes | None = None,
                       session_id: str | None = None) -> Message:
    """The generic answer of RFC 6733 7.2; protocol errors (3xxx) carry the E bit."""
    avps = [avp(AVP_SESSION_ID, session_id)] if session_id else []
    avps += [*origin_avps(local.origin_host, local.origin_realm), result_avp(result_code),
             avp(AVP_ERROR_MESSAGE, message[:200], mandatory=False)]
    if failed_avp:
        failed = avp(AVP_FAILED_AVP, [])
        failed.payload = failed_avp  # raw offending bytes, which may not decode as an AVP
        avps.append(failed)
    return new_answer(request, avps, error=3000 <= result_code < 4000)
