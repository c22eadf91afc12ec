"""JSON-RPC 2.0 dispatch and the statistics behind it, with a fake registrar (no Ray)."""
import asyncio

import pytest

from actors.hosts.metrics import ShardMetrics, select, statistics, summed
from actors.ops.registrar import identity_of
from actors.ops.rpc import RpcServer
from actors.vocabulary import Reply
from transport.diameter.router import CxTimeout, CxUnavailable


class FakeRegistrar:
    def __init__(self):
        self.shown = []

    async def status(self):
        return {"impus": 1}

    async def show_impu(self, impu):
        self.shown.append(identity_of(impu))  # raises SipParseError on a bad URI, as the real one
        return {"identity": identity_of(impu)}

    async def dereg_impu(self, impu):
        raise RuntimeError("shard 1 unavailable")

    async def statistics(self):
        return statistics(summed([
            {"impus": 2, "contacts": 3, "accepted_regs": 4, "sar_replies_received": 4,
             "sar_replies_response_time": 20},
            {"impus": 1, "contacts": 1, "rejected_regs": 1, "sar_replies_received": 1,
             "sar_replies_response_time": 10, "sar_timeouts": 2},
        ]))


def call(method, params=None, rid=7, **extra):
    request = {"jsonrpc": "2.0", "method": method, "id": rid, **extra}
    if params is not None:
        request["params"] = params
    return asyncio.run(RpcServer(FakeRegistrar()).handle(request))


def error(reply):
    return reply["error"]["code"], reply["error"]["message"]


def test_a_call_answers_result_with_the_same_id():
    assert call("ulscscf.status") == {"jsonrpc": "2.0", "result": {"impus": 1}, "id": 7}
    assert call("ulpcscf.status", [], rid="x")["result"] == {"impus": 1}
    assert call("ulscscf.showimpu", ["<sip:Alice@IMS.test;user=phone>"])["result"] == {
        "identity": "sip:Alice@ims.test"}
    assert call("ulscscf.showimpu", {"impu": "sip:bob@ims.test"})["result"] == {
        "identity": "sip:bob@ims.test"}


def test_errors_carry_json_rpc_codes_and_clear_messages():
    assert error(call("ulscscf.nosuch")) == (-32601, "Method not found: ulscscf.nosuch")
    code, message = error(call("ulscscf.showimpu"))
    assert code == -32602 and "missing a required argument: 'impu'" in message
    code, message = error(call("ulscscf.showimpu", ["sip:a@h", "extra"]))
    assert code == -32602 and "too many positional arguments" in message
    assert error(call("ulscscf.showimpu", [42])) == (
        -32602, "Invalid params for ulscscf.showimpu: expected strings")
    code, message = error(call("ulscscf.showimpu", ["not a uri"]))
    assert code == -32602 and "not an IMPU" in message
    assert error(call("ulscscf.status", "all"))[0] == -32602
    assert error(call("regscscf.dereg_impu", ["sip:a@h"])) == (
        -32603, "Internal error: shard 1 unavailable")
    server = RpcServer(FakeRegistrar())
    assert asyncio.run(server.handle([1, 2]))["error"]["code"] == -32600
    assert asyncio.run(server.handle({"jsonrpc": "1.0", "method": "x", "id": 3})) == {
        "jsonrpc": "2.0", "error": {"code": -32600, "message":
                                    "Invalid Request: expected a JSON-RPC 2.0 object"}, "id": 3}


def test_a_notification_gets_no_answer():
    assert asyncio.run(RpcServer(FakeRegistrar()).handle(
        {"jsonrpc": "2.0", "method": "ulscscf.status"})) is None


def test_get_statistics_all_a_group_or_one_name_in_kamailio_lines():
    every = call("stats.get_statistics", ["all"])["result"]
    assert every == [
        "ims_usrloc_scscf:registered_contacts = 4",
        "ims_usrloc_scscf:impus = 3",
        "ims_usrloc_scscf:expired_contacts = 0",
        "ims_usrloc_scscf:subscriptions = 0",
        "ims_registrar_scscf:accepted_regs = 4",
        "ims_registrar_scscf:rejected_regs = 1",
        "ims_registrar_scscf:sar_replies_received = 5",
        "ims_registrar_scscf:sar_replies_response_time = 30",
        "ims_registrar_scscf:sar_timeouts = 2",
        "ims_registrar_scscf:notifies_in_q = 0",
        "ims_registrar_scscf:sar_avg_response_time = 6",
    ]
    assert call("stats.get_statistics", [])["result"] == every
    usrloc = call("stats.get_statistics", ["ims_usrloc_scscf:"])["result"]
    assert usrloc == every[:4]
    assert call("stats.get_statistics", ["impus", "ims_registrar_scscf:sar_timeouts"])["result"] == [
        "ims_usrloc_scscf:impus = 3", "ims_registrar_scscf:sar_timeouts = 2"]
    code, message = error(call("stats.get_statistics", ["ims_usrloc_scscf:nope"]))
    assert code == -32602 and "'ims_usrloc_scscf:nope'" in message and "ims_registrar_scscf:" in message


def test_select_rejects_what_matches_nothing():
    with pytest.raises(KeyError):
        select(statistics({}), ["registered"])


def test_shard_metrics_count_replies_sar_round_trips_and_timeouts():
    metrics = ShardMetrics()
    for status in (200, 200, 403, 503):
        assert metrics.count_reply(Reply(status, "")).status == status

    async def answer(value):
        if isinstance(value, Exception):
            raise value
        await asyncio.sleep(0.01)
        return value

    async def sars():
        assert await metrics.time_sar(answer("saa")) == "saa"
        for failure in (CxTimeout("HSS timeout: 2 s"), CxUnavailable("no open peer")):
            with pytest.raises(CxUnavailable):
                await metrics.time_sar(answer(failure))

    asyncio.run(sars())
    snapshot = metrics.snapshot()
    assert snapshot["accepted_regs"] == 2 and snapshot["rejected_regs"] == 2
    assert snapshot["sar_replies_received"] == 1 and snapshot["sar_timeouts"] == 1
    assert 10 <= snapshot["sar_replies_response_time"] < 1000
