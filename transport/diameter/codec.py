"""Diameter framing, validation and AVP helpers on top of python-diameter's AVP codec (RFC 6733).

Messages are plain `diameter.message.Message` objects holding a list of AVPs; the typed command
classes of python-diameter are not used because building them costs several times more per message
than assembling the AVPs directly, and the Cx modules read answers through `AvpReader`.
"""
from __future__ import annotations

import itertools
import random
import struct
import time
from enum import IntEnum
from functools import lru_cache

from diameter.message import Avp, Message, MessageHeader
from diameter.message.avp import (
    AvpAddress,
    AvpDecodeError,
    AvpEncodeError,
    AvpFloat32,
    AvpFloat64,
    AvpGrouped,
    AvpInteger32,
    AvpInteger64,
    AvpTime,
    AvpUnsigned32,
    AvpUnsigned64,
)
from diameter.message.avp.avp import get_avp_dictionary_entry
from diameter.message.constants import (
    AVP_AUTH_APPLICATION_ID,
    AVP_EXPERIMENTAL_RESULT,
    AVP_EXPERIMENTAL_RESULT_CODE,
    AVP_ORIGIN_HOST,
    AVP_ORIGIN_REALM,
    AVP_RESULT_CODE,
    AVP_SESSION_ID,
    AVP_VENDOR_ID,
    AVP_VENDOR_SPECIFIC_APPLICATION_ID,
)

from .errors import ProtocolError

VENDOR_3GPP = 10415
CX_APPLICATION_ID = 16777216
HEADER_LENGTH = 20
DEFAULT_MAX_MESSAGE_LENGTH = 1 << 20

FLAG_REQUEST = 0x80
FLAG_PROXIABLE = 0x40
FLAG_ERROR = 0x20
FLAG_RETRANSMIT = 0x10
AVP_FLAG_VENDOR = 0x80
AVP_FLAG_MANDATORY = 0x40


class Command(IntEnum):
    CAPABILITIES_EXCHANGE = 257
    DEVICE_WATCHDOG = 280
    DISCONNECT_PEER = 282
    USER_AUTHORIZATION = 300
    SERVER_ASSIGNMENT = 301
    LOCATION_INFO = 302
    MULTIMEDIA_AUTH = 303
    REGISTRATION_TERMINATION = 304
    PUSH_PROFILE = 305


class ResultCode(IntEnum):
    """Base protocol Result-Code values (RFC 6733 section 7.1)."""
    DIAMETER_SUCCESS = 2001
    DIAMETER_LIMITED_SUCCESS = 2002
    DIAMETER_COMMAND_UNSUPPORTED = 3001
    DIAMETER_UNABLE_TO_DELIVER = 3002
    DIAMETER_REALM_NOT_SERVED = 3003
    DIAMETER_TOO_BUSY = 3004
    DIAMETER_APPLICATION_UNSUPPORTED = 3007
    DIAMETER_INVALID_HDR_BITS = 3008
    DIAMETER_INVALID_AVP_BITS = 3009
    DIAMETER_UNKNOWN_PEER = 3010
    DIAMETER_AVP_UNSUPPORTED = 5001
    DIAMETER_UNKNOWN_SESSION_ID = 5002
    DIAMETER_AUTHORIZATION_REJECTED = 5003
    DIAMETER_INVALID_AVP_VALUE = 5004
    DIAMETER_MISSING_AVP = 5005
    DIAMETER_NO_COMMON_APPLICATION = 5010
    DIAMETER_UNSUPPORTED_VERSION = 5011
    DIAMETER_UNABLE_TO_COMPLY = 5012
    DIAMETER_INVALID_AVP_LENGTH = 5014
    DIAMETER_INVALID_MESSAGE_LENGTH = 5015


_HEADER = struct.Struct("!IIIII")
_AVP_HEADER = struct.Struct("!II")
_AVP_VENDOR_HEADER = struct.Struct("!III")
_UINT32 = struct.Struct("!I")
# Payload sizes of the fixed-width AVP types; anything else there is DIAMETER_INVALID_AVP_LENGTH.
_FIXED_PAYLOAD = {AvpInteger32: 4, AvpUnsigned32: 4, AvpFloat32: 4, AvpTime: 4,
                  AvpInteger64: 8, AvpUnsigned64: 8, AvpFloat64: 8}


