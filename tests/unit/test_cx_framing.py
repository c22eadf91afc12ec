"""Framing and validation of incoming Diameter bytes (RFC 6733 3, 4, 7.1)."""
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transport.diameter.base import LocalNode, build_error_answer
from transport.diameter.codec import (
    AvpReader,
    ResultCode,
    message_length,
    new_request,
    parse_message,
    serialize,
)
from transport.diameter.cx import SarRequest, ServerAssignmentType, encode_sar
from transport.diameter.errors import ProtocolError


# Auth-Session-State (Integer32) carrying 8 bytes.
WRONG_SIZED_AVP = struct.pack("!II", 277, 0x40000010) + b"\0" * 8


def sar_bytes() -> bytes:
    msg = encode_sar(SarRequest("sip:a@ims.test", "a@ims.test", "sip:s",
                                ServerAssignmentType.REGISTRATION), "c.ims.test", "ims.test",
                     "c.ims.test;1;1", "ims.test")
    return serialize(msg)


def with_length(data: bytes, length: int) -> bytes:
    return data[:1] + length.to_bytes(3, "big") + data[4:]


def parse_error(data: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as err:
        parse_message(data)
    return err.value


def test_good_message_parses():
    data = sar_bytes()
    assert message_length(data[:20]) == len(data)
    assert parse_message(data).avps[0].value == "c.ims.test;1;1"


@pytest.mark.parametrize("length", [0, 12, 19, 22, 1 << 21])
def test_bad_message_length_is_fatal(length):
    with pytest.raises(ProtocolError) as err:
        message_length(with_length(sar_bytes(), length)[:20])
    assert err.value.result_code == ResultCode.DIAMETER_INVALID_MESSAGE_LENGTH
    assert err.value.fatal


def test_bad_version():
    data = sar_bytes()
    err = parse_error(b"\x02" + data[1:])
    assert err.result_code == ResultCode.DIAMETER_UNSUPPORTED_VERSION and not err.fatal


def test_error_bit_in_request():
    data = bytearray(sar_bytes())
    data[4] |= 0x20
    err = parse_error(bytes(data))
    assert err.result_code == ResultCode.DIAMETER_INVALID_HDR_BITS
    assert err.session_id == "c.ims.test;1;1"


def test_message_shorter_than_its_avps():
    data = sar_bytes()
    err = parse_error(with_length(data[:-8], len(data) - 8))  # cuts into the last AVP
    assert err.result_code == ResultCode.DIAMETER_INVALID_AVP_LENGTH and err.fatal


def test_avp_length_below_its_header():
    data = bytearray(sar_bytes())
    struct.pack_into("!I", data, 24, 0x40000004)  # Session-Id claims 4 bytes
    err = parse_error(bytes(data))
    assert err.result_code == ResultCode.DIAMETER_INVALID_AVP_LENGTH and not err.fatal
    assert err.failed_avp[:4] == (263).to_bytes(4, "big")


def test_fixed_size_avp_with_wrong_payload():
    data = new_request(301, [], application_id=0)
    raw = serialize(data) + WRONG_SIZED_AVP
    err = parse_error(with_length(raw, len(raw)))
    assert err.result_code == ResultCode.DIAMETER_INVALID_AVP_LENGTH


def test_a_framing_error_after_a_refused_avp_still_closes_the_stream():
    # A wrong-sized Integer32 first, then an AVP running past the message end: the framing is
    # lost, so the error must be the fatal one whatever came before it.
    runaway = struct.pack("!II", 263, 0x40000040) + b"abcd"
    raw = serialize(new_request(301, [], application_id=0)) + WRONG_SIZED_AVP + runaway
    err = parse_error(with_length(raw, len(raw)))
    assert err.result_code == ResultCode.DIAMETER_INVALID_AVP_LENGTH and err.fatal
    alone = serialize(new_request(301, [], application_id=0)) + WRONG_SIZED_AVP
    assert not parse_error(with_length(alone, len(alone))).fatal


def test_unknown_mandatory_avp():
    unknown = struct.pack("!II", 99999, 0x4000000C) + b"abcd"
    request = serialize(new_request(301, [], application_id=0)) + unknown
    err = parse_error(with_length(request, len(request)))
    assert err.result_code == ResultCode.DIAMETER_AVP_UNSUPPORTED
    assert err.failed_avp == unknown
    answer = bytearray(request)
    answer[4] &= 0x7F  # the same AVP in an answer is tolerated
    assert parse_message(bytes(answer)).avps[0].code == 99999
    optional = serialize(new_request(301, [], application_id=0)) + \
        struct.pack("!II", 99999, 0x0000000C) + b"abcd"
    assert parse_message(with_length(optional, len(optional))).avps[0].code == 99999


def test_error_answer_layout():
    request = parse_message(sar_bytes())
    local = LocalNode("hss.ims.test", "ims.test")
    answer = build_error_answer(request.header, local, ResultCode.DIAMETER_INVALID_HDR_BITS,
                                "E bit", session_id="c.ims.test;1;1")
    parsed = parse_message(serialize(answer))
    assert parsed.header.is_error and not parsed.header.is_request
    assert parsed.avps[0].value == "c.ims.test;1;1"
    assert AvpReader(parsed.avps).value(268) == 3008


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=20, max_size=400))
def test_arbitrary_bytes_never_escape_as_anything_but_protocol_errors(data):
    try:
        length = message_length(data[:20])
        parse_message(data[:20] + data[20:length].ljust(length - 20, b"\0"))
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=20, max_value=300), st.data())
def test_corrupted_sar_never_escapes(position, data):
    original = bytearray(sar_bytes())
    original[position % len(original)] = data.draw(st.integers(0, 255))
    try:
        parse_message(with_length(bytes(original), len(original)))
    except ProtocolError:
        pass
