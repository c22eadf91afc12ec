"""ShardCore without Ray: a fake HSS, fake peer shards, a fake transport, an in-memory store and
a clock the test moves. The timer is driven by hand (run_due)."""
from __future__ import annotations

import asyncio
import re
from dataclasses import replace

from actors.auth import digest
from actors.config import config_from_dict
from actors.hosts.shard_core import ShardCore, ShardIO
from actors.hosts.tally import shape_of
from actors.reg_event import procedures
from actors.rules.routing import shard_of, slot_of
from actors.store.records import decode_impu
from actors.vocabulary import (
    FOUND,
    ContactRequest,
    PublishRequest,
    RegisterRequest,
    RegState,
    SetUpdate,
    StoreError,
    SubscribeRequest,
)
from tests.unit.test_save import USER_DATA, saa
from transport.diameter.cx import MaaResult, SipAuthItem
from transport.diameter.cx import ServerAssignmentType as SAT

SHARDS = 2
ALICE = "sip:alice@ims.test"  # default IMPU of a set with tel:+15550001 and a barred identity
BOB = "sip:bob@ims.test"  # alone in his set
BOB_DATA = ("<IMSSubscription><PrivateID>bob@ims.test</PrivateID><ServiceProfile><PublicIdentity>"
            f"<Identity>{BOB}</Identity></PublicIdentity></ServiceProfile></IMSSubscription>")
PCSCF = "<sip:term@pcscf.ims.test:5070;lr>"
TRANSPORT = "sip-transport-node-0"
T0 = 1000.0
VALIDITY = 60
PASSWORD, AUTH_TIMEOUT = "pw", 30


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class MemoryStore:
    """A Store keeping records in a dict, shared by the cores built on it (a restart)."""

    def __init__(self) -> None:
        self.records: dict[str, bytes] = {}

    async def open(self) -> None:
        pass

    async def put_many(self, items):
        for identity, data in items:
            if data is None:
                self.records.pop(identity, None)
            else:
                self.records[identity] = data

    async def load_slots(self, slots):
        wanted = set(slots)
        for identity, data in list(self.records.items()):
            if slot_of(identity) in wanted:
                yield identity, data

    async def close(self) -> None:
        pass


class Network:
    """The rest of the registrar as one shard sees it."""

    def __init__(self) -> None:
        self.sars = []
        self.mars = []
        self.refuse_first_sar = False  # 5001 User unknown, once
        self.peer_updates: list[tuple[int, list[SetUpdate]]] = []
        self.notifies = []  # (transport, NotifyJob), in the order they were sent
        self.answers: asyncio.Queue[int] | None = None  # None: every NOTIFY answered 200

    async def sar(self, request):
        self.sars.append(request)
        await asyncio.sleep(0)  # an answer takes a loop turn, as over the wire
        if self.refuse_first_sar:
            self.refuse_first_sar = False
            return saa(result=None, experimental=5001)
        return saa(user_data=BOB_DATA if request.public_identity == BOB else USER_DATA)

    async def mar(self, request):
        self.mars.append(request)
        item = SipAuthItem("SIP Digest", digest_realm="ims.test", digest_algorithm="MD5",
                           digest_qop="auth", digest_ha1=digest.ha1(request.user_name, "ims.test", PASSWORD))
        return MaaResult(2001, None, request.user_name, request.public_identity, 1, [item])

    async def apply_to_shard(self, index, updates):
        self.peer_updates.append((index, updates))

    async def send_notify(self, transport, job):
        self.notifies.append((transport, job))
        return 200 if self.answers is None else await self.answers.get()

    def io(self) -> ShardIO:
        return ShardIO(sar=self.sar, mar=self.mar, apply_to_shard=self.apply_to_shard,
                       send_notify=self.send_notify)


def core_for(identity, network, store, clock, auth=False, background=False) -> ShardCore:
    """``background``: the core runs its own timer loop instead of the test calling run_due."""
    config = config_from_dict({
        "ray": {"shards": SHARDS},
        "registrar": {"scscf_name": "sip:scscf.ims.test:5060", "unreg_validity": VALIDITY},
        "auth": {"enabled": auth, "auth_data_timeout": AUTH_TIMEOUT},
    })
    return ShardCore(shard_of(identity, SHARDS), config, network.io(), store, clock=clock,
                     expire_in_background=background, after_the_200=0.0)


