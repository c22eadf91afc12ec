"""TransportCore with fake shards, endpoints and clock: routing, responses, UDP server
transactions, NOTIFY client transactions and responses for other transports."""
from __future__ import annotations

import asyncio
import hashlib
import socket
from dataclasses import replace

import pytest

from actors.hosts.transport_core import TransportCore
from actors.rules.routing import shard_of
from actors.vocabulary import NotifyJob, RegisterRequest, Reply, SubscribeRequest, notify_branch
from transport.sip import make_response, parse_message

NAME = "sip-transport-node1-0"
SHARDS = 4
UE = ("10.0.0.1", 5070)
OTHER_UE = ("10.0.0.2", 5070)
WALL_CLOCK, DATE = 1289690940.0, "Sat, 13 Nov 2010 23:29:00 GMT"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeReply:
    """The endpoint's reply callable: records what was sent back."""

    def __init__(self, reliable: bool = False, queued: float = 0.0) -> None:
        self.reliable = reliable
        self.queued = queued  # seconds in the kernel's queue before it was read
        self.sent: list[bytes] = []

    def __call__(self, data: bytes) -> None:
        self.sent.append(data)


class FakeEndpoint:
    def __init__(self, clock: Clock, host: str = "192.0.2.1", port: int = 5060) -> None:
        self.host, self.port, self.clock = host, port, clock
        self.sent: list[tuple[float, bytes, tuple]] = []

    async def send(self, data: bytes, peer) -> None:
        self.sent.append((self.clock.now, data, peer))


class FakeShards:
    """Answers each item with ``answer(method, item)``; ``gate`` holds calls until set."""

    def __init__(self, answer=None) -> None:
        self.calls: list[tuple[int, str, list]] = []
        self.answer = answer or (lambda method, item: Reply(200, "OK"))
        self.gate: asyncio.Event | None = None

    async def __call__(self, index: int, method: str, items: list) -> list:
        self.calls.append((index, method, list(items)))
        if self.gate is not None:
            await self.gate.wait()
        return [self.answer(method, item) for item in items]


class Forwarded:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    async def __call__(self, owner: str, data: bytes) -> None:
        self.calls.append((owner, data))


def make_core(shards=None, clock=None, forwarded=None, t1=0.5, **options):
    clock = clock or Clock()
    core = TransportCore(name=NAME, shards=SHARDS, t1=t1, call_shard=shards or FakeShards(),
                         forward_response=forwarded or Forwarded(), clock=clock,
                         wall_clock=lambda: WALL_CLOCK, **options)
    return core, clock


