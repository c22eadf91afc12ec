"""reg-event subscriptions: who may subscribe, expiry, NOTIFY requests and the end of it all."""
from dataclasses import replace

import pytest
from lxml import etree

from actors.reg_event.reginfo import build_reginfo, registration_infos
from actors.reg_event.subscription import (
    END_REASONS,
    TERMINATION_REASONS,
    Subscription,
    can_publish_reg,
    can_subscribe_to_reg,
    dialog_contact,
    dialog_presentity,
    next_hop,
    notify_request,
    on_notify_failure,
    refresh,
    subscription_key,
)
from actors.rules.expires import ExpiresPolicy
from actors.vocabulary import Binding, Profile, Reply
from transport.sip.errors import SipParseError
from transport.sip.uri import parse_uri

NOW = 1000.0
ALICE = "sip:alice@ims.test"
SET = Profile("alice@ims.test", (ALICE, "sip:alice.work@ims.test", "sip:temp@ims.test"),
              frozenset({"sip:temp@ims.test"}), None)
POLICY = ExpiresPolicy(600, 0, 60, 3600)  # default, range %, min, max


def binding(path=("<sip:term@pcscf.ims.test;lr>",)):
    return Binding(uri="sip:alice@10.0.0.1:5060", key="uri:sip:alice@10.0.0.1:5060",
                   expires_at=NOW + 600, q=None, instance=None, reg_id=None, params=(),
                   call_id="reg-1", cseq=1, path=path, registered_at=NOW)


def subscription(**changes):
    sub = Subscription(
        presentity=ALICE, watcher=ALICE, call_id="sub-1@10.0.0.1", from_tag="ue-tag",
        to_tag="scscf-tag", remote_target="sip:alice@10.0.0.1:5060",
        route_set=("<sip:pcscf.ims.test:5060;lr>", "<sip:edge.ims.test;lr>"), remote_cseq=1,
        expires_at=NOW + 600, received="udp:10.0.0.9:5060",
    )
    return replace(sub, **changes)


BINDINGS = {"b": binding()}


AS_DATA = (
    "<IMSSubscription><PrivateID>alice@ims.test</PrivateID><ServiceProfile>"
    "<PublicIdentity><Identity>sip:alice@ims.test</Identity></PublicIdentity>"
    "<InitialFilterCriteria><Priority>0</Priority><ApplicationServer>"
    "<ServerName>sip:as.ims.test:5065</ServerName><DefaultHandling>0</DefaultHandling>"
    "</ApplicationServer></InitialFilterCriteria>"
    "</ServiceProfile></IMSSubscription>")
WITH_AS = replace(SET, user_data=AS_DATA)


@pytest.mark.parametrize("asserted, allowed", [
    (ALICE, True),  # the UE itself
    ("sip:alice.work@ims.test", True),  # another IMPU of its set
    ("sip:temp@ims.test", False),  # barred IMPU of the set
    ("sip:pcscf.ims.test", True),  # the P-CSCF on the Path (asserted identities carry no port)
    ("sip:term@pcscf.ims.test", True),  # ... named with the Path's user part
    ("sip:mallory@pcscf.ims.test", False),  # a user at the P-CSCF's host is not the P-CSCF
    ("sips:PCSCF.ims.test", True),
    ("sip:as.ims.test", False),  # an AS of no iFC of this profile
    ("sip:mallory@ims.test", False),  # stranger
    ("tel:+15550001", False),
    (None, False),  # no assertion, whatever the From says
])
def test_who_may_subscribe_and_publish(asserted, allowed):
    assert can_subscribe_to_reg(SET, BINDINGS, asserted) is allowed
    assert can_publish_reg(SET, BINDINGS, asserted) is allowed


@pytest.mark.parametrize("asserted, allowed", [
    ("sip:as.ims.test", True), ("sip:other-as.ims.test", False), (ALICE, True)])
def test_application_servers_of_the_ifcs_may_subscribe(asserted, allowed):
    assert can_subscribe_to_reg(WITH_AS, {}, asserted) is allowed


