"""Overload shedding: the gate alone, and the transport core answering 503 at once."""
from __future__ import annotations

import asyncio
import math

from actors.config import config_from_dict
from actors.hosts.overload import OverloadGate
from actors.hosts.rate_limit import SourceRateLimit
from actors.hosts.transport import stale_after
from tests.unit.test_transport_core import (FakeReply, FakeShards, deliver, make_core, register,
                                            settle, subscribe)
from transport.sip.parser import parse_message


def test_a_request_that_waited_past_the_delay_in_the_kernel_is_refused():
    gate = OverloadGate(0.2)
    assert gate.admit(0.2, 0, now=0.0)
    assert not gate.admit(0.21, 0, now=0.0)
    assert gate.shed == 1


def test_the_floor_is_admitted_before_any_rate_is_known():
    gate = OverloadGate(0.2, floor=4)
    assert [gate.admit(0.0, n, now=0.0) for n in range(6)] == [True] * 4 + [False] * 2


def test_beyond_the_floor_the_answer_rate_sets_how_many_may_wait():
    gate = OverloadGate(0.2, floor=4, interval=1.0)
    for n in range(1000):  # 1,000 answers in the first second: 200 may wait 0.2 s
        gate.answered(n / 1000)
    assert gate.admit(0.0, 199, now=1.0)
    assert not gate.admit(0.0, 200, now=1.0)


def test_a_pause_of_the_shards_does_not_shrink_how_many_may_wait():
    gate = OverloadGate(0.2, floor=4, interval=0.25, memory=4)
    for n in range(250):  # 1,000 answers a second
        gate.answered(n / 1000)
    for n in range(25):  # then a quarter of a second at 100 a second: a collection, say
        gate.answered(0.25 + n / 100)
    assert gate.admit(0.0, 199, now=0.5)
    assert not gate.admit(0.0, 200, now=0.5)


def test_the_rate_follows_the_shards_once_they_stay_slow_for_the_memory():
    gate = OverloadGate(0.2, floor=4, interval=0.25, memory=4)
    for n in range(250):
        gate.answered(n / 1000)
    for n in range(100):  # then a whole second at 100 a second: 20 may wait
        gate.answered(0.25 + n / 100)
    assert gate.admit(0.0, 19, now=1.25)
    assert not gate.admit(0.0, 20, now=1.25)


def status_line(data: bytes) -> str:
    return data.split(b"\r\n", 1)[0].decode()


def test_a_stale_datagram_is_answered_503_without_a_shard_and_its_retransmission_again():
    shards = FakeShards()
    core, _ = make_core(shards, overload=OverloadGate(0.2))
    stale_and_again = FakeReply(queued=0.3)
    handling = core.on_message(parse_message(register()), ("10.0.0.1", 5070), stale_and_again)
    assert handling is None  # answered before it returned: no task for the shed
    assert [status_line(d) for d in stale_and_again.sent] == ["SIP/2.0 503 Registrar overloaded"]
    response = parse_message(stale_and_again.sent[0])
    assert response.headers.get("Retry-After") == "5"
    again = FakeReply()
    assert core.on_message(parse_message(register()), ("10.0.0.1", 5070), again) is None
    assert again.sent == stale_and_again.sent  # the transaction's 503, not a second decision
    assert shards.calls == []


def answered_now(core, data: bytes, reply: FakeReply) -> FakeReply:
    """``reply`` once the core answered ``data``, handed over as an endpoint does."""
    async def main():
        await deliver(core, data, reply=reply)[1]
    asyncio.run(main())
    return reply


def test_a_refusal_before_the_parse_is_the_refusal_of_the_parsed_path():
    quick_core, _ = make_core(overload=OverloadGate(0.2))
    parsed_core, _ = make_core(overload=OverloadGate(0.2))
    quick, parsed = FakeReply(queued=0.3), FakeReply(queued=0.3)
    quick.peer = ("10.0.0.1", 5070)
    assert quick_core.refuse_unparsed(register(), quick)
    assert parsed_core.on_message(parse_message(register()), ("10.0.0.1", 5070), parsed) is None
    assert quick.sent == parsed.sent
    assert [status_line(d) for d in quick.sent] == ["SIP/2.0 503 Registrar overloaded"]
    assert quick_core._overload.shed == parsed_core._overload.shed == 1


