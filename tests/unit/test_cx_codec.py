"""Cx command codecs: round trips, wire layout, and interop with a captured Kamailio exchange."""
from datetime import datetime, timezone

import pytest
from diameter.message import Avp, Message
from diameter.message.avp import AvpEncodeError
from diameter.message.constants import (
    AVP_ACCOUNTING_SUB_SESSION_ID,
    AVP_AUTH_APPLICATION_ID,
    AVP_EVENT_TIMESTAMP,
    AVP_HOST_IP_ADDRESS,
    AVP_ORIGIN_HOST,
    AVP_TGPP_SERVER_ASSIGNMENT_TYPE,
    AVP_USER_NAME,
    AVP_VENDOR_ID,
    AVP_VENDOR_SPECIFIC_APPLICATION_ID,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from transport.diameter.codec import (
    CX_APPLICATION_ID,
    FLAG_PROXIABLE,
    FLAG_REQUEST,
    VENDOR_3GPP,
    avp,
    parse_message,
    serialize,
)
from transport.diameter.cx import (
    Command,
    CxResult,
    DeregistrationReasonCode,
    MarRequest,
    PprRequest,
    ResultCode,
    RtrRequest,
    SarRequest,
    ServerAssignmentType,
    SipAuthItem,
    decode_maa,
    decode_mar,
    decode_ppa,
    decode_ppr,
    decode_rta,
    decode_rtr,
    decode_saa,
    decode_sar,
    encode_maa,
    encode_mar,
    encode_ppa,
    encode_ppr,
    encode_rta,
    encode_rtr,
    encode_saa,
    encode_sar,
)
from transport.diameter.errors import ProtocolError

# A REGISTRATION SAR sent by Kamailio 5.6 (ims_registrar_scscf + cdp), and the SAA of the HSS
# stub it talked to, captured on the wire.
KAMAILIO_SAR = bytes.fromhex(
    "01000144c000012d010000002e8bd9b09806df80000001074000002673637363662e696d732e746573743b33"
    "32373835343436343b32303030310000000001084000001673637363662e696d732e74657374000000000128"
    "40000010696d732e74657374000001ee8000001d00000032312d3237303937403132372e302e302e31000000"
    "0000011b40000010696d732e7465737400000104400000200000010a4000000c000028af000001024000000c"
    "01000000000001154000000c0000000100000259c0000022000028af7369703a75736572323030303140696d"
    "732e7465737400000000025ac0000024000028af7369703a73637363662e696d732e746573743a3237303630"
    "000000014000001a75736572323030303140696d732e74657374000000000266c0000010000028af00000001"
    "00000270c0000010000028af00000000"
)
STUB_SAA = bytes.fromhex(
    "010001c84000012d010000002e8bd9b09806df80000001074000002673637363662e696d732e746573743b33"
    "32373835343436343b3230303031000000000104400000200000010a4000000c000028af000001024000000c"
    "01000000000001154000000c0000000100000108400000146873732e696d732e746573740000012840000010"
    "696d732e74657374000000014000001a75736572323030303140696d732e7465737400000000025ec0000113"
    "000028af3c3f786d6c2076657273696f6e3d22312e302220656e636f64696e673d225554462d38223f3e3c49"
    "4d53537562736372697074696f6e3e3c5072697661746549443e75736572323030303140696d732e74657374"
    "3c2f5072697661746549443e3c5365727669636550726f66696c653e3c5075626c69634964656e746974793e"
    "3c42617272696e67496e6469636174696f6e3e303c2f42617272696e67496e6469636174696f6e3e3c496465"
    "6e746974793e7369703a75736572323030303140696d732e746573743c2f4964656e746974793e3c2f507562"
    "6c69634964656e746974793e3c2f5365727669636550726f66696c653e3c2f494d5353756273637269707469"
    "6f6e3e000000010c4000000c000007d1"
)

ORIGIN = ("scscf.ims.test", "ims.test")
HSS = ("hss.ims.test", "ims.test")


def wire(msg):
    """Through the wire format and back, as a peer would see it."""
    msg.header.hop_by_hop_identifier, msg.header.end_to_end_identifier = 0x1234, 0x5678
    return parse_message(serialize(msg))


def avp_bytes(msg):
    """Each top-level AVP's encoding, from the message as it goes on the wire."""
    data, pos, found = serialize(msg), 20, []
    while pos < len(data):
        length = int.from_bytes(data[pos + 5:pos + 8], "big")
        found.append(data[pos:pos + (length + 3) // 4 * 4])
        pos += (length + 3) // 4 * 4
    return found


def test_decodes_kamailio_sar():
    sar = decode_sar(parse_message(KAMAILIO_SAR))
    assert sar == SarRequest(public_identity="sip:user20001@ims.test",
                             user_name="user20001@ims.test",
                             server_name="sip:scscf.ims.test:27060",
                             assignment_type=ServerAssignmentType.REGISTRATION,
                             destination_realm="ims.test")


def test_encodes_the_same_avps_as_kamailio():
    """Same AVP bytes as Kamailio's SAR (bar its private vendor-50 AVP); order may differ."""
    ours = encode_sar(decode_sar(parse_message(KAMAILIO_SAR)), *ORIGIN,
                      "scscf.ims.test;327854464;20001")
    theirs = [a for a in avp_bytes(parse_message(KAMAILIO_SAR))
              if int.from_bytes(a[:4], "big") != 494]
    assert sorted(avp_bytes(ours)) == sorted(theirs)
    assert avp_bytes(ours)[0] == theirs[0]  # Session-Id first


def test_decodes_stub_saa():
    saa = decode_saa(parse_message(STUB_SAA))
    assert saa.success and saa.result_code == ResultCode.DIAMETER_SUCCESS
    assert saa.user_name == "user20001@ims.test"
    assert "<Identity>sip:user20001@ims.test</Identity>" in saa.user_data


def test_sar_header_and_flags():
    msg = encode_sar(SarRequest("sip:a@ims.test", "a@ims.test", "sip:s",
                                ServerAssignmentType.REGISTRATION), *ORIGIN, "s;1;1", "ims.test")
    header = msg.header
    assert header.command_code == Command.SERVER_ASSIGNMENT
    assert header.application_id == CX_APPLICATION_ID
    assert header.command_flags == FLAG_REQUEST | FLAG_PROXIABLE
    cx_avps = [a for a in msg.avps if a.vendor_id]
    assert cx_avps and all(a.vendor_id == VENDOR_3GPP and a.flags == 0xC0 for a in cx_avps)


@pytest.mark.parametrize("kind", list(ServerAssignmentType))
def test_sar_round_trip(kind):
    req = SarRequest("sip:psi-7@ims.test", "a@ims.test", "sip:scscf.ims.test:6060", kind,
                     user_data_already_available=True,
                     wildcarded_public_identity="sip:psi-!.*!@ims.test",
                     multiple_registration_indication=True, destination_realm="ims.test",
                     destination_host="hss1.ims.test")
    assert decode_sar(wire(encode_sar(req, *ORIGIN, "s;1;2"))) == req


def test_sar_without_public_identity():
    req = SarRequest("", "a@ims.test", "sip:s", ServerAssignmentType.TIMEOUT_DEREGISTRATION,
                     destination_realm="ims.test")
    assert decode_sar(wire(encode_sar(req, *ORIGIN, "s;1;3"))) == req


def test_sar_needs_a_realm():
    with pytest.raises(ValueError):
        encode_sar(SarRequest("sip:a@x", None, "sip:s", ServerAssignmentType.REGISTRATION),
                   *ORIGIN, "s;1;4")


def test_saa_round_trip_with_everything():
    request = wire(encode_sar(SarRequest("sip:a@ims.test", "a@ims.test", "sip:s",
                                         ServerAssignmentType.REGISTRATION), *ORIGIN, "s;9;9",
                              "ims.test"))
    charging = {"primary_event_charging_function_name": "aaa://ecf1.ims.test",
                "secondary_charging_collection_function_name": "aaa://ccf2.ims.test"}
    answer = wire(encode_saa(request, *HSS, user_name="a@ims.test", user_data="<x>é</x>",
                             charging_information=charging,
                             associated_identities=["a2@ims.test", "a3@ims.test"],
                             wildcarded_public_identity="sip:p!.*!@ims.test"))
    assert answer.header.hop_by_hop_identifier == request.header.hop_by_hop_identifier
    assert answer.avps[0].value == "s;9;9"
    saa = decode_saa(answer)
    assert saa.success and saa.description == "DIAMETER_SUCCESS (2001)"
    assert (saa.user_data, saa.charging_information) == ("<x>é</x>", charging)
    assert saa.associated_identities == ["a2@ims.test", "a3@ims.test"]
    assert saa.wildcarded_public_identity == "sip:p!.*!@ims.test"


def test_saa_experimental_error():
    request = wire(encode_sar(SarRequest("sip:x@ims.test", None, "sip:s",
                                         ServerAssignmentType.REGISTRATION), *ORIGIN, "s;1;5",
                              "ims.test"))
    saa = decode_saa(wire(encode_saa(
        request, *HSS, experimental_result_code=CxResult.DIAMETER_ERROR_USER_UNKNOWN)))
    assert not saa.success
    assert (saa.result_code, saa.experimental_result_code) == (None, 5001)
    assert saa.description == "DIAMETER_ERROR_USER_UNKNOWN (experimental 5001)"
    assert saa.user_data is None and saa.associated_identities == []


def test_result_code_enums():
    assert CxResult.DIAMETER_SUCCESS == CxResult.DIAMETER_FIRST_REGISTRATION == 2001
    assert ResultCode.DIAMETER_SUCCESS == 2001
    expected = {"DIAMETER_SUBSEQUENT_REGISTRATION": 2002, "DIAMETER_UNREGISTERED_SERVICE": 2003,
                "DIAMETER_SUCCESS_SERVER_NAME_NOT_STORED": 2004,
                "DIAMETER_ERROR_USER_UNKNOWN": 5001, "DIAMETER_ERROR_IDENTITIES_DONT_MATCH": 5002,
                "DIAMETER_ERROR_IDENTITY_NOT_REGISTERED": 5003,
                "DIAMETER_ERROR_ROAMING_NOT_ALLOWED": 5004,
                "DIAMETER_ERROR_IDENTITY_ALREADY_REGISTERED": 5005,
                "DIAMETER_ERROR_AUTH_SCHEME_NOT_SUPPORTED": 5006,
                "DIAMETER_ERROR_IN_ASSIGNMENT_TYPE": 5007, "DIAMETER_ERROR_TOO_MUCH_DATA": 5008,
                "DIAMETER_ERROR_NOT_SUPPORTED_USER_DATA": 5009,
                "DIAMETER_ERROR_FEATURE_UNSUPPORTED": 5011}
    assert {name: int(CxResult[name]) for name in expected} == expected
    assert [t.value for t in ServerAssignmentType] == list(range(15))
    assert ServerAssignmentType.USER_DEREGISTRATION_STORE_SERVER_NAME == 7


def test_decode_sar_reports_missing_and_bad_avps():
    msg = encode_sar(SarRequest("sip:a@x", None, "sip:s", ServerAssignmentType.REGISTRATION),
                     *ORIGIN, "s;1;6", "x")
    missing = wire(msg)
    missing.avps = [a for a in missing.avps if a.code != 602]  # Server-Name
    with pytest.raises(ProtocolError) as err:
        decode_sar(missing)
    assert err.value.result_code == ResultCode.DIAMETER_MISSING_AVP
    assert err.value.failed_avp[:4] == (602).to_bytes(4, "big")
    undefined = wire(msg)
    next(a for a in undefined.avps if a.code == 614).value = 99
    with pytest.raises(ProtocolError) as err:
        decode_sar(undefined)
    assert err.value.result_code == ResultCode.DIAMETER_INVALID_AVP_VALUE


def test_mar_maa_round_trip():
    req = MarRequest("sip:a@ims.test", "a@ims.test", "sip:scscf.ims.test", "Digest-AKAv1-MD5",
                     number_auth_items=2, resync_authorization=b"\x01" * 30,
                     destination_realm="ims.test")
    request = wire(encode_mar(req, *ORIGIN, "s;2;1"))
    assert decode_mar(request) == req
    items = [SipAuthItem("Digest-AKAv1-MD5", item_number=1, authenticate=b"\x02" * 32,
                         authorization=b"\x03" * 8, confidentiality_key=b"\x04" * 16,
                         integrity_key=b"\x05" * 16),
             SipAuthItem("SIP Digest", item_number=2, digest_realm="ims.test",
                         digest_algorithm="MD5", digest_qop="auth", digest_ha1="0" * 32)]
    maa = decode_maa(wire(encode_maa(request, *HSS, user_name="a@ims.test",
                                     public_identity="sip:a@ims.test", auth_items=items)))
    assert maa.success and maa.number_auth_items == 2 and maa.auth_items == items


def _codes(avp):
    return [(member.code, member.vendor_id) for member in avp.value]


def test_mar_wire_layout_of_a_resynchronisation():
    """TS 29.229 6.3: the MAR's SIP-Auth-Data-Item carries the scheme and RAND || AUTS."""
    req = MarRequest("sip:a@ims.test", "a@ims.test", "sip:scscf.ims.test", "Digest-AKAv1-MD5",
                     resync_authorization=b"\x01" * 16 + b"\x02" * 14,
                     destination_realm="ims.test")
    msg = wire(encode_mar(req, *ORIGIN, "s;2;2"))
    assert msg.header.command_code == Command.MULTIMEDIA_AUTH
    by_code = {(a.code, a.vendor_id): a for a in msg.avps}
    assert by_code[(607, VENDOR_3GPP)].value == 1  # SIP-Number-Auth-Items
    item = by_code[(612, VENDOR_3GPP)]  # SIP-Auth-Data-Item
    assert _codes(item) == [(608, VENDOR_3GPP), (610, VENDOR_3GPP)]
    assert item.value[0].value == "Digest-AKAv1-MD5"
    assert item.value[1].value == b"\x01" * 16 + b"\x02" * 14


def test_maa_wire_layout_of_aka_and_digest_items():
    """TS 29.229 6.3.9-6.3.13: AKA in SIP-Authenticate/-Authorization/CK/IK; SIP Digest in
    SIP-Digest-Authenticate (RFC 4590 Digest-Realm, -Algorithm, -QoP, -HA1)."""
    request = wire(encode_mar(MarRequest("sip:a@ims.test", "a@ims.test", "sip:s", "Unknown",
                                         destination_realm="ims.test"), *ORIGIN, "s;2;3"))
    items = [SipAuthItem("Digest-AKAv1-MD5", item_number=1, authenticate=b"\x02" * 32,
                         authorization=b"\x03" * 8, confidentiality_key=b"\x04" * 16,
                         integrity_key=b"\x05" * 16),
             SipAuthItem("SIP Digest", digest_realm="ims.test", digest_algorithm="MD5",
                         digest_qop="auth", digest_ha1="a" * 32)]
    answer = wire(encode_maa(request, *HSS, auth_items=items))
    aka_item, digest_item = [a for a in answer.avps if (a.code, a.vendor_id) == (612, VENDOR_3GPP)]
    assert _codes(aka_item) == [(613, VENDOR_3GPP), (608, VENDOR_3GPP), (609, VENDOR_3GPP),
                                (610, VENDOR_3GPP), (625, VENDOR_3GPP), (626, VENDOR_3GPP)]
    assert _codes(digest_item) == [(608, VENDOR_3GPP), (635, VENDOR_3GPP)]
    (digest_group,) = [a for a in digest_item.value if a.code == 635]
    assert [(a.code, a.value) for a in digest_group.value] == [
        (104, "ims.test"), (111, "MD5"), (110, "auth"), (121, "a" * 32)]


def test_rtr_rta_round_trip():
    req = RtrRequest("a@ims.test", DeregistrationReasonCode.NEW_SERVER_ASSIGNED, "moved",
                     public_identities=["sip:a@ims.test", "tel:+1555"],
                     associated_identities=["a2@ims.test"])
    request = wire(encode_rtr(req, *HSS, "h;1;1", "scscf.ims.test", "ims.test"))
    assert request.header.command_code == Command.REGISTRATION_TERMINATION
    assert decode_rtr(request) == req
    rta = decode_rta(wire(encode_rta(request, *ORIGIN, associated_identities=["a2@ims.test"])))
    assert rta.success and rta.associated_identities == ["a2@ims.test"]


def test_ppr_ppa_round_trip():
    req = PprRequest("a@ims.test", user_data="<IMSSubscription/>",
                     charging_information={"primary_charging_collection_function_name": "x"})
    request = wire(encode_ppr(req, *HSS, "h;1;2", "scscf.ims.test", "ims.test"))
    assert decode_ppr(request) == req
    ppa = decode_ppa(wire(encode_ppa(request, *ORIGIN,
                                     result_code=ResultCode.DIAMETER_UNABLE_TO_COMPLY)))
    assert not ppa.success and ppa.result_code == 5012


identities = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1,
                     max_size=80)


@settings(max_examples=60, deadline=None)
@given(impu=identities, impi=identities, server=identities,
       kind=st.sampled_from(ServerAssignmentType), flags=st.booleans())
def test_any_sar_survives_the_wire_and_matches_python_diameter(impu, impi, server, kind, flags):
    req = SarRequest(impu, impi, server, kind, user_data_already_available=flags,
                     multiple_registration_indication=flags, destination_realm="ims.test")
    msg = encode_sar(req, *ORIGIN, "s;3;3")
    assert serialize(msg) == msg.as_bytes()  # our framing == python-diameter's packer
    assert decode_sar(parse_message(serialize(msg))) == req


def _fields(avp):
    return type(avp), avp.code, avp.vendor_id, avp.flags, avp.name, avp.payload


def _value(avp):
    """Grouped AVPs hold AVPs, which python-diameter does not compare by value."""
    value = avp.value
    return [(_fields(member), _value(member)) for member in value] if isinstance(value, list) \
        else value


# One AVP of each python-diameter type the codec builds directly, and of the two it leaves to
# Avp.new (Address, a Grouped given a single AVP), with values as the Cx modules pass them.
EVERY_KIND = [
    (AVP_USER_NAME, 0, "alice@ims.test"),  # UTF8String
    (AVP_ORIGIN_HOST, 0, b"hss.ims.test"),  # DiameterIdentity (OctetString)
    (AVP_TGPP_SERVER_ASSIGNMENT_TYPE, VENDOR_3GPP, 1),  # Enumerated (Integer32)
    (AVP_AUTH_APPLICATION_ID, 0, CX_APPLICATION_ID),  # Unsigned32
    (AVP_ACCOUNTING_SUB_SESSION_ID, 0, 2**40),  # Unsigned64
    (AVP_EVENT_TIMESTAMP, 0, datetime(2026, 12, 2, tzinfo=timezone.utc)),  # Time
    (AVP_HOST_IP_ADDRESS, 0, "127.0.0.1"),  # Address: Avp.new's own path
    (AVP_VENDOR_SPECIFIC_APPLICATION_ID, 0, [Avp.new(AVP_VENDOR_ID, 0, VENDOR_3GPP)]),
    (AVP_VENDOR_SPECIFIC_APPLICATION_ID, 0, Avp.new(AVP_VENDOR_ID, 0, VENDOR_3GPP)),
]


@pytest.mark.parametrize("code, vendor, value", EVERY_KIND)
@pytest.mark.parametrize("mandatory", [None, True, False])
def test_avp_builds_what_python_diameter_builds(code, vendor, value, mandatory):
    ours, theirs = avp(code, value, vendor, mandatory=mandatory), Avp.new(
        code, vendor, value=value, is_mandatory=mandatory)
    assert _fields(ours) == _fields(theirs)
    assert ours.as_bytes() == theirs.as_bytes()


def test_avp_refuses_what_python_diameter_refuses():
    with pytest.raises(AvpEncodeError):
        avp(AVP_AUTH_APPLICATION_ID, "not a number")
    with pytest.raises(ValueError, match="unknown"):
        avp(9999999, "x")


def test_parsed_messages_hold_what_python_diameter_decodes():
    sar = SarRequest("sip:alice@ims.test", "alice@ims.test", "sip:scscf.ims.test",
                     ServerAssignmentType.REGISTRATION, destination_realm="ims.test")
    answer = encode_saa(wire(encode_sar(sar, *ORIGIN, "s;4;4")), *HSS,
                        user_name="alice@ims.test", user_data=b"<IMSSubscription/>",
                        associated_identities=["bob@ims.test"])
    data = serialize(answer)
    # an AVP of a vendor python-diameter does not know, with the V bit, and one without a vendor
    data = (data[:1] + (len(data) + 24).to_bytes(3, "big") + data[4:]
            + bytes.fromhex("0000270f 8000000c 00000063") + bytes.fromhex("0000270f 0000000c")
            + b"abcd")
    ours, theirs = parse_message(data), Message.from_bytes(data, plain_msg=True)
    assert vars(ours.header) == vars(theirs.header)
    assert [_fields(a) for a in ours.avps] == [_fields(a) for a in theirs.avps]
    assert [_value(a) for a in ours.avps] == [_value(a) for a in theirs.avps]
