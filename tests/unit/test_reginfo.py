"""reginfo documents (RFC 3680): built from binding changes, valid to the schema, read back."""
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from actors.reg_event.reginfo import (
    NS,
    ContactInfo,
    ReginfoError,
    RegistrationInfo,
    build_reginfo,
    contact_id,
    parse_reginfo,
    registration_id,
    registration_infos,
)
from actors.vocabulary import Binding, Profile

SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).parents[1] / "data" / "reginfo.xsd")))
NOW = 1000.0
ALICE = "sip:alice@ims.test"
SET = Profile("alice@ims.test", (ALICE, "sip:alice.work@ims.test", "tel:+15550100",
                                 "sip:temp@ims.test"), frozenset({"sip:temp@ims.test"}), None)


def binding(uri="sip:alice@10.0.0.1:5060", expires_at=NOW + 600, cseq=1, params=(), q=None):
    return Binding(uri=uri, key=f"uri:{uri}", expires_at=expires_at, q=q, instance=None,
                   reg_id=None, params=params, call_id="call-1", cseq=cseq,
                   path=("<sip:term@pcscf.ims.test;lr>",), registered_at=NOW)


def valid(body: bytes) -> bytes:
    assert SCHEMA.validate(etree.fromstring(body)), SCHEMA.error_log
    return body


def events(infos, aor=ALICE):
    (registration,) = [r for r in infos if r.aor == aor]
    return registration.state, [(c.uri, c.state, c.event) for c in registration.contacts]


def test_document_shape_declaration_namespace_and_attributes():
    icsi = '"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel"'
    b = binding(params=(("q", "0.5"), ("+sip.instance", '"<urn:uuid:0001>"'), ("reg-id", "1"),
                        ("+g.3gpp.icsi-ref", icsi)), q="0.5")
    infos = registration_infos(None, ALICE, {}, {b.key: b}, NOW, "user")
    body = valid(build_reginfo(0, "full", infos))
    assert body.startswith(b'<?xml version="1.0"?>\n<reginfo xmlns="urn:ietf:params:xml:ns:'
                           b'reginfo" version="0" state="full">')
    root = etree.fromstring(body)
    (contact,) = root.iter(f"{{{NS}}}contact")
    assert dict(contact.attrib) == {"id": contact_id(ALICE, b.key), "state": "active",
                                    "event": "registered", "expires": "600", "q": "0.5",
                                    "callid": "call-1", "cseq": "1"}
    assert contact.findtext(f"{{{NS}}}uri") == "sip:alice@10.0.0.1:5060"
    params = [(p.get("name"), p.text) for p in contact.iter(f"{{{NS}}}unknown-param")]
    assert params == [("+sip.instance", '"<urn:uuid:0001>"'), ("reg-id", "1"),
                      ("+g.3gpp.icsi-ref", icsi)]
    assert b"&lt;urn:uuid:0001&gt;" in body


def test_ids_are_digests_of_identities_and_stable_across_notifies():
    b = binding()
    # Pinned: watchers and stored subscriptions outlive a restart or an upgrade.
    assert registration_id(ALICE) == "6b6e458616c954db"
    assert contact_id(ALICE, b.key) == "9b92316ede75d272"
    first = registration_infos(SET, ALICE, {}, {b.key: b}, NOW, "user")
    later = registration_infos(SET, ALICE, {b.key: b}, {b.key: replace(b, expires_at=NOW + 900)},
                               NOW + 300, "user")
    gone = registration_infos(SET, ALICE, {b.key: b}, {}, NOW + 400, "expired")
    for infos in (first, later, gone):
        assert [r.id for r in infos] == [registration_id(r.aor) for r in infos]
        assert [[c.id for c in r.contacts] for r in infos] == [
            [contact_id(r.aor, b.key)] for r in infos]
    assert contact_id(ALICE, b.key) != contact_id("sip:alice.work@ims.test", b.key)
    assert contact_id(ALICE, b.key) != contact_id(ALICE, "uri:sip:other@h")
    assert build_reginfo(3, "full", first) == build_reginfo(3, "full", registration_infos(
        SET, ALICE, {}, {b.key: b}, NOW, "user"))


