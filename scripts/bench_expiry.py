"""Expiry timeliness: how long after its expiry each binding is really gone.

    python3 scripts/bench_expiry.py --users 1000 --expires 3

Starts a Ray runtime and `scscf serve` on it (min_expires lowered to 1), registers N distinct
users with sipp, waits for their bindings to expire and prints the distribution of the delay
between each binding's expiry and its removal, as the shards measured it, plus how many SARs
with TIMEOUT_DEREGISTRATION the HSS emulator saw. Not a test.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from actors.config import config_from_dict  # noqa: E402
from actors.ops.ray_environment import prepare_ray_environment  # noqa: E402

prepare_ray_environment(config_from_dict({}))  # token authentication, as scscf serve has it
import ray  # noqa: E402

from actors.vocabulary import shard_name  # noqa: E402
from scripts.harness.ports import free_port  # noqa: E402
from scripts.harness.registrar import hss_sar_log, registrar_config, start_registrar  # noqa: E402
from scripts.harness.sipp import register_users  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--expires", type=int, default=3)
    parser.add_argument("--rate", type=int, default=500)
    args = parser.parse_args()

    ray.init(address="local", namespace="bench", include_dashboard=False, logging_level="ERROR")
    workdir = Path(tempfile.mkdtemp(prefix="bench-expiry-"))
    sip, admin = free_port(), free_port()
    config = registrar_config("bench-expiry", workdir, sip, registrar="min_expires = 1",
                              hss=f'admin_listen = "127.0.0.1:{admin}"')
    registrar = start_registrar(config, workdir, sip, ray.get_runtime_context().gcs_address)
    try:
        result = register_users(sip, "udp", args.users, args.rate, "exp", workdir,
                                expires=args.expires)
        time.sleep(args.expires + 2)
        shards = [ray.get_actor(shard_name(i), namespace="bench-expiry") for i in range(2)]
        lags = sorted(lag for s in shards for lag in ray.get(s.recent_expiry_lags.remote()))
        left = sum(c["contacts"] for c in ray.get([s.counts.remote() for s in shards]))
        timeouts = sum(e["assignment_type_name"] == "TIMEOUT_DEREGISTRATION"
                       for e in hss_sar_log(admin))
    finally:
        registrar.stop()
        ray.shutdown()
    ok = int(result["stats"].get("SuccessfulCall(C)", 0))
    print(f"registered {ok} bindings with expires={args.expires}; {len(lags)} expired, {left} left")
    if lags:
        pick = lambda q: lags[min(len(lags) - 1, int(len(lags) * q))]  # noqa: E731
        print(f"removal delay after expiry: min {lags[0] * 1000:.1f} ms, p50 "
              f"{statistics.median(lags) * 1000:.1f} ms, p99 {pick(0.99) * 1000:.1f} ms, "
              f"max {lags[-1] * 1000:.1f} ms")
    print(f"SAR TIMEOUT_DEREGISTRATION seen by the HSS: {timeouts}")
    return 0 if lags and lags[-1] < 1.0 and left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
