"""`scscf serve` as a process of its own: its TOML written for loopback, started, waited for
until it prints `ready`, stopped; the HSS emulator alone (`scscf hss`) likewise, and its log of
the SARs it received."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from actors.config import load_config
from scripts.harness.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Registrar:
    """A running `scscf serve`: its process, SIP port, config file and every line it printed."""

    process: subprocess.Popen
    sip_port: int
    config: Path
    output: list[str]

    @property
    def rpc_token(self) -> str | None:
        """The token its RPC requires, found through its config as `scscf rpc` finds it."""
        from actors.ops.rpc_access import client_token

        return client_token(load_config(self.config).rpc)

    def rpc(self, method: str, *params: str) -> dict:
        """One JSON-RPC call to its `[rpc] listen`: the response object."""
        from actors.ops.rpc import call
        from scripts.cli import rpc_url

        return call(rpc_url(load_config(self.config).rpc.listen), method, list(params),
                    self.rpc_token)

    def stop(self) -> int:
        return _terminate(self.process)


def hss_sar_log(admin_port: int) -> list[dict]:
    """Every SAR the HSS emulator received, from its admin interface ([hss] admin_listen)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/sar_log", timeout=5) as answer:
        return json.load(answer)


def rpc_result(server: Registrar, method: str, *params: str):
    """The result of one JSON-RPC call to the registrar (with its token); an error raises."""
    reply = server.rpc(method, *params)
    if "error" in reply:
        raise AssertionError(f"{method}: {reply['error']}")
    return reply["result"]


def rpc_statistics(server: Registrar, *names: str) -> dict[str, int]:
    """``stats.get_statistics`` as a dict of Kamailio names."""
    lines = rpc_result(server, "stats.get_statistics", *names)
    return {name: int(value) for name, value in (line.split(" = ") for line in lines)}


def registrar_config(namespace: str, workdir: Path, sip_port: int, **extra: str) -> str:
    """TOML for a registrar under test: loopback ports of its own, its data under ``workdir``,
    its own Ray namespace. ``extra`` adds lines to a section: registrar="min_expires = 1".
    Authentication is off unless ``auth="enabled = true"``: the UEs of most tests and
    benchmarks register without answering a challenge."""
    sections = {
        "sip": f'listen = ["udp:127.0.0.1:{sip_port}", "tcp:127.0.0.1:{sip_port}"]',
        "registrar": "",
        "cx": "",
        "hss": f'listen = "127.0.0.1:{free_port()}"',
        "store": f'path = "{workdir / "data"}"',
        "rpc": f'listen = "127.0.0.1:{free_port()}"',
        "metrics": f'listen = "127.0.0.1:{free_port()}"',
        # Two shards: implicit sets then span shards, and a test sees what one shard routes
        # to another.
        "ray": f'namespace = "{namespace}"\nshards = 2',
        "auth": "enabled = false",
    }
    for name, lines in extra.items():
        given = {line.split("=")[0].strip() for line in lines.strip().splitlines()}
        kept = [line for line in sections.get(name, "").splitlines()
                if line.split("=")[0].strip() not in given]  # a key given here replaces ours
        sections[name] = "\n".join(kept + [lines.strip()]).strip()
    return "\n".join(f"[{name}]\n{body}" for name, body in sections.items() if body) + "\n"


def start_registrar(config_text: str, workdir: Path, sip_port: int, address: str | None,
                    timeout: float = 90.0, environment: dict[str, str] | None = None) -> Registrar:
    """Runs `scscf serve` with the given TOML and waits for its `ready` line. ``address``: the
    Ray cluster to join as a driver; None starts a local Ray of its own. ``environment``
    replaces this process's environment for it."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "scscf.toml"
    config.write_text(config_text)
    cmd = [sys.executable, "-m", "scripts.cli", "serve", "--config", str(config)]
    if address:
        cmd += ["--address", address]
    # Run from the work directory, so the default data directory lands there too.
    env = {**(os.environ if environment is None else environment),
           "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env)
    output, ready = _follow(process, lambda line: line.startswith("ready"))
    deadline = time.monotonic() + timeout
    while not ready.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("scscf serve did not become ready:\n" + "".join(output[-60:]))
    return Registrar(process, sip_port, config, output)


def start_with_subscribers(namespace: str, workdir: Path, subscribers: str, address: str | None,
                           **extra: str) -> Registrar:
    """`scscf serve` whose HSS emulator serves ``subscribers`` (TOML) and answers on an admin
    port (``hss_admin``), with JSON-RPC on; ``extra`` as for registrar_config."""
    (workdir / "subscribers.toml").write_text(subscribers)
    sip, admin, rpc = free_port(), free_port(), free_port()
    hss = f"""subscribers = "{workdir / 'subscribers.toml'}"
admin_listen = "127.0.0.1:{admin}"
{extra.pop("hss", "")}"""
    config = registrar_config(namespace, workdir, sip, rpc=f'listen = "127.0.0.1:{rpc}"', hss=hss,
                              **extra)
    server = start_registrar(config, workdir, sip, address)
    server.hss_admin = admin
    return server


def show_impu(server: Registrar, impu: str) -> dict:
    """``ulscscf.showimpu`` of a registrar started by start_with_subscribers."""
    return server.rpc("ulscscf.showimpu", impu)["result"]


def sar_types(server: Registrar, impu: str) -> list[int]:
    """The assignment types of the SARs the HSS emulator received for ``impu``, in order."""
    return [entry["assignment_type"] for entry in hss_sar_log(server.hss_admin)
            if entry["public_identity"] == impu]


@dataclass
class HssProcess:
    """The HSS emulator as a process of its own (`scscf hss`), so a test can take it away."""

    process: subprocess.Popen

    def stop(self) -> int:
        return _terminate(self.process)


def start_hss(config: Path, port: int, admin_port: int, timeout: float = 30.0) -> HssProcess:
    """`scscf hss` with ``config`` on loopback ``port`` (Diameter) and ``admin_port``; returns
    once it prints its ready line."""
    cmd = [sys.executable, "-m", "scripts.hss_emulator.cli", "--config", str(config),
           "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin_port}"]
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    output, ready = _follow(process, lambda line: "ready" in line)
    if not ready.wait(timeout):
        process.kill()
        process.wait()
        raise RuntimeError("scscf hss did not become ready:\n" + "".join(output))
    return HssProcess(process)


def _follow(process: subprocess.Popen, is_ready) -> tuple[list[str], threading.Event]:
    """Every line the process prints, and an event set at the first that ``is_ready``."""
    output: list[str] = []
    ready = threading.Event()

    def pump():
        for line in process.stdout:
            output.append(line)
            if is_ready(line):
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    return output, ready


def _terminate(process: subprocess.Popen) -> int:
    """SIGTERM, then SIGKILL after 30 s; the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
