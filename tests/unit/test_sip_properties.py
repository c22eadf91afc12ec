"""Properties: serialization round-trips, and hostile input never raises anything but
SipParseError nor takes long."""
from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scripts.harness.samples import IMS_REGISTER
from transport.sip import (
    STAR,
    Request,
    Response,
    SipParseError,
    StreamFramer,
    TransactionKey,
    error_response,
    make_response,
    parse_message,
    parse_uri,
    uri_equal,
)
from transport.sip.names import KNOWN

TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
HEX = "0123456789abcdefABCDEF"
# CPU seconds: a parse takes well under 1 ms; only a parse that blows up (quadratic or worse in
# the message's length) comes near this, however loaded the host.
PER_MESSAGE_LIMIT = 0.2


@contextmanager
def cpu_time() -> Iterator[list[float]]:
    """The thread's CPU seconds spent in the block, without garbage collection: a collection of
    the whole test process may land in any parse and is none of its cost."""
    spent: list[float] = []
    gc.disable()
    start = time.thread_time()
    try:
        yield spent
    finally:
        spent.append(time.thread_time() - start)
        gc.enable()

tokens = st.text(TOKEN_ALPHABET, min_size=1, max_size=12)
header_names = tokens.filter(lambda name: name not in KNOWN and name.lower() not in KNOWN)
# Header values: any text on one line, without the surrounding whitespace the parser strips.
header_values = st.text(
    st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=40
).map(lambda value: value.strip(" \t"))
escapes = st.tuples(st.sampled_from(HEX), st.sampled_from(HEX)).map(lambda h: "%" + "".join(h))
users = st.lists(st.one_of(st.text("abcXYZ019-_.!~*'()&=+$,;?/", min_size=1, max_size=4), escapes),
                 min_size=1, max_size=5).map("".join)
hosts = st.one_of(
    st.from_regex(r"[a-z0-9]{1,8}(\.[a-z0-9]{1,8}){0,3}", fullmatch=True),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda ip: ".".join(map(str, ip))),
    st.sampled_from(["[::1]", "[2001:db8::55]", "[2001:DB8:0:0:8:800:200C:417A]"]),
)
uri_params = st.dictionaries(st.text("abcxyz-", min_size=1, max_size=6),
                             st.one_of(st.none(), st.text("abc123.-:", min_size=1, max_size=6)),
                             max_size=3)


@st.composite
def sip_uris(draw) -> str:
    text = draw(st.sampled_from(["sip:", "sips:", "SIP:"]))
    if draw(st.booleans()):
        text += draw(users) + "@"
    text += draw(hosts)
    if draw(st.booleans()):
        text += f":{draw(st.integers(0, 65535))}"
    for name, value in draw(uri_params).items():
        text += f";{name}" if value is None else f";{name}={value}"
    return text


@st.composite
def requests(draw) -> Request:
    method = draw(tokens)
    headers = [
        ("Via", f"SIP/2.0/UDP {draw(hosts)};branch=z9hG4bK{draw(tokens)}"),
        ("From", f"<{draw(sip_uris())}>;tag={draw(tokens)}"),
        ("To", f"<{draw(sip_uris())}>"),
        ("Call-ID", draw(tokens)),
        ("CSeq", f"{draw(st.integers(0, 2**32 - 1))} {method}"),
    ]
    for _ in range(draw(st.integers(0, 6))):
        line = (draw(header_names), draw(header_values))
        headers.insert(draw(st.integers(0, len(headers))), line)
    return Request(method, draw(sip_uris()), headers, draw(st.binary(max_size=64)))


@st.composite
def responses(draw) -> Response:
    request = draw(requests())
    reason = draw(st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
                          max_size=20))
    response = make_response(request, draw(st.integers(100, 699)), reason)
    for _ in range(draw(st.integers(0, 4))):
        response.headers.add(draw(header_names), draw(header_values))
    response.body = draw(st.binary(max_size=64))
    return response


def without_length(message) -> list[tuple[str, str]]:
    return [line for line in message.headers if line[0] != "Content-Length"]


@settings(max_examples=200, deadline=None)
@given(requests())
def test_requests_round_trip(request):
    parsed = parse_message(request.to_bytes())
    assert (parsed.method, parsed.uri, parsed.body) == (request.method, request.uri, request.body)
    assert without_length(parsed) == without_length(request)
    assert parsed.to_bytes() == request.to_bytes()


@settings(max_examples=200, deadline=None)
@given(responses())
def test_responses_round_trip(response):
    parsed = parse_message(response.to_bytes())
    assert (parsed.status, parsed.reason, parsed.body) == (
        response.status, response.reason, response.body)
    assert without_length(parsed) == without_length(response)


