"""quick_response: a response from the raw head of a request of the usual shape is, byte for
byte, the response make_response builds from the parsed request, with the same transaction
key; a request of another shape gets None and is left to the parser."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scripts.harness.samples import IMS_REGISTER
from tests.unit.test_sip_properties import mutate, mutation
from transport.sip import Response, SipParseError, TransactionKey, make_response, parse_message
from transport.sip.quick_response import quick_response

METHODS = frozenset(("REGISTER", "SUBSCRIBE", "PUBLISH"))
HEADERS = [("Retry-After", "5"), ("Server", "ray-scscf")]
SOURCE = ("10.0.0.2", 5060)
DATE = 1289690940.0


def to_tag(call_id: str, cseq: int) -> str:
    return f"{len(call_id)}x{cseq}"


def quick(data: bytes, source=SOURCE):
    return quick_response(data, METHODS, 503, "Registrar overloaded", HEADERS, to_tag=to_tag,
                          source=source, date=DATE)


def parsed(data: bytes, source=SOURCE) -> tuple[TransactionKey, bytes]:
    """What the transport answers after a full parse: the key and the response's bytes."""
    request = parse_message(data)
    response = make_response(request, 503, "Registrar overloaded",
                             to_tag=to_tag(request.call_id, request.cseq[0]), source=source,
                             date=DATE)
    for name, value in HEADERS:
        response.headers.add(name, value)
    return TransactionKey.server(request), response.to_bytes()


def register(*lines: str, method: str = "REGISTER", via: str | None = None) -> bytes:
    via = via or "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-pcscf-1;rport"
    head = [f"{method} sip:ims.test SIP/2.0", via, "Max-Forwards: 70",
            "From: <sip:alice@ims.test>;tag=4f8c", "To: <sip:alice@ims.test>",
            "Call-ID: 3c2a5e0f@192.0.2.55", f"CSeq: 2 {method}", *lines, "Content-Length: 0"]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


USUAL = {
    "the IMS REGISTER": IMS_REGISTER,
    "rport asked": register(),
    "received added": register(via="Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-ue-1"),
    "sent-by is the source": register(via="Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-2"),
    "an IPv6 sent-by": register(via="Via: SIP/2.0/TCP [2001:db8::2]:5060;branch=z9hG4bK-6"),
    "compact and odd spellings": register("v: SIP/2.0/UDP 192.0.2.55:5060;branch=z9hG4bK-ue-2",
                                          via="VIA :  SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK-3 "),
    "a display name": register().replace(b"From: <", b'From: "Alice A." <'),
    "SUBSCRIBE": register("Event: reg", method="SUBSCRIBE"),
    "PUBLISH": register("Event: presence", method="PUBLISH"),
    "a body": register("Content-Type: text/plain").replace(b"Content-Length: 0\r\n\r\n",
                                                           b"Content-Length: 2\r\n\r\nhi"),
}


@pytest.mark.parametrize("data", USUAL.values(), ids=USUAL.keys())
def test_a_request_of_the_usual_shape_gets_the_parsed_paths_response_and_key(data):
    assert quick(data) == parsed(data)


def test_the_response_is_a_503_with_retry_after_and_our_to_tag():
    _, data = quick(register())
    assert data.decode().split("\r\n") == [
        "SIP/2.0 503 Registrar overloaded",
        "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-pcscf-1;rport=5060;received=10.0.0.2",
        "From: <sip:alice@ims.test>;tag=4f8c",
        "To: <sip:alice@ims.test>;tag=19x2",
        "Call-ID: 3c2a5e0f@192.0.2.55",
        "CSeq: 2 REGISTER",
        "Date: Sat, 13 Nov 2010 23:29:00 GMT",
        "Retry-After: 5",
        "Server: ray-scscf",
        "Content-Length: 0",
        "", ""]


UNUSUAL = {
    "another method": register(method="OPTIONS"),
    "an INVITE": register(method="INVITE"),
    "no end of headers": register()[:-2],
    "a folded header": register().replace(b"Call-ID: ", b"Call-ID:\r\n "),
    "two From": register("From: <sip:bob@ims.test>;tag=2"),
    "a compact second Call-ID": register("i: other@192.0.2.55"),
    "no Call-ID": register().replace(b"Call-ID: 3c2a5e0f@192.0.2.55\r\n", b""),
    "no Via": register().replace(b"Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-pcscf-1;rport"
                                 b"\r\n", b""),
    "two Vias on a line": register(via="Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK-1, "
                                       "SIP/2.0/UDP 192.0.2.55;branch=z9hG4bK-2"),
    "an RFC 2543 branch": register(via="Via: SIP/2.0/UDP 10.0.0.2:5060;branch=1234"),
    "no branch": register(via="Via: SIP/2.0/UDP 10.0.0.2:5060"),
    "a bare magic cookie": register(via="Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK"),
    "a To tag": register().replace(b"To: <sip:alice@ims.test>", b"To: <sip:alice@ims.test>;tag=1"),
    "a To that names a tag": register().replace(b"sip:alice@", b"sip:tagged@"),
    "a CSeq of another method": register().replace(b"CSeq: 2 REGISTER", b"CSeq: 2 PUBLISH"),
    "a bad CSeq": register().replace(b"CSeq: 2 ", b"CSeq: two "),
    "a bad Call-ID": register().replace(b"Call-ID: 3c2a5e0f@", b"Call-ID: 3c2a 5e0f@"),
    "an addr-spec From": register().replace(b"From: <sip:alice@ims.test>;tag=4f8c",
                                            b"From: sip:alice@ims.test;tag=4f8c"),
    "a bare LF": register().replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\n"),
    "a byte past ASCII": register().replace(b"alice", b"al\xc3\xafce"),
    "another SIP version": register().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1),
    "leading CRLFs": b"\r\n" + register(),
}


@pytest.mark.parametrize("data", UNUSUAL.values(), ids=UNUSUAL.keys())
def test_a_request_of_another_shape_is_left_to_the_parser(data):
    assert quick(data) is None


def test_only_the_named_methods_are_answered():
    data = register("Event: reg", method="SUBSCRIBE")
    assert quick_response(data, frozenset(("REGISTER",)), 503, "x", [], to_tag=to_tag,
                          source=SOURCE, date=DATE) is None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutation, min_size=1, max_size=4))
def test_a_mutated_register_is_answered_as_the_parser_would_or_left_to_it(mutations):
    """Whatever quick_response answers is a well-formed 503; for a request the parser takes,
    the very response and key of the parsed path. (A request malformed outside the five
    headers it reads is refused too: under overload its 400 comes when it is sent again.)"""
    data = mutate(IMS_REGISTER, mutations)
    answer = quick(data)
    if answer is None:
        return
    try:
        expected = parsed(data)
    except SipParseError:
        response = parse_message(answer[1])
        assert isinstance(response, Response) and response.status == 503
    else:
        assert answer == expected