def test_registration_and_refresh_events():
    a, c = binding(), binding("sip:alice@10.0.0.2")
    assert events(registration_infos(None, ALICE, {}, {a.key: a}, NOW, "user")) == (
        "active", [(a.uri, "active", "registered")])
    refreshed = replace(a, expires_at=NOW + 900, cseq=2)
    shortened = replace(a, expires_at=NOW + 60, cseq=2)
    assert events(registration_infos(None, ALICE, {a.key: a}, {a.key: refreshed}, NOW, "user")) == (
        "active", [(a.uri, "active", "refreshed")])
    assert events(registration_infos(None, ALICE, {a.key: a}, {a.key: shortened}, NOW, "user")) == (
        "active", [(a.uri, "active", "shortened")])
    state, contacts = events(registration_infos(None, ALICE, {a.key: a}, {a.key: a, c.key: c},
                                                NOW, "user"))
    assert sorted(contacts) == [(a.uri, "active", "registered"), (c.uri, "active", "registered")]


@pytest.mark.parametrize("reason, event", [
    ("user", "unregistered"), ("expired", "expired"), ("network", "deactivated"),
    ("rejected", "rejected"),
])
def test_removal_events_and_terminated_registration(reason, event):
    a, c = binding(), binding("sip:alice@10.0.0.2")
    partly = registration_infos(None, ALICE, {a.key: a, c.key: c}, {a.key: a}, NOW, reason)
    assert events(partly) == ("active", [(a.uri, "active", "registered"),
                                         (c.uri, "terminated", event)])
    infos = registration_infos(None, ALICE, {a.key: a}, {}, NOW, reason)
    assert events(infos) == ("terminated", [(a.uri, "terminated", event)])
    assert infos[0].contacts[0].expires == 0
    valid(build_reginfo(1, "full", infos))


def test_unknown_reason_is_refused():
    with pytest.raises(ValueError):
        registration_infos(None, ALICE, {}, {}, NOW, "whim")


def test_implicit_set_of_three_unbarred_impus_shares_the_bindings():
    a = binding()
    infos = registration_infos(SET, ALICE, {}, {a.key: a}, NOW, "user")
    assert [r.aor for r in infos] == [ALICE, "sip:alice.work@ims.test", "tel:+15550100"]
    assert events(infos) == ("active", [(a.uri, "active", "registered")])
    for aor in ("sip:alice.work@ims.test", "tel:+15550100"):
        assert events(infos, aor) == ("active", [(a.uri, "active", "created")])
    assert len({c.id for r in infos for c in r.contacts}) == 3
    valid(build_reginfo(0, "full", infos))
    gone = registration_infos(SET, ALICE, {a.key: a}, {}, NOW, "network")
    assert [r.state for r in gone] == ["terminated"] * 3


def test_nothing_registered_is_init():
    infos = registration_infos(None, ALICE, {}, {}, NOW, "user")
    assert [(r.state, r.contacts) for r in infos] == [("init", [])]
    valid(build_reginfo(0, "full", infos))


def test_escaping_and_display_name():
    info = RegistrationInfo("sip:a&b@ims.test", "active", [ContactInfo(
        "sip:x@h;p=<&>", "active", "registered", display_name='Bob "&" <Co>',
        unknown_params=[("flag", None), ("x", "a<b")], id="c1")])
    body = valid(build_reginfo(7, "partial", [info]))
    assert b'aor="sip:a&amp;b@ims.test"' in body and b"sip:x@h;p=&lt;&amp;&gt;" in body
    assert parse_reginfo(body) == [info]


def test_round_trip_of_built_documents():
    a = binding(params=(("+sip.instance", '"<urn:uuid:1>"'), ("reg-id", "1"), ("audio", None)))
    infos = registration_infos(SET, ALICE, {}, {a.key: a}, NOW, "user")
    assert parse_reginfo(build_reginfo(4, "full", infos)) == infos


def test_builder_refuses_values_outside_the_schema():
    with pytest.raises(ReginfoError):
        build_reginfo(0, "complete", [])
    with pytest.raises(ReginfoError):
        build_reginfo(-1, "full", [])
    with pytest.raises(ReginfoError):
        build_reginfo(0, "full", [RegistrationInfo(ALICE, "gone", [])])
    with pytest.raises(ReginfoError):
        build_reginfo(0, "full", [RegistrationInfo(ALICE, "active", [
            ContactInfo("sip:x@h", "active", "vanished", id="c")])])


GOOD = (b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="full">'
        b'<registration aor="sip:a@h" id="r" state="active">%s</registration></reginfo>')