def test_p_cscf_needs_a_binding_through_it():
    assert can_subscribe_to_reg(SET, {}, "sip:pcscf.ims.test") is False
    assert can_subscribe_to_reg(SET, {"b": binding(path=())}, "sip:pcscf.ims.test") is False
    assert can_subscribe_to_reg(None, BINDINGS, "sip:pcscf.ims.test") is True
    assert can_subscribe_to_reg(None, BINDINGS, ALICE) is False  # no profile: no set to be in


def test_expiry_follows_the_subscription_parameters():
    assert POLICY.choose(None) == 600
    assert POLICY.choose(10) == 60
    assert POLICY.choose(600000) == 3600
    assert POLICY.choose(0) == 0


def test_refresh_extends_updates_target_and_rejects_out_of_order():
    sub = subscription()
    assert refresh(sub, 2, 1200, "sip:alice@10.0.0.2:5060", POLICY, NOW + 100) == 1200
    assert (sub.remote_cseq, sub.expires_at) == (2, NOW + 1300)
    assert sub.remote_target == "sip:alice@10.0.0.2:5060"
    assert refresh(sub, 3, None, None, POLICY, NOW + 200) == 600
    assert sub.remote_target == "sip:alice@10.0.0.2:5060"
    assert refresh(sub, 2, 600, None, POLICY, NOW + 300) == Reply(500, "Server Internal Error")
    assert sub.remote_cseq == 3
    assert refresh(sub, 4, 0, None, POLICY, NOW + 300) == 0  # unsubscribe
    assert sub.remaining(NOW + 300) == 0


def test_key_is_dialog_and_event_id():
    sub = subscription(event_id="7")
    assert sub.key == subscription_key("sub-1@10.0.0.1", "ue-tag", "scscf-tag", "7")
    assert sub.key != subscription().key


def test_notify_headers_exact():
    sub = subscription(event_id="7")
    uri, headers, body = notify_request(sub, b"<reginfo/>", "active", None, NOW + 100,
                                        ALICE, "sip:scscf.ims.test:6060")
    assert uri == "sip:alice@10.0.0.1:5060"
    assert body == b"<reginfo/>"
    assert headers == [
        ("Max-Forwards", "70"),
        ("From", "<sip:alice@ims.test>;tag=scscf-tag"),
        ("To", "<sip:alice@ims.test>;tag=ue-tag"),
        ("Call-ID", "sub-1@10.0.0.1"),
        ("CSeq", "1 NOTIFY"),
        ("Route", "<sip:pcscf.ims.test:5060;lr>"),
        ("Route", "<sip:edge.ims.test;lr>"),
        ("Contact", "<sip:scscf.ims.test:6060>"),
        ("Event", "reg;id=7"),
        ("Subscription-State", "active;expires=500"),
        ("Content-Type", "application/reginfo+xml"),
    ]


@pytest.mark.parametrize("reason", sorted(TERMINATION_REASONS))
def test_terminated_notify_carries_the_reason(reason):
    _, headers, _ = notify_request(subscription(route_set=()), b"", "terminated", reason, NOW,
                                   ALICE, "sip:scscf.ims.test")
    assert ("Subscription-State", f"terminated;reason={reason}") in headers
    assert ("Event", "reg") in headers
    assert not [name for name, _ in headers if name == "Route"]


@pytest.mark.parametrize("state, reason", [("active", "timeout"), ("terminated", "bored"),
                                           ("pending", None)])
def test_bad_subscription_state_is_refused(state, reason):
    sub = subscription()
    with pytest.raises(ValueError):
        notify_request(sub, b"", state, reason, NOW, ALICE, "sip:scscf.ims.test")
    assert (sub.local_cseq, sub.version) == (0, 0)


def test_every_ending_has_an_rfc6665_reason():
    assert set(END_REASONS.values()) <= TERMINATION_REASONS
    assert END_REASONS["registration-ended"] == "noresource"
    assert END_REASONS["expired"] == END_REASONS["unsubscribed"] == "timeout"


