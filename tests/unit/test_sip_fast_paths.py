"""The fast paths of the parser read a value exactly as the general grammar does: same result,
same error. Values of the usual shape are only checked at parse time and built when read."""
from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scripts.harness.samples import IMS_REGISTER
from transport.sip import (
    Headers,
    Response,
    SipParseError,
    StreamFramer,
    make_response,
    parse_cseq,
    parse_message,
    parse_name_addr,
    parse_params,
    parse_uri,
    parse_via,
)
from transport.sip.headers import _cseq, _name_addr, _scan, _via, is_plain_name_addr, is_plain_via
from transport.sip.uri import is_plain_request_uri


def outcome(parse, value):
    try:
        return ("ok", parse(value))
    except SipParseError as error:
        return ("error", error.status, error.reason)


# Values built from pieces, mostly plain, sometimes not (case, whitespace, escapes, quoting,
# ports out of range), then sometimes damaged.


def mostly(plain, *odd):
    """The plain piece seven times in eight, else one of the odd ones."""
    return st.integers(0, 7).flatmap(lambda n: plain if n < 7 else st.one_of(*odd))


TOKEN = "abcXYZ019-.!%*_+`'~"
spaces = mostly(st.just(""), st.sampled_from([" ", "\t", "  "]))
tokens = st.text(TOKEN, min_size=1, max_size=8)
quoted = mostly(
    st.text(st.characters(blacklist_characters='"\\\r\n;', blacklist_categories=("Cs",)),
            max_size=10).map(lambda text: f'"{text}"'),
    st.sampled_from(['"a;b"', '"a\\"b"', '"a\\\\"', '"a\\;"']),
)
param_values = st.one_of(tokens, quoted, st.sampled_from(["192.0.2.1", "[2001:db8::1]", "a:b"]))


@st.composite
def params(draw) -> str:
    text = ""
    for _ in range(draw(st.integers(0, 4))):
        text += draw(spaces) + ";" + draw(spaces) + draw(tokens)
        if draw(st.booleans()):
            text += draw(spaces) + "=" + draw(spaces) + draw(param_values)
    return text + draw(spaces)


ports = mostly(st.one_of(st.none(), st.integers(0, 65535).map(str)),
               st.sampled_from(["65536", "99999", "065535", "00080", "123456", ""]))
hosts = mostly(st.sampled_from(["example.com", "EXAMPLE.com", "192.0.2.1", "[2001:db8::1]",
                                "h_1.-x"]),
               st.sampled_from(["[::1", "ex ample.com", "", "a@b"]))
users = mostly(st.sampled_from([None, "alice", "%61lice", "a;b", "+1-555", "a?b=c", "u:secret"]),
               st.sampled_from(["a%zz", "a b", "a:b:c", "%", "@"]))


@st.composite
def uris(draw) -> str:
    text = draw(mostly(st.sampled_from(["sip:", "sips:"]),
                       st.sampled_from(["SIP:", "tel:", "mailto:", "sip", "x-y:"])))
    user = draw(users)
    if user is not None:
        text += user + "@"
    text += draw(hosts)
    port = draw(ports)
    if port is not None:
        text += ":" + port
    for name in draw(st.lists(st.sampled_from(["lr", "transport=tcp", "x=%41", "Maddr=1.2.3.4",
                                               "a=", ""]), max_size=3)):
        text += ";" + name
    if draw(st.integers(0, 4)) == 0:
        text += draw(st.sampled_from(["?subject=x", "?a=b&c=d", "?", "?x"]))
    return text


@st.composite
def name_addrs(draw) -> str:
    display = draw(mostly(st.sampled_from([None, '"Alice"', '""']),
                          st.sampled_from(['"A \\"q\\""', "Bob Smith", '"a;b"', '"x'])))
    uri = draw(uris())
    if display is None and draw(st.integers(0, 3)) == 0:
        text = uri  # addr-spec
    else:
        text = ("" if display is None else display + draw(st.sampled_from(["", " ", "  "])))
        text += f"<{uri}>"
    return draw(spaces) + text + draw(params())


@st.composite
def vias(draw) -> str:
    protocol = draw(mostly(st.sampled_from(["SIP/2.0/UDP", "SIP/2.0/tcp", "sip/2.0/TLS"]),
                           st.sampled_from(["SIP / 2.0 / UDP", "SIP/2.0", "SIP/2.0/"])))
    text = protocol + draw(mostly(st.just(" "), st.sampled_from(["\t", "  ", ""]))) + draw(hosts)
    port = draw(ports)
    if port is not None:
        text += draw(spaces) + ":" + draw(spaces) + port
    return draw(spaces) + text + draw(params())


def damaged(values):
    @st.composite
    def build(draw) -> str:
        text = draw(values)
        if draw(st.integers(0, 3)) == 0 and text:
            at = draw(st.integers(0, len(text)))
            damage = draw(st.sampled_from(list(';,<>"\\ \t=:@%?[]') + ["\x00"]))
            text = text[:at] + damage + text[at:]
        return text
    return build()


@settings(max_examples=1000, deadline=None)
@given(damaged(name_addrs()))
def test_name_addr_fast_path_reads_as_the_general_grammar(value):
    assert outcome(parse_name_addr, value) == outcome(_name_addr, value)
    if is_plain_name_addr(value):  # checked at parse time, built when read: must not fail
        assert outcome(parse_name_addr, value)[0] == "ok"


@settings(max_examples=1000, deadline=None)
@given(damaged(vias()))
def test_via_fast_path_reads_as_the_general_grammar(value):
    assert outcome(parse_via, value) == outcome(_via, value)
    if is_plain_via(value):
        assert outcome(parse_via, value)[0] == "ok"


