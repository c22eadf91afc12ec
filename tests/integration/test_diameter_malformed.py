"""Malformed Diameter sent over a raw socket to the HSS emulator.

Each case checks the answer's Result-Code, or that the emulator closed the connection when the
byte stream could no longer be framed; then that the emulator still serves a well-behaved
client and holds no pending request.
"""
import struct

import pytest

from tests.integration.test_diameter_fixtures import (
    RawClient,
    async_test,
    cx_client,
    sar,
    start_hss,
    wait_until,
)
from transport.diameter.base import LocalNode, answer_result, build_dwr
from transport.diameter.codec import AvpReader, ResultCode, new_request, serialize
from transport.diameter.cx import encode_sar

RESULT_CODE, FAILED_AVP = 268, 279


def good_sar() -> bytes:
    msg = encode_sar(sar("sip:alice@ims.test", "alice@ims.test"), "raw.ims.test", "ims.test",
                     "raw.ims.test;1;1", "ims.test")
    msg.header.hop_by_hop_identifier = msg.header.end_to_end_identifier = 77
    return serialize(msg)


def with_length(data: bytes, length: int) -> bytes:
    return data[:1] + length.to_bytes(3, "big") + data[4:]


def append_avp(data: bytes, avp: bytes) -> bytes:
    return with_length(data + avp, len(data) + len(avp))


def set_flags(data: bytes, flags: int) -> bytes:
    return data[:4] + bytes([flags]) + data[5:]


async def still_serving(hss):
    """A well-behaved client gets its SAA, and no request is left pending anywhere."""
    cx = cx_client(hss.bound_port)
    await cx.start()
    assert (await cx.sar(sar("sip:bob@ims.test", "bob@ims.test"))).success
    assert cx.peers[0].pending_requests == 0
    assert all(c.pending_requests == 0 for c in hss.connections)
    await cx.close()
    await wait_until(lambda: hss.connections == [])


def result_of(answer) -> int:
    return AvpReader(answer.avps).value(RESULT_CODE)


# name -> (bytes to send after the CER, Result-Code expected, connection closed afterwards)
ANSWERED = {
    "bad version": (b"\x02" + good_sar()[1:], ResultCode.DIAMETER_UNSUPPORTED_VERSION, False),
    "E bit in a request": (set_flags(good_sar(), 0xE0), ResultCode.DIAMETER_INVALID_HDR_BITS,
                           False),
    "AVP shorter than its header": (
        append_avp(good_sar(), struct.pack("!II", 1, 0x40000005) + b"\0" * 4),
        ResultCode.DIAMETER_INVALID_AVP_LENGTH, False),
    "truncated fixed-size AVP": (
        append_avp(good_sar(), struct.pack("!II", 277, 0x4000000A) + b"\0\x01\0\0"),
        ResultCode.DIAMETER_INVALID_AVP_LENGTH, False),
    "unknown mandatory AVP": (
        append_avp(good_sar(), struct.pack("!II", 99999, 0x4000000C) + b"wxyz"),
        ResultCode.DIAMETER_AVP_UNSUPPORTED, False),
    "SAR without Server-Name": (
        serialize(new_request(301, [a for a in encode_sar(
            sar("sip:a@ims.test", None), "raw.ims.test", "ims.test", "raw;1;2",
            "ims.test").avps if a.code != 602], application_id=16777216)),
        ResultCode.DIAMETER_MISSING_AVP, False),
    "unknown Cx command": (
        serialize(new_request(399, list(encode_sar(sar("sip:a@ims.test", None), "raw.ims.test",
                                                   "ims.test", "raw;1;3", "ims.test").avps),
                              application_id=16777216)),
        ResultCode.DIAMETER_COMMAND_UNSUPPORTED, False),
    "unsupported application": (serialize(new_request(301, [], application_id=4)),
                                ResultCode.DIAMETER_APPLICATION_UNSUPPORTED, False),
    # Declared length stops inside the last AVP: the rest of the bytes would be read as the
    # next header, so the emulator answers and then drops the connection.
    "length shorter than the data": (
        with_length(good_sar(), len(good_sar()) - 8), ResultCode.DIAMETER_INVALID_AVP_LENGTH,
        True),
    "length not a multiple of 4": (with_length(good_sar(), len(good_sar()) - 2),
                                   ResultCode.DIAMETER_INVALID_MESSAGE_LENGTH, True),
    "length below the header size": (with_length(good_sar(), 12),
                                     ResultCode.DIAMETER_INVALID_MESSAGE_LENGTH, True),
}


@pytest.mark.parametrize("case", list(ANSWERED))
@async_test
async def test_answered(case):
    data, expected, closes = ANSWERED[case]
    hss = await start_hss()
    raw = await RawClient().connect(hss.bound_port)
    raw.send(data)
    answer = await raw.read()
    assert answer is not None and not answer.header.is_request
    assert result_of(answer) == expected
    assert answer.header.is_error == (3000 <= expected < 4000)
    if expected in (ResultCode.DIAMETER_AVP_UNSUPPORTED, ResultCode.DIAMETER_INVALID_AVP_LENGTH):
        assert AvpReader(answer.avps).has(FAILED_AVP)
    if closes:
        assert await raw.is_closed_by_peer()
    else:  # framing intact: the same connection goes on working
        raw.send(serialize(build_dwr(raw.local)))
        assert result_of(await raw.read()) == ResultCode.DIAMETER_SUCCESS
    await raw.close()
    await still_serving(hss)
    await hss.stop()


@async_test
async def test_length_longer_than_the_data_then_close():
    hss = await start_hss()
    raw = await RawClient().connect(hss.bound_port)
    data = good_sar()
    raw.send(with_length(data, len(data) + 64))  # the emulator waits for 64 more bytes...
    raw.writer.write_eof()  # ...which never come
    assert await raw.is_closed_by_peer()
    await raw.close()
    await still_serving(hss)
    await hss.stop()


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: hss\r\n\r\n" + b"x" * 20,
    bytes(range(256)),
    b"\x01\xff\xff\xff" + b"\0" * 16,  # 16 MB announced: over the size limit
])
@async_test
async def test_garbage_closes_the_connection(garbage):
    hss = await start_hss()
    raw = await RawClient().connect(hss.bound_port)
    raw.send(garbage)
    assert await raw.is_closed_by_peer()
    await raw.close()
    await still_serving(hss)
    await hss.stop()


@async_test
async def test_request_before_the_capabilities_exchange():
    hss = await start_hss()
    raw = await RawClient().connect(hss.bound_port, handshake=False)
    raw.send(good_sar())
    assert await raw.is_closed_by_peer()
    await raw.close()
    await still_serving(hss)
    await hss.stop()


@async_test
async def test_a_peer_not_on_the_allow_list_gets_unknown_peer_and_no_service():
    """A rogue S-CSCF's CER is refused (RFC 6733 5.3), so it can never send SAR REGISTRATION
    for a victim; the allowed peers are still served."""
    hss = await start_hss()
    rogue = await RawClient(LocalNode("rogue.example", "example")).connect(hss.bound_port)
    assert answer_result(rogue.cea) == ResultCode.DIAMETER_UNKNOWN_PEER
    assert await rogue.is_closed_by_peer()
    await rogue.close()
    await still_serving(hss)
    await hss.stop()
