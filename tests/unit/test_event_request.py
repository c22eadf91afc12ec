"""SUBSCRIBE/PUBLISH extraction and subscriptions in the stored record (no Ray, no sockets)."""
import pytest

from actors.reg_event.requests import BadEvent, publish_request, subscribe_request
from actors.reg_event.subscription import Subscription, dialog_contact
from actors.rules.impu import Impu
from actors.store.records import decode_impu, encode_impu
from transport.sip.errors import SipParseError
from transport.sip.parser import parse_message


def sip(method: str, *extra: str, to_tag: str = "", body: bytes = b"") -> bytes:
    lines = [
        f"{method} sip:alice@IMS.test;user=phone SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKabc",
        "Max-Forwards: 70",
        "From: <sip:pcscf.ims.test:5070>;tag=w1",
        f"To: <sip:alice@ims.test>{to_tag}",
        "Call-ID: sub-1",
        f"CSeq: 4 {method}",
        *extra,
        f"Content-Length: {len(body)}",
    ]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


def test_subscribe_is_read_with_its_dialog_and_route_set():
    req = subscribe_request(parse_message(sip(
        "SUBSCRIBE", "Event: reg;id=7", "Contact: <sip:pcscf@10.0.0.9:5070>", "Expires: 600",
        "Record-Route: <sip:a.ims.test;lr>", "Record-Route: <sip:b.ims.test;lr>",
        "P-Asserted-Identity: <sip:pcscf.ims.test:5070>")), "udp:10.0.0.9:5070", "sip-transport-x-0", "ourtag")
    assert req.presentity == "sip:alice@ims.test"
    assert (req.from_tag, req.to_tag, req.initial, req.event_id) == ("w1", "ourtag", True, "7")
    assert req.route_set == ("<sip:a.ims.test;lr>", "<sip:b.ims.test;lr>")
    assert req.remote_target == "sip:pcscf@10.0.0.9:5070"
    assert req.asserted == "sip:pcscf.ims.test"  # an identity: canonical, no port
    assert (req.cseq, req.expires, req.received) == (4, 600, "udp:10.0.0.9:5070")


def test_in_dialog_subscribe_keeps_its_to_tag():
    req = subscribe_request(parse_message(sip("SUBSCRIBE", "Event: reg", "Contact: <sip:w@h>",
                                              to_tag=";tag=theirs")), "udp:h:1", "t", "ourtag")
    assert (req.to_tag, req.initial) == ("theirs", False)


def in_dialog(request_uri: str, *extra: str):
    text = sip("SUBSCRIBE", "Event: reg", "Contact: <sip:w@h>", *extra, to_tag=";tag=ours")
    return parse_message(text.replace(b"sip:alice@IMS.test;user=phone", request_uri.encode(), 1))


def test_refresh_sent_to_our_dialog_contact_names_its_presentity():
    contact = dialog_contact("sip:scscf.ims.test:6060", "sip:alice@ims.test")
    req = subscribe_request(in_dialog(contact), "udp:h:1", "t", "unused")
    assert (req.presentity, req.to_tag, req.initial) == ("sip:alice@ims.test", "ours", False)


def test_refresh_with_a_forged_dialog_token_is_481():
    with pytest.raises(SipParseError) as info:
        subscribe_request(in_dialog("sip:scscf.ims.test;reg-dialog=_w"), "udp:h:1", "t", "x")
    assert info.value.status == 481


@pytest.mark.parametrize("record_route", ["Record-Route: <not a uri", "Record-Route: ,"])
def test_subscribe_with_a_malformed_record_route_is_400(record_route):
    # An empty one (found by fuzzing) was stored, and every NOTIFY, save and expiry of the
    # identity then failed on its first hop.
    with pytest.raises(SipParseError) as info:
        subscribe_request(parse_message(sip("SUBSCRIBE", "Event: reg", "Contact: <sip:w@h>",
                                            record_route)), "udp:h:1", "t", "x")
    assert info.value.status == 400


@pytest.mark.parametrize("event", ["Event: presence", "Event: dialog;id=1", None])
def test_other_events_are_bad_events(event):
    extra = ["Contact: <sip:w@h>"] + ([event] if event else [])
    with pytest.raises(BadEvent):
        subscribe_request(parse_message(sip("SUBSCRIBE", *extra)), "udp:h:1", "t", "tag")


def test_subscribe_without_contact_is_400():
    with pytest.raises(SipParseError) as info:
        subscribe_request(parse_message(sip("SUBSCRIBE", "Event: reg")), "udp:h:1", "t", "tag")
    assert (info.value.status, info.value.reason) == (400, "SUBSCRIBE needs one Contact")


def test_publish_needs_a_reginfo_body():
    with pytest.raises(SipParseError) as info:
        publish_request(parse_message(sip("PUBLISH", "Event: reg", "Content-Type: text/plain", body=b"x")))
    assert info.value.status == 415
    req = publish_request(parse_message(sip("PUBLISH", "Event: reg", "Content-Type: application/reginfo+xml",
                                            body=b"<reginfo/>")))
    assert (req.presentity, req.body) == ("sip:alice@ims.test", b"<reginfo/>")


def test_subscriptions_survive_the_store_codec():
    impu = Impu("sip:alice@ims.test")
    sub = Subscription(presentity=impu.identity, watcher="sip:pcscf.ims.test:5070", call_id="c",
                       from_tag="w1", to_tag="t1", remote_target="sip:pcscf@10.0.0.9",
                       route_set=("<sip:a;lr>",), remote_cseq=4, expires_at=1234.5, event_id="7",
                       received="udp:10.0.0.9:5070", local_cseq=3, version=3, transport="sip-transport-x-0")
    impu.keep_subscription(sub)
    again = decode_impu(impu.identity, encode_impu(impu))
    assert again.subscriptions == {sub.key: sub}


def test_identities_without_subscriptions_share_one_empty_mapping():
    alice, bob = Impu("sip:alice@ims.test"), Impu("sip:bob@ims.test")
    assert alice.subscriptions is bob.subscriptions and not alice.subscriptions
    sub = Subscription(presentity=alice.identity, watcher="sip:pcscf.ims.test:5070", call_id="c",
                       from_tag="w1", to_tag="t1", remote_target="sip:pcscf@10.0.0.9",
                       route_set=(), remote_cseq=1, expires_at=1234.5)
    alice.keep_subscription(sub)
    assert alice.subscriptions == {sub.key: sub} and not bob.subscriptions
    alice.drop_subscription("another dialog")  # none held there: nothing changes
    assert alice.subscriptions == {sub.key: sub}
    alice.drop_subscription(sub.key)
    assert alice.subscriptions is bob.subscriptions  # the last one gone: shared again
    assert decode_impu(bob.identity, encode_impu(bob)).subscriptions is bob.subscriptions
