"""Starts and stops the local Ray cluster of scripts/harness/local_cluster.py from a test or a
benchmark: that module runs in a process of its own (it sets Ray's health-check environment
at import), so callers reach it through this one."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_cluster(names: list[str]) -> tuple[subprocess.Popen, str]:
    """The cluster's process and its address, once every named node is up."""
    process = subprocess.Popen([sys.executable, "-m", "scripts.harness.local_cluster", *names],
                               cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    address = process.stdout.readline().strip()
    if not address:
        process.kill()
        process.wait()
        raise RuntimeError("the local Ray cluster did not start")
    return process, address


def stop_cluster(process: subprocess.Popen) -> None:
    process.stdin.close()  # the cluster's process stops the nodes it started
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.terminate()
        process.wait(timeout=30)
