"""REGISTER benchmark: sipp as N distinct UEs against `scscf serve` (or any registrar).

    python3 scripts/bench_register.py --profile initial --users 20000 --rate 1000
        [--profile initial|reregister|steady|overload] [--capacity N] [--auth]
        [--transport udp|tcp] [--stores sqlite,redis,none] [--shards 1] [--transports 1]
        [--target HOST:PORT --watch kamailio,hss_stub] [--set SECTION.KEY=VALUE] [--json FILE]

Profiles (users are user1..userN@ims.test, what Kamailio's stub HSS knows):
  initial     N new registrations at --rate
  reregister  N users registered first (not measured), then the same N again at --rate
  steady      0.9 N registered first, then N REGISTERs at --rate: 80% re-REGISTER, 10% new
              users, 10% de-REGISTER (Expires: 0), shuffled
  overload    initial at 2 x --capacity: goodput against capacity, 503s refused at once

Without --target it starts the HSS emulator as a process of its own (`scscf hss`) and
`scscf serve` (local Ray, `[hss] emulator = false`, `[auth] enabled = false` unless --auth),
one registrar per store, one after the other in the same run, so ratios hold on a noisy box.
With --target it drives that registrar, and CPU and memory are those of the processes whose
command line contains a --watch word (and their children).

Prints a progress line per second, then achieved rate, failures, retransmissions, p50/p99 of
the 200s, CPU per REGISTER by process (every registrar process, Ray's own included, and the
HSS; never sipp), the cores the registrar and sipp kept busy (sipp shares the box), and memory
growth per registered identity, read --settle seconds after the run (replies kept for
retransmissions go after Timer J, 32 s). Not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.harness.ports import free_port  # noqa: E402
from scripts.harness.redis_server import RedisServer  # noqa: E402
from scripts.harness.registrar import registrar_config, start_registrar  # noqa: E402
from scripts.harness.sipp import SIPP, run_registers  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
EXPIRES = 600


# -- /proc: CPU and memory of a set of processes --

def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICKS if fields else 0.0  # utime + stime


def pss_bytes(pid: int) -> int:
    """Proportional set size: memory Kamailio's processes share counts once, not per process."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def process_name(pid: int) -> str:
    """``ray::ImpuShard``, ``raylet``, ``kamailio``... without the pid."""
    words = _cmdline(pid).split()
    if not words:
        return "?"
    if words[0].startswith("ray::"):
        return words[0].split(".")[0]
    if Path(words[0]).name.startswith("python") and len(words) > 1:
        script = next((w for w in words[1:] if not w.startswith("-")), words[1])
        extra = " ".join(w for w in words[1:4] if not w.startswith("-") and w != script)[:30]
        return f"{Path(script).name} {extra}".strip()
    return Path(words[0]).name


