"""What crosses an actor call pickles as its field values, positionally, and comes back equal."""
from __future__ import annotations

import pickle
from dataclasses import astuple, fields

from actors.vocabulary import (
    Binding,
    ContactRequest,
    Profile,
    RegisterRequest,
    RegState,
    Reply,
    SetUpdate,
)

CONTACT = ContactRequest("sip:alice@10.0.0.1:5060", "uri:sip:alice@10.0.0.1:5060;", 600,
                         q="0.5", params=(("q", "0.5"),), allow=("INVITE",))
REGISTER = RegisterRequest(
    aor="sip:alice@ims.test", impi="alice@ims.test", call_id="c1", cseq=7, contacts=[CONTACT],
    star=False, expires=None, path=("<sip:term@pcscf.ims.test;lr>",), path_supported=True,
    transaction=("c1", 7, "z9hG4bK1"), received="udp:10.0.0.1:5060")
BINDING = Binding("sip:alice@10.0.0.1:5060", "uri:sip:alice@10.0.0.1:5060;", 1600.0, None,
                  None, None, (), "c1", 7, ("<sip:term@pcscf.ims.test;lr>",), 1000.0)
PROFILE = Profile("alice@ims.test", ("sip:alice@ims.test", "tel:+15550001"),
                  frozenset({"sip:alice-barred@ims.test"}), None)


def test_each_crossing_message_round_trips_through_pickle_as_its_field_values():
    update = SetUpdate("tel:+15550001", RegState.REGISTERED, {BINDING.key: BINDING}, PROFILE,
                       "user", {})
    reply = Reply(200, "OK", [("Contact", "<sip:alice@10.0.0.1:5060>;expires=600")])
    for message in (CONTACT, REGISTER, BINDING, PROFILE, update, reply):
        cls, values = message.__reduce__()
        assert cls is type(message)
        assert values == tuple(getattr(message, f.name) for f in fields(message))
        copy = pickle.loads(pickle.dumps(message, 5))
        assert copy == message and type(copy) is type(message)
        assert astuple(copy) == astuple(message)
