"""Commands the S-CSCF sends: Server-Assignment (SAR/SAA) and Multimedia-Auth (MAR/MAA).

Each command has the four codec functions, so the S-CSCF side and the HSS emulator share them.
"""
from __future__ import annotations

from diameter.message import Avp, Message
from diameter.message.constants import (
    AVP_DESTINATION_HOST,
    AVP_DESTINATION_REALM,
    AVP_DIGEST_ALGORITHM,
    AVP_DIGEST_HA1,
    AVP_DIGEST_QOP,
    AVP_DIGEST_REALM,
    AVP_ORIGIN_HOST,
    AVP_TGPP_3GPP_SIP_AUTH_DATA_ITEM,
    AVP_TGPP_3GPP_SIP_AUTHENTICATE,
    AVP_TGPP_3GPP_SIP_AUTHENTICATION_SCHEME,
    AVP_TGPP_3GPP_SIP_AUTHORIZATION,
    AVP_TGPP_3GPP_SIP_ITEM_NUMBER,
    AVP_TGPP_3GPP_SIP_NUMBER_AUTH_ITEMS,
    AVP_TGPP_ASSOCIATED_IDENTITIES,
    AVP_TGPP_CONFIDENTIALITY_KEY,
    AVP_TGPP_CX_USER_DATA,
    AVP_TGPP_INTEGRITY_KEY,
    AVP_TGPP_MULTIPLE_REGISTRATION_INDICATION,
    AVP_TGPP_PUBLIC_IDENTITY,
    AVP_TGPP_SERVER_ASSIGNMENT_TYPE,
    AVP_TGPP_SERVER_NAME,
    AVP_TGPP_SIP_DIGEST_AUTHENTICATE,
    AVP_TGPP_USER_DATA_ALREADY_AVAILABLE,
    AVP_TGPP_WILDCARDED_PSI,
    AVP_USER_NAME,
)

from .codec import VENDOR_3GPP as V3GPP
from .codec import AvpReader, Command, avp
from .cx_base import (
    MaaResult,
    MarRequest,
    SaaResult,
    SarRequest,
    ServerAssignmentType,
    SipAuthItem,
    answer_reader,
    charging_information_avp,
    cx_answer,
    cx_request,
    read_charging_information,
    required,
    required_enum,
)

# -- Server-Assignment --------------------------------------------------------------------------


def encode_sar(req: SarRequest, origin_host: str, origin_realm: str, session_id: str,
               destination_realm: str | None = None) -> Message:
    """`destination_realm` is the default used when the request names none."""
    avps = []
    if req.user_name:
        avps.append(avp(AVP_USER_NAME, req.user_name))
    if req.public_identity:
        avps.append(avp(AVP_TGPP_PUBLIC_IDENTITY, req.public_identity, V3GPP))
    if req.wildcarded_public_identity:
        avps.append(avp(AVP_TGPP_WILDCARDED_PSI, req.wildcarded_public_identity, V3GPP))
    avps += [avp(AVP_TGPP_SERVER_NAME, req.server_name, V3GPP),
             avp(AVP_TGPP_SERVER_ASSIGNMENT_TYPE, int(req.assignment_type), V3GPP),
             avp(AVP_TGPP_USER_DATA_ALREADY_AVAILABLE, int(req.user_data_already_available),
                 V3GPP)]
    if req.multiple_registration_indication:
        avps.append(avp(AVP_TGPP_MULTIPLE_REGISTRATION_INDICATION, 1, V3GPP))
    return cx_request(Command.SERVER_ASSIGNMENT, session_id, origin_host, origin_realm,
                      req.destination_realm or destination_realm, req.destination_host, avps)


def decode_sar(msg: Message) -> SarRequest:
    reader = AvpReader(msg.avps)
    assignment_type = required_enum(reader, ServerAssignmentType, AVP_TGPP_SERVER_ASSIGNMENT_TYPE,
                                    V3GPP, "Server-Assignment-Type")
    return SarRequest(
        public_identity=reader.text(AVP_TGPP_PUBLIC_IDENTITY, V3GPP) or "",
        user_name=reader.text(AVP_USER_NAME),
        server_name=required(reader, AVP_TGPP_SERVER_NAME, V3GPP, "Server-Name"),
        assignment_type=assignment_type,
        user_data_already_available=bool(reader.value(AVP_TGPP_USER_DATA_ALREADY_AVAILABLE,
                                                      V3GPP)),
        wildcarded_public_identity=reader.text(AVP_TGPP_WILDCARDED_PSI, V3GPP),
        multiple_registration_indication=bool(
            reader.value(AVP_TGPP_MULTIPLE_REGISTRATION_INDICATION, V3GPP)),
        destination_realm=reader.text(AVP_DESTINATION_REALM),
        destination_host=reader.text(AVP_DESTINATION_HOST))