def register(uri, expires=600, cseq=1, call_id="c1", aor=ALICE, authorization=None):
    return RegisterRequest(
        aor=aor, impi=aor[4:], call_id=call_id, cseq=cseq,
        contacts=[ContactRequest(uri, f"uri:{uri}", expires)], star=False, expires=None,
        path=(PCSCF,), path_supported=True, transaction=(call_id, cseq, f"z9hG4bK{cseq}"),
        received="udp:10.0.0.1:5060", authorization=authorization)


def subscribe(cseq=1, expires=600):
    return SubscribeRequest(
        presentity=ALICE, watcher=ALICE, asserted=ALICE, call_id="sub-1", from_tag="ue",
        to_tag="scscf", initial=cseq == 1, remote_target="sip:alice@10.0.0.1:5060",
        route_set=(), cseq=cseq, expires=expires, event_id=None, received="udp:10.0.0.1:5060",
        transport=TRANSPORT)


def cseqs(network):
    return [dict(job.headers)["CSeq"] for _, job in network.notifies]


def setup():
    return Network(), MemoryStore(), Clock()


def test_register_answers_200_with_contact_service_route_and_p_associated_uri():
    network, store, clock = setup()

    async def scenario():
        core = core_for(ALICE, network, store, clock)
        (reply,) = await core.register_batch([register("sip:alice@10.0.0.1:5090")])
        return reply, await core.show(ALICE)

    reply, shown = asyncio.run(scenario())
    assert (reply.status, reply.reason) == (200, "OK")
    assert reply.headers == [
        ("Contact", "<sip:alice@10.0.0.1:5090>;expires=600"),
        ("Path", PCSCF),
        ("Service-Route", "<sip:orig@scscf.ims.test:5060;lr>"),
        ("P-Associated-URI", "<sip:alice@ims.test>, <tel:+15550001>"),
    ]
    assert [s.assignment_type for s in network.sars] == [SAT.REGISTRATION]
    assert shown["state"] == "REGISTERED"
    assert [c["uri"] for c in shown["contacts"]] == ["sip:alice@10.0.0.1:5090"]
    stored = decode_impu(ALICE, store.records[ALICE])  # durable before the 200
    assert (stored.state, list(stored.bindings)) == (RegState.REGISTERED,
                                                     ["uri:sip:alice@10.0.0.1:5090"])


def test_members_on_another_shard_receive_the_sets_new_state():
    network, store, clock = setup()

    async def scenario():
        core = core_for(ALICE, network, store, clock)
        await core.register_batch([register("sip:alice@10.0.0.1:5090")])

    asyncio.run(scenario())
    other = 1 - shard_of(ALICE, SHARDS)  # the members of the set all live on the other shard
    ((index, updates),) = network.peer_updates
    assert index == other
    assert [u.identity for u in updates] == ["tel:+15550001", "sip:alice-barred@ims.test"]
    assert {(u.state, tuple(u.bindings), u.reason) for u in updates} == {
        (RegState.REGISTERED, ("uri:sip:alice@10.0.0.1:5090",), "user")}
    assert updates[0].profile.identities[0] == ALICE


def test_a_set_update_registers_a_member_and_an_unregistered_one_spares_a_registration():
    network, store, clock = setup()

    async def scenario():
        core = core_for(ALICE, network, store, clock)
        await core.register_batch([register("sip:alice@10.0.0.1:5090")])
        impu = core.impus[ALICE]
        stale = SetUpdate(ALICE, RegState.UNREGISTERED, {}, impu.profile, "user")
        await core.apply_batch([stale])  # another member was assigned UNREGISTERED meanwhile
        return await core.show(ALICE)

    shown = asyncio.run(scenario())
    assert shown["state"] == "REGISTERED" and len(shown["contacts"]) == 1


