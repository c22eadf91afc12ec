"""De-registration on the wire and towards the HSS, through ShardCore with fakes: removed
contacts echoed with expires=0, no SAR when some contacts go, the bindings gone even with the
HSS down and its SAR retried with back-off until the HSS answers; barred members invisible."""
from __future__ import annotations

import asyncio

from actors.hosts.sar_retries import SarRetries
from actors.rules.lookup import lookup, registered
from actors.vocabulary import NOT_FOUND, RegState, SetUpdate
from tests.unit.test_save import saa
from tests.unit.test_shard_core import (
    ALICE,
    PCSCF,
    T0,
    Clock,
    MemoryStore,
    Network,
    core_for,
    register,
)
from transport.diameter.cx import SarRequest
from transport.diameter.cx import ServerAssignmentType as SAT
from transport.diameter.router import CxUnavailable

BARRED = "sip:alice-barred@ims.test"  # in ALICE's set, barred by the user data


class FlakyHss(Network):
    """``down`` True: every SAR fails as an unreachable HSS does; ``busy``: answered 3004."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.busy = False

    async def sar(self, request):
        if self.down:
            self.sars.append(request)
            raise CxUnavailable("no open Diameter peer")
        if self.busy:
            self.sars.append(request)
            return saa(result=3004, user_data=None)
        return await super().sar(request)


def removal(*uris, cseq=2, call_id="c1", star=False):
    req = register(uris[0] if uris else "sip:x@h", expires=0, cseq=cseq, call_id=call_id)
    req.contacts = [] if star else [type(req.contacts[0])(u, f"uri:{u}", 0) for u in uris]
    req.star, req.expires = star, 0 if star else None
    return req


def types(network):
    return [s.assignment_type for s in network.sars]


def test_removing_one_of_several_contacts_echoes_it_with_expires_0_and_sends_no_sar():
    network, store, clock = FlakyHss(), MemoryStore(), Clock()

    async def scenario():
        core = core_for(ALICE, network, store, clock)
        await core.register_batch([register("sip:a@10.0.0.1", call_id="c1")])
        await core.register_batch([register("sip:b@10.0.0.2", call_id="c2")])
        clock.now += 100
        sars_before = len(network.sars)
        (reply,) = await core.register_batch([removal("sip:a@10.0.0.1", cseq=2)])
        return reply, await core.show(ALICE), sars_before

    reply, shown, sars_before = asyncio.run(scenario())
    assert (reply.status, reply.headers) == (200, [
        ("Contact", "<sip:b@10.0.0.2>;expires=500"),
        ("Contact", "<sip:a@10.0.0.1>;expires=0"),
        ("Path", PCSCF),
        ("Service-Route", "<sip:orig@scscf.ims.test:5060;lr>"),
        ("P-Associated-URI", "<sip:alice@ims.test>, <tel:+15550001>"),
    ])
    assert len(network.sars) == sars_before  # none for the removal
    assert [c["uri"] for c in shown["contacts"]] == ["sip:b@10.0.0.2"]
    (_, last_updates) = network.peer_updates[-1]  # the set's members lose it too: the change
    assert {(tuple(u.bindings), tuple(u.ended)) for u in last_updates} == {
        ((), ("uri:sip:a@10.0.0.1",))}


def test_star_echoes_every_contact_and_with_the_hss_down_the_bindings_still_go():
    network, store, clock = FlakyHss(), MemoryStore(), Clock()

    async def scenario():
        core = core_for(ALICE, network, store, clock)
        await core.register_batch([register("sip:a@10.0.0.1", call_id="c1")])
        await core.register_batch([register("sip:b@10.0.0.2", call_id="c2")])
        network.down = True
        network.sars.clear()
        (reply,) = await core.register_batch([removal(star=True, call_id="c3", cseq=1)])
        gone = (await core.show(ALICE), ALICE in store.records)
        attempts = []
        for seconds in (1, 2, 3, 6, 7):  # back-off: 1 s, then 2, then 4
            clock.now = T0 + seconds
            await core.run_due(clock.now)
            attempts.append(len(network.sars))
        network.down = False
        clock.now = T0 + 15
        await core.run_due(clock.now)
        clock.now = T0 + 100
        await core.run_due(clock.now)
        return reply, gone, attempts

    reply, (shown, stored), attempts = asyncio.run(scenario())
    assert reply.status == 200
    assert sorted(v for name, v in reply.headers if name == "Contact") == [
        "<sip:a@10.0.0.1>;expires=0", "<sip:b@10.0.0.2>;expires=0"]
    assert shown is None and stored is False  # removed at once, from memory and the store
    assert attempts == [2, 2, 3, 3, 4]  # after the one that failed: retried at 1, 3 and 7 s
    assert types(network) == [SAT.USER_DEREGISTRATION] * 5  # the fifth, answered, ended it
    assert {s.public_identity for s in network.sars} == {ALICE}


def test_star_on_an_identity_without_bindings_still_tells_the_hss():
    network, store, clock = FlakyHss(), MemoryStore(), Clock()

    async def scenario():
        core = core_for(ALICE, network, store, clock)
        return (await core.register_batch([removal(star=True, call_id="c9", cseq=1)]))[0]

    reply = asyncio.run(scenario())
    assert (reply.status, reply.headers) == (200, [("Path", PCSCF)])
    (sar,) = network.sars
    assert (sar.public_identity, sar.user_name, sar.assignment_type) == (
        ALICE, "alice@ims.test", SAT.USER_DEREGISTRATION)


def test_a_failed_timeout_deregistration_is_retried_and_a_new_registration_supersedes_it():
    network, store, clock = FlakyHss(), MemoryStore(), Clock()

    async def scenario():
        core = core_for(ALICE, network, store, clock)
        await core.register_batch([register("sip:a@10.0.0.1", expires=60)])
        network.busy = True
        clock.now = T0 + 60
        await core.run_due(clock.now)  # the binding goes; the HSS answers 3004 too busy
        clock.now = T0 + 61
        await core.run_due(clock.now)  # tried again, still busy
        network.busy = False
        (again,) = await core.register_batch([register("sip:a@10.0.0.1", call_id="c2")])
        clock.now = T0 + 200
        await core.run_due(clock.now)  # the registration told the HSS: no retry left
        return again

    again = asyncio.run(scenario())
    assert again.status == 200
    assert types(network) == [SAT.REGISTRATION, SAT.TIMEOUT_DEREGISTRATION,
                              SAT.TIMEOUT_DEREGISTRATION, SAT.REGISTRATION]


def test_a_barred_member_is_not_found_and_not_counted():
    network, store, clock = FlakyHss(), MemoryStore(), Clock()

    async def scenario():
        member = core_for(BARRED, network, store, clock)
        alice = core_for(ALICE, network, store, clock)
        await alice.register_batch([register("sip:a@10.0.0.1")])
        profile = alice.impus[ALICE].profile
        bindings = alice.impus[ALICE].bindings
        await member.apply_batch([SetUpdate(BARRED, RegState.REGISTERED, bindings, profile, "user")])
        (seen,) = await member.view_batch([BARRED])
        return seen, await member.counts(), member.impus[BARRED].state

    seen, counts, state = asyncio.run(scenario())
    assert state == RegState.REGISTERED  # it shares the set's registration...
    assert lookup(seen, "INVITE", True, False) == (NOT_FOUND, [])  # ...but is never a target
    assert registered(seen) == NOT_FOUND
    assert (counts["impus"], counts["contacts"]) == (0, 0)


def test_retries_back_off_to_a_ceiling_and_a_newer_sar_replaces_the_waiting_one():
    retries = SarRetries(first=1, longest=4)
    first = SarRequest(ALICE, "alice@ims.test", "sip:scscf", SAT.USER_DEREGISTRATION, "ims.test")
    retries.add(first, 0)
    due_at = []
    now = 0.0
    for _ in range(4):
        now = retries.next_deadline()
        assert retries.due(now) == [first]
        retries.failed(first, now)
        due_at.append(now)
    assert due_at == [1, 3, 7, 11]  # 1, then 2, 4, 4
    newer = SarRequest(ALICE, "alice@ims.test", "sip:scscf", SAT.TIMEOUT_DEREGISTRATION, "ims.test")
    retries.add(newer, now)
    retries.done(first)  # the old attempt's answer does not drop the newer one
    assert retries.pending(ALICE) is newer and len(retries) == 1
    retries.cancel(ALICE)
    assert retries.next_deadline() is None and retries.due(1e9) == []