def message_length(header: bytes, max_length: int = DEFAULT_MAX_MESSAGE_LENGTH) -> int:
    """Length announced by a 20-byte header; a bad one means framing is lost (fatal)."""
    length = int.from_bytes(header[1:4], "big")
    if length < HEADER_LENGTH or length % 4 or length > max_length:
        raise ProtocolError(ResultCode.DIAMETER_INVALID_MESSAGE_LENGTH,
                            f"message length {length} is invalid", fatal=True)
    return length


def serialize(msg: Message) -> bytes:
    """The wire form of a message: the same bytes as `Message.as_bytes()`, framed here from the
    AVPs' encoded payloads at about a third of the cost."""
    body = b"".join([_avp_bytes(avp) for avp in msg.avps])
    header = msg.header
    return _HEADER.pack(0x01000000 | (HEADER_LENGTH + len(body)),
                        header.command_flags << 24 | header.command_code, header.application_id,
                        header.hop_by_hop_identifier, header.end_to_end_identifier) + body


def _avp_bytes(avp: Avp) -> bytes:
    payload = avp.payload
    if avp.vendor_id:
        head = _AVP_VENDOR_HEADER.pack(avp.code, avp.flags << 24 | (12 + len(payload)),
                                       avp.vendor_id)
    else:
        head = _AVP_HEADER.pack(avp.code, avp.flags << 24 | (8 + len(payload)))
    return head + payload + b"\0" * (-len(payload) % 4)


def parse_message(data: bytes) -> Message:
    """Decode one complete message, checking what RFC 6733 asks a receiver to check."""
    if data[0] != 1:
        raise ProtocolError(ResultCode.DIAMETER_UNSUPPORTED_VERSION,
                            f"unsupported Diameter version {data[0]}")
    header = read_header(data)
    avps, violation = _decode_avps(data, header.is_request)
    if header.is_request and header.is_error:
        raise ProtocolError(ResultCode.DIAMETER_INVALID_HDR_BITS, "E bit set in a request",
                            session_id=first_session_id(avps))
    if violation is not None:
        code, message, failed = violation
        raise ProtocolError(code, message, failed_avp=_avp_bytes(failed),
                            session_id=first_session_id(avps))
    return Message(header, avps)


def _decode_avps(data: bytes, is_request: bool) -> tuple[list[Avp], tuple | None]:
    """The AVPs, each built as the dictionary type python-diameter's own decoder would pick,
    and the first AVP a receiver must refuse: (result code, text, AVP), or None.

    The AVP headers are walked here (python-diameter does not check lengths). A length that
    breaks the framing raises at once; a refused AVP is only reported once every AVP is read,
    so a framing error further on still wins."""
    avps: list[Avp] = []
    violation = None
    pos, end = HEADER_LENGTH, len(data)
    while pos < end:
        if end - pos < 8:
            raise _avp_length_error(data, pos, 8, "truncated AVP header", avps, fatal=True)
        code, flags_length = _AVP_HEADER.unpack_from(data, pos)
        flags, length = flags_length >> 24, flags_length & 0xFFFFFF
        vendor_flagged = flags & AVP_FLAG_VENDOR
        minimum = 12 if vendor_flagged else 8
        if length < minimum:
            raise _avp_length_error(data, pos, minimum,
                                    f"AVP {code} length {length} is shorter than its header", avps)
        if pos + length > end:
            # The message length and the AVPs disagree: the stream boundary cannot be trusted.
            raise _avp_length_error(data, pos, minimum,
                                    f"AVP {code} (length {length}) runs past the message end",
                                    avps, fatal=True)
        vendor = _UINT32.unpack_from(data, pos + 8)[0] if vendor_flagged else 0
        kind, name, _, size = _avp_kind(code, vendor)
        built = _built(kind, name, code, vendor, flags, data[pos + minimum:pos + length])
        avps.append(built)
        if violation is None:
            if size is not None and length - minimum != size:
                violation = (ResultCode.DIAMETER_INVALID_AVP_LENGTH,
                             f"AVP {code} carries {length - minimum} bytes, expected {size}",
                             built)
            # An AVP missing from the dictionary is one we do not understand; with the M bit
            # set in a request we must refuse the request.
            elif kind is Avp and is_request and flags & AVP_FLAG_MANDATORY:
                violation = (ResultCode.DIAMETER_AVP_UNSUPPORTED,
                             f"unsupported mandatory AVP {code} (vendor {vendor})", built)
        pos += (length + 3) & ~3
    return avps, violation