def test_expiry_removes_the_binding_and_the_default_impu_sends_one_timeout_sar():
    network, store, clock = setup()

    async def scenario():
        core = core_for(ALICE, network, store, clock)
        await core.register_batch([register("sip:alice@10.0.0.1:5090", expires=600)])
        clock.now = T0 + 599
        await core.run_due(clock.now)
        before = await core.show(ALICE)
        clock.now = T0 + 600.25
        await core.run_due(clock.now)
        await core.run_due(clock.now + 1)  # nothing left to do: no second SAR
        return core, before, await core.show(ALICE), await core.counts()

    core, before, after, counts = asyncio.run(scenario())
    assert len(before["contacts"]) == 1
    assert after is None  # nothing left: forgotten
    assert ALICE not in store.records
    assert [s.assignment_type for s in network.sars] == [SAT.REGISTRATION,
                                                         SAT.TIMEOUT_DEREGISTRATION]
    assert network.sars[1].public_identity == ALICE
    assert (counts["expired_contacts"], counts["contacts"]) == (1, 0)
    assert list(core.expiry_lags) == [0.25]


def test_notifies_of_a_dialog_leave_one_at_a_time_after_the_subscribe_reply():
    network, store, clock = setup()
    network.answers = asyncio.Queue()

    async def scenario():
        core = core_for(ALICE, network, store, clock)
        await core.register_batch([register("sip:alice@10.0.0.1:5090")])
        (reply,) = await core.subscribe_batch([subscribe()])
        sent_with_the_reply = len(network.notifies)
        for _ in range(5):
            await asyncio.sleep(0)
        first = cseqs(network)
        # A change while the first NOTIFY waits for its answer builds the next one ...
        await core.register_batch([register("sip:alice@10.0.0.2:5090", call_id="c2")])
        for _ in range(5):
            await asyncio.sleep(0)
        still = cseqs(network)
        network.answers.put_nowait(200)  # ... which leaves only once the first is answered
        for _ in range(5):
            await asyncio.sleep(0)
        network.answers.put_nowait(200)
        await core.notifies_delivered()
        return reply, sent_with_the_reply, first, still, (await core.statistics())["notifies_in_q"]

    reply, sent_with_the_reply, first, still, queued = asyncio.run(scenario())
    assert reply.status == 200
    assert sent_with_the_reply == 0  # the 200 OK leaves before its NOTIFY
    assert first == still == ["1 NOTIFY"]
    assert cseqs(network) == ["1 NOTIFY", "2 NOTIFY"]
    assert {transport for transport, _ in network.notifies} == {TRANSPORT}
    versions = [re.search(rb'version="(\d+)"', job.body).group(1) for _, job in network.notifies]
    assert versions == [b"0", b"1"]
    assert queued == 0


def test_a_notify_that_fails_ends_its_subscription_and_what_queued_behind_it():
    network, store, clock = setup()
    network.answers = asyncio.Queue()

    async def scenario():
        core = core_for(ALICE, network, store, clock)
        await core.register_batch([register("sip:alice@10.0.0.1:5090")])
        await core.subscribe_batch([subscribe()])
        await core.register_batch([register("sip:alice@10.0.0.2:5090", call_id="c2")])
        network.answers.put_nowait(481)  # the watcher lost the dialog
        await core.notifies_delivered()
        return core.impus[ALICE].subscriptions

    assert asyncio.run(scenario()) == {}
    assert cseqs(network) == ["1 NOTIFY"]  # the second NOTIFY went nowhere
    assert decode_impu(ALICE, store.records[ALICE]).subscriptions == {}


def test_a_restarted_shard_reloads_identities_and_ends_an_unregistered_state_on_time():
    network, store, clock = setup()

    async def scenario():
        first = core_for(BOB, network, store, clock)
        assert await first.assign_server_unreg(BOB) == FOUND
        assigned_at = clock.now
        clock.now += 10
        second = core_for(BOB, network, store, clock)  # the shard restarted on the same store
        await second.ready()
        reloaded = (await second.show(BOB))["state"], second.impus[BOB].unreg_until
        clock.now = assigned_at + VALIDITY - 1
        await second.run_due(clock.now)
        still = (await second.show(BOB))["state"]
        clock.now = assigned_at + VALIDITY
        await second.run_due(clock.now)
        return assigned_at, reloaded, still, await second.show(BOB)

    assigned_at, reloaded, still, lapsed = asyncio.run(scenario())
    assert reloaded == ("UNREGISTERED", assigned_at + VALIDITY)
    assert still == "UNREGISTERED"
    assert lapsed is None and BOB not in store.records
    assert [s.assignment_type for s in network.sars] == [SAT.UNREGISTERED_USER]  # lapsing sends none


