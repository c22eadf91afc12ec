"""Commands the HSS sends: Registration-Termination (RTR/RTA) and Push-Profile (PPR/PPA)."""
from __future__ import annotations

from diameter.message import Avp, Message
from diameter.message.constants import (
    AVP_TGPP_ASSOCIATED_IDENTITIES,
    AVP_TGPP_CX_USER_DATA,
    AVP_TGPP_DEREGISTRATION_REASON,
    AVP_TGPP_PUBLIC_IDENTITY,
    AVP_TGPP_REASON_CODE,
    AVP_TGPP_REASON_INFO,
    AVP_USER_NAME,
)

from .codec import VENDOR_3GPP as V3GPP
from .codec import AvpReader, Command, avp
from .cx_base import (
    DeregistrationReasonCode,
    PpaResult,
    PprRequest,
    RtaResult,
    RtrRequest,
    answer_reader,
    charging_information_avp,
    cx_answer,
    cx_request,
    read_charging_information,
    required,
    required_enum,
)


def _associated_identities(names) -> list[Avp]:
    if not names:
        return []
    return [avp(AVP_TGPP_ASSOCIATED_IDENTITIES, [avp(AVP_USER_NAME, n) for n in names], V3GPP)]


def _read_associated_identities(reader: AvpReader) -> list[str]:
    return [name for group in reader.groups(AVP_TGPP_ASSOCIATED_IDENTITIES, V3GPP)
            for name in group.texts(AVP_USER_NAME)]


# -- Registration-Termination -------------------------------------------------------------------


def encode_rtr(req: RtrRequest, origin_host: str, origin_realm: str, session_id: str,
               destination_host: str, destination_realm: str) -> Message:
    reason = [avp(AVP_TGPP_REASON_CODE, int(req.reason_code), V3GPP)]
    if req.reason_info:
        reason.append(avp(AVP_TGPP_REASON_INFO, req.reason_info, V3GPP))
    avps = [avp(AVP_USER_NAME, req.user_name),
            *_associated_identities(req.associated_identities),
            *(avp(AVP_TGPP_PUBLIC_IDENTITY, impu, V3GPP) for impu in req.public_identities),
            avp(AVP_TGPP_DEREGISTRATION_REASON, reason, V3GPP)]
    return cx_request(Command.REGISTRATION_TERMINATION, session_id, origin_host, origin_realm,
                      destination_realm, destination_host, avps)


def decode_rtr(msg: Message) -> RtrRequest:
    reader = AvpReader(msg.avps)
    reason = AvpReader(required(reader, AVP_TGPP_DEREGISTRATION_REASON, V3GPP,
                                "Deregistration-Reason"))
    reason_code = required_enum(reason, DeregistrationReasonCode, AVP_TGPP_REASON_CODE, V3GPP,
                                "Reason-Code")
    return RtrRequest(user_name=required(reader, AVP_USER_NAME, 0, "User-Name"),
                      reason_code=reason_code,
                      reason_info=reason.text(AVP_TGPP_REASON_INFO, V3GPP),
                      public_identities=reader.texts(AVP_TGPP_PUBLIC_IDENTITY, V3GPP),
                      associated_identities=_read_associated_identities(reader))


def encode_rta(request: Message, origin_host: str, origin_realm: str, *,
               result_code: int | None = None, experimental_result_code: int | None = None,
               associated_identities=()) -> Message:
    return cx_answer(request, origin_host, origin_realm, result_code=result_code,
                     experimental_result_code=experimental_result_code,
                     avps=_associated_identities(associated_identities))


def decode_rta(msg: Message) -> RtaResult:
    reader, result_code, experimental = answer_reader(msg)
    return RtaResult(result_code=result_code, experimental_result_code=experimental,
                     associated_identities=_read_associated_identities(reader))


# -- Push-Profile -------------------------------------------------------------------------------


def encode_ppr(req: PprRequest, origin_host: str, origin_realm: str, session_id: str,
               destination_host: str, destination_realm: str) -> Message:
    avps = [avp(AVP_USER_NAME, req.user_name)]
    if req.user_data is not None:
        avps.append(avp(AVP_TGPP_CX_USER_DATA, req.user_data.encode(), V3GPP))
    if req.charging_information:
        avps.append(charging_information_avp(req.charging_information))
    return cx_request(Command.PUSH_PROFILE, session_id, origin_host, origin_realm,
                      destination_realm, destination_host, avps)


def decode_ppr(msg: Message) -> PprRequest:
    reader = AvpReader(msg.avps)
    return PprRequest(user_name=required(reader, AVP_USER_NAME, 0, "User-Name"),
                      user_data=reader.text(AVP_TGPP_CX_USER_DATA, V3GPP),
                      charging_information=read_charging_information(reader))


def encode_ppa(request: Message, origin_host: str, origin_realm: str, *,
               result_code: int | None = None,
               experimental_result_code: int | None = None) -> Message:
    return cx_answer(request, origin_host, origin_realm, result_code=result_code,
                     experimental_result_code=experimental_result_code)


def decode_ppa(msg: Message) -> PpaResult:
    _, result_code, experimental = answer_reader(msg)
    return PpaResult(result_code=result_code, experimental_result_code=experimental)