@settings(max_examples=1000, deadline=None)
@given(damaged(params()))
def test_params_fast_path_reads_as_the_general_grammar(value):
    assert outcome(parse_params, value) == outcome(_scan, value)


@settings(max_examples=1000, deadline=None)
@given(damaged(uris()))
def test_a_plain_request_uri_parses_without_headers(value):
    if is_plain_request_uri(value):
        uri = parse_uri(value)
        assert uri.scheme in ("sip", "sips") and uri.opaque is None and not uri.headers


@settings(max_examples=500, deadline=None)
@given(st.text("0123456789٣x-+ ", max_size=12), st.sampled_from([" ", "  ", "\t", ""]),
       st.sampled_from(["REGISTER", "INVITE", "register", "REG ISTER", "", "X-1"]))
def test_cseq_fast_path_reads_as_the_general_grammar(number, space, method):
    value = f"{number}{space}{method}"
    assert outcome(parse_cseq, value) == outcome(_cseq, value)


def test_plain_via_from_and_request_uri_are_built_when_first_read():
    m = parse_message(IMS_REGISTER)
    assert {"cseq", "call_id", "to"} <= vars(m).keys()
    assert not {"vias", "from_", "request_uri"} & vars(m).keys()
    assert m.vias == [_via(value) for value in m.headers.get_all("Via")]
    assert m.from_ == _name_addr(m.headers.get("From"))
    assert m.request_uri == parse_uri(m.uri) and m.request_uri.aor() == m.uri


@pytest.mark.parametrize("old, new, reason", [
    (b"10.0.0.2:5060;branch", b"10.0.0.2:65536;branch", "Bad Via"),
    (b"10.0.0.2:5060;branch", b"10.0.0.2:5060 ;branch", None),
    (b"@ims.mnc001.mcc001.3gppnetwork.org>;tag", b"@h:65536>;tag", "Bad URI port"),
    (b"From: <sip:", b'From: "A \\"B\\"" <SIP:', None),
    (b"REGISTER sip:ims.mnc001.mcc001.3gppnetwork.org ", b"REGISTER sip:h:70000 ",
     "Bad Request-URI"),
    (b"REGISTER sip:ims.mnc001.mcc001.3gppnetwork.org ", b"REGISTER sip:h?x=y ",
     "Bad Request-URI"),
    (b"REGISTER sip:ims.mnc001.mcc001.3gppnetwork.org ", b"REGISTER tel:+1555 ", None),
])
def test_values_off_the_plain_shape_take_the_general_path(old, new, reason):
    data = IMS_REGISTER.replace(old, new, 1)
    assert data != IMS_REGISTER
    if reason is None:
        m = parse_message(data)
        assert m.vias and m.from_ and m.request_uri
    else:
        with pytest.raises(SipParseError) as caught:
            parse_message(data)
        assert (caught.value.status, caught.value.reason) == (400, reason)


def folded() -> bytes:
    return IMS_REGISTER.replace(b"Supported: path, gruu, outbound",
                                b"Supported: path,\r\n gruu, outbound\r\nX-Extra : 1")


@pytest.mark.parametrize("data", [IMS_REGISTER, folded()])
def test_parsed_header_lines_are_read_when_needed(data):
    def parsed() -> Headers:
        return parse_message(data).headers

    lines = list(parsed())
    assert Headers(lines) == parsed() and len(parsed()) == len(lines)
    assert repr(parsed()) == repr(Headers(lines))
    assert pickle.loads(pickle.dumps(parsed())) == parsed()
    for change in (lambda h: h.add("x-new", "1"), lambda h: h.set("k", "x"),
                   lambda h: h.remove("Via"), lambda h: h.set("v", "SIP/2.0/UDP h")):
        headers, expected = parsed(), Headers(lines)
        change(headers)
        change(expected)
        assert list(headers) == list(expected)
        assert headers.get_all("Via") == expected.get_all("Via")
    m = parse_message(data)
    m.body = b"abc"
    assert m.to_bytes().endswith(b"Content-Length: 3\r\n\r\nabc")
    again = parse_message(m.to_bytes())
    assert again.body == b"abc" and list(again.headers)[:-1] == list(m.headers)[:-1]


def test_header_values_that_are_not_strings_still_serialize():
    r = make_response(parse_message(IMS_REGISTER), 200, "OK", "t")
    r.headers.add("Expires", 600)
    assert b"\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n" in r.to_bytes()
    assert Response(200, "OK", [("Retry-After", 5)]).to_bytes() == (
        b"SIP/2.0 200 OK\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize("head, length", [
    (b"l: 3", 3), (b"L\t :\t 4 ", 4), (b"CONTENT-length:5", 5), (b"x: 1\nl: 6", 6),
    (b"Content-Length-X: 9\r\nContent-Length: 7", 7), (b"X-L: 9\r\nl:8", 8),
])
def test_framer_finds_content_length_in_any_spelling(head, length):
    data = b"OPTIONS sip:a@b SIP/2.0\r\n" + head + b"\r\n\r\n" + b"x" * length
    assert StreamFramer().feed(data) == [data]
    assert StreamFramer._content_length(head) == length


@pytest.mark.parametrize("head, reason", [
    (b"X-Content-Length: 1", "Missing Content-Length"),
    (b"l: 1\r\nl: 1", "Multiple Content-Length"),
    (b"l: 1\nContent-Length: 1", "Multiple Content-Length"), (b"l: x", "Bad Content-Length"),
])
def test_framer_content_length_errors(head, reason):
    with pytest.raises(SipParseError) as caught:
        StreamFramer._content_length(head)
    assert caught.value.reason == reason
