"""A Ray cluster of named nodes on this machine, in a process of its own.

    python -m scripts.harness.local_cluster NAME [NAME...]

The first name is the head. Prints the cluster's address once every node is up; then each
line on stdin is a command: "add NAME" adds a node and answers "added NAME"; "kill NAME"
kills that node's raylet and every process under it (workers, agents) with SIGKILL, by PID,
as a machine that dies would, and answers "killed NAME <pids>". When stdin closes (or on
SIGTERM) it stops the nodes it started, and only those. A process of its own, so that the
test's own Ray session is untouched.

The cluster checks its nodes' health every half second and declares a node dead after three
failed checks, so that a killed node is noticed within seconds (Ray's defaults take ~15 s).
"""
from __future__ import annotations

import os
import signal
import sys
import time

os.environ.setdefault("RAY_AUTH_MODE", "token")  # the test session's token comes by environment
for _key, _value in (("health_check_period_ms", "500"), ("health_check_timeout_ms", "1000"),
                     ("health_check_failure_threshold", "3")):
    os.environ.setdefault(f"RAY_{_key}", _value)

from ray._private import ray_constants  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402  (after the authentication mode is set)

from scripts.harness.processes import alive, descendants  # noqa: E402


def kill_node(node) -> list[int]:
    """SIGKILL to the node's raylet and everything it started; returns their PIDs."""
    raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    victims = [raylet, *descendants(raylet)]
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in victims[1:]) and time.monotonic() < deadline:
        time.sleep(0.05)  # the raylet is reaped by remove_node; the others by their init
    return victims


def main(names: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "node_name": names[0], "include_dashboard": False})
    nodes = {}
    try:
        for name in names[1:]:
            nodes[name] = cluster.add_node(num_cpus=1, node_name=name)
        print(cluster.address, flush=True)
        for line in sys.stdin:
            command, _, name = line.strip().partition(" ")
            if command == "add" and name:
                nodes[name] = cluster.add_node(num_cpus=1, node_name=name)
                print(f"added {name}", flush=True)
            elif command == "kill" and name in nodes:
                node = nodes.pop(name)
                pids = kill_node(node)
                cluster.remove_node(node, allow_graceful=False)  # reaps what was killed
                print(f"killed {name} {' '.join(map(str, pids))}", flush=True)
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["head"]))
