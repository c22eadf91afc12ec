"""Header grammar a registrar depends on: Contact, Via, CSeq, lists, names and compact forms."""
from __future__ import annotations

import pytest

from transport.sip import (
    STAR,
    Headers,
    NameAddr,
    SipParseError,
    parse_contacts,
    parse_cseq,
    parse_int_header,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
    split_header_values,
)


def request(*headers: str, method: str = "REGISTER", body: str = "") -> bytes:
    base = [
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds",
        "From: <sip:alice@example.com>;tag=1928301774",
        "To: <sip:alice@example.com>",
        "Call-ID: a84b4c76e66710",
        f"CSeq: 1 {method}",
    ]
    lines = [f"{method} sip:example.com SIP/2.0", *base, *headers]
    return ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n" + body).encode()


# Contact


def test_quoted_semicolons_and_commas_inside_contact_params():
    value = ('<sip:alice@192.0.2.1;transport=tcp>;+sip.instance="<urn:gsma:imei:3569-380-0>";'
             'note="a;b,c";reg-id=1, "Doe, John" <sip:john@192.0.2.2>;q=0.5')
    first, second = parse_contacts(split_header_values(value))
    assert first.uri.params == {"transport": "tcp"}
    assert first.params == {"+sip.instance": '"<urn:gsma:imei:3569-380-0>"',
                            "note": '"a;b,c"', "reg-id": "1"}
    assert second.display_name == "Doe, John"
    assert second.q == 0.5


def test_contact_serialization_keeps_quoted_values_and_quotes_display_names():
    value = '"A \\"quoted\\" name" <sip:a@b;lr>;+sip.instance="<urn:uuid:1>";expires=60;flag'
    contact = parse_name_addr(value)
    assert contact.display_name == 'A "quoted" name'
    assert str(contact) == value
    assert parse_name_addr(str(contact)) == contact


def test_addr_spec_params_belong_to_the_header():
    contact = parse_name_addr("sip:alice@example.com;expires=30;q=1")
    assert contact.uri.params == {}
    assert contact.params == {"expires": "30", "q": "1"}
    assert contact.raw_uri == "sip:alice@example.com"


def test_star_alone_and_mixed():
    assert parse_contacts(["*"]) is STAR
    with pytest.raises(SipParseError) as caught:
        parse_contacts(["*", "<sip:a@b>"])
    assert caught.value.status == 400
    m = parse_message(request("Contact: *", "Expires: 0"))
    assert m.contacts is STAR and m.expires == 0
    with pytest.raises(SipParseError):
        parse_message(request("Contact: *, <sip:a@b>")).contacts


def test_no_contact_is_an_empty_list():
    assert parse_message(request()).contacts == []


def test_expires_param_versus_expires_header():
    m = parse_message(request("Contact: <sip:a@192.0.2.1>;expires=0, <sip:b@192.0.2.2>",
                              "Expires: 3600"))
    first, second = m.contacts
    assert (first.expires, second.expires, m.expires) == (0, None, 3600)
    with pytest.raises(SipParseError):
        parse_name_addr("<sip:a@b>;expires=soon").expires
    assert parse_message(request()).expires is None


@pytest.mark.parametrize("q, value", [("0", 0.0), ("0.5", 0.5), ("1", 1.0), ("1.000", 1.0),
                                      ("0.001", 0.001), ("0.", 0.0)])
def test_q_values(q, value):
    assert parse_name_addr(f"<sip:a@b>;q={q}").q == value


@pytest.mark.parametrize("q", ["1.5", "2", "-0.1", "0.1234", "high", '"0.5"'])
def test_bad_q_values(q):
    with pytest.raises(SipParseError):
        parse_name_addr(f"<sip:a@b>;q={q}").q


def test_compact_forms():
    m = parse_message(request("m: <sip:a@192.0.2.1>", "o: reg", "u: reg, presence",
                              "k: path, gruu"))
    assert [str(c.uri) for c in m.contacts] == ["sip:a@192.0.2.1"]
    assert m.headers.get("Event") == "reg"
    assert m.headers.get_all("Allow-Events") == ["reg", "presence"]
    assert m.supported == {"path", "gruu"}
    assert [name for name, _ in m.headers][-5:] == [
        "Contact", "Event", "Allow-Events", "Supported", "Content-Length"]


