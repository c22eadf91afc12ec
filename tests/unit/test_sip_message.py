"""Start lines, framing of a datagram, required headers, serialization and make_response."""
from __future__ import annotations

import pytest

from transport.sip import (
    Request,
    Response,
    SipParseError,
    error_response,
    make_response,
    parse_message,
)

HEAD = ("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\n"
        "Via: SIP/2.0/TCP 192.0.2.9;branch=z9hG4bKfirst\r\n"
        "Max-Forwards: 70\r\n"
        "From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n"
        "To: <sip:alice@example.com>\r\n"
        "Call-ID: a84b4c76e66710@pc33.example.com\r\n")


def register(extra: str = "", body: str = "", length: int | None = None) -> bytes:
    length = len(body.encode()) if length is None else length
    return (f"REGISTER sip:example.com SIP/2.0\r\n{HEAD}CSeq: 314159 REGISTER\r\n{extra}"
            f"Content-Length: {length}\r\n\r\n{body}").encode()


def reject(data: bytes, **limits) -> SipParseError:
    with pytest.raises(SipParseError) as caught:
        parse_message(data, **limits)
    return caught.value


def test_a_register_parses():
    m = parse_message(register())
    assert isinstance(m, Request)
    assert (m.method, m.uri, m.request_uri.host) == ("REGISTER", "sip:example.com", "example.com")
    assert m.cseq == (314159, "REGISTER")
    assert m.call_id == "a84b4c76e66710@pc33.example.com"
    assert m.from_.display_name == "Alice" and m.from_.tag == "1928301774"
    assert m.to.tag is None
    assert [v.branch for v in m.vias] == ["z9hG4bK776asdhds", "z9hG4bKfirst"]
    assert m.max_forwards == 70
    assert m.body == b""


def test_leading_crlfs_are_ignored():
    assert parse_message(b"\r\n\r\n\r\n" + register()).method == "REGISTER"


def test_body_longer_than_content_length_is_cut_and_shorter_is_an_error():
    assert parse_message(register(body="abcdef", length=3)).body == b"abc"
    error = reject(register(body="ab", length=3))
    assert (error.status, error.reason) == (400, "Content-Length mismatch")


def test_without_content_length_the_body_is_the_rest_of_the_datagram():
    data = register(body="hello").replace(b"Content-Length: 5\r\n", b"")
    assert parse_message(data).body == b"hello"


@pytest.mark.parametrize("header", ["To", "From", "CSeq", "Call-ID", "Via"])
def test_required_headers(header):
    data = register()
    lines = [line for line in data.split(b"\r\n") if not line.startswith(header.encode() + b":")]
    error = reject(b"\r\n".join(lines))
    assert (error.status, error.reason) == (400, f"Missing {header}")


def test_max_forwards_is_optional():
    assert parse_message(register().replace(b"Max-Forwards: 70\r\n", b"")).max_forwards is None