def test_a_restarted_shard_keeps_registrations_and_expires_them():
    network, store, clock = setup()

    async def scenario():
        first = core_for(ALICE, network, store, clock)
        await first.register_batch([register("sip:alice@10.0.0.1:5090", expires=600)])
        second = core_for(ALICE, network, store, clock)
        loaded = await second.ready()
        shown = await second.show(ALICE)
        clock.now = T0 + 600
        await second.run_due(clock.now)
        return loaded, shown, await second.show(ALICE)

    loaded, shown, after = asyncio.run(scenario())
    assert loaded == 1
    assert [(c["uri"], c["expires"]) for c in shown["contacts"]] == [("sip:alice@10.0.0.1:5090", 600)]
    assert after is None
    assert network.sars[-1].assignment_type == SAT.TIMEOUT_DEREGISTRATION


def test_an_identity_is_not_forgotten_while_another_request_waits_for_its_mailbox():
    # The first REGISTER is refused (nothing to keep), and releases the mailbox the second one
    # waits for; a lock just released reads unlocked before its waiter runs.
    network, store, clock = setup()
    network.refuse_first_sar = True

    async def scenario():
        core = core_for(ALICE, network, store, clock)
        refused, accepted = await core.register_batch([
            register("sip:alice@10.0.0.1:5090", call_id="c1"),
            register("sip:alice@10.0.0.2:5090", call_id="c2"),
        ])
        return refused, accepted, await core.show(ALICE), core

    refused, accepted, shown, core = asyncio.run(scenario())
    assert (refused.status, refused.reason) == (403, "User unknown")
    assert accepted.status == 200
    assert [c["uri"] for c in shown["contacts"]] == ["sip:alice@10.0.0.2:5090"]
    assert core._users == {}  # every request let go of the identity


def test_an_unregistered_identity_stored_without_a_validity_gets_a_full_one_on_load():
    network, store, clock = setup()
    store.records[BOB] = b'[2,2,[],["bob@ims.test",["sip:bob@ims.test"],[],null,[]],[]]'

    async def scenario():
        core = core_for(BOB, network, store, clock)
        await core.ready()
        return core.impus[BOB].unreg_until

    assert asyncio.run(scenario()) == T0 + VALIDITY


def md5_answer(challenge_header: str, impi: str = "alice@ims.test") -> str:
    nonce = digest.parse_params(challenge_header[len("Digest "):])["nonce"]
    ha1 = digest.ha1(impi, "ims.test", PASSWORD)
    answer = digest.response(ha1, nonce, "REGISTER", "sip:ims.test", "auth", "00000001", "0a4f")
    return (f'Digest username="{impi}", realm="ims.test", nonce="{nonce}", uri="sip:ims.test", '
            f'response="{answer}", algorithm=MD5, qop=auth, nc=00000001, cnonce="0a4f"')


def test_authentication_challenges_before_any_sar_and_the_answer_registers():
    network, store, clock = setup()

    async def scenario():
        core = core_for(ALICE, network, store, clock, auth=True)
        (challenge,) = await core.register_batch([register("sip:alice@10.0.0.1:5090")])
        assert (challenge.status, network.sars, store.records) == (401, [], {})
        header = dict(challenge.headers)["WWW-Authenticate"]
        (ok,) = await core.register_batch([register(
            "sip:alice@10.0.0.1:5090", cseq=2, authorization=md5_answer(header))])
        return challenge, header, ok

    challenge, header, ok = asyncio.run(scenario())
    assert challenge.reason == "Unauthorized - Challenging the UE"
    assert header.startswith('Digest realm="ims.test", nonce="') and "algorithm=MD5" in header
    assert [(m.public_identity, m.user_name) for m in network.mars] == [(ALICE, "alice@ims.test")]
    assert ok.status == 200
    assert [s.assignment_type for s in network.sars] == [SAT.REGISTRATION]


