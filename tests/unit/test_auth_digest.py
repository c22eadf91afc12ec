"""SIP Digest: RFC 2069/2617/7616 examples, AKAv1-MD5 (RFC 3310) and the header codecs."""
from __future__ import annotations

import hashlib
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.auth.digest import (
    DigestCredentials,
    aka_ha1,
    constant_time_equal,
    ha1,
    parse_authorization,
    response,
    www_authenticate,
)


def md5(text: str | bytes) -> str:
    return hashlib.md5(text.encode() if isinstance(text, str) else text).hexdigest()


def test_rfc2617_section_3_5_example():
    secret = ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    assert secret == "939e7578ed9e3c518a452acee763bce9"
    assert response(secret, "dcd98b7102dd2f0e8b11d0f600bfb0c093", "GET", "/dir/index.html",
                    qop="auth", nc="00000001", cnonce="0a4f113b") == (
        "6629fae49393a05397450978507c4ef1")


def test_rfc7616_section_3_9_1_md5_example():
    secret = ha1("Mufasa", "http-auth@example.org", "Circle of Life")
    assert response(secret, "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "GET",
                    "/dir/index.html", qop="auth", nc="00000001",
                    cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ") == (
        "8ca523f5e9506fed4657c9700eebdbec")


def test_rfc2069_example_without_qop():
    secret = ha1("Mufasa", "testrealm@host.com", "CircleOfLife")
    assert response(secret, "dcd98b7102dd2f0e8b11d0f600bfb0c093", "GET",
                    "/dir/index.html") == "1949323746fe6a43ef61f9606e7febea"


def test_without_qop_matches_an_independent_computation():
    secret = md5("bob@ims.test:ims.test:zanzibar")
    expected = md5(f"{secret}:b64nonce==:{md5('REGISTER:sip:ims.test')}")
    assert ha1("bob@ims.test", "ims.test", "zanzibar") == secret
    assert response(secret, "b64nonce==", "REGISTER", "sip:ims.test") == expected


def test_auth_int_hashes_the_body():
    body = b"v=0\r\no=- 0 0 IN IP4 192.0.2.1\r\n"
    secret = md5("bob@ims.test:ims.test:zanzibar")
    ha2 = md5(f"INVITE:sip:carol@ims.test:{md5(body)}")
    expected = md5(f"{secret}:n0nce:0000000a:c0ffee:auth-int:{ha2}")
    assert response(secret, "n0nce", "INVITE", "sip:carol@ims.test", qop="auth-int",
                    nc="0000000a", cnonce="c0ffee", body=body) == expected
    assert response(secret, "n0nce", "INVITE", "sip:carol@ims.test", qop="auth-int",
                    nc="0000000a", cnonce="c0ffee", body=b"") != expected


def test_aka_ha1_uses_res_as_raw_bytes():
    res = bytes.fromhex("a54211d5e3ba50bf")  # TS 35.208 set 1 RES: not valid UTF-8
    assert aka_ha1("alice@ims.test", "ims.test", res) == md5(b"alice@ims.test:ims.test:" + res)
    assert aka_ha1("alice@ims.test", "ims.test", res) != ha1("alice@ims.test", "ims.test",
                                                             res.hex())


def test_hashes_cover_the_bytes_the_client_sent():
    username = b"caf\xe9@ims.test".decode("utf-8", "surrogateescape")  # as transport.sip keeps it
    assert ha1(username, "ims.test", "pw") == md5(b"caf\xe9@ims.test:ims.test:pw")
    assert constant_time_equal(username, username)


@pytest.mark.parametrize("qop, nc, cnonce, reason", [
    ("auth-conf", "00000001", "x", "unsupported qop"),
    ("auth", None, "x", "nc and cnonce"),
    ("auth-int", "00000001", None, "nc and cnonce"),
])
def test_response_rejects_incomplete_qop(qop, nc, cnonce, reason):
    with pytest.raises(ValueError, match=reason):
        response("0" * 32, "n", "REGISTER", "sip:ims.test", qop=qop, nc=nc, cnonce=cnonce)