def read_header(data: bytes) -> MessageHeader:
    """The header of a message: what ``MessageHeader.from_bytes`` returns, read in one unpack."""
    version_length, flags_code, application, hop_by_hop, end_to_end = _HEADER.unpack_from(data)
    header = MessageHeader(version_length >> 24, version_length & 0xFFFFFF, flags_code >> 24,
                           flags_code & 0xFFFFFF, application, hop_by_hop, end_to_end)
    header.length_header = HEADER_LENGTH
    return header


@lru_cache(maxsize=1024)  # bounded: a peer may send any number of unknown codes
def _avp_kind(code: int, vendor: int) -> tuple[type[Avp], str, bool | None, int | None]:
    """The dictionary's type, name and mandatory flag of an AVP, and its payload size when the
    type has a fixed one; plain ``Avp`` when unknown."""
    entry = get_avp_dictionary_entry(code, vendor)
    if entry is None:
        return Avp, "Unknown", None, None
    kind = entry["type"]
    return kind, entry["name"], entry.get("mandatory"), _FIXED_PAYLOAD.get(kind)


def _built(kind: type[Avp], name: str, code: int, vendor: int, flags: int,
           payload: bytes) -> Avp:
    # The object ``kind(code, vendor, payload, flags)`` builds, without going through its
    # property setters: they made up a third of decoding every SAR and SAA. The flags keep
    # the V bit in step with the vendor, as the setter does. python-diameter is pinned.
    built = kind.__new__(kind)
    built.code, built.payload, built.name, built._vendor_id = code, payload, name, vendor
    built.flags = flags | AVP_FLAG_VENDOR if vendor else flags & ~AVP_FLAG_VENDOR
    return built


def _avp_length_error(data: bytes, pos: int, header_size: int, message: str, avps: list[Avp],
                      fatal: bool = False) -> ProtocolError:
    # RFC 6733 7.1.5: the offending AVP header followed by a zero-filled minimal payload.
    failed = data[pos:pos + header_size].ljust(header_size, b"\0") + b"\0" * 4
    return ProtocolError(ResultCode.DIAMETER_INVALID_AVP_LENGTH, message, failed_avp=failed,
                         fatal=fatal, session_id=first_session_id(avps))


def first_session_id(avps: list[Avp]) -> str | None:
    """The Session-Id, when the message starts with one as RFC 6733 requires."""
    if avps and avps[0].code == AVP_SESSION_ID and avps[0].vendor_id == 0:
        try:
            return avps[0].value
        except AvpDecodeError:
            return None
    return None


class AvpReader:
    """The top-level AVPs of a message or grouped AVP, indexed by (code, vendor)."""
    __slots__ = ("_index",)

    def __init__(self, avps: list[Avp]):
        index: dict[tuple[int, int], list[Avp]] = {}
        for avp in avps:
            index.setdefault((avp.code, avp.vendor_id), []).append(avp)
        self._index = index

    def has(self, code: int, vendor: int = 0) -> bool:
        return (code, vendor) in self._index

    def value(self, code: int, vendor: int = 0):
        found = self._index.get((code, vendor))
        return _decoded(found[0]) if found else None

    def values(self, code: int, vendor: int = 0) -> list:
        return [_decoded(avp) for avp in self._index.get((code, vendor), ())]

    def text(self, code: int, vendor: int = 0) -> str | None:
        return _as_text(self.value(code, vendor), code)

    def texts(self, code: int, vendor: int = 0) -> list[str]:
        return [_as_text(value, code) for value in self.values(code, vendor)]

    def group(self, code: int, vendor: int = 0) -> AvpReader | None:
        found = self.value(code, vendor)
        return AvpReader(found) if found is not None else None

    def groups(self, code: int, vendor: int = 0) -> list[AvpReader]:
        return [AvpReader(value) for value in self.values(code, vendor)]


def _decoded(avp: Avp):
    try:
        return avp.value
    except AvpDecodeError as exc:
        raise ProtocolError(ResultCode.DIAMETER_INVALID_AVP_VALUE, str(exc),
                            failed_avp=avp.as_bytes()) from None


