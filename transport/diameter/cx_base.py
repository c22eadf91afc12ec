"""Cx enums, the data classes carried by Cx commands, and the AVPs every Cx message shares.

TS 29.228 gives the procedures and information elements, TS 29.229 the Diameter encoding.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from diameter.message import Avp, Message
from diameter.message.constants import (
    AVP_AUTH_SESSION_STATE,
    AVP_DESTINATION_HOST,
    AVP_DESTINATION_REALM,
    AVP_SESSION_ID,
    AVP_TGPP_CHARGING_INFORMATION,
    AVP_TGPP_PRIMARY_CHARGING_COLLECTION_FUNCTION_NAME,
    AVP_TGPP_PRIMARY_EVENT_CHARGING_FUNCTION_NAME,
    AVP_TGPP_SECONDARY_CHARGING_COLLECTION_FUNCTION_NAME,
    AVP_TGPP_SECONDARY_EVENT_CHARGING_FUNCTION_NAME,
)

from .codec import (
    CX_APPLICATION_ID,
    VENDOR_3GPP,
    AvpReader,
    ResultCode,
    avp,
    experimental_result_avp,
    first_session_id,
    new_answer,
    new_request,
    origin_avps,
    read_result,
    result_avp,
    vendor_specific_application_id,
)
from .errors import ProtocolError


class ServerAssignmentType(IntEnum):
    NO_ASSIGNMENT = 0
    REGISTRATION = 1
    RE_REGISTRATION = 2
    UNREGISTERED_USER = 3
    TIMEOUT_DEREGISTRATION = 4
    USER_DEREGISTRATION = 5
    TIMEOUT_DEREGISTRATION_STORE_SERVER_NAME = 6
    USER_DEREGISTRATION_STORE_SERVER_NAME = 7
    ADMINISTRATIVE_DEREGISTRATION = 8
    AUTHENTICATION_FAILURE = 9
    AUTHENTICATION_TIMEOUT = 10
    DEREGISTRATION_TOO_MUCH_DATA = 11
    AAA_USER_DATA_REQUEST = 12
    PGW_UPDATE = 13
    RESTORATION = 14


class CxResult(IntEnum):
    """Cx result codes. Success and errors of the Cx application travel as
    Experimental-Result-Code (vendor 10415); DIAMETER_SUCCESS travels as the base Result-Code.
    Both are 2001, so DIAMETER_SUCCESS is an alias here: the field a code came from
    (`result_code` or `experimental_result_code`) is what tells them apart. Other base
    Result-Code values are in `ResultCode`."""
    DIAMETER_FIRST_REGISTRATION = 2001
    DIAMETER_SUCCESS = 2001
    DIAMETER_SUBSEQUENT_REGISTRATION = 2002
    DIAMETER_UNREGISTERED_SERVICE = 2003
    DIAMETER_SUCCESS_SERVER_NAME_NOT_STORED = 2004
    DIAMETER_ERROR_USER_UNKNOWN = 5001
    DIAMETER_ERROR_IDENTITIES_DONT_MATCH = 5002
    DIAMETER_ERROR_IDENTITY_NOT_REGISTERED = 5003
    DIAMETER_ERROR_ROAMING_NOT_ALLOWED = 5004
    DIAMETER_ERROR_IDENTITY_ALREADY_REGISTERED = 5005
    DIAMETER_ERROR_AUTH_SCHEME_NOT_SUPPORTED = 5006
    DIAMETER_ERROR_IN_ASSIGNMENT_TYPE = 5007
    DIAMETER_ERROR_TOO_MUCH_DATA = 5008
    DIAMETER_ERROR_NOT_SUPPORTED_USER_DATA = 5009
    DIAMETER_ERROR_FEATURE_UNSUPPORTED = 5011


class DeregistrationReasonCode(IntEnum):
    PERMANENT_TERMINATION = 0
    NEW_SERVER_ASSIGNED = 1
    SERVER_CHANGE = 2
    REMOVE_S_CSCF = 3


def describe_result(result_code: int | None, experimental_result_code: int | None) -> str:
    if experimental_result_code is not None:
        name = _name(CxResult, experimental_result_code)
        return f"{name} (experimental {experimental_result_code})"
    if result_code is not None:
        return f"{_name(ResultCode, result_code)} ({result_code})"
    return "no result code"


def _name(enum: type[IntEnum], code: int) -> str:
    try:
        return enum(code).name
    except ValueError:
        return "unknown result"


class AnswerOutcome:
    """`success` and `description` for answer data classes with the two result fields."""
    result_code: int | None
    experimental_result_code: int | None

    @property
    def success(self) -> bool:
        code = self.result_code if self.result_code is not None else self.experimental_result_code
        return code is not None and 2000 <= code < 3000

    @property
    def description(self) -> str:
        return describe_result(self.result_code, self.experimental_result_code)


@dataclass
class SarRequest:
    public_identity: str  # "" when only User-Name is sent (de-registration of a whole IMPI)
    user_name: str | None  # the IMPI
    server_name: str
    assignment_type: ServerAssignmentType
    user_data_already_available: bool = False
    wildcarded_public_identity: str | None = None
    multiple_registration_indication: bool = False
    destination_realm: str | None = None
    destination_host: str | None = None


@dataclass
class SaaResult(AnswerOutcome):
    result_code: int | None
    experimental_result_code: int | None
    user_data: str | None
    charging_information: dict | None
    associated_identities: list[str]
    user_name: str | None
    wildcarded_public_identity: str | None
    server_name: str | None = None  # the S-CSCF already assigned, on some refusals
    origin_host: str | None = None  # the HSS that answered: later requests for the user go there


@dataclass
class SipAuthItem:
    """One SIP-Auth-Data-Item: AKA vectors or SIP Digest (TS 29.229 6.3.13)."""
    scheme: str
    item_number: int | None = None
    authenticate: bytes | None = None  # AKA: RAND || AUTN
    authorization: bytes | None = None  # AKA: XRES
    confidentiality_key: bytes | None = None
    integrity_key: bytes | None = None
    digest_realm: str | None = None  # SIP Digest: the members of SIP-Digest-Authenticate
    digest_algorithm: str | None = None
    digest_qop: str | None = None
    digest_ha1: str | None = None


@dataclass
class MarRequest:
    public_identity: str
    user_name: str
    server_name: str
    auth_scheme: str = "Unknown"  # "Unknown" lets the HSS pick the user's scheme
    number_auth_items: int = 1
    resync_authorization: bytes | None = None  # AKA resynchronisation: RAND || AUTS
    destination_realm: str | None = None
    destination_host: str | None = None


@dataclass
class MaaResult(AnswerOutcome):
    result_code: int | None
    experimental_result_code: int | None
    user_name: str | None
    public_identity: str | None
    number_auth_items: int | None
    auth_items: list[SipAuthItem]


@dataclass
class RtrRequest:
    user_name: str
    reason_code: DeregistrationReasonCode
    reason_info: str | None = None
    public_identities: list[str] = field(default_factory=list)  # empty: every IMPU of the IMPI
    associated_identities: list[str] = field(default_factory=list)  # further IMPIs


@dataclass
class RtaResult(AnswerOutcome):
    result_code: int | None
    experimental_result_code: int | None
    associated_identities: list[str]


@dataclass
class PprRequest:
    user_name: str
    user_data: str | None = None
    charging_information: dict | None = None


@dataclass
class PpaResult(AnswerOutcome):
    result_code: int | None
    experimental_result_code: int | None


# -- the AVPs every Cx message shares -----------------------------------------------------------

_CX_APPLICATION = vendor_specific_application_id(VENDOR_3GPP, CX_APPLICATION_ID)
_NO_STATE_MAINTAINED = avp(AVP_AUTH_SESSION_STATE, 1)
_CHARGING_AVPS = {
    "primary_event_charging_function_name": AVP_TGPP_PRIMARY_EVENT_CHARGING_FUNCTION_NAME,
    "secondary_event_charging_function_name": AVP_TGPP_SECONDARY_EVENT_CHARGING_FUNCTION_NAME,
    "primary_charging_collection_function_name": AVP_TGPP_PRIMARY_CHARGING_COLLECTION_FUNCTION_NAME,
    "secondary_charging_collection_function_name":
        AVP_TGPP_SECONDARY_CHARGING_COLLECTION_FUNCTION_NAME,
}
CHARGING_INFORMATION_KEYS = frozenset(_CHARGING_AVPS)


def cx_request(command: int, session_id: str, origin_host: str, origin_realm: str,
               destination_realm: str | None, destination_host: str | None,
               avps: list[Avp]) -> Message:
    if not destination_realm:
        raise ValueError("a Cx request needs a Destination-Realm")
    head = [avp(AVP_SESSION_ID, session_id), _CX_APPLICATION, _NO_STATE_MAINTAINED,
            *origin_avps(origin_host, origin_realm)]
    if destination_host:
        head.append(avp(AVP_DESTINATION_HOST, destination_host.encode()))
    head.append(avp(AVP_DESTINATION_REALM, destination_realm.encode()))
    return new_request(command, head + avps, application_id=CX_APPLICATION_ID)


def cx_answer(request: Message, origin_host: str, origin_realm: str, *,
              result_code: int | None = None, experimental_result_code: int | None = None,
              avps: list[Avp] = ()) -> Message:
    """An answer to `request` with DIAMETER_SUCCESS unless a result is given."""
    if experimental_result_code is not None:
        result = experimental_result_avp(experimental_result_code)
    else:
        result = result_avp(ResultCode.DIAMETER_SUCCESS if result_code is None else result_code)
    session_id = first_session_id(request.avps)
    head = [avp(AVP_SESSION_ID, session_id)] if session_id else []
    head += [_CX_APPLICATION, result, _NO_STATE_MAINTAINED, *origin_avps(origin_host, origin_realm)]
    return new_answer(request.header, head + list(avps))


def answer_reader(msg: Message) -> tuple[AvpReader, int | None, int | None]:
    reader = AvpReader(msg.avps)
    return (reader, *read_result(reader))


def required(reader: AvpReader, code: int, vendor: int, name: str):
    value = reader.value(code, vendor)
    if value is None:
        # RFC 6733 7.1.5: Failed-AVP shows an example of the missing AVP.
        raise ProtocolError(ResultCode.DIAMETER_MISSING_AVP, f"{name} is missing",
                            failed_avp=Avp(code, vendor).as_bytes())
    return value.decode() if isinstance(value, bytes) else value


def required_enum(reader: AvpReader, enum: type, code: int, vendor: int, name: str):
    """A mandatory Enumerated AVP as a member of ``enum``; a value the enum lacks is 5004."""
    value = required(reader, code, vendor, name)
    try:
        return enum(value)
    except ValueError:
        raise ProtocolError(ResultCode.DIAMETER_INVALID_AVP_VALUE,
                            f"{name} {value} is not defined") from None


def charging_information_avp(info: dict) -> Avp:
    unknown = set(info) - CHARGING_INFORMATION_KEYS
    if unknown:
        raise ValueError(f"unknown charging information keys: {sorted(unknown)}")
    return avp(AVP_TGPP_CHARGING_INFORMATION,
               [avp(_CHARGING_AVPS[key], value, VENDOR_3GPP) for key, value in info.items()],
               VENDOR_3GPP)


def read_charging_information(reader: AvpReader) -> dict | None:
    group = reader.group(AVP_TGPP_CHARGING_INFORMATION, VENDOR_3GPP)
    if group is None:
        return None
    return {key: group.text(code, VENDOR_3GPP) for key, code in _CHARGING_AVPS.items()
            if group.has(code, VENDOR_3GPP)}