def test_a_request_refused_before_the_parse_gets_the_same_503_when_sent_again():
    shards = FakeShards()
    core, _ = make_core(shards, overload=OverloadGate(0.2))
    first = answered_now(core, register(), FakeReply(queued=0.3))
    # Still overloaded, then not: either way the transaction's 503, not a second decision.
    again = answered_now(core, register(), FakeReply(queued=0.3))
    later = answered_now(core, register(), FakeReply())
    assert [status_line(d) for d in first.sent] == ["SIP/2.0 503 Registrar overloaded"]
    assert again.sent == later.sent == first.sent
    assert core._overload.shed == 1
    assert shards.calls == []


def test_a_request_of_an_unusual_shape_is_refused_after_its_parse_and_counted_once():
    core, _ = make_core(overload=OverloadGate(0.2))
    folded = register().replace(b"Call-ID: ", b"Call-ID:\r\n ")
    reply = FakeReply(queued=0.3)
    reply.peer = ("10.0.0.1", 5070)
    assert not core.refuse_unparsed(folded, reply)
    assert core.on_message(parse_message(folded), ("10.0.0.1", 5070), reply) is None
    response = parse_message(reply.sent[0])
    assert (response.status, response.call_id) == (503, "reg-1")
    assert core._overload.shed == 1


def test_nothing_is_refused_before_the_parse_when_admitted_or_with_the_rate_limit_on():
    admitted = FakeReply(queued=0.05)
    limited = FakeReply(queued=0.3)
    admitted.peer = limited.peer = ("10.0.0.1", 5070)
    core, _ = make_core(overload=OverloadGate(0.2))
    assert not core.refuse_unparsed(register(), admitted)
    core, _ = make_core(overload=OverloadGate(0.2),
                        rate_limit=SourceRateLimit(density=5, window=2.0))
    assert not core.refuse_unparsed(register(), limited)
    assert admitted.sent == limited.sent == []


def test_over_tcp_a_refusal_before_the_parse_keeps_no_transaction():
    core, _ = make_core(overload=OverloadGate(0.2, floor=0))
    refused = answered_now(core, subscribe(), FakeReply(reliable=True))
    assert [status_line(d) for d in refused.sent] == ["SIP/2.0 503 Registrar overloaded"]
    assert core._servers == {}


def test_a_fresh_datagram_goes_to_its_shard():
    shards = FakeShards()
    core, _ = make_core(shards, overload=OverloadGate(0.2))

    async def main():
        reply, handling = deliver(core, register(), reply=FakeReply(queued=0.05))
        await handling
        return reply

    reply = asyncio.run(main())
    assert [status_line(d) for d in reply.sent] == ["SIP/2.0 200 OK"]
    assert len(shards.calls) == 1


def test_beyond_the_floor_waiting_on_the_shards_new_requests_get_503_over_tcp_too():
    shards = FakeShards()
    core, _ = make_core(shards, overload=OverloadGate(0.2, floor=1))

    async def main():
        shards.gate = asyncio.Event()
        _, waiting = deliver(core, register("alice", "c1", "z9hG4bK1"))
        task = asyncio.ensure_future(waiting)
        await settle()
        refused = FakeReply(reliable=True)
        await deliver(core, subscribe(), reply=refused)[1]
        shards.gate.set()
        await task
        return refused

    refused = asyncio.run(main())
    assert [status_line(d) for d in refused.sent] == ["SIP/2.0 503 Registrar overloaded"]
    assert [method for _, method, _ in shards.calls] == ["register_batch"]


def test_udp_requests_are_dropped_unread_after_t1_in_the_queue_only_with_shedding_on():
    def after(**sip):
        return stale_after(config_from_dict({"sip": sip}))

    assert after() == 0.5  # T1: the UE has sent it again by then
    assert after(t1=1.0) == 1.0
    assert after(overload_delay=0.8) == 0.8  # never before overload_delay has passed
    assert after(overload_delay=0) == math.inf