def test_parse_initial_ims_register():
    credentials = parse_authorization(
        'Digest username="alice@ims.test", realm="ims.test", uri="sip:ims.test", nonce="", '
        'response=""')
    assert (credentials.scheme, credentials.username, credentials.realm, credentials.uri,
            credentials.nonce, credentials.response) == (
        "Digest", "alice@ims.test", "ims.test", "sip:ims.test", "", "")
    assert credentials.is_initial and not credentials.is_resync
    assert credentials.algorithm is credentials.qop is credentials.auts is None


def test_parse_full_aka_answer():
    credentials = parse_authorization(
        'Digest username="001010000000001@ims.mnc001.mcc001.3gppnetwork.org",'
        'realm="ims.mnc001.mcc001.3gppnetwork.org",'
        'nonce="I1U8vpY3qJ0hiuZNrke/NVXzKLQ1d7m5Sp/6w1Tfr7M=",'
        'uri="sip:ims.mnc001.mcc001.3gppnetwork.org",'
        'response="c76c2c281a21c0d6131e667d61a6bdf5",algorithm=AKAv1-MD5,'
        'cnonce="YD05duxy",qop=auth,nc=00000001,opaque="b64opaque=="')
    assert credentials.username == "001010000000001@ims.mnc001.mcc001.3gppnetwork.org"
    assert credentials.nonce == "I1U8vpY3qJ0hiuZNrke/NVXzKLQ1d7m5Sp/6w1Tfr7M="
    assert credentials.response == "c76c2c281a21c0d6131e667d61a6bdf5"
    assert (credentials.algorithm, credentials.qop, credentials.nc, credentials.cnonce,
            credentials.opaque) == ("AKAv1-MD5", "auth", "00000001", "YD05duxy", "b64opaque==")
    assert not credentials.is_initial and not credentials.is_resync


def test_parse_resync_with_and_without_response():
    with_empty = parse_authorization(
        'Digest username="alice@ims.test", realm="ims.test", nonce="bm9uY2U=", '
        'uri="sip:ims.test", response="", algorithm=AKAv1-MD5, auts="uoU/PBI8Ac+vnsToceE="')
    without = parse_authorization(
        'Digest username="alice@ims.test", realm="ims.test", nonce="bm9uY2U=", '
        'uri="sip:ims.test", auts="uoU/PBI8Ac+vnsToceE="')
    for credentials in (with_empty, without):
        assert credentials.auts == "uoU/PBI8Ac+vnsToceE="
        assert credentials.response == ""
        assert credentials.is_resync and not credentials.is_initial


def test_parse_is_lenient_on_case_whitespace_and_quoting():
    credentials = parse_authorization(
        '  digest  USERNAME = "a\\"b,c\\\\d" ,\tRealm="ims.test",,\r\n nonce="x, y=z",'
        ' Uri="sip:ims.test" , Response = "", QOP="auth", NC=0000000A, CNonce="c", '
        'x-extra=token')
    assert credentials.scheme == "digest"
    assert credentials.username == 'a"b,c\\d'
    assert credentials.nonce == "x, y=z"
    assert (credentials.qop, credentials.nc, credentials.cnonce) == ("auth", "0000000A", "c")
    assert credentials.params == {
        "username": 'a"b,c\\d', "realm": "ims.test", "nonce": "x, y=z", "uri": "sip:ims.test",
        "response": "", "qop": "auth", "nc": "0000000A", "cnonce": "c", "x-extra": "token"}


def test_parsed_credentials_are_hashable_and_picklable():
    credentials = parse_authorization(
        'Digest username="a", realm="r", nonce="n", uri="sip:r", response="0"')
    assert pickle.loads(pickle.dumps(credentials)) == credentials
    assert hash(credentials) == hash(pickle.loads(pickle.dumps(credentials)))


VALID = 'username="a", realm="r", nonce="n", uri="sip:r", response="0"'


