"""RTR and PPR without Ray: the planning rules, a ShardCore with fakes applying them (and
finding the IMPI again after a restart), the pool's answers and the Diameter handler."""
from __future__ import annotations

import asyncio
import dataclasses

import pytest
from diameter.message import Message

from actors.hosts import shard_core
from actors.hosts.hss_requests import HssRequests
from actors.reg_event.reginfo import registration_infos
from actors.rules.impu import Impu
from actors.rules.network_dereg import REMOVAL_REASONS, hss_targets, profile_change
from actors.rules.save import profile_from_user_data
from actors.store.records import decode_impu
from actors.vocabulary import Binding, Profile, RegState
from tests.unit.test_save import USER_DATA
from tests.unit.test_shard_core import ALICE, Clock, MemoryStore, Network, core_for, register
from transport.diameter.codec import Command, ResultCode
from transport.diameter.cx import (
    CxResult,
    DeregistrationReasonCode,
    PpaResult,
    PprRequest,
    RtaResult,
    RtrRequest,
    SarRequest,
    decode_ppa,
    decode_rta,
    encode_ppr,
    encode_rtr,
)
from transport.diameter.cx import ServerAssignmentType as SAT
from transport.diameter.cx_inbound import CxRequestHandler
from transport.diameter.errors import ProtocolError
from transport.diameter.router import CxClient

TEL = "tel:+15550001"
CAROL = "sip:carol@ims.test"
BARRED = "sip:alice-barred@ims.test"
ALICE_IMPI = "alice@ims.test"


def test_each_reason_code_reads_as_ts_24_229_5_4_1_5_says():
    events = {"network": "deactivated", "rejected": "rejected"}
    assert {r.name: events[REMOVAL_REASONS[r]] for r in DeregistrationReasonCode} == {
        "PERMANENT_TERMINATION": "rejected", "NEW_SERVER_ASSIGNED": "deactivated",
        "SERVER_CHANGE": "deactivated", "REMOVE_S_CSCF": "rejected"}


def held(*entries) -> dict[str, Impu]:
    """Identities in a state with a profile: (identity, state, impi, set)."""
    impus = {}
    for identity, state, impi, members in entries:
        impu = impus[identity] = Impu(identity)
        impu.state = state
        impu.profile = Profile(impi, members, frozenset(), None) if impi else None
    return impus


R, U, NR = RegState.REGISTERED, RegState.UNREGISTERED, RegState.NOT_REGISTERED
SET = (ALICE, TEL)
HELD = held((ALICE, R, ALICE_IMPI, SET), (TEL, R, ALICE_IMPI, SET),
            ("sip:carol@ims.test", U, "carol@ims.test", ("sip:carol@ims.test",)),
            ("sip:dave@ims.test", NR, "dave@ims.test", ("sip:dave@ims.test",)))


def test_an_impi_only_rtr_takes_the_default_identity_of_each_set():
    assert hss_targets(HELD, {ALICE, TEL}) == [ALICE]
    assert hss_targets(HELD, {TEL}) == []  # the shard holding ALICE changes the set


def test_a_listed_identity_picks_its_set_by_the_canonical_form():
    assert hss_targets(HELD, {ALICE, TEL}, [TEL]) == [ALICE]
    assert hss_targets(HELD, {ALICE, TEL}, ["sip:alice@IMS.TEST;user=phone"]) == [ALICE]
    assert hss_targets(HELD, {ALICE, TEL}, ["not a uri", "sip:nobody@ims.test"]) == []
    assert hss_targets(HELD, set(), [TEL]) == []  # another IMPI's identities are not found


def test_unregistered_identities_are_ended_and_not_registered_ones_skipped():
    assert hss_targets(HELD, {"sip:carol@ims.test"}) == ["sip:carol@ims.test"]
    assert hss_targets(HELD, {"sip:dave@ims.test"}) == []


def test_a_profile_change_names_the_identities_removed_and_newly_barred():
    old = Profile(ALICE_IMPI, (ALICE, TEL, BARRED), frozenset({BARRED}), None)
    new = Profile(ALICE_IMPI, (ALICE, TEL, "sip:new@ims.test"), frozenset({TEL}), None)
    change = profile_change(old, new)
    assert change.kept == (ALICE, TEL, "sip:new@ims.test")
    assert change.removed == (BARRED,)
    assert change.barred == {TEL}


def test_an_rtr_finds_the_sets_of_its_impi_in_a_pass_over_the_shards_identities(monkeypatch):
    monkeypatch.setattr(shard_core, "PASS_CHUNK", 1)  # one identity between two yields
    network, store, clock = Network(), MemoryStore(), Clock()

    async def scenario():
        core = await registered_core(network, store, clock)()
        carol = core.impus[CAROL] = Impu(CAROL)  # of another IMPI, held by the same shard
        carol.apply(RegState.REGISTERED, {}, Profile("carol@ims.test", (CAROL,), frozenset(), None))
        held = len(core.impus)
        unknown = await core.terminate_registrations(["nobody@ims.test"], [], "rejected")
        ended = await core.terminate_registrations(["nobody@ims.test", ALICE_IMPI], [],
                                                   "rejected")
        again = await core.terminate_registrations([ALICE_IMPI], [], "rejected")
        return held, unknown, ended, again, core.impus[CAROL].state

    held, unknown, ended, again, carols = asyncio.run(scenario())
    assert held > 1  # the pass went over more than one chunk
    assert (unknown, ended, again) == ([], [ALICE_IMPI], [])
    assert carols == RegState.REGISTERED