@pytest.mark.parametrize("compact, name", [
    ("i", "Call-ID"), ("m", "Contact"), ("e", "Content-Encoding"), ("l", "Content-Length"),
    ("c", "Content-Type"), ("f", "From"), ("s", "Subject"), ("k", "Supported"), ("t", "To"),
    ("v", "Via"), ("o", "Event"), ("u", "Allow-Events"), ("r", "Refer-To"), ("b", "Referred-By"),
    ("x", "Session-Expires"), ("a", "Accept-Contact"), ("j", "Reject-Contact"),
    ("d", "Request-Disposition"), ("y", "Identity"), ("n", "Identity-Info"),
])
def test_every_compact_form_maps_to_its_long_name(compact, name):
    headers = Headers([(compact.upper(), "x")])
    assert list(headers) == [(name, "x")]
    assert headers.get(compact) == headers.get(name) == headers.get(name.upper()) == "x"


def test_folded_lines():
    data = request("Contact:", "  <sip:a@192.0.2.1>", "\t;expires=60 ,", " <sip:b@192.0.2.2>",
                   "Supported: path,", "   gruu")
    m = parse_message(data)
    assert [(str(c.uri), c.expires) for c in m.contacts] == [
        ("sip:a@192.0.2.1", 60), ("sip:b@192.0.2.2", None)]
    assert m.supported == {"path", "gruu"}


def test_folding_into_the_start_line_is_rejected():
    with pytest.raises(SipParseError):
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\n continued\r\n" + request()[24:])


def test_path_list_across_lines_keeps_order():
    m = parse_message(request("Path: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
                              "Path: <sip:p3.example.com;lr>", "Supported: path"))
    assert m.headers.get_all("Path") == [
        "<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>", "<sip:p3.example.com;lr>"]
    assert [parse_name_addr(p).uri.host for p in m.headers.get_all("Path")] == [
        "p1.example.com", "p2.example.com", "p3.example.com"]
    assert m.headers.lines("Path") == [
        "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>", "<sip:p3.example.com;lr>"]


def test_require_and_supported_option_tags_are_lower_case_sets():
    m = parse_message(request("Require: Path", "Supported: path, OUTBOUND,gruu"))
    assert m.require == {"path"}
    assert m.supported == {"path", "outbound", "gruu"}


# Via


def test_via_received_rport_maddr():
    via = parse_via("SIP/2.0/udp pc33.atlanta.com:5066;branch=z9hG4bK776;received=192.0.2.4;"
                    "rport=5067;maddr=224.2.0.1;ttl=16")
    assert (via.protocol, via.transport, via.host, via.port) == (
        "SIP/2.0", "UDP", "pc33.atlanta.com", 5066)
    assert via.branch == "z9hG4bK776"
    assert via.params == {"branch": "z9hG4bK776", "received": "192.0.2.4", "rport": "5067",
                          "maddr": "224.2.0.1", "ttl": "16"}
    assert via.sent_by == "pc33.atlanta.com:5066"


def test_via_rport_flag_and_ipv6():
    text = "SIP/2.0/TCP [2001:db8::9:1]:5060;rport;received=2001:db8::9:255;branch=z9hG4bKx"
    via = parse_via(text)
    assert via.host == "[2001:db8::9:1]"
    assert via.params["rport"] is None
    assert via.params["received"] == "2001:db8::9:255"
    assert str(via) == text


@pytest.mark.parametrize("value", ["", "SIP/2.0 host", "SIP/2.0/UDP", "SIP/2.0/UDP host;",
                                   "SIP/2.0/UDP host:99999", "SIP/2.0/UDP host;branch=a b",
                                   "SIP/2.0/UDP ho st", "SIP/2.0/UDP [::1"])
def test_bad_vias(value):
    with pytest.raises(SipParseError) as caught:
        parse_via(value)
    assert (caught.value.status, caught.value.reason) == (400, "Bad Via")


