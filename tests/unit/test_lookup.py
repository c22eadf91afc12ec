"""The terminating functions without Ray: lookup and its return codes, contact order, method
filtering, branches, Path as the next hop, and the network's unregister/assign_server_unreg."""
import asyncio

import pytest

from actors.reg_event.procedures import EventContext
from actors.reg_event.subscription import Subscription
from actors.rules.expires import ExpiresPolicy
from actors.rules.impu import Impu, plan_register
from actors.rules.lookup import contact_fields, find_binding, lookup, registered, view
from actors.rules.register_request import register_request
from actors.rules.unregister import assign_server_unreg, lapse_unregistered, unregister
from actors.vocabulary import (
    FOUND,
    INTERNAL_ERROR,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    Binding,
    Profile,
    RegState,
)
from tests.unit.test_impu import RULES
from tests.unit.test_save import Fakes, saa
from transport.diameter.cx import ServerAssignmentType as SAT
from transport.diameter.router import CxUnavailable
from transport.sip.parser import parse_message

NOW = 1000.0
ALICE = "sip:alice@ims.test"
ALICE_SET = Profile("alice@ims.test", (ALICE, "tel:+15550001"), frozenset(), None)
PCSCF = "<sip:term@pcscf.ims.test:5070;lr>"


def binding(uri, q=None, registered_at=NOW - 100, expires=600, path=(), allow=()):
    return Binding(uri=uri, key=f"uri:{uri}", expires_at=NOW + expires, q=q, instance=None,
                   reg_id=None, params=(), call_id=f"call-{uri}", cseq=7, path=path,
                   registered_at=registered_at, received="udp:10.0.0.9:5060",
                   user_agent="phone/1.0", allow=allow)


def impu_with(*bindings, state=RegState.REGISTERED, profile=ALICE_SET):
    impu = Impu(ALICE)
    impu.apply(state, {b.key: b for b in bindings}, profile)
    return impu


def look(impu, method=None, append_branches=False, method_filtering=False):
    return lookup(view(impu, ALICE, NOW), method, append_branches, method_filtering)


def uris(result):
    code, targets = result
    return code, [t.uri for t in targets]


# -- lookup -------------------------------------------------------------------------------------

def test_lookup_is_not_found_unless_registered_with_a_live_contact():
    assert look(None) == (NOT_FOUND, [])
    assert look(impu_with(binding("sip:a@h"), state=RegState.NOT_REGISTERED)) == (NOT_FOUND, [])
    assert look(impu_with(state=RegState.UNREGISTERED)) == (NOT_FOUND, [])
    assert look(impu_with(binding("sip:a@h", expires=-1))) == (NOT_FOUND, [])
    assert uris(look(impu_with(binding("sip:a@h")))) == (FOUND, ["sip:a@h"])


def test_contacts_come_highest_q_first_then_most_recent_first():
    impu = impu_with(
        binding("sip:low-old@h", q="0.5", registered_at=NOW - 50),
        binding("sip:low-new@h", q="0.5", registered_at=NOW - 5),
        binding("sip:noq-old@h", registered_at=NOW - 90),  # no q counts as 1.0
        binding("sip:top-new@h", q="1.0", registered_at=NOW - 1),
        binding("sip:mid@h", q="0.8", registered_at=NOW - 2),
    )
    assert uris(look(impu, append_branches=True)) == (FOUND, [
        "sip:top-new@h", "sip:noq-old@h", "sip:mid@h", "sip:low-new@h", "sip:low-old@h"])


def test_append_branches_0_gives_only_the_best_contact_1_every_contact():
    impu = impu_with(binding("sip:b@h", q="0.4"), binding("sip:a@h", q="0.9"))
    assert uris(look(impu, append_branches=False)) == (FOUND, ["sip:a@h"])
    assert uris(look(impu, append_branches=True)) == (FOUND, ["sip:a@h", "sip:b@h"])


def test_method_filtering_keeps_contacts_that_allow_the_method_or_returns_minus_2():
    impu = impu_with(
        binding("sip:chat@h", q="0.9", allow=("MESSAGE",)),
        binding("sip:voice@h", q="0.5", allow=("INVITE", "ACK", "BYE")),
    )
    filtering = {"append_branches": True, "method_filtering": True}
    assert uris(look(impu, "INVITE", **filtering)) == (FOUND, ["sip:voice@h"])
    assert uris(look(impu, "message", **filtering)) == (FOUND, ["sip:chat@h"])
    assert look(impu, "SUBSCRIBE", **filtering) == (METHOD_NOT_ALLOWED, [])
    # Without method_filtering the methods do not matter; without a method nothing is filtered.
    assert uris(look(impu, "SUBSCRIBE", append_branches=True)) == (FOUND, ["sip:chat@h", "sip:voice@h"])
    assert uris(look(impu, None, **filtering)) == (FOUND, ["sip:chat@h", "sip:voice@h"])
    # A contact that named no methods accepts every one.
    assert uris(look(impu_with(binding("sip:any@h")), "SUBSCRIBE", **filtering)) == (FOUND, ["sip:any@h"])