def encode_saa(request: Message, origin_host: str, origin_realm: str, *,
               result_code: int | None = None, experimental_result_code: int | None = None,
               user_name: str | None = None, user_data: str | bytes | None = None,
               charging_information: dict | None = None, associated_identities=(),
               wildcarded_public_identity: str | None = None,
               server_name: str | None = None) -> Message:
    avps: list[Avp] = []
    if user_name:
        avps.append(avp(AVP_USER_NAME, user_name))
    if user_data is not None:
        data = user_data.encode() if isinstance(user_data, str) else user_data
        avps.append(avp(AVP_TGPP_CX_USER_DATA, data, V3GPP))
    if charging_information:
        avps.append(charging_information_avp(charging_information))
    if associated_identities:
        avps.append(avp(AVP_TGPP_ASSOCIATED_IDENTITIES,
                        [avp(AVP_USER_NAME, name) for name in associated_identities], V3GPP))
    if wildcarded_public_identity:
        avps.append(avp(AVP_TGPP_WILDCARDED_PSI, wildcarded_public_identity, V3GPP))
    if server_name:
        avps.append(avp(AVP_TGPP_SERVER_NAME, server_name, V3GPP))
    return cx_answer(request, origin_host, origin_realm, result_code=result_code,
                     experimental_result_code=experimental_result_code, avps=avps)


def decode_saa(msg: Message) -> SaaResult:
    reader, result_code, experimental = answer_reader(msg)
    associated = [name for group in reader.groups(AVP_TGPP_ASSOCIATED_IDENTITIES, V3GPP)
                  for name in group.texts(AVP_USER_NAME)]
    return SaaResult(result_code=result_code, experimental_result_code=experimental,
                     user_data=reader.text(AVP_TGPP_CX_USER_DATA, V3GPP),
                     charging_information=read_charging_information(reader),
                     associated_identities=associated,
                     user_name=reader.text(AVP_USER_NAME),
                     wildcarded_public_identity=reader.text(AVP_TGPP_WILDCARDED_PSI, V3GPP),
                     server_name=reader.text(AVP_TGPP_SERVER_NAME, V3GPP),
                     origin_host=reader.text(AVP_ORIGIN_HOST))


# -- Multimedia-Auth ----------------------------------------------------------------------------


def encode_mar(req: MarRequest, origin_host: str, origin_realm: str, session_id: str,
               destination_realm: str | None = None) -> Message:
    item = [avp(AVP_TGPP_3GPP_SIP_AUTHENTICATION_SCHEME, req.auth_scheme, V3GPP)]
    if req.resync_authorization:
        item.append(avp(AVP_TGPP_3GPP_SIP_AUTHORIZATION, req.resync_authorization, V3GPP))
    avps = [avp(AVP_USER_NAME, req.user_name),
            avp(AVP_TGPP_PUBLIC_IDENTITY, req.public_identity, V3GPP),
            avp(AVP_TGPP_3GPP_SIP_AUTH_DATA_ITEM, item, V3GPP),
            avp(AVP_TGPP_3GPP_SIP_NUMBER_AUTH_ITEMS, req.number_auth_items, V3GPP),
            avp(AVP_TGPP_SERVER_NAME, req.server_name, V3GPP)]
    return cx_request(Command.MULTIMEDIA_AUTH, session_id, origin_host, origin_realm,
                      req.destination_realm or destination_realm, req.destination_host, avps)


def decode_mar(msg: Message) -> MarRequest:
    reader = AvpReader(msg.avps)
    item = reader.group(AVP_TGPP_3GPP_SIP_AUTH_DATA_ITEM, V3GPP) or AvpReader([])
    return MarRequest(
        public_identity=required(reader, AVP_TGPP_PUBLIC_IDENTITY, V3GPP, "Public-Identity"),
        user_name=required(reader, AVP_USER_NAME, 0, "User-Name"),
        server_name=required(reader, AVP_TGPP_SERVER_NAME, V3GPP, "Server-Name"),
        auth_scheme=item.text(AVP_TGPP_3GPP_SIP_AUTHENTICATION_SCHEME, V3GPP) or "Unknown",
        number_auth_items=reader.value(AVP_TGPP_3GPP_SIP_NUMBER_AUTH_ITEMS, V3GPP) or 1,
        resync_authorization=item.value(AVP_TGPP_3GPP_SIP_AUTHORIZATION, V3GPP),
        destination_realm=reader.text(AVP_DESTINATION_REALM),
        destination_host=reader.text(AVP_DESTINATION_HOST))


