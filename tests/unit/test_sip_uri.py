"""SIP/SIPS/tel URIs: parsing, serialization, the AOR key and RFC 3261 19.1.4 comparison."""
from __future__ import annotations

import pytest

from transport.sip import SipParseError, SipUri, parse_uri, unescape, uri_equal


def test_full_sip_uri():
    uri = parse_uri("sips:alice:secret@Atlanta.COM:5061;transport=TCP;Lr;maddr=239.255.255.1"
                    "?subject=project%20x&priority=urgent")
    assert uri == SipUri("sips", "alice", "secret", "Atlanta.COM", 5061,
                         {"transport": "TCP", "lr": None, "maddr": "239.255.255.1"},
                         {"subject": "project%20x", "priority": "urgent"})
    assert str(uri) == ("sips:alice:secret@Atlanta.COM:5061;transport=TCP;lr;maddr=239.255.255.1"
                        "?subject=project%20x&priority=urgent")
    assert uri.aor() == "sips:alice@atlanta.com"


def test_scheme_is_case_insensitive_and_host_only_uris_work():
    uri = parse_uri("SIP:registrar.example.com")
    assert (uri.scheme, uri.user, uri.host) == ("sip", None, "registrar.example.com")
    assert uri.port is None
    assert uri.aor() == "sip:registrar.example.com"


@pytest.mark.parametrize("text, host, port", [
    ("sip:alice@[2001:db8::1]", "[2001:db8::1]", None),
    ("sip:alice@[2001:DB8::1]:5070;transport=tcp", "[2001:DB8::1]", 5070),
    ("sip:[::1]:5060", "[::1]", 5060),
    ("sip:alice@192.0.2.4:0", "192.0.2.4", 0),
])
def test_ipv6_and_ipv4_hosts(text, host, port):
    uri = parse_uri(text)
    assert (uri.host, uri.port) == (host, port)
    assert str(uri) == text


def test_ipv6_aor_is_lower_case():
    assert parse_uri("sip:Bob@[2001:DB8::A]:5060").aor() == "sip:Bob@[2001:db8::a]"


def test_the_port_is_no_part_of_an_address_of_record():
    assert parse_uri("sip:alice@IMS.test:5060;user=phone").aor() == "sip:alice@ims.test"
    assert parse_uri("sip:scscf.ims.test:6060").aor() == "sip:scscf.ims.test"


def test_escapes_of_unreserved_characters_are_decoded_others_kept_upper_case():
    uri = parse_uri("sip:%61lice%3a%2f@example.com;n%61me=a%3bb")
    assert uri.user == "alice%3A%2F"
    assert uri.params == {"name": "a%3Bb"}
    assert unescape(uri.user) == "alice:/"


def test_aor_resolves_escapes_and_rewrites_them_canonically():
    assert parse_uri("sip:%75se%72@EXAMPLE.com;transport=udp?x=y").aor() == "sip:user@example.com"
    # ';' may stay literal in a user part, ':' may not
    assert parse_uri("sip:a%3Bb%3Ac@example.com").aor() == "sip:a;b%3Ac@example.com"
    assert parse_uri("sip:caf%C3%A9@example.com").aor() == "sip:caf%C3%A9@example.com"


def test_tel_uri():
    uri = parse_uri("tel:+1-201-555-0123;phone-context=example.com;ext=12")
    assert (uri.scheme, uri.user, uri.host) == ("tel", "+1-201-555-0123", "")
    assert uri.params == {"phone-context": "example.com", "ext": "12"}
    assert uri.aor() == "tel:+1-201-555-0123"
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com;ext=12"


def test_tel_uri_equality_ignores_visual_separators():
    assert uri_equal("tel:+1-201-555-0123", "tel:+1.201.555.0123")
    assert not uri_equal("tel:+12015550123", "tel:+12015550124")
    assert not uri_equal("tel:+12015550123", "sip:+12015550123@example.com")


def test_other_schemes_are_kept_opaque():
    uri = parse_uri("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
    assert (uri.scheme, uri.opaque) == ("urn", "uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
    assert str(uri) == uri.aor() == "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"


@pytest.mark.parametrize("text", [
    "", "sip:", "sip", "alice@example.com", "sip:alice@", "sip:alice@example.com:99999",
    "sip:alice@example.com:port", "sip:alice@exa mple.com", "sip:al ice@example.com",
    "sip:alice@example.com;", "sip:alice@example.com;a=", "sip:alice@example.com;=b",
    "sip:alice@example.com?", "sip:alice@example.com?x", "sip:%4@example.com",
    "sip:%zz@example.com", "sip:alice@[2001:db8::1", "sip:<alice@example.com>",
    "sip:alice@example.com;a=<b>", "tel:", "tel:+1 555", "1tel:x", "sip:alice@@example.com",
    "sip:alice@example.com\x00",
])
def test_malformed_uris_raise_400(text):
    with pytest.raises(SipParseError) as caught:
        parse_uri(text)
    assert caught.value.status == 400


# RFC 3261 19.1.4: "The URIs within each of the following sets are equivalent"
EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
     "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
    ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
     "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
    # equality is not transitive: both are equal to a URI without the parameter
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=off"),
]
# "The URIs within each of the following sets are not equivalent"
NOT_EQUIVALENT = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
    # further rules of 19.1.4
    ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ("sip:alice;day=tuesday@atlanta.com", "sip:alice%3Bday%3Dtuesday@atlanta.com"),
    ("sip:alice:pw@atlanta.com", "sip:alice:PW@atlanta.com"),
    ("sip:alice@atlanta.com;maddr=192.0.2.1", "sip:alice@atlanta.com"),
    ("sip:alice@atlanta.com;user=phone", "sip:alice@atlanta.com"),
]


@pytest.mark.parametrize("a, b", EQUIVALENT)
def test_rfc3261_equivalent_uris(a, b):
    assert uri_equal(a, b) and uri_equal(b, a)


@pytest.mark.parametrize("a, b", NOT_EQUIVALENT)
def test_rfc3261_not_equivalent_uris(a, b):
    assert not uri_equal(a, b) and not uri_equal(b, a)


def test_round_trip_keeps_equivalence():
    for a, b in EQUIVALENT + NOT_EQUIVALENT:
        for text in (a, b):
            assert uri_equal(parse_uri(str(parse_uri(text))), text)
