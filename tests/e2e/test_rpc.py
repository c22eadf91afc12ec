"""Operators' view after real sipp registrations through `scscf serve`: JSON-RPC with curl,
`scscf rpc`, the HSS emulator's SAR log, and Ray's Prometheus endpoint."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

from scripts.harness.ports import free_port
from scripts.harness.registrar import registrar_config, start_registrar
from scripts.harness.sipp import SIPP
from tests.e2e.sipp import Step, register, run_sipp

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(SIPP is None, reason="sipp is not installed")]

NAMESPACE = "e2e-rpc"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registrar(ray_address, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rpc")
    sip, admin, rpc = free_port(), free_port(), free_port()
    config = registrar_config(NAMESPACE, workdir, sip, hss=f'admin_listen = "127.0.0.1:{admin}"',
                              rpc=f'listen = "127.0.0.1:{rpc}"')
    server = start_registrar(config, workdir, sip, ray_address)
    server.rpc_url = f"http://127.0.0.1:{rpc}/RPC"
    server.hss_admin = f"http://127.0.0.1:{admin}"
    yield server
    assert server.stop() == 0, "".join(server.output[-40:])


def curl(url: str, body: str | None = None, token: str | None = None):
    cmd = ["curl", "-sS", "--max-time", "30", url]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary", body]
    if token is not None:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def rpc(server, method: str, *params: str):
    reply = curl(server.rpc_url, json.dumps(
        {"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}), server.rpc_token)
    assert "error" not in reply, reply
    return reply["result"]


def stats(server) -> dict[str, int]:
    lines = rpc(server, "stats.get_statistics", "all")
    return {name: int(value) for name, value in (line.split(" = ") for line in lines)}


def sipp(server, tmp_path, *steps):
    return run_sipp(list(steps), server.sip_port, "udp", tmp_path)


def test_status_and_statistics_count_what_sipp_registered(registrar, tmp_path):
    status0, stats0 = rpc(registrar, "ulscscf.status"), stats(registrar)
    sipp(registrar, tmp_path,
         Step(register("rpc-a", contact="<sip:rpc-a@10.0.0.1:5090>", cseq=1), 200),
         Step(register("rpc-b", contact="<sip:rpc-b@10.0.0.1:5090>, <sip:rpc-b@10.0.0.2:5090>",
                       cseq=2), 200),
         Step(register("rpc-c", contact="<sip:rpc-c@10.0.0.3:5090>", cseq=3), 200),
         Step(register("nobody", domain="elsewhere.test", cseq=4), 403))
    status, after = rpc(registrar, "ulscscf.status"), stats(registrar)
    assert (status["impus"], status["contacts"]) == (status0["impus"] + 3, status0["contacts"] + 4)
    assert status["subscriptions"] == status0["subscriptions"] == 0
    assert [s["name"] for s in status["shards"]] == ["impu-shard-0", "impu-shard-1"]
    assert sum(s["slots"] for s in status["shards"]) == status["slots"] == 4096
    assert all(s["node"] for s in status["shards"])
    assert after["ims_usrloc_scscf:impus"] == status["impus"]
    assert after["ims_usrloc_scscf:registered_contacts"] == status["contacts"]
    for name, delta in (("ims_registrar_scscf:accepted_regs", 3),
                        ("ims_registrar_scscf:rejected_regs", 1),
                        ("ims_registrar_scscf:sar_replies_received", 4)):
        assert after[name] - stats0[name] == delta, name
    assert after["ims_registrar_scscf:sar_avg_response_time"] >= 0
    assert after["ims_registrar_scscf:sar_timeouts"] == 0
    # The same through the command line client.
    cli = subprocess.run(
        [sys.executable, "-m", "scripts.cli", "rpc", "stats.get_statistics", "ims_usrloc_scscf:",
         "--url", registrar.rpc_url, "--config", str(registrar.config)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert f"ims_usrloc_scscf:impus = {status['impus']}" in json.loads(cli.stdout)


def test_dereg_impu_removes_the_user_and_sends_the_sar(registrar, tmp_path):
    path = "<sip:term@pcscf.ims.test:5070;lr>"
    sipp(registrar, tmp_path, Step(register(
        "rpc-dereg", contact="<sip:rpc-dereg@10.0.0.9:5090>", extra=f"Path: {path}\nSupported: path"),
        200))
    shown = rpc(registrar, "ulscscf.showimpu", "sip:rpc-dereg@ims.test")
    assert shown["state"] == "REGISTERED"
    assert [(c["uri"], c["path"]) for c in shown["contacts"]] == [
        ("sip:rpc-dereg@10.0.0.9:5090", [path])]
    impus = rpc(registrar, "ulscscf.status")["impus"]
    result = rpc(registrar, "regscscf.dereg_impu", "sip:rpc-dereg@ims.test")
    assert result["deregistered"] is True and result["removed_contacts"] == 1
    assert "SUCCESS" in result["hss"]
    shown = rpc(registrar, "ulscscf.showimpu", "sip:rpc-dereg@ims.test")
    assert (shown["state"], shown["contacts"]) == ("NOT_REGISTERED", [])
    assert rpc(registrar, "ulscscf.status")["impus"] == impus - 1
    sars = [s for s in curl(f"{registrar.hss_admin}/sar_log")
            if s["public_identity"] == "sip:rpc-dereg@ims.test"]
    assert [s["assignment_type_name"] for s in sars] == ["REGISTRATION", "ADMINISTRATIVE_DEREGISTRATION"]
    again = rpc(registrar, "regscscf.dereg_impu", "sip:rpc-dereg@ims.test")
    assert again["deregistered"] is False


def test_rpc_errors(registrar):
    def error(body):
        return curl(registrar.rpc_url, body, registrar.rpc_token)["error"]

    call = {"jsonrpc": "2.0", "id": 5}
    assert error(json.dumps({**call, "method": "ulscscf.nosuch"}))["code"] == -32601
    missing = error(json.dumps({**call, "method": "ulscscf.showimpu", "params": []}))
    assert missing["code"] == -32602 and "'impu'" in missing["message"]
    bad = error(json.dumps({**call, "method": "ulscscf.showimpu", "params": ["alice"]}))
    assert bad["code"] == -32602 and "not an IMPU" in bad["message"]
    assert error("{not json")["code"] == -32700


METRIC = re.compile(r'^(ray_ims_\w+)\{([^}]*)\}\s+(\S+)$')


def scrape(port: int) -> dict[str, float]:
    """Sums of this registrar's series per metric name, from Ray's Prometheus endpoint."""
    text = subprocess.run(["curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{port}/metrics"],
                          capture_output=True, text=True, check=True).stdout
    sums: dict[str, float] = {}
    for line in text.splitlines():
        match = METRIC.match(line)
        if match and f'namespace="{NAMESPACE}"' in match.group(2):
            sums[match.group(1)] = sums.get(match.group(1), 0.0) + float(match.group(3))
    return sums


def test_prometheus_endpoint_shows_the_statistics(registrar, tmp_path):
    sipp(registrar, tmp_path, Step(register("rpc-prom", contact="<sip:rpc-prom@10.0.0.5>"), 200))
    expected = stats(registrar)
    wanted = {
        "ray_ims_usrloc_scscf_impus": expected["ims_usrloc_scscf:impus"],
        "ray_ims_usrloc_scscf_registered_contacts": expected["ims_usrloc_scscf:registered_contacts"],
        "ray_ims_registrar_scscf_accepted_regs_total": expected["ims_registrar_scscf:accepted_regs"],
        "ray_ims_registrar_scscf_rejected_regs_total": expected["ims_registrar_scscf:rejected_regs"],
    }
    (port,) = {n["MetricsExportPort"] for n in ray.nodes() if n["Alive"]}
    deadline = time.monotonic() + 60
    while True:  # shards publish every few seconds, Ray's agent exports on its own period
        seen = scrape(port)
        if all(seen.get(name) == value for name, value in wanted.items()):
            break
        assert time.monotonic() < deadline, f"wanted {wanted}, Prometheus has {seen}"
        time.sleep(2)
    assert "ray_ims_registrar_scscf_sar_avg_response_time" in seen


def test_reset_statistics_zeroes_the_counters_of_every_shard(registrar, tmp_path):
    # After it the RPC's counters read below Prometheus's, which only rise: it stays after
    # the Prometheus test.
    sipp(registrar, tmp_path, Step(register("rpc-reset", contact="<sip:rpc-reset@10.0.0.6>"), 200))
    before = stats(registrar)
    assert before["ims_registrar_scscf:accepted_regs"] >= 1
    assert rpc(registrar, "stats.reset_statistics", "ims_registrar_scscf:", "expired_contacts") is None
    after = stats(registrar)
    for name in ("ims_registrar_scscf:accepted_regs", "ims_registrar_scscf:rejected_regs",
                 "ims_registrar_scscf:sar_replies_received", "ims_usrloc_scscf:expired_contacts"):
        assert after[name] == 0, name
    assert after["ims_usrloc_scscf:impus"] == before["ims_usrloc_scscf:impus"]  # a current count
    sipp(registrar, tmp_path, Step(register("rpc-reset2", contact="<sip:rpc-reset2@10.0.0.6>"), 200))
    assert stats(registrar)["ims_registrar_scscf:accepted_regs"] == 1
    refused = curl(registrar.rpc_url, json.dumps(
        {"jsonrpc": "2.0", "method": "stats.reset_statistics", "params": ["impus"], "id": 2}),
        registrar.rpc_token)
    assert refused["error"]["code"] == -32602 and "current counts" in refused["error"]["message"]


def test_cdp_peers_realms_and_the_method_list(registrar):
    peers = rpc(registrar, "cdp.list_peers")
    assert (peers["Identity"], peers["Realm"], peers["Peer count"]) == (
        "scscf.ims.test", "ims.test", 1)
    (peer,) = peers["Peers"]
    assert peer["FQDN"] == "hss.ims.test"
    assert (peer["Details"]["State"], peer["Details"]["Realm"]) == ("I_Open", "ims.test")
    assert 16777216 in peer["Details"]["Applications"]  # Cx
    realms = rpc(registrar, "cdp.list_realms")
    assert realms["Routable"] is True
    assert [r["Realm"] for r in realms["Realms"]] == ["ims.test"]
    status = rpc(registrar, "ulscscf.status")
    assert [(p["fqdn"], p["state"]) for p in status["peers"]] == [("hss.ims.test", "I_Open")]
    assert [t["running"] for t in status["transports"]] == [True]
    assert all(n["alive"] for n in status["nodes"])
    methods = rpc(registrar, "system.listMethods")
    assert {"cdp.list_peers", "cdp.list_realms", "stats.reset_statistics",
            "ulscscf.status"} <= set(methods)