def encode_maa(request: Message, origin_host: str, origin_realm: str, *,
               result_code: int | None = None, experimental_result_code: int | None = None,
               user_name: str | None = None, public_identity: str | None = None,
               auth_items: list[SipAuthItem] = ()) -> Message:
    avps: list[Avp] = []
    if user_name:
        avps.append(avp(AVP_USER_NAME, user_name))
    if public_identity:
        avps.append(avp(AVP_TGPP_PUBLIC_IDENTITY, public_identity, V3GPP))
    if auth_items:
        avps.append(avp(AVP_TGPP_3GPP_SIP_NUMBER_AUTH_ITEMS, len(auth_items), V3GPP))
        avps += [_auth_item_avp(item) for item in auth_items]
    return cx_answer(request, origin_host, origin_realm, result_code=result_code,
                     experimental_result_code=experimental_result_code, avps=avps)


def decode_maa(msg: Message) -> MaaResult:
    reader, result_code, experimental = answer_reader(msg)
    return MaaResult(result_code=result_code, experimental_result_code=experimental,
                     user_name=reader.text(AVP_USER_NAME),
                     public_identity=reader.text(AVP_TGPP_PUBLIC_IDENTITY, V3GPP),
                     number_auth_items=reader.value(AVP_TGPP_3GPP_SIP_NUMBER_AUTH_ITEMS, V3GPP),
                     auth_items=[_read_auth_item(group) for group in
                                 reader.groups(AVP_TGPP_3GPP_SIP_AUTH_DATA_ITEM, V3GPP)])


# SipAuthItem attribute -> (AVP code, vendor) for the flat members of SIP-Auth-Data-Item.
_AUTH_ITEM_AVPS = {
    "item_number": (AVP_TGPP_3GPP_SIP_ITEM_NUMBER, V3GPP),
    "scheme": (AVP_TGPP_3GPP_SIP_AUTHENTICATION_SCHEME, V3GPP),
    "authenticate": (AVP_TGPP_3GPP_SIP_AUTHENTICATE, V3GPP),
    "authorization": (AVP_TGPP_3GPP_SIP_AUTHORIZATION, V3GPP),
    "confidentiality_key": (AVP_TGPP_CONFIDENTIALITY_KEY, V3GPP),
    "integrity_key": (AVP_TGPP_INTEGRITY_KEY, V3GPP),
}
# ... and of the SIP-Digest-Authenticate group inside it (RFC 4590 AVPs, no vendor).
_DIGEST_AVPS = {"digest_realm": AVP_DIGEST_REALM, "digest_algorithm": AVP_DIGEST_ALGORITHM,
                "digest_qop": AVP_DIGEST_QOP, "digest_ha1": AVP_DIGEST_HA1}


def _auth_item_avp(item: SipAuthItem) -> Avp:
    members = [avp(code, getattr(item, name), vendor)
               for name, (code, vendor) in _AUTH_ITEM_AVPS.items()
               if getattr(item, name) is not None]
    digest = [avp(code, getattr(item, name)) for name, code in _DIGEST_AVPS.items()
              if getattr(item, name) is not None]
    if digest:
        members.append(avp(AVP_TGPP_SIP_DIGEST_AUTHENTICATE, digest, V3GPP))
    return avp(AVP_TGPP_3GPP_SIP_AUTH_DATA_ITEM, members, V3GPP)


def _read_auth_item(group: AvpReader) -> SipAuthItem:
    fields = {name: group.value(code, vendor) for name, (code, vendor) in _AUTH_ITEM_AVPS.items()}
    digest = group.group(AVP_TGPP_SIP_DIGEST_AUTHENTICATE, V3GPP)
    if digest is not None:
        fields.update({name: digest.value(code) for name, code in _DIGEST_AVPS.items()})
    fields["scheme"] = fields["scheme"] or ""
    return SipAuthItem(**fields)
