"""Several Ray nodes on one machine: a transport on each node with its own SIP listener, the
shards spread over the nodes present at start, REGISTERs from sipp through the second node's
listener, and a node that joins later taking traffic on its own listener."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.harness.ports import free_port
from scripts.harness.registrar import start_registrar
from scripts.harness.sipp import SIPP
from tests.e2e.sipp import Step, register, run_sipp

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(SIPP is None, reason="sipp is not installed")]

ROOT = Path(__file__).resolve().parents[2]
NODES = ("scscf-a", "scscf-b")  # head first
LATE = "scscf-c"  # joins once the registrar runs


@dataclass
class LocalCluster:
    process: subprocess.Popen
    address: str

    def add_node(self, name: str) -> None:
        self.process.stdin.write(f"add {name}\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == f"added {name}"


@pytest.fixture(scope="module")
def cluster():
    process = subprocess.Popen([sys.executable, "-m", "tests.e2e.local_cluster", *NODES],
                               cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        address = process.stdout.readline().strip()
        assert address, "the local cluster did not start"
        yield LocalCluster(process, address)
    finally:
        process.stdin.close()  # the helper stops the nodes it started
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=30)


def wait_listening(port: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert time.monotonic() < deadline, f"nothing listens on {port}"
        time.sleep(0.5)


def test_nodes_share_the_work_and_a_joining_node_takes_traffic(cluster, tmp_path):
    sip_a, sip_b, sip_c, rpc = free_port(), free_port(), free_port(), free_port()
    config = f"""
[sip]
listen = ["udp:127.0.0.1:{sip_a}", "tcp:127.0.0.1:{sip_a}"]
[sip.listen_per_node]
{NODES[1]} = ["udp:127.0.0.1:{sip_b}", "tcp:127.0.0.1:{sip_b}"]
{LATE} = ["udp:127.0.0.1:{sip_c}", "tcp:127.0.0.1:{sip_c}"]
[hss]
listen = "127.0.0.1:{free_port()}"
[ray]
namespace = "e2e-multinode"
shards = 2
[rpc]
listen = "127.0.0.1:{rpc}"
[auth]
enabled = false
"""
    server = start_registrar(config, tmp_path, sip_b, cluster.address)
    try:
        ready = next(line for line in server.output if line.startswith("ready"))
        assert f"udp:127.0.0.1:{sip_a}" in ready and f"udp:127.0.0.1:{sip_b}" in ready
        users = [f"node-b-{n}" for n in range(8)]
        run_sipp([Step(register(u, contact=f"<sip:{u}@10.0.1.{n}:5090>", cseq=n + 1), 200)
                  for n, u in enumerate(users)], sip_b, "udp", tmp_path, "via-node-b")
        run_sipp([Step(register("node-a", contact="<sip:node-a@10.0.2.1:5090>"), 200)],
                 sip_a, "tcp", tmp_path, "via-node-a")
        status = server.rpc("ulscscf.status")["result"]
        placement = {s["name"]: s["node"] for s in status["shards"]}
        print(f"\nshard placement: {placement}; identities per shard: "
              f"{ {s['name']: s['impus'] for s in status['shards']} }")
        assert sorted(placement.values()) == sorted(NODES), placement
        assert status["impus"] == len(users) + 1

        cluster.add_node(LATE)
        wait_listening(sip_c)
        run_sipp([Step(register("node-c", contact="<sip:node-c@10.0.3.1:5090>"), 200)],
                 sip_c, "udp", tmp_path, "via-node-c")
        status = server.rpc("ulscscf.status")["result"]
        assert status["impus"] == len(users) + 2
        assert {s["node"] for s in status["shards"]} == set(NODES)  # shards do not move
    finally:
        assert server.stop() == 0, "".join(server.output[-40:])
    joined = [line for line in server.output if f"{LATE} joined: SIP on" in line]
    assert joined and f"udp:127.0.0.1:{sip_c}" in joined[0], server.output