def _version_and_state(body, headers):
    return int(etree.fromstring(body).get("version")), dict(headers)["Subscription-State"], \
        dict(headers)["CSeq"]


def test_lifecycle_versions_rise_by_one_per_notify_until_the_registration_ends():
    sub, b = subscription(), binding()
    changes = [
        ({}, {"b": b}, "user", "active", None),  # first NOTIFY, after the 200 OK
        ({"b": b}, {"b": replace(b, expires_at=NOW + 900)}, "user", "active", None),  # re-REGISTER
        ({"b": b}, {}, "network", "terminated", END_REASONS["registration-ended"]),  # RTR
    ]
    seen = []
    for old, new, why, state, reason in changes:
        infos = registration_infos(SET, ALICE, old, new, NOW, why)
        body = build_reginfo(sub.version, "full", infos)
        _, headers, body = notify_request(sub, body, state, reason, NOW, ALICE,
                                          "sip:scscf.ims.test")
        seen.append(_version_and_state(body, headers))
    assert seen == [(0, "active;expires=600", "1 NOTIFY"), (1, "active;expires=600", "2 NOTIFY"),
                    (2, "terminated;reason=noresource", "3 NOTIFY")]
    assert (sub.version, sub.local_cseq) == (3, 3)


@pytest.mark.parametrize("status, remove", [
    (200, False), (202, False), (401, False), (407, False),
    (408, True), (481, True), (302, True), (404, True), (500, True), (503, True),
])
def test_failed_notify_removes_the_subscription(status, remove):
    assert on_notify_failure(status) is remove


def test_dialog_contact_names_the_presentity_and_reads_back():
    contact = dialog_contact("sip:scscf.ims.test:6060", "sip:alice+1@ims.test")
    assert contact.startswith("sip:scscf.ims.test:6060;reg-dialog=")
    assert dialog_presentity(parse_uri(contact)) == "sip:alice+1@ims.test"
    assert dialog_presentity(parse_uri("sip:scscf.ims.test:6060")) is None


def test_a_dialog_token_that_does_not_decode_is_481():
    with pytest.raises(SipParseError) as info:
        dialog_presentity(parse_uri("sip:scscf.ims.test;reg-dialog=_w"))
    assert info.value.status == 481


@pytest.mark.parametrize("route_set, target, received, hop", [
    (("<sip:pcscf.ims.test:5060;lr>", "<sip:edge.ims.test;lr>"), "sip:alice@10.0.0.1:5090",
     "udp:10.0.0.9:41000", "udp:pcscf.ims.test:5060"),
    (("<sip:127.0.0.1:4060;lr;transport=tcp>, <sip:edge;lr>",), "sip:a@h", "udp:1.2.3.4:9",
     "tcp:127.0.0.1:4060"),
    ((), "sip:alice@10.0.0.1:5090;transport=TCP", "udp:10.0.0.9:41000", "tcp:10.0.0.1:5090"),
    ((), "sip:alice@[2001:db8::1]", "tcp:10.0.0.9:41000", "tcp:2001:db8::1:5060"),
    ((), "sips:alice@ue.ims.test", "tcp:10.0.0.9:41000", "tcp:ue.ims.test:5061"),
    ((), "tel:+15550001", "udp:10.0.0.9:41000", ""),
])
def test_notifies_go_to_the_first_route_or_the_remote_target(route_set, target, received, hop):
    assert next_hop(subscription(route_set=route_set, remote_target=target,
                                 received=received)) == hop


def test_a_strict_first_route_becomes_the_request_uri():
    sub = subscription(route_set=("<sip:strict.ims.test>", "<sip:edge.ims.test;lr>"))
    uri, headers, _ = notify_request(sub, b"", "active", None, NOW, ALICE, "sip:scscf.ims.test")
    assert uri == "sip:strict.ims.test"
    assert [v for n, v in headers if n == "Route"] == [
        "<sip:edge.ims.test;lr>", "<sip:alice@10.0.0.1:5060>"]
