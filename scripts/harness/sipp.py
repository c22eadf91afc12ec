"""sipp as the UEs: the command line every run shares, and REGISTERs of many users at an offered
rate (scripts/sipp/register.xml, or register_auth.xml answering SIP Digest challenges), with
sipp's statistics, per-message counts and response times."""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from scripts.harness.ports import free_port

SIPP = shutil.which("sipp")
SCENARIOS = Path(__file__).resolve().parents[1] / "sipp"
# Any sip:NAME@ims.test is known to the HSS emulator; Kamailio's stub HSS knows user1..userN.
DOMAIN = "ims.test"
PASSWORD = "imstest"  # the HSS emulator's, for every user


# One sipp socket stands for every UE of a run and reads between its sends; a registrar that
# answers a batch at once fills sipp's default 64 KiB (about 50 answers) and the kernel drops
# the rest, which sipp then sends again. The kernel caps this at net.core.rmem_max.
UE_SOCKET_BUFFER = 4 * 2**20


def sipp_command(scenario: Path, port: int, transport: str, *options: str,
                 host: str = "127.0.0.1", local_port: int | None = None) -> list[str]:
    """sipp running ``scenario`` against ``host``:``port`` over 'udp' or 'tcp' (one socket),
    from loopback ``local_port`` (default: a free one), reading no keyboard."""
    return [SIPP, f"{host}:{port}", "-sf", str(scenario),
            "-t", "u1" if transport == "udp" else "t1", "-i", "127.0.0.1",
            "-p", str(local_port or free_port()), "-nostdin", *options]


def register_users(port: int, transport: str, users: int, rate: int, prefix: str,
                   workdir: Path, expires: int = 600) -> dict:
    """Registers ``users`` distinct users <prefix><n>@ims.test at ``rate`` per second."""
    rows = [(f"{prefix}{i}", expires) for i in range(users)]
    return run_registers("127.0.0.1", port, transport, rows, rate, workdir)


def run_registers(host: str, port: int, transport: str, rows: list[tuple[str, int]], rate: int,
                  workdir: Path, auth: bool = False,
                  progress: Callable[[dict], None] | None = None) -> dict:
    """One REGISTER per row (user name, expires; 0 de-registers) at ``rate`` per second.

    ``progress`` gets sipp's statistics line once a second while it runs. Returns elapsed
    seconds, every 200's response time (ms, sorted), the seconds from the first 200 to the
    last (``span``), sipp's last statistics line
    (``SuccessfulCall(C)``, ``FailedCall(C)``, ``Retransmissions(C)``...), the final responses
    counted by status (``responses``), sipp's exit status and the CPU seconds sipp itself used
    (``sipp_cpu_seconds``: on a shared box the load generator's CPU is not the registrar's).
    """
    scenario = SCENARIOS / ("register_auth.xml" if auth else "register.xml")
    csv = workdir / "registers.csv"
    csv.write_text("SEQUENTIAL\n" + "".join(
        f"{user};{DOMAIN};{expires}{_credentials(user) if auth else ''}\n" for user, expires in rows))
    for old in workdir.glob(f"{scenario.stem}_*"):
        old.unlink()
    calls = len(rows)
    cmd = sipp_command(
        scenario, port, transport, "-inf", str(csv), "-r", str(rate), "-m", str(calls),
        "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-fd", "1", "-trace_counts",
        "-timeout", str(max(60, calls // max(rate, 1) * 3)), "-max_recv_loops", "10000",
        "-l", str(max(rate * 2, 100)), "-buff_size", str(UE_SOCKET_BUFFER), host=host,
    )
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    while (usage := reaped(proc)) is None:
        time.sleep(1.0)
        if progress is not None:
            stats = _last_stats(workdir, scenario.stem)
            if stats:
                progress(stats)
    elapsed = time.monotonic() - started
    rtts, answered_at = [], []
    for rtt in workdir.glob(f"{scenario.stem}_*_rtt.csv"):
        for line in rtt.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                answered_at.append(float(parts[0]) / 1000)
                rtts.append(float(parts[1]))
    span = max(answered_at) - min(answered_at) if len(answered_at) > 1 else elapsed
    return {"elapsed": elapsed, "rtts": sorted(rtts), "span": span or elapsed,
            "stats": _last_stats(workdir, scenario.stem),
            "responses": _responses(workdir, scenario.stem), "returncode": proc.returncode,
            "sipp_cpu_seconds": usage.ru_utime + usage.ru_stime,
            "stderr": proc.stderr.read()[-2000:] if proc.stderr else ""}


def reaped(proc: subprocess.Popen) -> resource.struct_rusage | None:
    """None while ``proc`` runs; once it has ended, its own resource usage (wait4 reports that
    child alone, where RUSAGE_CHILDREN would add every child reaped meanwhile)."""
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    if pid == 0:
        return None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage


def _credentials(user: str) -> str:
    """The injection field register_auth.xml answers with: sipp expands no field inside
    [authentication], so each line carries its own keyword."""
    return f";[authentication username={user}@{DOMAIN} password={PASSWORD}]"


def _last_stats(workdir: Path, stem: str) -> dict[str, str]:
    for stat in workdir.glob(f"{stem}_*_.csv"):
        lines = stat.read_text().splitlines()
        if len(lines) >= 2:
            return dict(zip(lines[0].split(";"), lines[-1].split(";")))
    return {}


def _responses(workdir: Path, stem: str) -> dict[int, int]:
    """Final responses by status, from -trace_counts (columns like ``3_200_Recv``); the 401s
    of a challenge are not final."""
    counts: dict[int, int] = {}
    for path in workdir.glob(f"{stem}_*_counts.csv"):
        lines = path.read_text().splitlines()
        if len(lines) < 2:
            continue
        for name, value in zip(lines[0].split(";"), lines[-1].split(";")):
            parts = name.split("_")
            if len(parts) == 3 and parts[2] == "Recv" and parts[1].isdigit() and parts[1] != "401":
                counts[int(parts[1])] = counts.get(int(parts[1]), 0) + int(value or 0)
    return counts
