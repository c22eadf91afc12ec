"""A Ray cluster of named nodes on this machine, in a process of its own.

    python -m tests.e2e.local_cluster NAME [NAME...]

The first name is the head. Prints the cluster's address once every node is up; then each
line "add NAME" on stdin adds a node and answers "added NAME". When stdin closes (or on
SIGTERM) it stops the nodes it started, and only those. A process of its own, so that the
test's own Ray session is untouched.
"""
from __future__ import annotations

import os
import signal
import sys

os.environ.setdefault("RAY_AUTH_MODE", "token")  # the test session's token comes by environment

from ray.cluster_utils import Cluster  # noqa: E402  (after the authentication mode is set)


def main(names: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "node_name": names[0], "include_dashboard": False})
    try:
        for name in names[1:]:
            cluster.add_node(num_cpus=1, node_name=name)
        print(cluster.address, flush=True)
        for line in sys.stdin:
            command, _, name = line.strip().partition(" ")
            if command == "add" and name:
                cluster.add_node(num_cpus=1, node_name=name)
                print(f"added {name}", flush=True)
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["head"]))