@pytest.mark.parametrize("body", [
    b"",
    b"<reginfo",
    b"not xml at all",
    b'<reginfo xmlns="urn:other" version="0" state="full"/>',
    b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" state="full"/>',
    b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="-1" state="full"/>',
    b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="some"/>',
    b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full">'
    b'<registration id="r" state="active"/></reginfo>',
    GOOD % b'<contact id="c" state="active" event="registered"/>',
    GOOD % b'<contact state="active" event="registered"><uri>sip:x@h</uri></contact>',
    GOOD % b'<contact id="c" state="active"><uri>sip:x@h</uri></contact>',
    GOOD % b'<contact id="c" state="on" event="registered"><uri>sip:x@h</uri></contact>',
    GOOD % b'<contact id="c" state="active" event="registered" expires="soon">'
           b'<uri>sip:x@h</uri></contact>',
    GOOD % b'<contact id="c" state="active" event="registered"><uri>sip:x@h</uri>'
           b'<unknown-param>1</unknown-param></contact>',
])
def test_parse_rejects_malformed_documents(body):
    with pytest.raises(ReginfoError):
        parse_reginfo(body)


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full">'
    b'<registration aor="sip:a@h" id="&xxe;" state="active"/></reginfo>',
    b'<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
    b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full">'
    b'<registration aor="&c;" id="r" state="active"/></reginfo>',
    b'<!DOCTYPE reginfo SYSTEM "http://127.0.0.1:9/reginfo.dtd">'
    b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full"/>',
    b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full">'
    b'<registration aor="&undefined;" id="r" state="active"/></reginfo>',
])
def test_parse_rejects_doctype_and_entities(body):
    with pytest.raises(ReginfoError):
        parse_reginfo(body)


def test_parse_accepts_extensions_and_ignores_them():
    body = (b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo"'
            b' xmlns:g="urn:ietf:params:xml:ns:gruuinfo" version="2" state="partial">'
            b'<registration aor="sip:a@h" id="r" state="active">'
            b'<contact id="c" state="active" event="created" duration-registered="5">'
            b'<uri>sip:x@h</uri><g:pub-gruu uri="sip:a@h;gr=1"/></contact></registration>'
            b'<g:other/></reginfo>')
    valid(body)
    assert parse_reginfo(body) == [RegistrationInfo("sip:a@h", "active", [
        ContactInfo("sip:x@h", "active", "created", id="c")], id="r")]


# Random binding changes: any old/new pair, any reason, any slice of an implicit set.
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")),
                min_size=1, max_size=12)
# Binding URIs come from the SIP parser: user parts of unreserved characters and escapes.
_user = st.lists(st.sampled_from([*"aZ09-_.!~*'()&=+$,;/", "%20", "%3C"]),
                 min_size=1, max_size=8).map("".join)
_params = st.lists(st.tuples(st.sampled_from(["+sip.instance", "reg-id", "+g.3gpp.icsi-ref", "q",
                                              "video", "x-y"]),
                             st.none() | _text), max_size=4).map(tuple)


@st.composite
def _bindings(draw):
    keys = draw(st.lists(_text, max_size=4, unique=True))
    return {key: Binding(
        uri=f"sip:{draw(_user)}@10.0.0.1", key=key,
        expires_at=NOW + draw(st.integers(1, 10**6)),
        q=draw(st.none() | st.sampled_from(["0.1", "1.0"])),
        instance=None, reg_id=None, params=draw(_params), call_id=draw(_text),
        cseq=draw(st.integers(0, 2**31)), path=(), registered_at=NOW,
    ) for key in keys}


@settings(max_examples=150, deadline=None)
@given(old=_bindings(), new=_bindings(),
       reason=st.sampled_from(["user", "expired", "network", "rejected"]),
       barred=st.sets(st.sampled_from(SET.identities)), version=st.integers(0, 2**40),
       state=st.sampled_from(["full", "partial"]))
def test_random_binding_changes_give_schema_valid_bodies(old, new, reason, barred, version, state):
    profile = Profile(SET.impi, SET.identities, frozenset(barred), None)
    kept = {k: replace(b, expires_at=b.expires_at + 1) for k, b in old.items() if len(k) % 2}
    new = {**kept, **new}
    infos = registration_infos(profile, ALICE, old, new, NOW, reason)
    body = valid(build_reginfo(version, state, infos))
    assert parse_reginfo(body) == infos
    for info in infos:
        assert info.state == ("active" if new else "terminated" if old else "init")
        assert len(info.contacts) == len(new.keys() | old.keys())
