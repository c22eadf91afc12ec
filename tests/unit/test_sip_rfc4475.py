"""The 49 torture messages of RFC 4475, checked against what the RFC says of each."""
from __future__ import annotations

from pathlib import Path

import pytest

from transport.sip import (
    STAR,
    Request,
    Response,
    SipParseError,
    TransactionKey,
    error_response,
    make_response,
    parse_contacts,
    parse_head,
    parse_message,
    parse_uri,
    unescape,
    uri_equal,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "rfc4475"

VALID = ["wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq",
         "semiuri", "transports", "mpart01", "unreason", "noreason"]
INVALID = ["badinv01", "clerr", "ncl", "scalar02", "scalarlg", "quotbal", "ltgtruri", "lwsruri",
           "lwsstart", "trws", "escruri", "baddate", "regbadct", "badaspec", "baddn", "badvers",
           "mismatch01", "mismatch02", "bigcode"]
TRANSACTION = ["badbranch"]
APPLICATION = ["insuf", "unkscm", "novelsc", "unksm2", "bext01", "invut", "regaut01", "multi01",
               "mcl01", "bcast", "zeromf", "cparam01", "cparam02", "regescrt", "sdp01"]
COMPATIBILITY = ["inv2543"]


def raw(name: str) -> bytes:
    return (DATA / f"{name}.dat").read_bytes()


def load(name: str):
    return parse_message(raw(name))


def rejected(name: str) -> SipParseError:
    with pytest.raises(SipParseError) as caught:
        load(name)
    return caught.value


def test_every_message_of_the_rfc_is_here_once():
    sections = VALID + INVALID + TRANSACTION + APPLICATION + COMPATIBILITY
    assert len(sections) == len(set(sections)) == 49
    assert sorted(p.stem for p in DATA.glob("*.dat")) == sorted(sections)


# 3.1.1 Valid messages


@pytest.mark.parametrize("name", VALID)
def test_valid_messages_parse_and_can_be_answered(name):
    message = load(name)
    if isinstance(message, Request):
        response = make_response(message, 200, "OK", to_tag="x")
        assert parse_message(response.to_bytes()).cseq == message.cseq


def test_wsinv_short_tortuous_invite():
    m = load("wsinv")
    assert m.method == "INVITE"
    assert m.request_uri.user == "vivekg"
    assert m.request_uri.host == "chair-dnrc.example.com"
    assert m.request_uri.params == {"unknownparam": None}
    assert m.to.uri.aor() == "sip:vivekg@chair-dnrc.example.com"
    assert m.to.tag == "1918181833n"
    assert m.from_.display_name == 'J Rosenberg \\"'
    assert m.from_.tag == "98asjd8"
    assert m.max_forwards == 68
    assert m.cseq == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert m.headers.get_all("Route") == [
        "<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"]
    [contact] = m.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert contact.q == 0.33
    assert len(m.body) == 150


def test_intmeth_wide_range_of_valid_characters():
    m = load("intmeth")
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.cseq == (139122385, m.method)
    uri = m.request_uri
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert m.vias[0].branch == "z9hG4bK-.!%66*_+`'~"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.to.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert m.from_.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert m.from_.tag == "_token~1'+`*%!-."
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.max_forwards == 255
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    assert m.body == b""


def test_esc01_valid_escaping():
    m = load("esc01")
    assert m.request_uri.host == "example.net"
    assert unescape(m.request_uri.user) == "sips:user@example.com"
    assert m.to.uri.user == "user"  # %75se%72
    assert uri_equal(m.to.uri, "sip:user@example.com")
    assert unescape(m.from_.uri.user) == "I have spaces"
    assert m.from_.tag == "938"
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"  # compact i:
    assert m.headers.get("Content-Type") == "application/sdp"  # compact C:
    [contact] = m.contacts  # value on a continuation line
    assert contact.uri.user == "caller"
    # %6C%72 is the lr parameter; "value%41" is not "valueA": unescaping is never recursive
    assert contact.uri.params == {"lr": None, "name": "value%2541"}
    assert unescape(contact.uri.params["name"]) == "value%41"
    assert len(m.body) == 150


def test_escnull_escaped_nulls_do_not_shorten_names():
    m = load("escnull")
    assert m.method == "REGISTER"
    assert m.to.uri.aor() == "sip:null-%00-null@example.com"
    assert unescape(m.to.uri.user) == "null-\x00-null"
    first, second = m.contacts  # two distinct bindings
    assert (first.uri.user, second.uri.user) == ("%00", "%00%00")
    assert not uri_equal(first.uri, second.uri)
    assert m.body == b""  # L:0


def test_esc02_percent_that_is_not_an_escape():
    m = load("esc02")
    assert m.method == "RE%47IST%45R"  # an unknown method, not REGISTER
    assert m.cseq == (29344, "RE%47IST%45R")
    assert m.to.display_name == m.from_.display_name == "%Z%45"
    assert m.vias[0].branch == "z9hG4bK209%fzsnel234"
    assert [c.uri.aor() for c in m.contacts] == [
        "sip:alias1@host1.example.com", "sip:alias3@host3.example.com"]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_no_space_between_display_name_and_uri():
    m = load("lwsdisp")
    assert m.from_.display_name == "caller"
    assert m.from_.uri.aor() == "sip:caller@example.com"
    assert m.from_.tag == "323"


def test_longreq_long_values():
    m = load("longreq")
    assert m.to.display_name == ("I have a user name of " + "extreme" * 10 + " proportion")
    assert m.to.uri.port == 6000
    assert len(m.to.uri.params) == 3
    assert m.to.uri.params["unknownparam1"].startswith("verylong")
    assert len(m.from_.tag) == 155
    assert len(m.from_.params) == 3
    assert len(m.vias) == 34
    assert m.vias[0].host == "sip33.example.com"
    assert m.vias[-1].params["received"] == "192.0.2.5"
    assert m.vias[-1].branch.endswith("branchvalue")
    assert m.call_id.startswith("longreq.onereally")
    assert len(m.body) == 150


def test_dblreq_extra_octets_in_a_datagram_are_ignored():
    m = load("dblreq")
    assert m.method == "REGISTER"
    assert m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"  # upper-case compact I:
    assert m.body == b""
    assert b"INVITE" in raw("dblreq")


def test_semiuri_semicolons_in_user_part():
    m = load("semiuri")
    uri = m.request_uri
    assert uri.user == "user;par=u%40example.net"
    assert uri.host == "example.com"
    assert uri.params == {}
    assert m.headers.get_all("Accept") == [
        "application/sdp", "application/pkcs7-mime", "multipart/mixed", "multipart/signed",
        "message/sip", "message/sipfrag"]


def test_transports_varied_and_unknown():
    m = load("transports")
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert m.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_mpart01_binary_multipart_body():
    m = load("mpart01")
    assert m.method == "MESSAGE"
    assert len(m.body) == 553
    assert m.body.startswith(b"--7a9cbec02ceef655\r\n")
    assert m.headers.get("Content-Type") == "multipart/mixed;boundary=7a9cbec02ceef655"
    assert m.vias[0].params == {"branch": "z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-",
                                "rport": None}
    assert parse_message(m.to_bytes()).body == m.body


def test_unreason_utf8_reason_phrase():
    m = load("unreason")
    assert isinstance(m, Response)
    assert m.status == 200
    assert m.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert len(m.body) == 154


def test_noreason_empty_reason_phrase():
    m = load("noreason")
    assert (m.status, m.reason) == (100, "")
    assert m.cseq == (35, "INVITE")


# 3.1.2 Invalid messages


@pytest.mark.parametrize("name, reason", [
    ("badinv01", "Bad Via"),  # ";;,;,," in Via
    ("clerr", "Content-Length mismatch"),
    ("ncl", "Bad Content-Length"),
    ("scalar02", "Bad CSeq"),
    ("scalarlg", "Bad CSeq"),
    ("quotbal", "Bad display name"),
    ("ltgtruri", "Bad Request-URI"),
    ("lwsruri", "Bad request line"),
    ("lwsstart", "Bad request line"),
    ("trws", "Bad request line"),
    ("escruri", "Bad Request-URI"),
    ("badaspec", "Bad URI"),
    ("baddn", "Bad display name"),
    ("mismatch01", "CSeq method mismatch"),
    ("mismatch02", "CSeq method mismatch"),
    ("bigcode", "Bad status code"),
])
def test_invalid_messages_are_rejected_with_400(name, reason):
    error = rejected(name)
    assert (error.status, error.reason) == (400, reason)


def test_badinv01_contact_separators_are_rejected_too():
    with pytest.raises(SipParseError):
        parse_contacts(['"Joe" <sip:joe@example.org>;;;;'])


def test_badvers_is_505():
    error = rejected("badvers")
    assert (error.status, error.reason) == (505, "Version Not Supported")
    response = error_response(raw("badvers"), error, to_tag="t")
    assert (response.status, response.reason) == (505, "Version Not Supported")
    assert response.headers.get("Call-ID") == "badvers.31417@c.example.com"


def test_scalar02_other_overlarge_values_are_seen_by_their_accessors():
    text = raw("scalar02").replace(b"36893488147419103232", b"1")
    m = parse_message(text)
    for accessor in ("max_forwards", "expires"):
        with pytest.raises(SipParseError) as caught:
            getattr(m, accessor)
        assert caught.value.status == 400
    [contact] = m.contacts  # expires parameter on a continuation line
    with pytest.raises(SipParseError):
        contact.expires


def test_baddate_parses_but_shows_a_non_gmt_date():
    # The Date is not needed to process the request; an element may ignore it.
    m = load("baddate")
    assert m.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"
    assert not m.headers.get("Date").endswith("GMT")
    assert len(m.body) == 150


def test_regbadct_contact_with_headers_must_be_in_angle_brackets():
    m = load("regbadct")
    with pytest.raises(SipParseError) as caught:
        m.contacts
    assert (caught.value.status, caught.value.reason) == (400, "URI with headers outside <>")


ANSWERED = ["clerr", "ncl", "ltgtruri", "lwsruri", "lwsstart", "trws", "escruri", "mismatch01",
            "mismatch02", "multi01", "mcl01"]


def answer_echoing_the_request(name):
    """The 400 to an invalid request, checked to echo its Via, From, Call-ID and CSeq."""
    error = rejected(name)
    response = error_response(raw(name), error, to_tag="t")
    assert (response.status, response.reason) == (400, error.reason)
    request_headers = parse_head(raw(name))[1]
    assert response.headers.lines("Via") == request_headers.lines("Via")
    for header in ("From", "Call-ID", "CSeq"):
        assert response.headers.get(header) == request_headers.get(header)
    return response, request_headers, error


@pytest.mark.parametrize("name", ANSWERED)
def test_invalid_requests_get_an_answer_built_from_their_headers(name):
    response, _, _ = answer_echoing_the_request(name)
    assert response.to.tag is not None
    assert parse_message(response.to_bytes()).status == 400


@pytest.mark.parametrize("name", ["badinv01", "scalar02", "quotbal", "badaspec", "baddn"])
def test_requests_with_a_malformed_via_from_to_or_cseq_get_those_echoed(name):
    # Each can be read as a line: echoed verbatim, the client matches its top Via and CSeq.
    response, request_headers, error = answer_echoing_the_request(name)
    to = request_headers.get("To")
    assert response.headers.get("To") in (to, f"{to};tag=t")  # a tag only where To parses
    assert parse_head(response.to_bytes())[0] == f"SIP/2.0 400 {error.reason}"


def test_a_malformed_to_is_echoed_without_a_tag():
    response = error_response(raw("quotbal"), rejected("quotbal"), to_tag="t")
    assert response.headers.get("To") == '"Mr. J. User <sip:j.user@example.com>'
    response = error_response(raw("scalar02"), rejected("scalar02"), to_tag="t")
    assert response.headers.get("To") == "<sip:user@example.com>;tag=t"


@pytest.mark.parametrize("name", ["scalarlg", "bigcode"])
def test_unanswerable_messages_are_dropped(name):
    # Responses are never answered.
    assert error_response(raw(name), rejected(name), to_tag="t") is None


@pytest.mark.parametrize("header", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_a_request_missing_a_header_to_echo_is_dropped(header):
    lines = [line for line in raw("baddn").split(b"\r\n")
             if not line.startswith(header.encode() + b":")]
    data = b"\r\n".join(lines)
    assert error_response(data, SipParseError(400, "Bad display name"), to_tag="t") is None


# 3.2 Transaction layer


def test_badbranch_magic_cookie_alone_falls_back_to_rfc2543_matching():
    m = load("badbranch")
    assert m.vias[0].branch == "z9hG4bK"
    key = TransactionKey.server(m)
    assert key.branch == ""
    assert m.call_id in key.legacy


# 3.3 Application layer


def test_insuf_missing_required_headers():
    error = rejected("insuf")
    assert (error.status, error.reason) == (400, "Missing To")
    assert error_response(raw("insuf"), error) is None  # no Call-ID/From/To to answer with


@pytest.mark.parametrize("name", ["unkscm", "novelsc"])
def test_unknown_request_uri_schemes_get_416(name):
    error = rejected(name)
    assert (error.status, error.reason) == (416, "Unsupported URI Scheme")
    response = error_response(raw(name), error, to_tag="t")
    assert response.status == 416
    assert response.headers.get("To") == "sip:user@example.com;tag=t"


def test_unksm2_unknown_schemes_in_headers_parse():
    m = load("unksm2")
    assert (m.to.uri.scheme, m.to.uri.opaque) == ("isbn", "2983792873")
    assert str(m.from_.uri) == "http://www.example.com"
    [contact] = m.contacts
    assert contact.uri.scheme == "name"
    assert m.to.uri.scheme not in ("sip", "sips", "tel")  # a registrar answers 400


def test_bext01_require_and_proxy_require():
    m = load("bext01")
    assert m.require == {"nothingsupportsthis", "nothingsupportsthiseither"}
    assert m.headers.get_all("Proxy-Require") == ["noProxiesSupportThis",
                                                  "norDoAnyProxiesSupportThis"]
    assert m.vias[0].transport == "TLS"


def test_invut_unknown_content_type():
    m = load("invut")
    assert m.headers.get("Content-Type") == "application/unknownformat"
    assert m.body == b'<audio>\r\n <pcmu port="443"/>\r\n</audio>\r\n'


def test_regaut01_unknown_authorization_scheme_is_kept_verbatim():
    m = load("regaut01")
    assert m.method == "REGISTER"
    assert m.headers.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"
    assert m.contacts == []  # a query of the bindings
    assert m.to.uri.aor() == "sip:j.user@example.com"
    assert m.body == b""  # "Content-Length:0" without a space


def test_multi01_multiple_single_value_headers():
    error = rejected("multi01")
    assert (error.status, error.reason) == (400, "Multiple To")


def test_mcl01_multiple_content_length():
    error = rejected("mcl01")
    assert (error.status, error.reason) == (400, "Multiple Content-Length")


def test_bcast_broadcast_via_is_exposed():
    m = load("bcast")
    assert m.status == 200
    assert m.vias[1].host == "255.255.255.255"


def test_zeromf_max_forwards_zero():
    m = load("zeromf")
    assert m.max_forwards == 0


def test_cparam01_unknownparam_is_a_contact_parameter():
    [contact] = load("cparam01").contacts
    assert contact.params == {"unknownparam": None}
    assert contact.uri.params == {}
    assert str(contact.uri) == "sip:+19725552222@gw1.example.net"
    assert str(contact) == "<sip:+19725552222@gw1.example.net>;unknownparam"


def test_cparam02_unknownparam_is_a_uri_parameter():
    [contact] = load("cparam02").contacts
    assert contact.params == {}
    assert contact.uri.params == {"unknownparam": None}
    assert str(contact) == "<sip:+19725552222@gw1.example.net;unknownparam>"


def test_regescrt_escaped_route_header_in_contact_is_kept():
    m = load("regescrt")
    [contact] = m.contacts  # compact M:
    assert contact.uri.headers == {"Route": "%3Csip:sip.example.com%3E"}
    assert unescape(contact.uri.headers["Route"]) == "<sip:sip.example.com>"
    assert str(contact) == "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>"
    assert uri_equal(parse_uri(str(contact.uri)), contact.uri)
    assert m.body == b""  # compact L:0


def test_sdp01_accept_without_sdp():
    m = load("sdp01")
    assert m.headers.get_all("Accept") == ["text/nobodyKnowsThis"]
    assert len(m.body) == 150


# 3.4 Backward compatibility


def test_inv2543_rfc2543_syntax():
    m = load("inv2543")
    assert m.vias[0].branch is None
    assert m.from_.tag is None
    assert m.max_forwards is None
    assert "Content-Length" not in m.headers
    assert m.body.startswith(b"v=0\r\n") and m.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")
    # addr-spec form: ";user=phone" is a To parameter (RFC 3261 20.10), not a URI parameter
    assert m.to.params == {"user": "phone"}
    assert m.to.uri.params == {}
    assert TransactionKey.server(m).legacy  # matched the RFC 2543 way


def test_star_is_not_confused_with_a_contact():
    assert load("regaut01").contacts is not STAR