def test_an_unanswered_challenge_is_freed_by_the_timer_and_its_nonce_is_then_stale():
    network, store, clock = setup()

    async def scenario():
        core = core_for(ALICE, network, store, clock, auth=True)
        (challenge,) = await core.register_batch([register("sip:alice@10.0.0.1:5090")])
        held = ALICE in core.impus
        clock.now = T0 + AUTH_TIMEOUT + 1
        await core.run_due(clock.now)
        freed = ALICE not in core.impus  # nothing else kept the identity in memory
        header = dict(challenge.headers)["WWW-Authenticate"]
        (late,) = await core.register_batch([register(
            "sip:alice@10.0.0.1:5090", cseq=2, authorization=md5_answer(header))])
        return held, freed, late

    held, freed, late = asyncio.run(scenario())
    assert held and freed
    assert late.status == 401 and "stale=TRUE" in dict(late.headers)["WWW-Authenticate"]
    assert network.sars == []


class FlakyStore(MemoryStore):
    """Fails to open ``failures`` times (a store not reachable yet), then works."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.opens = 0

    async def open(self) -> None:
        self.opens += 1
        if self.opens <= self.failures:
            raise StoreError("database is locked")


def test_a_shard_whose_load_failed_says_why_and_loads_after_a_back_off():
    network, clock = Network(), Clock()
    store = FlakyStore(failures=2)

    async def refused(core):
        try:
            await core.register_batch([register("sip:alice@10.0.0.1:5090")])
        except StoreError as exc:
            return str(exc)

    async def scenario():
        core = core_for(ALICE, network, store, clock)
        first = await refused(core)
        status = await core.statistics()
        again = await refused(core)  # within the back-off: refused at once, no new attempt
        opens_within = store.opens
        clock.now += 1.0
        second = await refused(core)  # the next attempt fails too: the back-off doubles
        clock.now += 1.0
        early = await refused(core)
        clock.now += 1.0
        (reply,) = await core.register_batch([register("sip:alice@10.0.0.1:5090")])
        return first, status, again, opens_within, second, early, reply, await core.statistics()

    first, status, again, opens_within, second, early, reply, loaded = asyncio.run(scenario())
    assert first == again == second == early == "database is locked"
    assert opens_within == 1
    assert status["load_error"] == "cannot load from the store: database is locked"
    assert (status["impus"], status["contacts"]) == (0, 0)
    assert (reply.status, store.opens) == (200, 3)
    assert loaded["load_error"] is None and loaded["impus"] == 1


def test_the_reply_kept_for_retransmissions_goes_after_timer_j():
    network, store, clock = setup()

    async def scenario():
        core = core_for(ALICE, network, store, clock)
        request = register("sip:alice@10.0.0.1:5090")
        (first,) = await core.register_batch([request])
        clock.now += 30  # within Timer J (64 * T1 = 32 s): the retransmission is answered again
        (again,) = await core.register_batch([request])
        await core.run_due(clock.now)
        kept = core.impus[ALICE].last_reply
        clock.now += 3.5
        await core.run_due(clock.now)
        return first, again, kept, core.impus[ALICE].last_reply

    first, again, kept, after = asyncio.run(scenario())
    assert again == first and len(network.sars) == 1
    assert kept is not None
    assert after is None  # the identity stays registered; only the reply is gone


def timed_core(network, store, clock) -> ShardCore:
    """ALICE's shard with its own timer running, as in the Ray actor."""
    config = config_from_dict({"ray": {"shards": SHARDS}, "auth": {"enabled": False},
                               "registrar": {"scscf_name": "sip:scscf.ims.test:5060"}})
    return ShardCore(shard_of(ALICE, SHARDS), config, network.io(), store, clock=clock)


def test_a_handed_over_shard_fires_no_timer_and_its_successor_expires_each_binding_once():
    network, store, clock = setup()
    async def scenario():
        old = timed_core(network, store, clock)  # its own timer runs
        await old.register_batch([register("sip:alice@10.0.0.1:5090", expires=60)])
        assert await old.hand_over() == len(old.impus)
        clock.now += 61
        old._timer_changed.set()  # were its timer alive, this would wake it now
        await asyncio.sleep(0.05)
        expired_by_old = len(network.sars)
        new = core_for(ALICE, network, store, clock)
        await new.ready()
        await new.run_due(clock.now)
        return expired_by_old, await new.show(ALICE)

    expired_by_old, shown = asyncio.run(scenario())
    assert expired_by_old == 1  # the REGISTER's SAR only
    assert [s.assignment_type for s in network.sars] == [SAT.REGISTRATION,
                                                         SAT.TIMEOUT_DEREGISTRATION]
    assert shown is None and ALICE not in store.records