def test_empty_via_is_missing():
    data = register().replace(b"Via: SIP/2.0/TCP 192.0.2.9;branch=z9hG4bKfirst\r\n", b"")
    data = data.replace(b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport", b"Via: ")
    assert reject(data).reason == "Missing Via"


@pytest.mark.parametrize("line, status, reason", [
    (b"REGISTER sip:example.com SIP/3.0", 505, "Version Not Supported"),
    (b"REGISTER sip:example.com SIP/2.1", 505, "Version Not Supported"),
    (b"REGISTER sip:example.com HTTP/1.1", 400, "Bad SIP version"),
    (b"REGISTER sip:example.com", 400, "Bad request line"),
    (b"REGISTER  sip:example.com SIP/2.0", 400, "Bad request line"),
    (b"REGISTER sip:example.com SIP/2.0 ", 400, "Bad request line"),
    (b"REGISTER\tsip:example.com SIP/2.0", 400, "Bad request line"),
    (b"REG<ISTER sip:example.com SIP/2.0", 400, "Bad method"),
    (b"REGISTER <sip:example.com> SIP/2.0", 400, "Bad Request-URI"),
    (b"REGISTER sip:example.com?Route=x SIP/2.0", 400, "Bad Request-URI"),
    (b"REGISTER mailto:a@example.com SIP/2.0", 416, "Unsupported URI Scheme"),
    (b"OPTIONS sip:example.com SIP/2.0", 400, "CSeq method mismatch"),
])
def test_request_line(line, status, reason):
    data = line + register()[register().index(b"\r\n"):]
    error = reject(data)
    assert (error.status, error.reason) == (status, reason)


def test_version_is_case_insensitive():
    data = register().replace(b"SIP/2.0\r\n", b"sip/2.0\r\n", 1)
    assert parse_message(data).method == "REGISTER"


def response(status_line: bytes) -> bytes:
    return status_line + b"\r\n" + HEAD.encode() + b"CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"


def test_response_line():
    m = parse_message(response(b"SIP/2.0 401 Unauthorized"))
    assert isinstance(m, Response)
    assert (m.status, m.reason) == (401, "Unauthorized")
    assert parse_message(response(b"SIP/2.0 200")).reason == ""
    assert parse_message(response(b"SIP/2.0 180 Ringing  twice")).reason == "Ringing  twice"


@pytest.mark.parametrize("line, status", [
    (b"SIP/2.0 20 OK", 400), (b"SIP/2.0 2000 OK", 400), (b"SIP/2.0 099 Early", 400),
    (b"SIP/2.0 700 Too far", 400), (b"SIP/2.0 2x0 OK", 400), (b"SIP/3.0 200 OK", 505),
    (b"SIP/2.0  200 OK", 400), (b"SIP/2.0 \xd9\xa3\xd9\xa3\xd9\xa3 OK", 400),
])
def test_bad_status_lines(line, status):
    assert reject(response(line)).status == status


@pytest.mark.parametrize("data, reason", [
    (b"", "Missing end of headers"),
    (b"\r\n\r\n", "Missing end of headers"),
    (b"REGISTER sip:example.com SIP/2.0\r\nTo: x", "Missing end of headers"),
    (b"REGISTER sip:example.com SIP/2.0\nTo: x\r\n\r\n", "Bare CR or LF"),
    (b"REGISTER sip:example.com SIP/2.0\r\nTo: x\ry\r\n\r\n", "Bare CR or LF"),
    (b"REGISTER sip:example.com SIP/2.0\r\nTo x\r\n\r\n", "Bad header line"),
    (b"REGISTER sip:example.com SIP/2.0\r\nT o: x\r\n\r\n", "Bad header name"),
    (b"REGISTER sip:example.com SIP/2.0\r\n: x\r\n\r\n", "Bad header name"),
])
def test_broken_framing(data, reason):
    assert (reject(data).status, reject(data).reason) == (400, reason)


def test_limits():
    data = register()
    assert reject(data, max_size=len(data) - 1).status == 513
    assert parse_message(data, max_size=len(data)).method == "REGISTER"
    many = register("".join(f"X-H{i}: {i}\r\n" for i in range(300)))
    assert reject(many).reason == "Too many headers"
    assert parse_message(many, max_headers=400).headers.get("X-H299") == "299"
    long = register(f"X-Long: {'a' * 9000}\r\n")
    assert reject(long).reason == "Line too long"
    assert len(parse_message(long, max_line=10000).headers.get("X-Long")) == 9000


def test_duplicate_single_headers():
    for header in (b"Call-ID: again\r\n", b"CSeq: 2 REGISTER\r\n", b"t: <sip:b@example.com>\r\n",
                   b"Max-Forwards: 3\r\n", b"l: 0\r\n"):
        assert reject(register(header.decode())).reason.startswith("Multiple ")


def test_undecodable_bytes_survive_a_round_trip():
    data = register().replace(b"Max-Forwards: 70\r\n", b"X-Bytes: \xff\xfe\x80\r\n")
    m = parse_message(data)
    assert m.to_bytes() == data


def test_to_bytes_writes_the_true_content_length_where_it_was():
    m = parse_message(register("Expires: 60\r\n"))
    m.body = b"12345"
    wire = m.to_bytes()
    assert wire.endswith(b"Content-Length: 5\r\n\r\n12345")
    assert parse_message(wire).headers.get("Expires") == "60"
    built = Request("OPTIONS", "sip:a@b", [("v", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("l", "99")],
                    b"xy")
    assert built.to_bytes() == (b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                                b"Content-Length: 2\r\n\r\nxy")
    assert Response(200, "OK").to_bytes() == b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_make_response_copies_what_rfc3261_says():
    m = parse_message(register("Contact: <sip:alice@192.0.2.1>\r\n", body="xyz"))
    r = make_response(m, 200, "OK", to_tag="as83kd9bs")
    assert [name for name, _ in r.headers] == ["Via", "Via", "From", "To", "Call-ID", "CSeq"]
    assert r.headers.lines("Via") == m.headers.lines("Via")
    assert r.headers.get("From") == m.headers.get("From")
    assert r.headers.get("To") == "<sip:alice@example.com>;tag=as83kd9bs"
    assert r.to.tag == "as83kd9bs"
    assert r.body == b""
    wire = r.to_bytes()
    assert wire.startswith(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;")
    assert wire.endswith(b"CSeq: 314159 REGISTER\r\nContent-Length: 0\r\n\r\n")
    back = parse_message(wire)
    assert (back.status, back.cseq, back.call_id) == (200, m.cseq, m.call_id)


def test_make_response_keeps_an_existing_to_tag_and_may_add_none():
    to = b"To: <sip:alice@example.com>"
    tagged = register().replace(to, to + b";tag=old")
    m = parse_message(tagged)
    assert make_response(m, 200, "OK", to_tag="new").to.tag == "old"
    trying = make_response(parse_message(register()), 100, "Trying")
    assert trying.to.tag is None


def test_headers_added_to_a_response_serialize_in_order():
    r = make_response(parse_message(register()), 200, "OK", "t")
    r.headers.add("Contact", "<sip:alice@192.0.2.1>;expires=60")
    r.headers.add("Service-Route", "<sip:orig@scscf.example.com;lr>")
    text = r.to_bytes().decode()
    assert text.index("Contact:") < text.index("Service-Route:") < text.index("Content-Length: 0")


def test_error_response_for_a_broken_request():
    data = register(body="ab", length=9)
    error = reject(data)
    r = error_response(data, error, to_tag="e1")
    assert (r.status, r.reason) == (400, "Content-Length mismatch")
    assert r.headers.get("To") == "<sip:alice@example.com>;tag=e1"
    broken = response(b"SIP/2.0 2000 OK")
    assert error_response(broken, reject(broken)) is None
    assert error_response(b"garbage", SipParseError(400, "x")) is None


def test_a_via_asking_rport_gets_the_port_and_address_the_request_came_from():
    m = parse_message(register())  # top Via: 192.0.2.1:5060;branch=...;rport
    r = make_response(m, 200, "OK", "t", source=("198.51.100.7", 40123))
    assert r.headers.lines("Via") == [
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport=40123;received=198.51.100.7",
        "SIP/2.0/TCP 192.0.2.9;branch=z9hG4bKfirst"]
    assert parse_message(r.to_bytes()).vias[0].params["rport"] == "40123"


def test_received_is_added_only_when_the_sent_by_host_is_not_the_source():
    plain = register().replace(b";rport\r\n", b"\r\n")
    same = make_response(parse_message(plain), 200, "OK", "t", source=("192.0.2.1", 5060))
    assert same.headers.lines("Via")[0] == "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds"
    named = plain.replace(b"192.0.2.1:5060", b"ue.example.com")
    other = make_response(parse_message(named), 200, "OK", "t", source=("192.0.2.1", 5060))
    assert other.headers.lines("Via")[0] == (
        "SIP/2.0/UDP ue.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1")


def test_the_top_via_is_stamped_when_it_shares_a_line_with_others():
    one_line = register().replace(b";rport\r\nVia: ", b";rport, ")
    r = make_response(parse_message(one_line), 200, "OK", "t", source=("10.1.1.1", 7))
    assert r.headers.get_all("Via") == [
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport=7;received=10.1.1.1",
        "SIP/2.0/TCP 192.0.2.9;branch=z9hG4bKfirst"]


def test_a_dated_response_carries_date_in_rfc_1123_form():
    r = make_response(parse_message(register()), 200, "OK", "t", date=1289690940.0)
    assert r.headers.get("Date") == "Sat, 13 Nov 2010 23:29:00 GMT"
    assert b"\r\nDate: Sat, 13 Nov 2010 23:29:00 GMT\r\n" in r.to_bytes()