@pytest.mark.parametrize("value, reason", [
    ("", "no authentication scheme"),
    ("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "not Digest"),
    (f"Bearer {VALID}", "not Digest"),
    ("Digest", "missing username, realm, nonce, uri, response"),
    ("Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:r\"", "missing response"),
    ("Digest realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"\"", "missing username"),
    ('Digest username="a', "unterminated"),
    ('Digest username="a\\', "unterminated"),
    ('Digest username="a" realm="r"', "expected a comma after username"),
    ("Digest username=, realm=r", "username needs a token or a quoted string"),
    ("Digest username", "username has no value"),
    ('Digest ="a"', "expected a parameter name"),
    (f'Digest {VALID}, Username="b"', "duplicate parameter username"),
    (f"Digest {VALID}, qop=auth", "qop without nc and cnonce"),
    (f'Digest {VALID}, qop=auth, nc=1, cnonce="c"', "nc must be 8 hex digits"),
    (f'Digest {VALID}, qop=auth, nc=0000000g, cnonce="c"', "nc must be 8 hex digits"),
    (f"Digest,{VALID}", "scheme not followed by whitespace"),
    (f"Digestusername=\"a\", {VALID}", "not Digest"),
    ('Digest username="a", realm="r", nonce="n", response="0", uri=<sip:r>',
     "uri needs a token or a quoted string"),
])
def test_malformed_credentials_are_value_errors(value, reason):
    with pytest.raises(ValueError, match=reason):
        parse_authorization(value)


@given(st.text())
def test_arbitrary_text_only_ever_raises_value_error(value):
    try:
        assert isinstance(parse_authorization(value), DigestCredentials)
    except ValueError:
        pass


@given(st.lists(st.sampled_from(
    ['Digest ', 'username', 'realm', 'nonce', 'uri', 'response', 'auts', 'qop', 'nc', '=',
     '"', '\\', ',', ' ', '\t', 'auth', '00000001', 'x', 'é', '\r\n', '=""']), max_size=40))
def test_near_valid_text_only_ever_raises_value_error(pieces):
    try:
        parse_authorization("".join(pieces))
    except ValueError:
        pass


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@given(username=st.text(), realm=st.text(), nonce=st.text())
def test_quoted_values_round_trip(username, realm, nonce):
    credentials = parse_authorization(
        f"Digest username={_quoted(username)}, realm={_quoted(realm)}, "
        f"nonce={_quoted(nonce)}, uri=\"sip:ims.test\", response=\"\"")
    assert (credentials.username, credentials.realm, credentials.nonce) == (
        username, realm, nonce)


def test_www_authenticate_for_aka_with_keys_for_the_p_cscf():
    ck = bytes.fromhex("b40ba9a3c58b2a05bbf0d987b21bf8cb")
    ik = bytes.fromhex("F769BCD751044604127672711C6D3441")
    assert www_authenticate("ims.test", "I1U8vpY3qJ0hiuZNrke/NQ==", "AKAv1-MD5",
                            ck=ck, ik=ik) == (
        'Digest realm="ims.test", nonce="I1U8vpY3qJ0hiuZNrke/NQ==", algorithm=AKAv1-MD5, '
        'qop="auth", ck="b40ba9a3c58b2a05bbf0d987b21bf8cb", '
        'ik="f769bcd751044604127672711c6d3441"')


def test_www_authenticate_stale_opaque_and_no_qop():
    assert www_authenticate('ims "test"', "n", "MD5", qop=None, stale=True, opaque="o") == (
        'Digest realm="ims \\"test\\"", nonce="n", opaque="o", algorithm=MD5, stale=TRUE')


@pytest.mark.parametrize("arguments, reason", [
    (("ims.test\r\nVia: x", "n", "MD5"), "realm contains a control character"),
    (("ims.test", "n\n", "MD5"), "nonce contains a control character"),
    (("ims.test", "n", "AKAv1-MD5, qop=x"), "algorithm must be a token"),
    (("ims.test", "n", ""), "algorithm must be a token"),
])
def test_www_authenticate_refuses_values_that_would_split_the_header(arguments, reason):
    with pytest.raises(ValueError, match=reason):
        www_authenticate(*arguments)


def test_constant_time_equal():
    assert constant_time_equal("6629fae49393a05397450978507c4ef1",
                               "6629fae49393a05397450978507c4ef1")
    assert not constant_time_equal("6629fae49393a05397450978507c4ef1",
                                   "6629fae49393a05397450978507c4ef2")
    assert not constant_time_equal("abc", "abcd")
    assert not constant_time_equal("é", "e")