def test_hand_over_returns_once_the_expiry_under_way_has_stored_its_outcome():
    network, store, clock = setup()
    release = asyncio.Event()
    answer = network.sar

    async def slow_timeout_sar(request):
        if request.assignment_type == SAT.TIMEOUT_DEREGISTRATION:
            await release.wait()
        return await answer(request)

    network.sar = slow_timeout_sar

    async def scenario():
        old = timed_core(network, store, clock)
        await old.register_batch([register("sip:alice@10.0.0.1:5090", expires=60)])
        clock.now += 61
        old._timer_changed.set()
        await asyncio.sleep(0.05)  # the expiry now waits for its SAR
        handing = asyncio.create_task(old.hand_over())
        await asyncio.sleep(0.05)
        waited = not handing.done()
        release.set()
        await handing
        return waited

    assert asyncio.run(scenario())
    assert ALICE not in store.records  # gone from the store before the successor loads it


def test_a_publish_naming_a_contact_uri_that_does_not_parse_is_400_and_ends_nothing():
    # Found by fuzzing: it was a 500 from inside the URI comparison.
    network, store, clock = setup()
    body = ('<?xml version="1.0"?><reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" '
            f'state="full"><registration aor="{ALICE}" id="a" state="active"><contact id="c" '
            'state="terminated" event="unregistered"><uri>sip:[bad</uri></contact>'
            '</registration></reginfo>').encode()

    async def scenario():
        core = core_for(ALICE, network, store, clock)
        await core.register_batch([register("sip:alice@10.0.0.1:5090")])
        (reply,) = await core.publish_batch([PublishRequest(
            presentity=ALICE, watcher="sip:pcscf.ims.test", asserted="sip:term@pcscf.ims.test",
            body=body, expires=600)])
        return reply, await core.show(ALICE)

    reply, shown = asyncio.run(scenario())
    assert (reply.status, reply.reason) == (
        400, "Bad reginfo body: a contact URI that does not parse")
    assert [c["uri"] for c in shown["contacts"]] == ["sip:alice@10.0.0.1:5090"]


def one_shard_core(network, store, clock) -> ShardCore:
    """A shard holding every slot: Alice and Bob side by side."""
    config = config_from_dict({"ray": {"shards": 1},
                               "registrar": {"scscf_name": "sip:scscf.ims.test:5060"},
                               "auth": {"enabled": False}})
    return ShardCore(0, config, network.io(), store, clock=clock, expire_in_background=False,
                     after_the_200=0.0)


def subscribe_as(identity):
    return replace(subscribe(), presentity=identity, watcher=identity, asserted=identity,
                   call_id=f"sub-{identity}")


def notified(network, identity):
    return [job for _, job in network.notifies if identity.encode() in job.body]


