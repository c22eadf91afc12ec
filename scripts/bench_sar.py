"""SAR round trips per second, CxClient -> HSS emulator over loopback TCP.

    python3 scripts/bench_sar.py --requests 20000 --concurrency 64

Without --hss, starts the emulator in a separate process (its own core) with auto-provisioned
users. Each request is a REGISTRATION SAR whose SAA carries the user data.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.hss_emulator.config import split_host_port  # noqa: E402
from transport.diameter.cx import SarRequest, ServerAssignmentType  # noqa: E402
from transport.diameter.router import CxClient, CxUnavailable  # noqa: E402


def start_emulator() -> tuple[subprocess.Popen, int]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    process = subprocess.Popen([sys.executable, "-m", "scripts.hss_emulator.cli", "--listen", "127.0.0.1:0"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    found = re.search(r"ready: Diameter on [^ ]+:(\d+)", line)
    if not found:
        process.kill()
        raise SystemExit(f"the HSS emulator did not start: {line!r}")
    return process, int(found.group(1))


async def run(port: int, host: str, requests: int, concurrency: int, users: int) -> dict:
    client = CxClient([(host, port)], "scscf.ims.test", "ims.test", "ims.test",  # an allowed peer
                      request_timeout=5.0)
    if not await client.start(wait=5.0):
        raise SystemExit(f"no Diameter connection to {host}:{port}")
    next_index = iter(range(requests))
    latencies: list[float] = []
    failures = 0

    async def worker():
        nonlocal failures
        for i in next_index:
            user = f"bench{i % users}@ims.test"
            req = SarRequest(f"sip:{user}", user, "sip:bench.ims.test:5060",
                             ServerAssignmentType.REGISTRATION)
            started = time.perf_counter()
            try:
                answer = await client.sar(req)
            except CxUnavailable:
                failures += 1
                continue
            latencies.append(time.perf_counter() - started)
            failures += not answer.success

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        await client.close()
    latencies.sort()
    return {"rate": requests / elapsed, "elapsed": elapsed, "failures": failures,
            "p50_ms": statistics.median(latencies) * 1e3 if latencies else float("nan"),
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3 if latencies else float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64, help="SARs in flight")
    parser.add_argument("--users", type=int, default=10000, help="distinct subscribers")
    parser.add_argument("--hss", metavar="HOST:PORT", help="use a running emulator/HSS")
    args = parser.parse_args(argv)
    process = None
    if args.hss:
        host, port = split_host_port(args.hss)
    else:
        process, port = start_emulator()
        host = "127.0.0.1"
    try:
        # A first pass provisions the users and warms both sides up.
        asyncio.run(run(port, host, min(args.users, args.requests), args.concurrency, args.users))
        result = asyncio.run(run(port, host, args.requests, args.concurrency, args.users))
    finally:
        if process is not None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=10)
    print(f"{result['rate']:.0f} SAR/s: {args.requests} round trips in {result['elapsed']:.2f} s, "
          f"{args.concurrency} in flight, p50 {result['p50_ms']:.2f} ms, "
          f"p99 {result['p99_ms']:.2f} ms, {result['failures']} failures")
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
