"""JSON-RPC 2.0 dispatch and the statistics behind it, with a fake registrar (no Ray); the
peer states the Cx pool reports and the one screen of `scscf status`."""
import asyncio
import logging
from types import SimpleNamespace

import pytest

from actors.config import config_from_dict
from actors.hosts.cx_pool import CxPoolCore
from actors.hosts.metrics import ShardMetrics, select, statistics, summed, with_aliases
from actors.ops.registrar import identity_of
from actors.ops.resets import Baselines
from actors.ops.rpc import RpcServer
from actors.vocabulary import Reply
from scripts.cli import rpc_url
from scripts.status_view import render_status
from transport.diameter.router import CxTimeout, CxUnavailable

PEERS = [
    {"pool": 0, "address": "10.0.0.5:3868", "state": "I_Open", "fqdn": "hss1.ims.test",
     "realm": "ims.test", "applications": [16777216], "pending": 2},
    {"pool": 0, "address": "10.0.0.6:3868", "state": "Closed", "fqdn": "", "realm": "",
     "applications": [], "pending": 0},
    {"pool": 1, "address": "10.0.0.7:3868", "state": "I_Open", "fqdn": "hss3.other.test",
     "realm": "other.test", "applications": [16777216], "pending": 0},
]


class FakeRegistrar:
    def __init__(self, **config):
        self.config = config_from_dict(config)
        self.shown = []
        self.snapshots = [
            {"impus": 2, "contacts": 3, "accepted_regs": 4, "sar_replies_received": 4,
             "sar_replies_response_time": 20, "expired_contacts": 5},
            {"impus": 1, "contacts": 1, "rejected_regs": 1, "sar_replies_received": 1,
             "sar_replies_response_time": 10, "sar_timeouts": 2},
        ]
        self.baselines = Baselines()

    async def status(self):
        return {"impus": 1}

    async def show_impu(self, impu):
        self.shown.append(identity_of(impu))  # raises SipParseError on a bad URI, as the real one
        return {"identity": identity_of(impu)}

    async def dereg_impu(self, impu):
        raise RuntimeError("shard 1 unavailable")

    async def statistics(self):
        return with_aliases(statistics(summed(self.baselines.apply(self.snapshots))))

    async def reset_statistics(self, names):
        return self.baselines.reset(self.snapshots, names)

    async def peers(self):
        return PEERS


def call(method, params=None, rid=7, server=None, **extra):
    request = {"jsonrpc": "2.0", "method": method, "id": rid, **extra}
    if params is not None:
        request["params"] = params
    return asyncio.run((server or RpcServer(FakeRegistrar())).handle(request))


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
        "ims_usrloc_scscf:expired_contacts = 5",
        "ims_usrloc_scscf:subscriptions = 0",
        "ims_registrar_scscf:accepted_regs = 4",
        "ims_registrar_scscf:rejected_regs = 1",
        "ims_registrar_scscf:sar_replies_received = 5",
        "ims_registrar_scscf:sar_replies_response_time = 30",
        "ims_registrar_scscf:sar_timeouts = 2",
        "ims_registrar_scscf:notifies_in_q = 0",
        "ims_registrar_scscf:sar_avg_response_time = 6",
        "ims_usrloc_scscf:active_impus = 3",  # ims_usrloc_scscf's own names
        "ims_usrloc_scscf:active_contacts = 4",
        "ims_usrloc_scscf:active_subscriptions = 0",
    ]
    assert call("stats.get_statistics", [])["result"] == every
    usrloc = call("stats.get_statistics", ["ims_usrloc_scscf:"])["result"]
    assert usrloc == every[:4] + every[-3:]
    assert call("stats.get_statistics", ["active_contacts"])["result"] == [
        "ims_usrloc_scscf:active_contacts = 4"]
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


def test_reset_statistics_zeroes_the_counters_and_leaves_current_counts():
    server = RpcServer(FakeRegistrar())
    assert call("stats.reset_statistics", ["all"], server=server) == {
        "jsonrpc": "2.0", "result": None, "id": 7}
    after = call("stats.get_statistics", ["all"], server=server)["result"]
    assert after == [
        "ims_usrloc_scscf:registered_contacts = 4",
        "ims_usrloc_scscf:impus = 3",
        "ims_usrloc_scscf:expired_contacts = 0",
        "ims_usrloc_scscf:subscriptions = 0",
        "ims_registrar_scscf:accepted_regs = 0",
        "ims_registrar_scscf:rejected_regs = 0",
        "ims_registrar_scscf:sar_replies_received = 0",
        "ims_registrar_scscf:sar_replies_response_time = 0",
        "ims_registrar_scscf:sar_timeouts = 0",
        "ims_registrar_scscf:notifies_in_q = 0",
        "ims_registrar_scscf:sar_avg_response_time = 0",
        "ims_usrloc_scscf:active_impus = 3",
        "ims_usrloc_scscf:active_contacts = 4",
        "ims_usrloc_scscf:active_subscriptions = 0",
    ]
    server.registrar.snapshots[0]["accepted_regs"] += 3  # counting goes on from the reset
    assert "ims_registrar_scscf:accepted_regs = 3" in call(
        "stats.get_statistics", ["accepted_regs"], server=server)["result"]


