"""From a parsed REGISTER to a RegisterRequest: the credentials the authentication needs."""
from __future__ import annotations

import pytest

from actors.rules.register_request import register_request
from transport.sip.errors import SipParseError
from transport.sip.parser import parse_message

INITIAL = ('Digest username="alice@ims.test", realm="ims.test", uri="sip:ims.test", nonce="", '
           'response="", integrity-protected="no"')


def register(*authorizations: str, request_uri: str = "sip:ims.test",
             to: str = "sip:alice@ims.test") -> bytes:
    lines = [f"REGISTER {request_uri} SIP/2.0", "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1",
             f"From: <{to}>;tag=1", f"To: <{to}>", "Call-ID: c", "CSeq: 7 REGISTER",
             "Contact: <sip:ue@10.0.0.1>"]
    lines += [f"Authorization: {value}" for value in authorizations]
    return ("\r\n".join(lines + ["Content-Length: 0", "", ""])).encode()


def parsed(raw: bytes, realm: str | None = None):
    return register_request(parse_message(raw), "udp:10.0.0.1:5060", realm)


def test_the_authorization_and_its_integrity_protected_are_kept():
    req = parsed(register(INITIAL))
    assert req.authorization == INITIAL
    assert req.integrity_protected == "no"
    assert req.impi == "alice@ims.test"


def test_without_authorization_the_impi_comes_from_the_impu():
    req = parsed(register())
    assert (req.authorization, req.integrity_protected) == (None, None)
    assert req.impi == "alice@ims.test"


@pytest.mark.parametrize("value, expected", [
    ('Digest username="a@ims.test", realm="ims.test", integrity-protected="tls-yes"', "tls-yes"),
    ("Digest username=\"a@ims.test\", realm=ims.test, integrity-protected=ip-assoc-yes",
     "ip-assoc-yes"),
    ('Digest username="a@ims.test", realm="ims.test", nonce="x"', None),
    # a lookalike parameter name is not the parameter, nor is text inside a quoted value
    ('Digest username="a@ims.test", realm="ims.test", xintegrity-protected="yes"', None),
    ('Digest username="a, integrity-protected=yes", realm="ims.test"', None),
])
def test_integrity_protected_is_read_from_the_chosen_header(value, expected):
    assert parsed(register(value)).integrity_protected == expected


def test_the_header_for_our_realm_is_chosen_among_several():
    other = 'Digest username="alice@visited.test", realm="visited.test", integrity-protected="yes"'
    ours = 'Digest username="alice@ims.test", realm="IMS.test", integrity-protected="no"'
    req = parsed(register(other, ours))
    assert req.authorization == ours
    assert (req.impi, req.integrity_protected) == ("alice@ims.test", "no")


def test_a_realm_inside_a_quoted_value_does_not_count():
    decoy = 'Digest username="x, realm=ims.test", realm="visited.test"'
    ours = 'Digest username="alice@ims.test", realm="ims.test"'
    assert parsed(register(decoy, ours)).authorization == ours


def test_several_headers_none_for_us_give_no_credentials():
    first = 'Digest username="alice@a.test", realm="a.test"'
    second = 'Digest username="alice@b.test", realm="b.test"'
    req = parsed(register(first, second))
    assert (req.authorization, req.integrity_protected) == (None, None)
    assert req.impi == "alice@ims.test"


def test_the_only_header_is_taken_whatever_its_realm():
    only = 'Digest username="alice@elsewhere.test", realm="elsewhere.test"'
    req = parsed(register(only))
    assert (req.authorization, req.impi) == (only, "alice@elsewhere.test")


def test_an_explicit_realm_overrides_the_request_uri_host():
    first = 'Digest username="alice@ims.test", realm="ims.test"'
    home = 'Digest username="alice@home.test", realm="home.test"'
    assert parsed(register(first, home), realm="home.test").authorization == home
    assert parsed(register(first, home)).authorization == first


def test_a_quoted_username_with_escapes_is_unescaped():
    value = r'Digest username="al\"ice@ims.test", realm="ims.test"'
    assert parsed(register(value)).impi == 'al"ice@ims.test'



@pytest.mark.parametrize("old, new, header", [
    (b'<sip:ue@10.0.0.1>', b'<sip:ue@10.0.0.1>;+sip.instance="<urn:\x1b[2J>"', "Contact"),
    (b'<sip:ue@10.0.0.1>', b'<sip:ue@10.0.0.1>;x=\x00', "Contact"),
    (b'username="alice', b'username="al\x7fice', "Authorization"),
])
def test_control_characters_that_xml_cannot_carry_are_refused_naming_the_header(old, new, header):
    """Found by scripts/fuzz_sip.py: a Contact parameter holding ESC was stored, and every
    reginfo NOTIFY of the identity failed from then on (lxml refuses the character)."""
    with pytest.raises(SipParseError) as refused:
        parsed(register(INITIAL).replace(old, new, 1))
    assert (refused.value.status, refused.value.reason) == (400, f"Control character in {header}")


def test_a_tab_is_no_control_character_to_refuse():
    assert parsed(register(INITIAL).replace(b"Contact: <", b"Contact:\t<")).contacts


@pytest.mark.parametrize("reg_id, kept", [("4294967295", 4294967295), ("1", 1), ("007", 7)])
def test_a_reg_id_up_to_32_bits_is_kept(reg_id, kept):
    contact = f'<sip:ue@10.0.0.1>;+sip.instance="<urn:uuid:1>";reg-id={reg_id}'.encode()
    (binding,) = parsed(register().replace(b"<sip:ue@10.0.0.1>", contact, 1)).contacts
    assert binding.reg_id == kept


@pytest.mark.parametrize("reg_id", ["4294967296", "99999999999999999999999", "9" * 5000, "x"])
def test_a_reg_id_beyond_32_bits_is_refused(reg_id):
    """As Kamailio reads it: an unsigned 32-bit number; a longer one could not be stored."""
    contact = f'<sip:ue@10.0.0.1>;+sip.instance="<urn:uuid:1>";reg-id={reg_id}'.encode()
    with pytest.raises(SipParseError) as refused:
        parsed(register().replace(b"<sip:ue@10.0.0.1>", contact, 1))
    assert (refused.value.status, refused.value.reason) == (400, "Bad reg-id in Contact")


def test_an_expires_parameter_of_thousands_of_digits_counts_as_the_largest():
    """int() refuses more than 4,300 digits: that ValueError was a 500."""
    contact = f"<sip:ue@10.0.0.1>;expires={'9' * 5000}".encode()
    (binding,) = parsed(register().replace(b"<sip:ue@10.0.0.1>", contact, 1)).contacts
    assert binding.expires == 2**32 - 1
