"""sipp as the UEs: the command line every run shares, and REGISTERs of many distinct users at
an offered rate (scripts/sipp/register.xml), with sipp's statistics and response times."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from scripts.harness.ports import free_port

SIPP = shutil.which("sipp")
SCENARIOS = Path(__file__).resolve().parents[1] / "sipp"


def sipp_command(scenario: Path, port: int, transport: str, *options: str) -> list[str]:
    """sipp running ``scenario`` against 127.0.0.1:``port`` over 'udp' or 'tcp' (one socket),
    from a free loopback port of its own, reading no keyboard."""
    return [SIPP, f"127.0.0.1:{port}", "-sf", str(scenario),
            "-t", "u1" if transport == "udp" else "t1", "-i", "127.0.0.1",
            "-p", str(free_port()), "-nostdin", *options]


def register_users(port: int, transport: str, users: int, rate: int, prefix: str,
                   workdir: Path, expires: int = 600) -> dict:
    """Registers ``users`` distinct users <prefix><n>@ims.test at ``rate`` per second.

    Returns elapsed seconds, every response time (ms, sorted), sipp's last statistics line
    (``SuccessfulCall(C)``, ``FailedCall(C)``...) and sipp's exit status.
    """
    csv = workdir / f"{prefix}.csv"
    csv.write_text("SEQUENTIAL\n" + "".join(f"{prefix}{i};ims.test;{expires}\n" for i in range(users)))
    cmd = sipp_command(
        SCENARIOS / "register.xml", port, transport, "-inf", str(csv), "-r", str(rate),
        "-m", str(users), "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-fd", "1",
        "-timeout", str(max(60, users // max(rate, 1) * 3)), "-max_recv_loops", "10000",
        "-l", str(max(rate * 2, 100)),
    )
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    rtts = []
    for rtt in workdir.glob("register_*_rtt.csv"):
        for line in rtt.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                rtts.append(float(parts[1]))
        rtt.unlink()
    stats = {}
    for stat in workdir.glob("register_*_.csv"):
        lines = stat.read_text().splitlines()
        header, last = lines[0].split(";"), lines[-1].split(";")
        stats = dict(zip(header, last))
        stat.unlink()
    return {"elapsed": elapsed, "rtts": sorted(rtts), "stats": stats, "returncode": proc.returncode}
