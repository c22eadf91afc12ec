"""Scale efficiency: CPU per REGISTER with the registrar on N Ray nodes over the same on 1 node.

    python3 scripts/bench_scale.py --users 10000 --rate 1000 [--nodes 2] [--shards 4]

For 1 node, then for N: a local Ray cluster of that many named nodes on this machine
(scripts/harness/local_cluster.py), Redis as the store, the HSS emulator in a process of its
own, and `scscf serve` joining the cluster with a SIP listener per node. Once the shards are
spread over every node, the same users register at the same offered rate, spread evenly over
the nodes' listeners (one sipp each). CPU counts every process of the cluster, the registrar
and the HSS, never sipp. Prints both figures, their ratio (the issue's target: <= 1.15) and
where the CPU went. The nodes share this machine's cores: the figure is CPU per REGISTER, not
throughput. Not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench_register import (  # noqa: E402
    Watched, cpu_by_name, descendants, start_hss, stop_hss)
from scripts.harness.cluster_control import start_cluster, stop_cluster  # noqa: E402
from scripts.harness.ports import free_port  # noqa: E402
from scripts.harness.redis_server import RedisServer  # noqa: E402
from scripts.harness.registrar import registrar_config, start_registrar  # noqa: E402
from scripts.harness.sipp import run_registers  # noqa: E402

EXPIRES = 600
SPREAD_TIMEOUT = 120.0  # seconds the shards may take to reach every node


def wait_spread(server, nodes: list[str]) -> None:
    """Until every node holds a shard (the placement moves them as nodes appear)."""
    deadline = time.monotonic() + SPREAD_TIMEOUT
    while True:
        status = server.rpc("ulscscf.status").get("result") or {}
        holding = {s.get("node") for s in status.get("shards", [])}
        if set(nodes) <= holding:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"shards still only on {sorted(holding)}")
        time.sleep(1.0)


def register_spread(ports: list[int], rows: list[tuple[str, int]], rate: int,
                    workdir: Path) -> dict:
    """``rows`` split evenly over ``ports``, one sipp each at its share of ``rate``."""
    results: list[dict] = [{} for _ in ports]

    def drive(i: int, port: int) -> None:
        part = workdir / f"listener-{i}"
        part.mkdir(exist_ok=True)
        results[i] = run_registers("127.0.0.1", port, "udp", rows[i::len(ports)],
                                   max(1, rate // len(ports)), part)

    threads = [threading.Thread(target=drive, args=(i, p)) for i, p in enumerate(ports)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"ok": sum(r["responses"].get(200, 0) for r in results),
            "calls": len(rows),
            "retransmissions": sum(int(r["stats"].get("Retransmissions(C)", 0) or 0)
                                   for r in results)}


def measure(nodes: int, args, redis_url: str) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-scale-{nodes}-"))
    names = [f"scale-{chr(ord('a') + i)}" for i in range(nodes)]
    ports = [free_port() for _ in names]
    cluster, address = start_cluster(names)
    hss, hss_port = start_hss(workdir)
    per_node = ", ".join(f'"{name}" = ["udp:127.0.0.1:{port}", "tcp:127.0.0.1:{port}"]'
                         for name, port in zip(names[1:], ports[1:]))
    config = registrar_config(
        f"scale{nodes}x{os.getpid()}", workdir, ports[0],
        sip=f"listen_per_node = {{ {per_node} }}",
        hss="emulator = false", cx=f'peers = ["127.0.0.1:{hss_port}"]',
        store=f'backend = "redis"\nurl = "{redis_url}"\nprefix = "scale{nodes}:"',
        ray=f"shards = {args.shards}\nplacement_interval = 1.0")
    try:
        server = start_registrar(config, workdir, ports[-1], address)
        try:
            wait_spread(server, names)
            warm = [(f"warm{i}", EXPIRES) for i in range(args.warm)]
            register_spread(ports, warm, args.setup_rate, workdir)
            watched = Watched(lambda: descendants({cluster.pid, server.process.pid, hss.pid}),
                              lambda pid: False)
            watched.start()
            rows = [(f"user{i}", EXPIRES) for i in range(1, args.users + 1)]
            result = register_spread(ports, rows, args.rate, workdir)
            used = watched.used()
        finally:
            server.process.send_signal(signal.SIGINT)
            server.stop()
    finally:
        stop_hss(hss)
        stop_cluster(cluster)
    by_name = cpu_by_name(used, watched.names)
    total = sum(by_name.values())
    return {"nodes": nodes, **result,
            "cpu_ms_per_register": round(1000 * total / max(result["ok"], 1), 3),
            "cpu_ms_by_process": {n: round(1000 * s / max(result["ok"], 1), 3)
                                  for n, s in sorted(by_name.items(), key=lambda kv: -kv[1])
                                  if s > 0.005 * total}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--users", type=int, default=10000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--warm", type=int, default=1000, help="unmeasured registrations first")
    parser.add_argument("--setup-rate", type=int, default=500)
    parser.add_argument("--json", metavar="FILE", help="write both results here")
    args = parser.parse_args()
    redis = RedisServer().start()
    try:
        results = [measure(n, args, redis.url) for n in (1, args.nodes)]
    finally:
        redis.stop()
    for r in results:
        print(f"\n== {r['nodes']} node(s): {r['ok']} of {r['calls']} REGISTERs answered 200, "
              f"{r['retransmissions']} retransmissions; CPU per REGISTER {r['cpu_ms_per_register']} ms")
        for name, ms in r["cpu_ms_by_process"].items():
            print(f"  {name:<44} {ms:7.3f}")
    ratio = results[1]["cpu_ms_per_register"] / max(results[0]["cpu_ms_per_register"], 1e-9)
    print(f"\nscale efficiency: CPU per REGISTER on {args.nodes} nodes / on 1 node = {ratio:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