def test_a_newly_barred_identity_shows_terminated_and_rejected():
    profile = Profile(ALICE_IMPI, SET, frozenset({TEL}), None)
    binding = Binding("sip:a@10.0.0.1", "k", 100.0, None, None, None, (), "c1", 1, (), 0.0)
    infos = registration_infos(profile, ALICE, {"k": binding}, {"k": binding}, 0.0, "user",
                               frozenset({TEL}))
    assert [(i.aor, i.state, [(c.state, c.event) for c in i.contacts]) for i in infos] == [
        (ALICE, "active", [("active", "registered")]),
        (TEL, "terminated", [("terminated", "rejected")])]


def registered_core(network, store, clock):
    async def scenario():
        core = core_for(ALICE, network, store, clock)
        (reply,) = await core.register_batch([register("sip:a@10.0.0.1")])
        assert reply.status == 200
        return core
    return scenario


def test_an_rtr_ends_the_set_without_a_sar_even_after_a_restart():
    network, store, clock = Network(), MemoryStore(), Clock()

    async def scenario():
        await registered_core(network, store, clock)()
        # the IMPI comes back with the profiles in the records
        restarted = core_for(ALICE, network, store, clock)
        sars = len(network.sars)
        ended = await restarted.terminate_registrations([ALICE_IMPI], [], "rejected")
        return ended, sars, await restarted.show(ALICE)

    ended, sars, shown = asyncio.run(scenario())
    assert ended == [ALICE_IMPI]
    assert len(network.sars) == sars
    assert shown is None or (shown["state"], shown["contacts"]) == ("NOT_REGISTERED", [])
    assert ALICE not in store.records
    updates = [u for _, batch in network.peer_updates for u in batch if u.state == NR]
    assert {(u.identity, u.reason) for u in updates} <= {(TEL, "rejected"), (BARRED, "rejected")}


def test_a_pushed_profile_bars_an_identity_of_the_set_and_is_stored():
    network, store, clock = Network(), MemoryStore(), Clock()
    barring = USER_DATA.replace("<PublicIdentity><Identity>tel:+15550001",
                                "<PublicIdentity><BarringIndication>1</BarringIndication>"
                                "<Identity>tel:+15550001")
    assert barring != USER_DATA

    async def scenario():
        core = await registered_core(network, store, clock)()
        applied = await core.push_profile(ALICE_IMPI, barring)
        return applied, await core.show(ALICE), await core.push_profile("nobody@ims.test", barring)

    applied, shown, unknown = asyncio.run(scenario())
    assert (applied, unknown) == (1, 0)
    assert shown["associated"] == [ALICE]
    assert [c["uri"] for c in shown["contacts"]] == ["sip:a@10.0.0.1"]
    assert decode_impu(ALICE, store.records[ALICE]).profile.barred == {TEL, BARRED}


def test_a_pushed_charging_information_replaces_the_sets_addresses_and_user_data_keeps_them():
    network, store, clock = Network(), MemoryStore(), Clock()
    charging = {"primary_charging_collection_function_name": "aaa://ccf2.ims.test",
                "primary_event_charging_function_name": "aaa://ecf2.ims.test"}
    addresses = (("ccf", "aaa://ccf2.ims.test"), ("ecf", "aaa://ecf2.ims.test"))

    async def scenario():
        core = await registered_core(network, store, clock)()
        applied = await core.push_profile(ALICE_IMPI, None, charging)
        after_charging = decode_impu(ALICE, store.records[ALICE]).profile
        await core.push_profile(ALICE_IMPI, USER_DATA)  # new user data, no charging: kept
        return applied, after_charging, decode_impu(ALICE, store.records[ALICE]).profile

    applied, after_charging, after_user_data = asyncio.run(scenario())
    assert applied == 1
    assert after_charging.charging == addresses and after_charging.identities[0] == ALICE
    assert after_user_data.charging == addresses


def test_the_pool_answers_user_unknown_when_no_shard_knows_the_impi():
    calls = []

    async def fan_out(method, *args):
        calls.append((method, args))
        return [[], ["a@ims.test", "b@ims.test"]] if "b@ims.test" in args[0] else [[], []]

    requests = HssRequests(fan_out, profile_from_user_data)
    two = RtrRequest("a@ims.test", DeregistrationReasonCode.SERVER_CHANGE,
                     associated_identities=["b@ims.test"])
    none = RtrRequest("x@ims.test", DeregistrationReasonCode.PERMANENT_TERMINATION)
    assert asyncio.run(requests.terminate(two)) == RtaResult(
        ResultCode.DIAMETER_SUCCESS, None, ["a@ims.test", "b@ims.test"])
    assert asyncio.run(requests.terminate(none)) == RtaResult(
        None, CxResult.DIAMETER_ERROR_USER_UNKNOWN, [])
    assert calls[0] == ("terminate_registrations", (["a@ims.test", "b@ims.test"], [], "network"))