def register(user: str = "alice", call_id: str = "reg-1", branch: str = "z9hG4bKreg1") -> bytes:
    return (f"REGISTER sip:ims.test SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 10.0.0.1:5070;branch={branch}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:{user}@ims.test>;tag=f1\r\n"
            f"To: <sip:{user}@ims.test>\r\nCall-ID: {call_id}\r\nCSeq: 1 REGISTER\r\n"
            f"Contact: <sip:{user}@10.0.0.1:5070>\r\nExpires: 600\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def subscribe() -> bytes:
    return ("SUBSCRIBE sip:alice@ims.test SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKsub1\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:alice@ims.test>;tag=ue\r\n"
            "To: <sip:alice@ims.test>\r\nCall-ID: sub-1\r\nCSeq: 7 SUBSCRIBE\r\n"
            "Contact: <sip:alice@10.0.0.1:5070>\r\nEvent: reg;id=3\r\nExpires: 600\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def request(method: str) -> bytes:
    return (f"{method} sip:ims.test SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKopt1\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:alice@ims.test>;tag=f1\r\n"
            f"To: <sip:ims.test>\r\nCall-ID: m-1\r\nCSeq: 1 {method}\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def to_tag(call_id: str, cseq: int) -> str:
    return hashlib.blake2b(f"{call_id}|{cseq}".encode(), digest_size=8).hexdigest()


def core_sending_over_udp(**options):
    """A core whose NOTIFYs leave through a fake UDP endpoint, and its clock."""
    core, clock = make_core(**options)
    endpoint = FakeEndpoint(clock)
    core.add_endpoint("udp", endpoint)
    return core, clock, endpoint


def deliver(core, data: bytes, peer=UE, reply=None):
    """The reply channel and what to await for the answer, as an endpoint hands a message
    over: the bytes to ``refuse_unparsed`` first, then the parsed message (the core answers
    some requests before it returns, as the endpoints allow)."""
    reply = reply or FakeReply()
    reply.peer = peer
    if core.refuse_unparsed(data, reply):
        return reply, _already_answered()
    handling = core.on_message(parse_message(data), peer, reply)
    return reply, handling if handling is not None else _already_answered()


async def _already_answered() -> None:
    return None


def run(coroutine):
    return asyncio.run(coroutine)


def answered(core, data: bytes) -> FakeReply:
    """The reply channel of one request, once the core has handled it."""
    async def main():
        reply, handling = deliver(core, data)
        await handling
        return reply
    return run(main())


async def settle() -> None:
    """Lets every task that can run now run (the gather of NOTIFYs takes a few rounds)."""
    for _ in range(5):
        await asyncio.sleep(0)


# -- Requests


def test_register_goes_to_its_shard_and_the_reply_becomes_the_200():
    contact = "<sip:alice@10.0.0.1:5070>;expires=600"
    shards = FakeShards(lambda method, item: Reply(200, "OK", [("Contact", contact)]))
    core, _ = make_core(shards)

    reply = answered(core, register())
    [(index, method, [item])] = shards.calls
    assert (index, method) == (shard_of("sip:alice@ims.test", SHARDS), "register_batch")
    assert isinstance(item, RegisterRequest)
    assert (item.aor, item.call_id, item.cseq, item.expires, item.received) == (
        "sip:alice@ims.test", "reg-1", 1, 600, "udp:10.0.0.1:5070")
    assert [c.uri for c in item.contacts] == ["sip:alice@10.0.0.1:5070"]
    assert item.transaction == ("reg-1", 1, "z9hG4bKreg1")
    assert (item.transport, item.message) == (NAME, register())  # for the iFCs of the ASs
    assert reply.sent == [(
        "SIP/2.0 200 OK\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKreg1\r\n"
        "From: <sip:alice@ims.test>;tag=f1\r\n"
        f"To: <sip:alice@ims.test>;tag={to_tag('reg-1', 1)}\r\n"
        f"Call-ID: reg-1\r\nCSeq: 1 REGISTER\r\nDate: {DATE}\r\n"
        f"Contact: {contact}\r\n"
        "Server: ray-scscf\r\nContent-Length: 0\r\n\r\n").encode()]


def test_a_port_in_the_to_uri_names_the_same_identity_on_the_same_shard():
    shards = FakeShards()
    core, _ = make_core(shards)
    answered(core, register().replace(b"To: <sip:alice@ims.test>", b"To: <sip:alice@IMS.test:5060>"))
    [(index, _, [item])] = shards.calls
    assert item.aor == "sip:alice@ims.test"
    assert index == shard_of("sip:alice@ims.test", SHARDS)


def test_require_of_an_option_we_lack_is_420_listing_it_and_reaches_no_shard():
    shards = FakeShards()
    core, _ = make_core(shards)
    data = register().replace(b"Expires: 600", b"Require: path, Foo, sec-agree\r\nExpires: 600")
    response = parse_message(answered(core, data).sent[0])
    assert (response.status, response.reason) == (420, "Bad Extension")
    assert response.headers.get("Unsupported") == "foo, sec-agree"
    assert shards.calls == []
    ok = register(branch="z9hG4bKreg2").replace(b"Expires: 600",
                                                b"Require: path, outbound\r\nExpires: 600")
    assert parse_message(answered(core, ok).sent[0]).status == 200


def test_every_response_is_dated_and_an_rport_via_learns_the_address_seen():
    core, _ = make_core()
    for data in (register().replace(b"branch=z9hG4bKreg1", b"rport;branch=z9hG4bKreg1"),
                 request("OPTIONS"), request("INFO")):
        response = parse_message(answered(core, data).sent[0])
        assert response.headers.get("Date") == DATE
    behind_nat = register().replace(b"10.0.0.1:5070;branch", b"192.168.1.5:5060;rport;branch")
    response = parse_message(answered(core, behind_nat).sent[0])
    assert response.headers.get("Via") == (
        "SIP/2.0/UDP 192.168.1.5:5060;rport=5070;branch=z9hG4bKreg1;received=10.0.0.1")


def test_identities_route_to_their_own_shards():
    users = [f"user{i}" for i in range(40)]
    shards = FakeShards()
    core, _ = make_core(shards)

    async def main():
        for i, user in enumerate(users):
            await deliver(core, register(user, f"c{i}", f"z9hG4bK{i}"))[1]

    run(main())
    routed = {item.aor: index for index, _, [item] in shards.calls}
    assert routed == {f"sip:{u}@ims.test": shard_of(f"sip:{u}@ims.test", SHARDS) for u in users}
    assert len(set(routed.values())) > 1


def test_after_a_reshard_identities_route_by_the_new_shard_count():
    users = [f"user{i}" for i in range(40)]
    shards = FakeShards()
    core, _ = make_core(shards)
    core.reshard(SHARDS + 3)

    async def main():
        for i, user in enumerate(users):
            await deliver(core, register(user, f"c{i}", f"z9hG4bK{i}"))[1]

    run(main())
    routed = {item.aor: index for index, _, [item] in shards.calls}
    assert routed == {f"sip:{u}@ims.test": shard_of(f"sip:{u}@ims.test", SHARDS + 3)
                      for u in users}
    assert max(routed.values()) >= SHARDS  # onto shards the old count had not


def test_udp_retransmission_gets_the_same_response_and_no_second_shard_call():
    shards = FakeShards()
    core, _ = make_core(shards)

    async def main():
        shards.gate = asyncio.Event()
        reply, first = deliver(core, register())
        task = asyncio.ensure_future(first)
        await settle()
        await deliver(core, register(), reply=reply)[1]  # still trying: absorbed silently
        assert reply.sent == []
        shards.gate.set()
        await task
        await deliver(core, register(), reply=reply)[1]  # completed: the response again
        return reply

    reply = run(main())
    assert len(shards.calls) == 1
    assert len(reply.sent) == 2 and reply.sent[0] == reply.sent[1]
    assert reply.sent[0].startswith(b"SIP/2.0 200 OK\r\n")


def test_same_via_from_another_sender_is_its_own_transaction():
    shards = FakeShards()
    core, _ = make_core(shards)

    async def main():
        first, second = FakeReply(), FakeReply()
        await deliver(core, register(), UE, first)[1]
        await deliver(core, register(), OTHER_UE, second)[1]
        return first, second

    first, second = run(main())
    assert len(shards.calls) == 2
    assert [item.received for _, _, [item] in shards.calls] == [
        "udp:10.0.0.1:5070", "udp:10.0.0.2:5070"]
    assert len(first.sent) == len(second.sent) == 1


def test_the_server_transaction_is_forgotten_at_timer_j():
    shards = FakeShards()
    core, clock = make_core(shards)

    async def main():
        clock.now = 10.0
        await deliver(core, register())[1]
        assert core.next_deadline() == 10.0 + 64 * 0.5
        await core.poll(41.9)
        await deliver(core, register())[1]
        assert len(shards.calls) == 1  # still absorbed
        await core.poll(42.0)
        assert core.next_deadline() is None
        await deliver(core, register())[1]  # a new transaction now

    run(main())
    assert len(shards.calls) == 2


def test_tcp_requests_keep_no_transaction():
    shards = FakeShards()
    core, _ = make_core(shards)

    async def main():
        reply = FakeReply(reliable=True)
        await deliver(core, register(), reply=reply)[1]
        await deliver(core, register(), reply=reply)[1]
        return reply

    reply = run(main())
    assert len(shards.calls) == 2 and len(reply.sent) == 2
    assert [item.received for _, _, [item] in shards.calls] == ["tcp:10.0.0.1:5070"] * 2
    assert core.next_deadline() is None


def test_shard_failure_answers_503_with_retry_after():
    async def failing(index, method, items):
        raise RuntimeError("actor restarting")

    core, _ = make_core(failing)

    [data] = answered(core, register()).sent
    response = parse_message(data)
    assert (response.status, response.reason) == (503, "Registrar shard unavailable")
    assert response.headers.get("Retry-After") == "5"
    assert response.headers.get("Server") == "ray-scscf"


def test_subscribe_goes_to_subscribe_batch_and_the_200_echoes_event():
    shards = FakeShards(lambda method, item: Reply(200, "OK", [("Expires", "600")]))
    core, _ = make_core(shards)

    [data] = answered(core, subscribe()).sent
    [(index, method, [item])] = shards.calls
    assert (index, method) == (shard_of("sip:alice@ims.test", SHARDS), "subscribe_batch")
    assert isinstance(item, SubscribeRequest)
    assert (item.presentity, item.transport, item.to_tag, item.received, item.event_id) == (
        "sip:alice@ims.test", NAME, to_tag("sub-1", 7), "udp:10.0.0.1:5070", "3")
    response = parse_message(data)
    assert response.status == 200
    assert [(n, v) for n, v in response.headers if n in ("To", "Expires", "Event", "Server")] == [
        ("To", f"<sip:alice@ims.test>;tag={to_tag('sub-1', 7)}"), ("Expires", "600"),
        ("Event", "reg;id=3"), ("Server", "ray-scscf")]


def test_options_and_unknown_methods_are_answered_here():
    shards = FakeShards()
    core, _ = make_core(shards)

    async def main():
        answers = []
        for method in ("OPTIONS", "MESSAGE"):
            reply, handling = deliver(core, request(method).replace(b"opt1", method.encode()))
            await handling
            answers.append(parse_message(reply.sent[0]))
        return answers

    options, message = run(main())
    assert shards.calls == []
    allow = "REGISTER, SUBSCRIBE, PUBLISH, OPTIONS"
    assert (options.status, options.headers.get("Allow")) == (200, allow)
    assert (message.status, message.reason, message.headers.get("Allow")) == (
        405, "Method Not Allowed", allow)


def test_ack_is_not_answered():
    core, _ = make_core()

    assert answered(core, request("ACK")).sent == []


def test_unusable_register_gets_its_400():
    shards = FakeShards()
    core, _ = make_core(shards)
    bad = register().replace(b"Expires: 600", b"Contact: <sip:x@10.0.0.1>;q=7")

    [data] = answered(core, bad).sent
    assert parse_message(data).status == 400
    assert shards.calls == []


# -- NOTIFYs


JOB = NotifyJob(
    received="udp:10.0.0.1:5070",
    request_uri="sip:alice@10.0.0.1:5070",
    headers=[("Max-Forwards", "70"), ("From", "<sip:scscf.ims.test>;tag=s1"),
             ("To", "<sip:alice@ims.test>;tag=ue"), ("Call-ID", "sub-1"),
             ("CSeq", "1 NOTIFY"), ("Event", "reg"), ("Subscription-State", "active;expires=600")],
    body=b"<reginfo/>",
)


async def drive_until_done(core, clock, task) -> None:
    """Moves the clock to each deadline of the core and fires it, until ``task`` is done."""
    await settle()
    while not task.done():
        clock.now = core.next_deadline()
        await core.poll(clock.now)
        await settle()


def test_notify_carries_one_via_with_a_branch_naming_us():
    core, clock, endpoint = core_sending_over_udp()

    async def main():
        task = asyncio.ensure_future(core.send_notifies([JOB, JOB]))
        await settle()
        for _, data, _ in endpoint.sent:
            await core.on_response(make_response(parse_message(data), 200, "OK"))
        return await task

    assert run(main()) == [200, 200]
    notifies = [parse_message(data) for _, data, _ in endpoint.sent]
    vias = [n.headers.get_all("Via") for n in notifies]
    assert all(len(v) == 1 for v in vias)
    branches = [n.vias[0].branch for n in notifies]
    assert branches[0] != branches[1]
    for n, branch in zip(notifies, branches):
        assert n.headers.get("Via") == f"SIP/2.0/UDP 192.0.2.1:5060;branch={branch}"
        assert branch.startswith(f"z9hG4bK~{NAME}~") and len(branch.split("~")[2]) == 16
        assert (n.method, str(n.uri), n.body) == (
            "NOTIFY", "sip:alice@10.0.0.1:5070", b"<reginfo/>")
        assert [name for name, _ in n.headers][:2] == ["Via", "Max-Forwards"]
    assert {peer for _, _, peer in endpoint.sent} == {("10.0.0.1", 5070)}


def test_a_third_party_register_leaves_as_a_register_and_gets_its_final_status():
    core, _, endpoint = core_sending_over_udp()
    job = NotifyJob("udp:127.0.0.1:5071", "sip:as@127.0.0.1:5071",
                    [("Max-Forwards", "70"), ("From", "<sip:scscf.ims.test>;tag=s1"),
                     ("To", "<sip:alice@ims.test>"), ("Call-ID", "tpr-1"),
                     ("CSeq", "1 REGISTER"), ("Expires", "600")], b"", method="REGISTER")

    async def main():
        task = asyncio.ensure_future(core.send_notifies([job]))
        await settle()
        (_, data, peer), = endpoint.sent
        await core.on_response(make_response(parse_message(data), 500, "Server Internal Error"))
        return peer, parse_message(data), await task

    peer, sent, statuses = run(main())
    assert (peer, sent.method, str(sent.uri), statuses) == (
        ("127.0.0.1", 5071), "REGISTER", "sip:as@127.0.0.1:5071", [500])


async def answered_once(core, endpoint) -> None:
    """A first NOTIFY to JOB's watcher, answered 200: the watcher is known to be there."""
    task = asyncio.ensure_future(core.send_notifies([JOB]))
    await settle()
    await core.on_response(make_response(parse_message(endpoint.sent[-1][1]), 200, "OK"))
    assert await task == [200]
    endpoint.sent.clear()


def test_udp_notify_is_retransmitted_per_timer_e_until_answered():
    core, clock, endpoint = core_sending_over_udp()

    async def main():
        await answered_once(core, endpoint)
        task = asyncio.ensure_future(core.send_notifies([JOB]))
        await settle()
        for deadline in (0.5, 1.5, 3.5):
            assert core.next_deadline() == deadline
            clock.now = deadline
            await core.poll(deadline)
        clock.now = 4.0
        notify = parse_message(endpoint.sent[0][1])
        await core.on_response(make_response(notify, 100, "Trying"))
        assert not task.done()
        await core.on_response(make_response(notify, 481, "Subscription does not exist"))
        status = await task
        assert core.next_deadline() is None
        return status

    assert run(main()) == [481]
    assert [t for t, _, _ in endpoint.sent] == [0.0, 0.5, 1.5, 3.5]
    assert len({data for _, data, _ in endpoint.sent}) == 1  # the same request each time


def test_a_watcher_that_answered_before_gets_every_retransmission_until_timer_f():
    core, clock, endpoint = core_sending_over_udp()

    async def main():
        await answered_once(core, endpoint)
        task = asyncio.ensure_future(core.send_notifies([JOB]))
        await drive_until_done(core, clock, task)
        return task.result(), clock.now

    assert run(main()) == ([408], 32.0)
    assert [t for t, _, _ in endpoint.sent] == [
        0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]


@pytest.mark.parametrize("budget, sent", [(2, [0.0, 0.5, 1.5]), (0, [0.0])])
def test_a_watcher_that_never_answered_gets_the_retransmission_budget_only(budget, sent):
    core, clock, endpoint = core_sending_over_udp(unanswered_retransmits=budget)

    async def main():
        task = asyncio.ensure_future(core.send_notifies([JOB]))
        await drive_until_done(core, clock, task)
        return task.result(), clock.now

    assert run(main()) == ([408], 32.0)  # Timer F still ends it: the subscription goes
    assert [t for t, _, _ in endpoint.sent] == sent


def test_tcp_notify_is_not_retransmitted():
    core, clock = make_core()
    endpoint = FakeEndpoint(clock)
    core.add_endpoint("tcp", endpoint)
    job = NotifyJob("tcp:10.0.0.1:5071", JOB.request_uri, JOB.headers, JOB.body)

    async def main():
        task = asyncio.ensure_future(core.send_notifies([job]))
        await drive_until_done(core, clock, task)
        return task.result()

    assert run(main()) == [408]
    [(when, data, peer)] = endpoint.sent
    assert (when, peer) == (0.0, ("10.0.0.1", 5071))
    assert parse_message(data).headers.get("Via").startswith("SIP/2.0/TCP 192.0.2.1:5060;")


class FakeTcpEndpoint(FakeEndpoint):
    def __init__(self, clock: Clock, open_peers=()) -> None:
        super().__init__(clock)
        self.open_peers = set(open_peers)

    def connected(self, peer) -> bool:
        return tuple(peer) in self.open_peers


def sent_to(core, clock, endpoint, job) -> tuple:
    async def main():
        task = asyncio.ensure_future(core.send_notifies([job]))
        for _ in range(500):  # the next hop's name is resolved in a thread: real time
            if endpoint.sent:
                break
            await asyncio.sleep(0.01)
        await drive_until_done(core, clock, task)

    run(main())
    return endpoint.sent[0][2]


def test_udp_notify_goes_to_its_destination_not_the_subscribe_source():
    core, clock, endpoint = core_sending_over_udp()
    job = replace(JOB, destination="udp:127.0.0.1:4060")
    assert sent_to(core, clock, endpoint, job) == ("127.0.0.1", 4060)


@pytest.mark.parametrize("open_peers, peer", [
    ({("10.0.0.1", 41000)}, ("10.0.0.1", 41000)),  # the SUBSCRIBE's connection, still open
    ((), ("127.0.0.1", 4060)),  # it closed: a new one to the route's address
])
def test_tcp_notify_prefers_the_open_flow_then_the_destination(open_peers, peer):
    core, clock = make_core()
    endpoint = FakeTcpEndpoint(clock, open_peers)
    core.add_endpoint("tcp", endpoint)
    job = replace(JOB, received="tcp:10.0.0.1:41000", destination="tcp:127.0.0.1:4060")
    assert sent_to(core, clock, endpoint, job) == peer


def test_a_destination_that_does_not_resolve_falls_back_to_the_flow():
    core, clock, endpoint = core_sending_over_udp()
    job = replace(JOB, destination="udp:no-such-host.invalid:4060")
    assert sent_to(core, clock, endpoint, job) == ("10.0.0.1", 5070)


def test_notifies_to_one_name_share_its_lookup(monkeypatch):
    lookups = []

    async def unresolved(loop, host, port, *args, **kwargs):
        lookups.append(host)
        await asyncio.sleep(0.01)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", unresolved)
    core, clock, endpoint = core_sending_over_udp()
    job = replace(JOB, destination="udp:pcscf.invalid:4060")

    async def main():
        first = asyncio.ensure_future(core.send_notifies([job, job]))  # asking at once
        await asyncio.sleep(0.05)
        later = asyncio.ensure_future(core.send_notifies([job]))  # once it was answered
        await asyncio.sleep(0.05)
        await drive_until_done(core, clock, asyncio.gather(first, later))

    run(main())
    assert lookups == ["pcscf.invalid"]
    assert [peer for _, _, peer in endpoint.sent[:3]] == [("10.0.0.1", 5070)] * 3


def test_notify_without_an_endpoint_for_its_flow_is_503():
    core, _ = make_core()
    assert run(core.send_notifies([JOB])) == [503]


# -- Responses that are not for a NOTIFY of ours


def response_with_branch(branch: str | None):
    via = "SIP/2.0/UDP 192.0.2.1:5060" + ("" if branch is None else f";branch={branch}")
    return parse_message((
        "SIP/2.0 200 OK\r\n"
        f"Via: {via}\r\n"
        "From: <sip:scscf.ims.test>;tag=s1\r\nTo: <sip:alice@ims.test>;tag=ue\r\n"
        "Call-ID: sub-1\r\nCSeq: 1 NOTIFY\r\nContent-Length: 0\r\n\r\n").encode())


def test_response_for_another_transports_branch_goes_to_its_owner():
    forwarded = Forwarded()
    core, _ = make_core(forwarded=forwarded)
    owner = "sip-transport-node2-1"
    response = response_with_branch(notify_branch(owner, "0123456789abcdef"))
    run(core.on_response(response))
    assert forwarded.calls == [(owner, response.to_bytes())]


def test_forwarded_response_reaches_the_waiting_notify():
    core, clock, endpoint = core_sending_over_udp()

    async def main():
        task = asyncio.ensure_future(core.send_notifies([JOB]))
        await settle()
        branch = parse_message(endpoint.sent[0][1]).vias[0].branch
        await core.on_response(response_with_branch(branch))
        return await task

    assert run(main()) == [200]


def test_stray_responses_are_dropped():
    forwarded = Forwarded()
    core, clock, endpoint = core_sending_over_udp(forwarded=forwarded)

    async def main():
        for branch in ("z9hG4bKnotours", notify_branch(NAME, "finished"), None):
            await core.on_response(response_with_branch(branch))

    run(main())
    assert forwarded.calls == []
    assert endpoint.sent == []


def test_beyond_max_in_flight_a_request_is_refused_503_at_once():
    shards = FakeShards()
    core = TransportCore(name=NAME, shards=SHARDS, t1=0.5, call_shard=shards,
                         forward_response=Forwarded(), clock=Clock(),
                         wall_clock=lambda: WALL_CLOCK, max_in_flight=2)

    def nth(n):
        return register(f"user{n}", call_id=f"reg-{n}", branch=f"z9hG4bKreg{n}")

    async def main():
        shards.gate = asyncio.Event()
        waiting = [deliver(core, nth(n)) for n in (1, 2)]
        tasks = [asyncio.ensure_future(handling) for _, handling in waiting]
        await settle()
        refused, handling = deliver(core, nth(3))
        await handling  # answered while the other two still wait on the shards
        assert [reply.sent for reply, _ in waiting] == [[], []]
        shards.gate.set()
        await asyncio.gather(*tasks)
        again, handling = deliver(core, nth(4))  # room again
        await handling
        return refused, [reply for reply, _ in waiting], again

    refused, waited, again = run(main())
    (response,) = refused.sent
    assert response.startswith(b"SIP/2.0 503 Registrar overloaded\r\n")
    assert b"\r\nRetry-After: 5\r\n" in response
    assert all(reply.sent[0].startswith(b"SIP/2.0 200 OK\r\n") for reply in waited + [again])
    assert sorted(item.aor for _, _, items in shards.calls for item in items) == [
        "sip:user1@ims.test", "sip:user2@ims.test", "sip:user4@ims.test"]
    assert core.in_flight == 0


# -- Messages too big for UDP (RFC 3261 18.1.1)

BIG_JOB = NotifyJob(JOB.received, JOB.request_uri, JOB.headers, b"<reginfo>" + b"x" * 1300)


class RefusingEndpoint(FakeEndpoint):
    async def send(self, data: bytes, peer) -> None:
        raise ConnectionRefusedError(111, "Connection refused")


def core_with_udp_and_tcp(tcp_class=FakeEndpoint):
    core, clock, udp = core_sending_over_udp()
    tcp = tcp_class(clock)
    core.add_endpoint("tcp", tcp)
    return core, clock, udp, tcp


def test_a_notify_too_big_for_udp_goes_over_tcp_to_the_same_address():
    core, clock, udp, tcp = core_with_udp_and_tcp()

    async def main():
        task = asyncio.ensure_future(core.send_notifies([BIG_JOB, JOB]))
        await settle()
        for _, data, _ in tcp.sent + udp.sent:
            await core.on_response(make_response(parse_message(data), 200, "OK"))
        return await task

    assert run(main()) == [200, 200]
    [(_, data, peer)] = tcp.sent
    assert peer == UE and len(data) > 1300
    assert parse_message(data).headers.get("Via").startswith("SIP/2.0/TCP 192.0.2.1:5060;")
    [(_, small, _)] = udp.sent  # the small one stays on UDP
    assert parse_message(small).body == b"<reginfo/>"


def test_a_big_notify_falls_back_to_udp_when_tcp_is_refused():
    core, clock, udp, tcp = core_with_udp_and_tcp(RefusingEndpoint)

    assert run(answer_first(core, udp, BIG_JOB)) == [200]
    assert parse_message(udp.sent[0][1]).headers.get("Via").startswith("SIP/2.0/UDP ")


def test_a_big_notify_stays_on_udp_without_a_tcp_endpoint_or_with_no_bound():
    without_tcp = core_sending_over_udp()
    unbounded = core_sending_over_udp(udp_mtu=0)
    unbounded[0].add_endpoint("tcp", RefusingEndpoint(unbounded[1]))
    for core, _, udp in (without_tcp, unbounded):
        assert run(answer_first(core, udp, BIG_JOB)) == [200]
        assert len(udp.sent) == 1


async def answer_first(core, endpoint, job):
    task = asyncio.ensure_future(core.send_notifies([job]))
    await settle()
    await core.on_response(make_response(parse_message(endpoint.sent[0][1]), 200, "OK"))
    return await task


def bindings_reply(method, item):
    contacts = [("Contact", f"<sip:alice@10.0.0.{n}:5070;transport=udp;ob>;expires=600")
                for n in range(40)]
    return Reply(200, "OK", contacts)


@pytest.mark.parametrize("contact, reliable, status", [
    ("", False, 513),  # a query over UDP: the answer would be 2.6 kB
    ("", True, 200),  # the same over TCP
    ("Contact: <sip:alice@10.0.0.1:5070>\r\n", False, 200),  # it changed bindings: sent whole
])
def test_a_binding_query_over_udp_with_an_answer_past_the_mtu_is_513(contact, reliable, status):
    core, _ = make_core(shards=FakeShards(bindings_reply))
    data = register().replace(b"Contact: <sip:alice@10.0.0.1:5070>\r\n", contact.encode())

    async def main():
        reply, handling = deliver(core, data, reply=FakeReply(reliable))
        await handling
        return parse_message(reply.sent[0])

    response = run(main())
    assert response.status == status
    if status == 513:
        assert (response.reason, response.headers.get_all("Contact")) == (
            "Message Too Large (query over TCP)", [])