def test_reset_statistics_of_one_name_or_group_resets_only_those():
    server = RpcServer(FakeRegistrar())
    assert call("stats.reset_statistics", ["expired_contacts"], server=server)["result"] is None
    assert call("stats.get_statistics", ["expired_contacts", "accepted_regs"],
                server=server)["result"] == [
        "ims_usrloc_scscf:expired_contacts = 0", "ims_registrar_scscf:accepted_regs = 4"]
    call("stats.reset_statistics", ["ims_registrar_scscf:"], server=server)
    assert call("stats.get_statistics", ["sar_timeouts", "impus"], server=server)["result"] == [
        "ims_registrar_scscf:sar_timeouts = 0", "ims_usrloc_scscf:impus = 3"]


def test_reset_statistics_refuses_unknown_names_and_current_counts():
    code, message = error(call("stats.reset_statistics", ["nope"]))
    assert code == -32602 and "no statistic or group 'nope'" in message
    code, message = error(call("stats.reset_statistics", ["impus", "registered_contacts"]))
    assert code == -32602 and message == (
        "nothing to reset in impus registered_contacts: ims_usrloc_scscf:impus, "
        "ims_usrloc_scscf:registered_contacts are current counts")
    assert error(call("stats.reset_statistics", [3]))[0] == -32602


def test_a_restarted_shard_counts_from_zero_again():
    baselines = Baselines()
    assert baselines.reset([{"accepted_regs": 10}], ["ims_registrar_scscf:accepted_regs"]) == [
        "ims_registrar_scscf:accepted_regs"]
    assert baselines.apply([{"accepted_regs": 12}]) == [{"accepted_regs": 2}]
    assert baselines.apply([{"accepted_regs": 1}]) == [{"accepted_regs": 1}]  # restarted
    assert baselines.apply([{"accepted_regs": 12}]) == [{"accepted_regs": 12}]


def test_list_peers_in_cdps_shape():
    result = call("cdp.list_peers", [])["result"]
    assert {k: v for k, v in result.items() if k != "Peers"} == {
        "Realm": "ims.test", "Identity": "scscf.ims.test", "Accept unknown peers": 0,
        "Transaction timeout": 2.0, "Peer count": 3}
    assert result["Peers"][:2] == [
        {"FQDN": "hss1.ims.test", "Details": {
            "State": "I_Open", "Disabled": "False", "Address": "10.0.0.5:3868", "Pool": 0,
            "Realm": "ims.test", "Pending": 2, "Applications": [16777216]}},
        {"FQDN": "", "Details": {
            "State": "Closed", "Disabled": "False", "Address": "10.0.0.6:3868", "Pool": 0,
            "Realm": "", "Pending": 0, "Applications": []}},
    ]
    code, message = error(call("cdp.list_peers", ["extra"]))
    assert code == -32602 and "too many positional arguments" in message


def test_list_realms_groups_the_open_peers_by_the_realm_they_advertised():
    assert call("cdp.list_realms")["result"] == {
        "Destination realm": "ims.test", "Forced peer": "", "Routable": True,
        "Realms": [
            {"Realm": "ims.test", "Routes": [
                {"FQDN": "hss1.ims.test", "Address": "10.0.0.5:3868", "Pool": 0}]},
            {"Realm": "other.test", "Routes": [
                {"FQDN": "hss3.other.test", "Address": "10.0.0.7:3868", "Pool": 1}]},
        ]}
    elsewhere = RpcServer(FakeRegistrar(registrar={"cxdx_dest_realm": "nowhere.test"}))
    assert call("cdp.list_realms", server=elsewhere)["result"]["Routable"] is False
    forced = RpcServer(FakeRegistrar(registrar={"cxdx_forced_peer": "hss3.other.test"}))
    assert call("cdp.list_realms", server=forced)["result"]["Routable"] is True