def test_the_pool_refuses_user_data_it_cannot_use_before_any_shard_sees_it():
    async def fan_out(method, *args):
        raise AssertionError("no shard asked")

    answer = asyncio.run(HssRequests(fan_out, profile_from_user_data).push_profile(
        PprRequest(ALICE_IMPI, user_data="<IMSSubscription>")))
    assert answer == PpaResult(None, CxResult.DIAMETER_ERROR_NOT_SUPPORTED_USER_DATA)


def hss_request(command_message: Message) -> Message:
    return Message.from_bytes(command_message.as_bytes())


def test_the_diameter_handler_answers_rtr_and_ppr_and_refuses_other_commands():
    async def terminate(rtr):
        assert rtr.public_identities == [TEL]
        return RtaResult(ResultCode.DIAMETER_SUCCESS, None, [])

    async def push(ppr):
        return PpaResult(None, CxResult.DIAMETER_ERROR_USER_UNKNOWN)

    handler = CxRequestHandler("scscf.ims.test", "ims.test", terminate, push)
    rtr = encode_rtr(RtrRequest(ALICE_IMPI, DeregistrationReasonCode.SERVER_CHANGE,
                                public_identities=[TEL]),
                     "hss.ims.test", "ims.test", "s;1", "scscf.ims.test", "ims.test")
    ppr = encode_ppr(PprRequest(ALICE_IMPI), "hss.ims.test", "ims.test", "s;2",
                     "scscf.ims.test", "ims.test")
    rta = decode_rta(asyncio.run(handler(hss_request(rtr))))
    ppa = decode_ppa(asyncio.run(handler(hss_request(ppr))))
    assert (rta.result_code, rta.experimental_result_code) == (2001, None)
    assert (ppa.result_code, ppa.experimental_result_code) == (None, 5001)
    rtr.header.command_code = Command.LOCATION_INFO
    with pytest.raises(ProtocolError) as refused:
        handler(rtr)
    assert refused.value.result_code == ResultCode.DIAMETER_COMMAND_UNSUPPORTED


class TwoHssNetwork(Network):
    """SAAs from the HSS "hss2.ims.test" of a realm with several."""

    async def sar(self, request):
        return dataclasses.replace(await super().sar(request), origin_host="hss2.ims.test")


def test_later_sars_name_the_hss_that_answered_the_last_saa():
    network, store, clock = TwoHssNetwork(), MemoryStore(), Clock()

    async def scenario():
        await registered_core(network, store, clock)()
        stored = decode_impu(ALICE, store.records[ALICE]).hss_host
        restarted = core_for(ALICE, network, store, clock)  # it is in the record
        await restarted.register_batch([register("sip:a@10.0.0.1", expires=0, cseq=2)])
        return stored

    assert asyncio.run(scenario()) == "hss2.ims.test"
    assert [(s.assignment_type, s.destination_host) for s in network.sars] == [
        (SAT.REGISTRATION, None), (SAT.USER_DEREGISTRATION, "hss2.ims.test")]


class FakePeer:
    def __init__(self, host: str, is_open: bool) -> None:
        self.is_open = is_open
        self.remote = type("Remote", (), {"origin_host": host, "origin_realm": "ims.test"})()


def test_a_request_for_an_hss_that_is_down_goes_by_realm():
    client = CxClient([("127.0.0.1", 1)], "scscf.ims.test", "ims.test", "ims.test")
    client.peers = [FakePeer("hss1.ims.test", True), FakePeer("hss2.ims.test", True)]
    client.routes("ims.test")  # the peers' names are learnt as they are seen open
    request = SarRequest(ALICE, ALICE_IMPI, "sip:scscf.ims.test", SAT.REGISTRATION,
                         destination_host="hss2.ims.test")
    assert client._reachable(request) is request
    client.peers[1].is_open = False
    assert client._reachable(request).destination_host is None
    behind_a_relay = dataclasses.replace(request, destination_host="hss9.ims.test")
    assert client._reachable(behind_a_relay) is behind_a_relay


def test_the_pool_refuses_user_data_beyond_max_user_data():
    async def fan_out(method, *args):
        return [1]

    requests = HssRequests(fan_out, profile_from_user_data, max_user_data=len(USER_DATA))
    assert asyncio.run(requests.push_profile(PprRequest(ALICE_IMPI, user_data=USER_DATA))) \
        == PpaResult(ResultCode.DIAMETER_SUCCESS, None)
    assert asyncio.run(requests.push_profile(PprRequest(ALICE_IMPI, user_data=USER_DATA + " "))) \
        == PpaResult(None, CxResult.DIAMETER_ERROR_TOO_MUCH_DATA)
