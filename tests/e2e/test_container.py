"""scripts/container/Dockerfile builds, and the image runs the registrar as a non-root user
until `docker stop`. Skipped where no container runtime answers."""
from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def docker_works() -> str:
    """'' when the docker daemon answers, else why not."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    return "" if info.returncode == 0 else f"the docker daemon is not running: {info.stderr[-200:]}"


pytestmark = pytest.mark.e2e


def test_the_image_builds_and_serves_as_a_non_root_user():
    why_not = docker_works()
    if why_not:
        pytest.skip(why_not)
    tag, name = f"ray-scscf-test:{uuid.uuid4().hex[:8]}", f"scscf-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "build", "-f", "scripts/container/Dockerfile", "-t", tag, "."],
                   cwd=ROOT, check=True, timeout=1800)
    try:
        subprocess.run(["docker", "run", "-d", "--name", name, "--shm-size=1g", tag],
                       check=True, capture_output=True, timeout=120)
        deadline = time.monotonic() + 180
        while "ready: sip" not in (logs := _logs(name)):
            assert time.monotonic() < deadline, logs[-3000:]
            time.sleep(1)
        assert "udp:0.0.0.0:5060" in logs
        user = subprocess.run(["docker", "exec", name, "id", "-un"], capture_output=True,
                              text=True, check=True).stdout.strip()
        assert user == "scscf"
        status = subprocess.run(["docker", "exec", name, "scscf", "status", "--config",
                                 "/etc/scscf/scscf.toml"], capture_output=True, text=True)
        assert status.returncode == 0, status.stderr
        assert "I_Open" in status.stdout
        subprocess.run(["docker", "stop", "-t", "60", name], check=True, capture_output=True)
        assert "stopping" in _logs(name)
        exit_code = subprocess.run(["docker", "inspect", "-f", "{{.State.ExitCode}}", name],
                                   capture_output=True, text=True, check=True).stdout.strip()
        assert exit_code == "0"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def _logs(name: str) -> str:
    done = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
    return done.stdout + done.stderr