def test_list_methods_version_and_uptime():
    methods = call("system.listMethods")["result"]
    assert methods == sorted(methods)
    assert {"ulscscf.status", "ulscscf.showimpu", "regscscf.dereg_impu", "stats.get_statistics",
            "stats.reset_statistics", "cdp.list_peers", "cdp.list_realms", "core.version",
            "core.uptime", "system.listMethods"} <= set(methods)
    assert call("core.version")["result"].startswith("ray-scscf ")
    uptime = call("core.uptime")["result"]
    assert set(uptime) == {"now", "up_since", "uptime"} and uptime["uptime"] >= 0


class FakePeer:
    def __init__(self, host, port):
        self.host, self.port, self.is_open, self.remote, self.pending_requests = (
            host, port, False, None, 0)

    def open(self, fqdn, realm):
        self.is_open = True
        self.remote = SimpleNamespace(origin_host=fqdn, origin_realm=realm,
                                      applications=frozenset({16777216}))


def test_cx_pool_reports_peer_states_and_warns_when_one_goes_down_or_up(caplog):
    first, second = FakePeer("10.0.0.5", 3868), FakePeer("10.0.0.6", 3868)
    first.open("hss1.ims.test", "ims.test")
    first.pending_requests = 1
    pool = CxPoolCore(SimpleNamespace(peers=[first, second]))
    assert pool.peers() == [
        {"address": "10.0.0.5:3868", "state": "I_Open", "fqdn": "hss1.ims.test",
         "realm": "ims.test", "applications": [16777216], "pending": 1},
        {"address": "10.0.0.6:3868", "state": "Closed", "fqdn": "", "realm": "",
         "applications": [], "pending": 0},
    ]
    with caplog.at_level(logging.WARNING, logger="actors.hosts.cx_pool"):
        pool.log_peer_changes()
        pool.log_peer_changes()  # nothing changed: nothing logged
        second.open("hss2.ims.test", "ims.test")
        first.is_open, first.remote = False, None
        pool.log_peer_changes()
    assert [r.getMessage() for r in caplog.records] == [
        "cx.peers: 10.0.0.6:3868: HSS unreachable; retrying (REGISTERs get 503 while no peer "
        "is open)",
        "cx.peers: 10.0.0.5:3868: Diameter peer down",
        "cx.peers: 10.0.0.6:3868: Diameter peer up (hss2.ims.test, realm ims.test)",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


STATUS = {
    "impus": 3, "contacts": 4, "subscriptions": 1, "slots": 4096,
    "nodes": [{"name": "10.0.0.1", "node_id": "ab", "address": "10.0.0.1", "alive": True},
              {"name": "scscf-b", "node_id": "cd", "address": "10.0.0.2", "alive": False}],
    "shards": [{"shard": 0, "name": "impu-shard-0", "slots": 2048, "node": "10.0.0.1",
                "node_id": "ab", "impus": 2, "contacts": 3},
               {"shard": 1, "name": "impu-shard-1", "slots": 2048, "node": "",
                "node_id": "cd", "impus": 1, "contacts": 1}],
    "transports": [{"name": "sip-transport-10.0.0.1-0", "node": "10.0.0.1", "running": True,
                    "listen": ["udp:10.0.0.1:5060", "tcp:10.0.0.1:5060"]}],
    "peers": PEERS[:2],
}


def test_status_fits_one_screen_with_every_part_named():
    assert render_status(STATUS).splitlines() == [
        "registrar   3 impus, 4 contacts, 1 subscriptions, 4096 slots",
        "nodes       10.0.0.1  10.0.0.1  alive",
        "            scscf-b  10.0.0.2  DEAD",
        "shards      impu-shard-0  on 10.0.0.1  2048 slots  2 impus  3 contacts",
        "            impu-shard-1  on ?  2048 slots  1 impus  1 contacts",
        "transports  sip-transport-10.0.0.1-0  udp:10.0.0.1:5060 tcp:10.0.0.1:5060  running",
        "hss peers   pool 0  10.0.0.5:3868  I_Open  hss1.ims.test (realm ims.test)  2 pending",
        "            pool 0  10.0.0.6:3868  Closed",
    ]
    assert "hss peers   none" in render_status({**STATUS, "peers": []})


@pytest.mark.parametrize("listen, url", [
    ("127.0.0.1:5080", "http://127.0.0.1:5080/RPC"),
    ("0.0.0.0:6000", "http://127.0.0.1:6000/RPC"),
    ("[::]:6000", "http://[::1]:6000/RPC"),
    ("", ""),
])
def test_scscf_rpc_calls_the_rpc_listen_of_the_config(listen, url):
    assert rpc_url(listen) == url