def test_path_gives_the_next_hop_and_the_route_towards_the_ue():
    impu = impu_with(binding("sip:ue@10.0.0.1:5090", path=(PCSCF, "<sip:sbc.ims.test;lr>")))
    (code, (target,)) = look(impu)
    assert code == FOUND
    assert target.dst_uri == "sip:term@pcscf.ims.test:5070;lr"
    assert target.path == (PCSCF, "<sip:sbc.ims.test;lr>")
    (_, (direct,)) = look(impu_with(binding("sip:ue@10.0.0.1:5090")))
    assert direct.dst_uri is None and direct.path == ()


def test_the_allow_header_and_the_methods_param_reach_the_binding():
    raw = ("REGISTER sip:ims.test SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
           "From: <sip:alice@ims.test>;tag=1\r\nTo: <sip:alice@ims.test>\r\nCall-ID: c\r\n"
           "CSeq: 1 REGISTER\r\nAllow: invite, ACK\r\nAllow: MESSAGE\r\n"
           'Contact: <sip:a@10.0.0.1>, <sip:b@10.0.0.2>;methods="MESSAGE,OPTIONS"\r\n'
           "Content-Length: 0\r\n\r\n")
    req = register_request(parse_message(raw.encode()), "udp:10.0.0.1:5060")
    assert req.allow == ("INVITE", "ACK", "MESSAGE")
    plan = plan_register(Impu(ALICE), req, NOW, RULES)
    assert {b.uri: b.allow for b in plan.bindings.values()} == {
        "sip:a@10.0.0.1": ("INVITE", "ACK", "MESSAGE"), "sip:b@10.0.0.2": ("MESSAGE", "OPTIONS")}


# -- lookup_path_to_contact, impu_registered, reg_fetch_contacts --------------------------------

def test_find_binding_matches_the_registered_contact_uri_only_while_it_lives():
    alive = impu_with(binding("sip:ue@10.0.0.1:5090;transport=tcp", path=(PCSCF,)))
    expired = impu_with(binding("sip:old@10.0.0.2", expires=-5))
    gone = impu_with(binding("sip:gone@10.0.0.3"), state=RegState.NOT_REGISTERED)
    impus = [expired, gone, alive]
    found = find_binding(impus, "<SIP:ue@10.0.0.1:5090;transport=tcp>", NOW)
    assert found is not None and found.path == (PCSCF,)
    assert find_binding(impus, "sip:old@10.0.0.2", NOW) is None
    assert find_binding(impus, "sip:gone@10.0.0.3", NOW) is None
    assert find_binding(impus, "sip:ue@10.0.0.1:5090", NOW) is None  # another URI


def test_registered_is_1_only_for_a_registered_identity_with_contacts():
    assert registered(view(impu_with(binding("sip:a@h")), ALICE, NOW)) == FOUND
    assert registered(view(None, ALICE, NOW)) == NOT_FOUND
    assert registered(view(impu_with(state=RegState.UNREGISTERED), ALICE, NOW)) == NOT_FOUND


def test_fetched_contact_has_the_imssulc_fields():
    b = binding("sip:ue@10.0.0.1", q="0.7", path=(PCSCF,))
    assert contact_fields(b) == {
        "uri": "sip:ue@10.0.0.1", "expires": int(NOW + 600), "q": "0.7", "path": [PCSCF],
        "received": "udp:10.0.0.9:5060", "user_agent": "phone/1.0", "callid": "call-sip:ue@10.0.0.1",
        "cseq": 7, "flags": 0,
    }


# -- unregister and assign_server_unreg ---------------------------------------------------------

def run(coro):
    return asyncio.run(coro)


def test_unregister_removes_the_set_then_sends_administrative_deregistration():
    fakes = Fakes(saa())
    impu = impu_with(binding("sip:a@h"), binding("sip:b@h"))
    result = run(unregister(impu, fakes.context()))
    assert (result.code, result.removed) == (FOUND, 2)
    assert "SUCCESS" in result.hss
    (sar,) = fakes.sars
    assert (sar.public_identity, sar.user_name, sar.assignment_type) == (
        ALICE, "alice@ims.test", SAT.ADMINISTRATIVE_DEREGISTRATION)
    assert fakes.propagated == [(["tel:+15550001"], RegState.NOT_REGISTERED, [])]
    assert fakes.propagation_reasons == ["network"]  # the set's watchers hear "deactivated" too
    assert (impu.state, impu.bindings, impu.profile) == (RegState.NOT_REGISTERED, {}, None)
    assert fakes.persisted == [(ALICE, RegState.NOT_REGISTERED, [])]