def descendants(roots: set[int]) -> set[int]:
    """``roots`` and every process below them (Ray's gcs, raylet and workers under the driver)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    return found


def matching(words: list[str]) -> set[int]:
    me = os.getpid()
    return {int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()
            and int(e.name) != me and not _cmdline(int(e.name)).startswith(("sipp", str(SIPP)))
            and any(w in _cmdline(int(e.name)) for w in words)}


@dataclass
class Watched:
    """The processes whose CPU counts: found again on every sample (Ray starts workers)."""

    find: callable
    memory_of: callable  # pid -> bool: whose memory is the identities'
    base: dict[int, float] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)

    def sample(self) -> dict[int, float]:
        pids = self.find()
        for pid in pids:
            self.names.setdefault(pid, process_name(pid))
        return {pid: cpu_seconds(pid) for pid in pids}

    def start(self) -> None:
        self.base = self.sample()

    def used(self) -> dict[int, float]:
        return {pid: cpu - self.base.get(pid, 0.0) for pid, cpu in self.sample().items()}

    def memory(self) -> int:
        return sum(pss_bytes(pid) for pid in self.find() if self.memory_of(pid))


# -- What each profile sends --

def rows_of(profile: str, users: int, seed: int = 1) -> tuple[list, list, int]:
    """(setup rows, measured rows, identities the measured rows register)."""
    every = [f"user{i}" for i in range(1, users + 1)]
    if profile in ("initial", "overload"):
        return [], [(u, EXPIRES) for u in every], users
    if profile == "reregister":
        rows = [(u, EXPIRES) for u in every]
        return rows, rows, 0
    kept, gone = int(users * 0.8), int(users * 0.1)
    setup = [(u, EXPIRES) for u in every[: kept + gone]]
    measured = ([(u, EXPIRES) for u in every[:kept]] + [(u, 0) for u in every[kept:kept + gone]]
                + [(u, EXPIRES) for u in every[kept + gone:]])
    random.Random(seed).shuffle(measured)
    return setup, measured, 0  # memory per identity: where every identity is new (initial)


def progress_printer(watched: Watched, started: float):
    last = {"ok": 0, "cpu": sum(watched.used().values()), "t": time.monotonic()}

    def show(stats: dict) -> None:
        now, cpu = time.monotonic(), sum(watched.used().values())
        ok = int(stats.get("SuccessfulCall(C)", 0) or 0)  # 200 or 503: the call ended
        dt = max(now - last["t"], 1e-6)
        print(f"  t={now - started:5.0f}s  answered {(ok - last['ok']) / dt:6.0f}/s  "
              f"total {ok:7d}  failed {stats.get('FailedCall(C)', '0'):>5}  "
              f"retrans {stats.get('Retransmissions(C)', '0'):>6}  "
              f"in flight {stats.get('CurrentCall', '0'):>5}  "
              f"cpu {100 * (cpu - last['cpu']) / dt:4.0f}%", flush=True)
        last.update(ok=ok, cpu=cpu, t=now)
    return show


def measure(args, host: str, port: int, watched: Watched, workdir: Path) -> dict:
    setup, measured, identities = rows_of(args.profile, args.users)
    rate = 2 * args.capacity if args.profile == "overload" else args.rate
    warm = [(f"user{i}", EXPIRES) for i in range(args.users + 1, args.users + 1 + args.warm)]
    for rows in (warm, setup):
        if rows:
            run_registers(host, port, args.transport, rows, args.setup_rate, workdir, args.auth)
    memory_before = watched.memory()
    watched.start()
    started = time.monotonic()
    result = run_registers(host, port, args.transport, measured, rate, workdir, args.auth,
                           progress_printer(watched, started))
    result["cpu"] = watched.used()
    result["names"] = watched.names
    if identities and args.settle:  # what only absorbs retransmissions goes after Timer J
        time.sleep(args.settle)
    result["memory"] = watched.memory() - memory_before
    result["identities"] = identities
    result["offered"] = rate
    result["calls"] = len(measured)
    return result


# -- Our registrar, with the emulator in its own process --

def start_hss(workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [sys.executable, "-m", "scripts.cli", "hss", "--listen", f"127.0.0.1:{port}"]
    hss = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = hss.stdout.readline()
    if "ready" not in line:
        hss.kill()
        raise RuntimeError(f"scscf hss did not start: {line}")
    return hss, port


def stop_hss(hss: subprocess.Popen) -> None:
    hss.send_signal(signal.SIGTERM)
    hss.wait(timeout=30)


def overrides(settings: list[str]) -> dict[str, str]:
    """--set registrar.sar_reregistration_interval=0 -> {"registrar": "sar_...=0"}."""
    sections: dict[str, list[str]] = {}
    for setting in settings:
        key, _, value = setting.partition("=")
        section, _, name = key.partition(".")
        sections.setdefault(section, []).append(f"{name} = {value}")
    return {section: "\n".join(lines) for section, lines in sections.items()}


def bench_ours(args, store: str, redis_url: str) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-register-{store}-"))
    hss, hss_port = start_hss(workdir)
    sip = free_port()
    extra = overrides(args.set)
    extra.setdefault("hss", "")
    extra["hss"] += "\nemulator = false"
    extra["cx"] = extra.get("cx", "") + f'\npeers = ["127.0.0.1:{hss_port}"]'
    extra["store"] = extra.get("store", "") + f'\nbackend = "{store}"\nurl = "{redis_url}"'
    extra["ray"] = (extra.get("ray", "") + f"\nshards = {args.shards}\n"
                    f"transports_per_node = {args.transports}")
    if args.auth:
        extra["auth"] = extra.get("auth", "") + '\nenabled = true\nregistration_default_algorithm = "MD5"'
    config = registrar_config(f"bench{os.getpid()}", workdir, sip, **extra)
    try:
        registrar = start_registrar(config, workdir, sip, None)
        try:
            roots = {registrar.process.pid, hss.pid}
            watched = Watched(lambda: descendants(roots),
                              lambda pid: process_name(pid).startswith("ray::ImpuShard"))
            return measure(args, "127.0.0.1", sip, watched, workdir)
        finally:
            registrar.process.send_signal(signal.SIGINT)
            registrar.stop()
    finally:
        stop_hss(hss)


def bench_target(args) -> dict:
    host, _, port = args.target.rpartition(":")
    words = args.watch.split(",")
    watched = Watched(lambda: descendants(matching(words)), lambda pid: True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-register-target-"))
    return measure(args, host, int(port), watched, workdir)


# -- Report --

def cpu_by_name(cpu: dict[int, float], names: dict[int, str]) -> dict[str, float]:
    """CPU seconds per process name (every ray::ImpuShard together...), pids folded."""
    by_name: dict[str, float] = {}
    for pid, seconds in cpu.items():
        name = names.get(pid, "?")
        by_name[name] = by_name.get(name, 0.0) + seconds
    return by_name


def summary(args, label: str, result: dict) -> dict:
    responses, rtts, span = result["responses"], result["rtts"], result["span"]
    ok, refused = responses.get(200, 0), responses.get(503, 0)
    failed = result["calls"] - ok - refused
    by_name = cpu_by_name(result["cpu"], result["names"])
    total = sum(by_name.values())
    registered = min(result["identities"], ok)  # a 503 registered nobody
    return {
        "registrar": label, "profile": args.profile, "offered_per_s": result["offered"],
        "calls": result["calls"], "ok": ok, "refused_503": refused, "failed": failed,
        "failed_pct": round(100 * failed / max(result["calls"], 1), 3),
        "retransmissions": int(result["stats"].get("Retransmissions(C)", 0) or 0),
        "achieved_per_s": round(ok / span, 1) if span else 0.0, "seconds": round(span, 2),
        "p50_ms": _percentile(rtts, 0.5), "p99_ms": _percentile(rtts, 0.99),
        "cpu_seconds": {name: round(s, 3) for name, s in sorted(by_name.items(), key=lambda kv: -kv[1])},
        "cpu_ms_per_register": round(1000 * total / max(ok, 1), 3),
        # cores busy while sipp ran: the registrar's against sipp's, on the same box
        "registrar_cores": round(total / result["elapsed"], 2),
        "sipp_cores": round(result["sipp_cpu_seconds"] / result["elapsed"], 2),
        "memory_growth_bytes": result["memory"],
        "bytes_per_identity": round(result["memory"] / registered) if registered else None,
    }


def _percentile(values: list[float], q: float) -> float | None:
    return round(values[min(len(values) - 1, int(len(values) * q))], 2) if values else None


def report(s: dict) -> None:
    print(f"\n== {s['registrar']}, profile {s['profile']}: offered {s['offered_per_s']}/s, "
          f"{s['calls']} REGISTERs")
    print(f"achieved {s['achieved_per_s']:.0f}/s (200 OK) over {s['seconds']:.1f} s; "
          f"503 {s['refused_503']}; failed {s['failed']} ({s['failed_pct']:.2f}%); "
          f"retransmissions {s['retransmissions']}")
    print(f"response time of the 200s: p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms")
    print("CPU per REGISTER (ms) by process:")
    for name, seconds in s["cpu_seconds"].items():
        if seconds >= 0.01:
            print(f"  {name:45s} {1000 * seconds / max(s['ok'], 1):7.3f}")
    print(f"  {'total':45s} {s['cpu_ms_per_register']:7.3f}")
    print(f"cores busy while sipp ran: registrar {s['registrar_cores']:.2f}, sipp "
          f"{s['sipp_cores']:.2f} (not counted above), of {os.cpu_count()}")
    if s["bytes_per_identity"] is not None:
        print(f"memory grew {s['memory_growth_bytes'] / 2**20:.1f} MiB: "
              f"{s['bytes_per_identity']} bytes per registered identity")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--profile", choices=("initial", "reregister", "steady", "overload"),
                        default="initial")
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--capacity", type=int, default=0, help="overload: offers twice this")
    parser.add_argument("--setup-rate", type=int, default=500, help="rate of unmeasured phases")
    parser.add_argument("--warm", type=int, default=1000, help="unmeasured registrations first")
    parser.add_argument("--settle", type=float, default=35.0,
                        help="seconds after the run before memory is read (Timer J is 32 s)")
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    parser.add_argument("--auth", action="store_true", help="SIP Digest: sipp answers the 401s")
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--transports", type=int, default=1)
    parser.add_argument("--stores", default="sqlite", help="comma-separated: sqlite,redis,none")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a TOML setting of our registrar, e.g. ray.cx_pool=2")
    parser.add_argument("--target", metavar="HOST:PORT", help="measure this registrar instead")
    parser.add_argument("--watch", default="kamailio,hss_stub",
                        help="with --target: command-line words of its processes")
    parser.add_argument("--json", metavar="FILE", help="write the summaries here")
    args = parser.parse_args()
    if SIPP is None:
        sys.exit("sipp is not installed (Debian package sip-tester)")
    if args.profile == "overload" and args.capacity <= 0:
        parser.error("--profile overload needs --capacity")
    if args.target:
        summaries = [summary(args, args.target, bench_target(args))]
    else:
        stores = args.stores.split(",")
        redis = RedisServer().start() if "redis" in stores else None
        try:
            summaries = [summary(args, f"ray-scscf ({store})",
                                 bench_ours(args, store, redis.url if redis else ""))
                         for store in stores]
        finally:
            if redis:
                redis.stop()
    for s in summaries:
        report(s)
    if args.json:
        Path(args.json).write_text(json.dumps(summaries, indent=1) + "\n")
    return 0 if all(s["failed_pct"] < 1 for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