# CSeq and integers


def test_cseq():
    assert parse_cseq("4711 REGISTER") == (4711, "REGISTER")
    assert parse_cseq(f"{2**32 - 1} OPTIONS") == (2**32 - 1, "OPTIONS")
    for bad in (f"{2**32} REGISTER", "REGISTER", "1", "-1 REGISTER", "1 REG ISTER", "x REGISTER",
                "00000000001 REGISTER"):
        with pytest.raises(SipParseError) as caught:
            parse_cseq(bad)
        assert (caught.value.status, caught.value.reason) == (400, "Bad CSeq")


def test_int_headers():
    assert parse_int_header(" 3600 ", "Expires") == 3600
    assert parse_int_header("70", "Max-Forwards", 255) == 70
    for bad in ("", "-1", "1e3", "٣", "4294967296", "0x10", "1 2"):
        with pytest.raises(SipParseError) as caught:
            parse_int_header(bad, "Expires")
        assert caught.value.reason == "Bad Expires"
    with pytest.raises(SipParseError):
        parse_int_header("256", "Max-Forwards", 255)


# Lists and names


@pytest.mark.parametrize("value, elements", [
    ("", []),
    ("  ", []),
    ("a", ["a"]),
    ("a, b ,c", ["a", "b", "c"]),
    ('"x, y" <sip:a@b>, <sip:c@d;p=1,2>', ['"x, y" <sip:a@b>', "<sip:c@d;p=1,2>"]),
    ('<sip:a@b>;p="q\\",r", <sip:c@d>', ['<sip:a@b>;p="q\\",r"', "<sip:c@d>"]),
    ("a,,b", ["a", "", "b"]),
])
def test_split_header_values(value, elements):
    assert split_header_values(value) == elements


@pytest.mark.parametrize("value", ['"unterminated, x', "<sip:a@b, c"])
def test_split_header_values_rejects_unbalanced_quotes(value):
    with pytest.raises(SipParseError):
        split_header_values(value)


def test_headers_container():
    headers = Headers([("via", "a"), ("Contact", "<sip:x@y>, <sip:z@w>"), ("X-Custom", "1"),
                       ("v", "b"), ("x-custom", "2")])
    assert headers.get("VIA") == "a"
    assert headers.get_all("Via") == ["a", "b"]
    assert headers.get_all("m") == ["<sip:x@y>", "<sip:z@w>"]
    assert headers.get_all("X-CUSTOM") == ["1", "2"]
    assert "x-custom" in headers and "Route" not in headers
    headers.set("Via", "c")
    assert list(headers)[0] == ("Via", "c") and headers.get_all("Via") == ["c"]
    headers.remove("X-Custom")
    assert list(headers) == [("Via", "c"), ("Contact", "<sip:x@y>, <sip:z@w>")]
    headers.set("Expires", "5")
    assert list(headers)[-1] == ("Expires", "5")
    assert headers.get("Nope") is None and headers.get_all("Nope") == [] and len(headers) == 3


@pytest.mark.parametrize("value, reason", [
    ("Bell, Alexander <sip:a@b>", "Bad display name"),
    ('"unterminated <sip:a@b>', "Bad display name"),
    ("<sip:a@b>;;tag=1", "Bad header parameter"),
    ("<sip:a@b> junk", "Bad header parameter"),
    ("sip:a@b?Route=x", "URI with headers outside <>"),
    ("< sip:a@b>", "Bad URI"),
    ("", "Bad name-addr"),
])
def test_bad_name_addrs(value, reason):
    with pytest.raises(SipParseError) as caught:
        parse_name_addr(value)
    assert (caught.value.status, caught.value.reason) == (400, reason)


def test_name_addr_built_by_hand_serializes():
    contact = NameAddr(None, parse_uri("sip:a@192.0.2.1:5070"), {"expires": "60"})
    assert str(contact) == "<sip:a@192.0.2.1:5070>;expires=60"
    contact.params["expires"] = "0"
    assert str(contact) == "<sip:a@192.0.2.1:5070>;expires=0"