def test_unregister_tells_reg_event_watchers_the_contacts_were_deactivated():
    fakes, posted = Fakes(saa()), []
    ctx = fakes.context()
    ctx.events = EventContext(policy=ExpiresPolicy(3600, 0, 10, 0), scscf_uri="sip:scscf.ims.test",
                              post=posted.extend, persist=fakes.persist, clock=lambda: NOW)
    impu = impu_with(binding("sip:a@h"))
    watcher = Subscription(presentity=ALICE, watcher="sip:pcscf.ims.test", call_id="s", from_tag="f",
                           to_tag="t", remote_target="sip:pcscf.ims.test", route_set=(),
                           remote_cseq=1, expires_at=NOW + 600, transport="sip-transport-n-0")
    impu.keep_subscription(watcher)

    run(unregister(impu, ctx))
    (notify,) = posted
    assert notify.sub is watcher and notify.sub.transport == "sip-transport-n-0"
    assert notify.after_reply is False
    assert b'event="deactivated"' in notify.job.body and b'state="terminated"' in notify.job.body
    assert impu.subscriptions == {}


def test_unregister_of_an_identity_not_registered_is_minus_1_without_sar():
    fakes = Fakes(saa())
    assert run(unregister(Impu(ALICE), fakes.context())).code == NOT_FOUND
    assert fakes.sars == []


def test_unregister_removes_the_bindings_even_when_the_hss_is_down():
    fakes = Fakes(CxUnavailable("no open Diameter peer"))
    impu = impu_with(binding("sip:a@h"))
    result = run(unregister(impu, fakes.context()))
    assert result.code == FOUND and result.hss.startswith("not sent")
    assert impu.state == RegState.NOT_REGISTERED and not impu.bindings


def test_assign_server_unreg_keeps_the_set_unregistered_with_its_profile():
    fakes = Fakes(saa())
    impu = Impu(ALICE)
    assert run(assign_server_unreg(impu, fakes.context())) == FOUND
    (sar,) = fakes.sars
    assert (sar.public_identity, sar.user_name, sar.assignment_type) == (
        ALICE, None, SAT.UNREGISTERED_USER)
    assert impu.state == RegState.UNREGISTERED
    assert impu.unreg_until == 1000.0 + 1800  # the clock plus unreg_validity, kept in the record
    assert fakes.persisted == [(ALICE, RegState.UNREGISTERED, [])]
    assert impu.profile.identities == (ALICE, "tel:+15550001", "sip:alice-barred@ims.test")
    assert fakes.propagated == [(["tel:+15550001", "sip:alice-barred@ims.test"],
                                 RegState.UNREGISTERED, [])]
    # Served, but there is no contact to send a request to.
    assert look(impu) == (NOT_FOUND, [])
    assert run(assign_server_unreg(impu, fakes.context())) == FOUND  # still valid: no second SAR
    assert len(fakes.sars) == 1


@pytest.mark.parametrize("answer, identity, code", [
    (saa(result=None, experimental=5001), ALICE, NOT_FOUND),  # user unknown
    (saa(), "sip:alice-barred@ims.test", NOT_FOUND),
    (saa(user_data=None), ALICE, INTERNAL_ERROR),
    (CxUnavailable("HSS timeout"), ALICE, INTERNAL_ERROR),
])
def test_assign_server_unreg_failures(answer, identity, code):
    impu = Impu(identity)
    assert run(assign_server_unreg(impu, Fakes(answer).context())) == code
    assert impu.state == RegState.NOT_REGISTERED and impu.profile is None


def test_assign_server_unreg_of_a_registered_identity_needs_no_sar():
    fakes = Fakes(saa())
    impu = impu_with(binding("sip:a@h"))
    assert run(assign_server_unreg(impu, fakes.context())) == FOUND
    assert fakes.sars == [] and impu.state == RegState.REGISTERED


def test_the_unregistered_state_lapses_at_its_validity_without_sar_nor_touching_a_registration():
    fakes = Fakes(saa())
    impu = Impu(ALICE)
    run(assign_server_unreg(impu, fakes.context()))
    ends = impu.unreg_until
    assert run(lapse_unregistered(impu, ends - 1, fakes.context())) is False
    assert impu.state == RegState.UNREGISTERED
    assert run(lapse_unregistered(impu, ends, fakes.context())) is True
    assert (impu.state, impu.profile, impu.unreg_until) == (RegState.NOT_REGISTERED, None, None)
    assert fakes.persisted[-1] == (ALICE, RegState.NOT_REGISTERED, [])
    # every member lapses by its own timer: nothing is propagated, nothing sent to the HSS
    assert len(fakes.propagated) == 1 and len(fakes.sars) == 1
    registered_impu = impu_with(binding("sip:a@h"))
    assert run(lapse_unregistered(registered_impu, ends, fakes.context())) is False
    assert registered_impu.state == RegState.REGISTERED


def test_assign_server_unreg_serves_an_identity_under_a_wildcarded_psi_only_when_supported():
    from tests.unit.test_save import WILDCARD_DATA

    psi = "sip:conf42@ims.test"
    without = Impu(psi)
    assert run(assign_server_unreg(without, Fakes(saa(user_data=WILDCARD_DATA)).context())) == NOT_FOUND
    fakes = Fakes(saa(user_data=WILDCARD_DATA))
    context = fakes.context()
    context.support_wildcard_psi = True
    served = Impu(psi)
    assert run(assign_server_unreg(served, context)) == FOUND
    assert served.state == RegState.UNREGISTERED
    assert served.profile.wildcards == ("sip:conf!.*!@ims.test",)