def _as_text(value, code: int) -> str | None:
    if isinstance(value, bytes):  # DiameterIdentity and OctetString AVPs
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise ProtocolError(ResultCode.DIAMETER_INVALID_AVP_VALUE,
                                f"AVP {code} is not valid UTF-8") from None
    return value


def avp(code: int, value, vendor: int = 0, *, mandatory: bool | None = None) -> Avp:
    """A new AVP typed and flagged from python-diameter's dictionary, as ``Avp.new`` builds it
    (its value encoded by the type's own setter) at half the cost."""
    kind, name, dictionary_mandatory, _ = _avp_kind(code, vendor)
    if kind is Avp or (issubclass(kind, (AvpAddress, AvpGrouped))
                       and not isinstance(value, list)):
        return Avp.new(code, vendor, value=value, is_mandatory=mandatory)  # its special cases
    if mandatory is None:
        mandatory = dictionary_mandatory
    built = _built(kind, name, code, vendor, AVP_FLAG_MANDATORY if mandatory else 0, b"")
    try:
        built.value = value
    except Exception as exc:
        raise AvpEncodeError(f"Failed to set initial value for AVP {name} ({code}) as "
                             f"{value}: {exc}") from None
    return built


@lru_cache(maxsize=64)
def origin_avps(host: str, realm: str) -> tuple[Avp, Avp]:
    """Origin-Host and Origin-Realm; cached because every message of a node repeats them."""
    return avp(AVP_ORIGIN_HOST, host.encode()), avp(AVP_ORIGIN_REALM, realm.encode())


@lru_cache(maxsize=16)
def vendor_specific_application_id(vendor: int, auth_application_id: int) -> Avp:
    return avp(AVP_VENDOR_SPECIFIC_APPLICATION_ID,
               [avp(AVP_VENDOR_ID, vendor), avp(AVP_AUTH_APPLICATION_ID, auth_application_id)])


@lru_cache(maxsize=64)
def result_avp(code: int) -> Avp:
    return avp(AVP_RESULT_CODE, int(code))


@lru_cache(maxsize=64)
def experimental_result_avp(code: int, vendor: int = VENDOR_3GPP) -> Avp:
    return avp(AVP_EXPERIMENTAL_RESULT,
               [avp(AVP_VENDOR_ID, vendor), avp(AVP_EXPERIMENTAL_RESULT_CODE, int(code))])


def read_result(reader: AvpReader) -> tuple[int | None, int | None]:
    """(Result-Code, Experimental-Result-Code) of an answer; at least one should be present."""
    experimental = reader.group(AVP_EXPERIMENTAL_RESULT)
    return (reader.value(AVP_RESULT_CODE),
            experimental.value(AVP_EXPERIMENTAL_RESULT_CODE) if experimental else None)


def new_request(command: int, avps: list[Avp], *, application_id: int,
                proxiable: bool = True) -> Message:
    flags = FLAG_REQUEST | (FLAG_PROXIABLE if proxiable else 0)
    return Message(MessageHeader(command_flags=flags, command_code=command,
                                 application_id=application_id), avps)


def new_answer(request: MessageHeader, avps: list[Avp], *, error: bool = False) -> Message:
    """An answer echoing the request's command, application, P bit and identifiers."""
    flags = (request.command_flags & FLAG_PROXIABLE) | (FLAG_ERROR if error else 0)
    return Message(MessageHeader(command_flags=flags, command_code=request.command_code,
                                 application_id=request.application_id,
                                 hop_by_hop_identifier=request.hop_by_hop_identifier,
                                 end_to_end_identifier=request.end_to_end_identifier), avps)


# RFC 6733 3: high 12 bits from the start time, low 20 random, then incremented per request.
_end_to_end_ids = itertools.count(((int(time.time()) & 0xFFF) << 20) | random.getrandbits(20))


def next_end_to_end_id() -> int:
    return next(_end_to_end_ids) & 0xFFFFFFFF


class SessionIds:
    """Session-Id values `<origin-host>;<boot time>;<counter>` (RFC 6733 8.8)."""

    def __init__(self, origin_host: str):
        self._prefix = f"{origin_host};{int(time.time()) & 0xFFFFFFFF};"
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter)}"
