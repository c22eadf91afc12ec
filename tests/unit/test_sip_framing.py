"""StreamFramer: cutting a TCP byte stream into SIP messages."""
from __future__ import annotations

import pytest

from transport.sip import PING, SipParseError, StreamFramer, parse_message


def message(call_id: str, body: bytes = b"") -> bytes:
    return (f"REGISTER sip:example.com SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK{call_id}\r\n"
            f"From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 REGISTER\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


FIRST = message("first", b"v=0\r\n\r\nbody with a blank line")
SECOND = message("second")
STREAM = FIRST + SECOND


def test_several_messages_in_one_read():
    assert StreamFramer().feed(STREAM + FIRST) == [FIRST, SECOND, FIRST]


def test_every_split_point_of_two_messages():
    for split in range(len(STREAM) + 1):
        framer = StreamFramer()
        frames = framer.feed(STREAM[:split]) + framer.feed(STREAM[split:])
        assert frames == [FIRST, SECOND], f"split at byte {split}"
        assert framer.pending == b""


def test_byte_by_byte():
    framer = StreamFramer()
    frames = [frame for byte in STREAM for frame in framer.feed(bytes([byte]))]
    assert frames == [FIRST, SECOND]
    assert parse_message(frames[0]).body == b"v=0\r\n\r\nbody with a blank line"


def test_keep_alive_pings_and_lone_crlfs():
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [PING]
    assert framer.feed(b"\r\n") == []  # half a ping, or a pong: wait and see
    assert framer.feed(b"\r\n" + FIRST + b"\r\n" + SECOND + b"\r\n\r\n\r\n\r\n") == [
        PING, FIRST, SECOND, PING, PING]
    assert framer.feed(b"\r\n" + FIRST) == [FIRST]  # a lone CRLF before a message is skipped


def test_ping_split_across_reads():
    framer = StreamFramer()
    assert [framer.feed(bytes([b])) for b in b"\r\n\r\n"] == [[], [], [], [PING]]


def test_missing_content_length_is_a_framing_error():
    framer = StreamFramer()
    with pytest.raises(SipParseError) as caught:
        framer.feed(SECOND.replace(b"Content-Length: 0\r\n", b""))
    assert (caught.value.status, caught.value.reason) == (400, "Missing Content-Length")
    assert framer.pending.startswith(b"REGISTER")  # what to build the 400 from


@pytest.mark.parametrize("header, reason", [
    (b"Content-Length: -1", "Bad Content-Length"),
    (b"Content-Length: five", "Bad Content-Length"),
    (b"Content-Length: 0\r\nl: 0", "Multiple Content-Length"),
])
def test_bad_content_length(header, reason):
    with pytest.raises(SipParseError) as caught:
        StreamFramer().feed(SECOND.replace(b"Content-Length: 0", header))
    assert (caught.value.status, caught.value.reason) == (400, reason)


def test_compact_and_spaced_content_length():
    data = SECOND.replace(b"Content-Length: 0", b"l  :   0")
    assert StreamFramer().feed(data) == [data]


def test_oversize_message_is_513():
    framer = StreamFramer(max_size=len(FIRST) - 1)
    with pytest.raises(SipParseError) as caught:
        framer.feed(FIRST)
    assert (caught.value.status, caught.value.reason) == (513, "Message Too Large")
    assert StreamFramer(max_size=len(FIRST)).feed(FIRST) == [FIRST]


def test_oversize_content_length_is_513_before_the_body_arrives():
    head = message("big").replace(b"Content-Length: 0", b"Content-Length: 100000")
    with pytest.raises(SipParseError) as caught:
        StreamFramer().feed(head)
    assert caught.value.status == 513


def test_endless_headers_are_513():
    framer = StreamFramer(max_size=1000)
    framer.feed(b"REGISTER sip:example.com SIP/2.0\r\n")
    with pytest.raises(SipParseError) as caught:
        for _ in range(100):
            framer.feed(b"X-Filler: " + b"x" * 50 + b"\r\n")
    assert caught.value.status == 513