@settings(max_examples=300, deadline=None)
@given(sip_uris())
def test_uris_round_trip_and_compare_equal_to_themselves(text):
    uri = parse_uri(text)
    again = parse_uri(str(uri))
    assert again == uri
    assert uri_equal(uri, text) and uri_equal(again, uri)
    assert parse_uri(uri.aor()).aor() == uri.aor()


# Mutations of a realistic ~1 KB IMS REGISTER.

INTERESTING = [b'"', b"<", b">", b";", b",", b"\r\n", b"\r\n ", b"\r\n\r\n", b" ", b"\t", b"%",
               b"%0", b"\x00", b":", b"=", b"\\", b"@", b"?", b"*", b"\xff", b"\r", b"\n",
               b"9999999999999", b"Content-Length: 5\r\n", b"Contact: *\r\n", b"m:",
               b"SIP/2.0", b"z9hG4bK", b"[", b"]", b"sip:"]
mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(IMS_REGISTER) - 1), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, len(IMS_REGISTER)),
              st.one_of(st.sampled_from(INTERESTING), st.binary(min_size=1, max_size=8))),
    st.tuples(st.just("delete"), st.integers(0, len(IMS_REGISTER)), st.integers(1, 40)),
)


def mutate(data: bytes, mutations) -> bytes:
    for kind, at, what in mutations:
        at = min(at, len(data))
        if kind == "flip" and at < len(data):
            data = data[:at] + bytes([what]) + data[at + 1:]
        elif kind == "insert":
            data = data[:at] + what + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + what:]
    return data


def read_everything(message) -> None:
    """Every accessor a registrar or transport may use; each may only raise SipParseError."""
    def attempt(read):
        try:
            read()
        except SipParseError:
            pass

    for name in ("vias", "call_id", "cseq", "from_", "to", "contacts", "expires",
                 "max_forwards", "supported", "require", "request_uri"):
        attempt(lambda: getattr(message, name))
    attempt(lambda: message.to.uri.aor())
    attempt(lambda: [str(via) + via.sent_by for via in message.vias])
    attempt(lambda: [(str(c), c.expires, c.q, c.uri.aor(), uri_equal(c.uri, message.to.uri))
                     for c in (message.contacts if message.contacts is not STAR else [])])
    for name, _ in message.headers:
        attempt(lambda: message.headers.get_all(name))
    if isinstance(message, Request):
        attempt(lambda: make_response(message, 200, "OK", "t").to_bytes())
        attempt(lambda: TransactionKey.server(message))
    message.to_bytes()


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutation, min_size=1, max_size=6))
def test_mutated_register_raises_only_sip_parse_error(mutations):
    data = mutate(IMS_REGISTER, mutations)
    with cpu_time() as spent:
        try:
            message = parse_message(data)
        except SipParseError as error:
            assert error.status in (400, 416, 505, 513)
            response = error_response(data, error, to_tag="x")
            if response is not None:  # it may echo a malformed Via or To verbatim (RFC 4475)
                answer = response.to_bytes()
                assert answer.startswith(f"SIP/2.0 {error.status} ".encode())
                try:
                    parse_message(answer)
                except SipParseError:
                    pass
            message = None
    assert spent[0] < PER_MESSAGE_LIMIT
    if message is not None:
        read_everything(message)


def test_every_truncation_of_the_register_is_rejected_quickly():
    for end in range(len(IMS_REGISTER)):
        with cpu_time() as spent:
            try:
                parse_message(IMS_REGISTER[:end])
            except SipParseError as error:
                assert error.status == 400
            else:
                # Cut inside "Content-Length: 0\r\n\r\n": still a complete message
                assert end >= len(IMS_REGISTER) - 2
        assert spent[0] < PER_MESSAGE_LIMIT


@settings(max_examples=200, deadline=None)
@given(st.lists(mutation, min_size=1, max_size=4), st.lists(st.integers(1, 300), max_size=8))
def test_mutated_streams_raise_only_sip_parse_error(mutations, cuts):
    stream = mutate(IMS_REGISTER * 2, mutations)
    framer = StreamFramer()
    try:
        position = 0
        for size in cuts + [len(stream)]:
            for frame in framer.feed(stream[position:position + size]):
                if isinstance(frame, bytes):
                    try:
                        parse_message(frame)
                    except SipParseError:
                        pass
            position += size
    except SipParseError as error:
        assert error.status in (400, 513)


def test_the_sample_register_is_realistic():
    message = parse_message(IMS_REGISTER)
    assert 1000 <= len(IMS_REGISTER) <= 1500
    assert len(message.contacts) == 2 and all(c.params["+sip.instance"] for c in message.contacts)
    assert message.headers.get_all("Path") and "path" in message.supported
    authorization = message.headers.get("Authorization")
    assert '";,' in authorization or ';,' in authorization