def test_an_identity_whose_notifies_cannot_be_built_still_registers_and_expires(
        monkeypatch, caplog):
    """A bug building one identity's reg-info (input can no longer cause one) costs that
    identity its NOTIFYs, nothing else: its REGISTER gets its 200, the binding is stored and
    expires, the log names it, and the identity beside it is notified as ever."""
    network, store, clock = setup()
    built = procedures.registration_infos

    def breaks_for_alice(profile, identity, *args):
        if identity == ALICE:
            raise ValueError("a reg-info bug")
        return built(profile, identity, *args)

    async def scenario():
        core = one_shard_core(network, store, clock)
        await core.register_batch([register("sip:alice@10.0.0.1:5090"),
                                   register("sip:bob@10.0.0.3:5090", aor=BOB)])
        await core.subscribe_batch([subscribe_as(ALICE), subscribe_as(BOB)])
        await core.notifies_delivered()
        before = len(notified(network, ALICE)), len(notified(network, BOB))
        monkeypatch.setattr(procedures, "registration_infos", breaks_for_alice)
        replies = await core.register_batch([
            register("sip:alice@10.0.0.2:5090", call_id="c2", expires=300),
            register("sip:bob@10.0.0.4:5090", call_id="c2", aor=BOB, expires=300)])
        await core.notifies_delivered()
        stored = decode_impu(ALICE, store.records[ALICE])
        after = len(notified(network, ALICE)), len(notified(network, BOB))
        clock.now = T0 + 601
        await core.run_due(clock.now)
        await core.notifies_delivered()
        return replies, stored, before, after, core

    replies, stored, before, after, core = asyncio.run(scenario())
    assert [r.status for r in replies] == [200, 200]
    assert len(stored.bindings) == 2  # durable before its 200, as any other
    assert before == (1, 1)
    assert after == (1, 2)  # Alice's change went unnotified, Bob's did not
    assert ALICE not in store.records and BOB not in store.records  # both expired
    assert ALICE not in core.impus and BOB not in core.impus
    assert [s.public_identity for s in network.sars if
            s.assignment_type == SAT.TIMEOUT_DEREGISTRATION] == [ALICE, BOB]
    assert len(notified(network, BOB)) == 3  # Bob's last NOTIFY: terminated
    assert any(ALICE in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    assert not any(BOB in r.getMessage() for r in caplog.records)


def test_a_step_after_one_identitys_reply_that_fails_costs_no_other_reply(monkeypatch, caplog):
    """What follows the save (the reply kept for retransmissions, the timer) failing for one
    identity is logged naming it; its 200 and every other reply of the batch still go."""
    network, store, clock = setup()

    async def scenario():
        core = one_shard_core(network, store, clock)
        keep = core._replies.keep

        def breaks_for_alice(impu, now):
            if impu.identity == ALICE:
                raise RuntimeError("a bug after the reply")
            return keep(impu, now)

        monkeypatch.setattr(core._replies, "keep", breaks_for_alice)
        replies = await core.register_batch([register("sip:alice@10.0.0.1:5090"),
                                             register("sip:bob@10.0.0.3:5090", aor=BOB)])
        return replies

    replies = asyncio.run(scenario())
    assert [r.status for r in replies] == [200, 200]
    assert ALICE in store.records and BOB in store.records
    assert any(ALICE in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)


class WriteRefusingStore(MemoryStore):
    """Loads, then refuses every write while ``refusing``."""

    refusing = False

    async def put_many(self, items):
        if self.refusing:
            raise StoreError("disk full")
        await super().put_many(items)


def counted_in_a_pass(core) -> tuple[int, int, int]:
    """What counts() says, counted from scratch over the identities the shard holds."""
    shapes = [shape_of(impu, core._clock()) for impu in core.impus.values()]
    return tuple(sum(column) for column in zip(*shapes)) if shapes else (0, 0, 0)


def test_the_counts_follow_every_change_and_agree_with_a_pass_over_the_identities():
    network, store, clock = Network(), WriteRefusingStore(), Clock()

    async def scenario():
        core = core_for(ALICE, network, store, clock)
        seen = []

        async def step():
            counts = await core.counts()
            seen.append(((counts["impus"], counts["contacts"], counts["subscriptions"]),
                         counted_in_a_pass(core)))

        await core.register_batch([register("sip:alice@10.0.0.1:5090"),
                                   register("sip:alice@10.0.0.1:5091", call_id="c3"),
                                   register("sip:bob@10.0.0.2:5090", aor=BOB, call_id="c2",
                                            expires=60)])
        await step()
        await core.subscribe_batch([subscribe()])
        await step()
        store.refusing = True  # a change the store refuses is undone, and not counted
        (refused,) = await core.register_batch([register("sip:alice@10.0.0.1:5090", expires=0,
                                                         cseq=2)])
        store.refusing = False
        await step()
        await core.register_batch([register("sip:alice@10.0.0.1:5090", expires=0, cseq=3)])
        await step()
        clock.now += 61  # Bob's binding expires
        await core.run_due(clock.now)
        await step()
        restarted = core_for(ALICE, network, store, clock)  # loads what the first one stored
        counts = await restarted.counts()
        seen.append(((counts["impus"], counts["contacts"], counts["subscriptions"]),
                     counted_in_a_pass(restarted)))
        return refused, seen

    refused, seen = asyncio.run(scenario())
    assert refused.status == 503
    assert [counts for counts, _ in seen] == [
        (2, 3, 0),  # Alice with two contacts, Bob with one
        (2, 3, 1),  # Alice's reg-event subscription
        (2, 3, 1),  # the refused de-registration changed nothing
        (2, 2, 1),  # one of Alice's contacts gone
        (1, 1, 1),  # Bob expired and forgotten
        (1, 1, 1),  # the same after a restart
    ]
    assert all(counts == passed for counts, passed in seen)
