"""REGISTER throughput benchmark: sipp as N distinct UEs against `scscf serve` and its HSS emulator.

    python3 scripts/bench_register.py --users 20000 --rate 1000 [--transport udp|tcp]
        [--stores sqlite,redis,none]

Starts the registrar (local Ray, embedded HSS emulator), warms it up, runs sipp at the offered
rate and prints achieved REGISTER/s, failures, p50/p99 response time and the CPU each process
used (from /proc, so it needs no extra package). With several stores, one registrar after the
other in the same run, so their ratio holds on a noisy machine. Not a test.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.harness.ports import free_port  # noqa: E402
from scripts.harness.redis_server import RedisServer  # noqa: E402
from scripts.harness.registrar import start_registrar  # noqa: E402
from scripts.harness.sipp import SIPP, register_users  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def process_table(names: tuple[str, ...]) -> dict[int, str]:
    """pid -> short name for every process whose command line mentions one of ``names``."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(name in cmdline for name in names):
            title = cmdline.split()[0].split(".")[0] if cmdline.startswith("ray::") else cmdline.split()[0]
            table[int(entry.name)] = f"{Path(title).name} [{entry.name}]"
    return table


def bench(args, store: str, redis_url: str) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-register-{store}-"))
    sip, hss = free_port(), free_port()
    config = f"""
[sip]
listen = ["udp:127.0.0.1:{sip}", "tcp:127.0.0.1:{sip}"]
[hss]
listen = "127.0.0.1:{hss}"
[store]
backend = "{store}"
path = "{workdir / 'data'}"
url = "{redis_url}"
[ray]
namespace = "bench"
shards = {args.shards}
transports_per_node = {args.transports}
"""
    registrar = start_registrar(config, workdir, sip, None)
    try:
        register_users(sip, args.transport, min(2000, args.users), min(args.rate, 500), "warm",
                       workdir)
        watched = process_table(("ray::", "gcs_server", "raylet", "redis-server"))
        watched[registrar.process.pid] = "scscf serve (driver + HSS emulator)"
        before = {pid: cpu_seconds(pid) for pid in watched}
        shards = [pid for pid, name in watched.items() if name.startswith("ray::ImpuShard")]
        memory_before = sum(rss_bytes(pid) for pid in shards)
        result = register_users(sip, args.transport, args.users, args.rate, "user", workdir)
        result["cpu"] = {watched[pid]: cpu_seconds(pid) - before[pid] for pid in watched}
        result["shard_memory"] = sum(rss_bytes(pid) for pid in shards) - memory_before
    finally:
        registrar.process.send_signal(signal.SIGINT)
        registrar.stop()
    return result


def report(args, store: str, result: dict) -> float:
    stats, rtts, elapsed = result["stats"], result["rtts"], result["elapsed"]
    ok = int(stats.get("SuccessfulCall(C)", len(rtts)))
    failed = int(stats.get("FailedCall(C)", args.users - ok))
    print(f"\n== store {store}: offered {args.rate}/s, {args.users} distinct users over "
          f"{args.transport}, {args.shards} shards, {args.transports} transport(s)")
    print(f"achieved {ok / elapsed:.0f} REGISTER/s over {elapsed:.1f} s; "
          f"failed {failed} ({100 * failed / max(args.users, 1):.2f}%)")
    if rtts:
        p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
        print(f"response time p50 {statistics.median(rtts):.2f} ms, p99 {p99:.2f} ms")
    print("CPU during the run (seconds, % of one core):")
    for name, seconds in sorted(result["cpu"].items(), key=lambda kv: -kv[1]):
        if seconds >= 0.01:
            print(f"  {name:45s} {seconds:7.2f}  {100 * seconds / elapsed:5.1f}%")
    total = sum(result["cpu"].values())
    print(f"shard memory grew {result['shard_memory'] / 2**20:.1f} MiB: "
          f"{result['shard_memory'] / max(ok, 1):.0f} bytes per registered identity")
    print(f"  {'total':45s} {total:7.2f}  -> {1000 * total / max(ok, 1):.3f} ms CPU per REGISTER")
    return ok / elapsed if failed <= args.users // 100 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--transports", type=int, default=1)
    parser.add_argument("--stores", default="sqlite", help="comma-separated: sqlite,redis,none")
    args = parser.parse_args()
    if SIPP is None:
        sys.exit("sipp is not installed (Debian package sip-tester)")
    stores = args.stores.split(",")
    redis = RedisServer().start() if "redis" in stores else None
    try:
        rates = {store: report(args, store, bench(args, store, redis.url if redis else ""))
                 for store in stores}
    finally:
        if redis:
            redis.stop()
    if len(rates) > 1 and rates.get("none"):
        print("\nREGISTER/s relative to no store: " + ", ".join(
            f"{store} {rate / rates['none']:.2f}" for store, rate in rates.items()))
    return 0 if all(rates.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
