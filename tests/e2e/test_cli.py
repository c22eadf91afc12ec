"""The README's first command: `scscf serve` with embedded defaults; clear config and startup
errors; `scscf status` and `scscf rpc` finding the registrar through its config; the log."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.harness.ports import free_port
from scripts.harness.registrar import registrar_config, start_registrar
from scripts.harness.sipp import SIPP
from tests.e2e.sipp import received_messages

ROOT = Path(__file__).resolve().parents[2]
# The scscf of the Python running the tests (its venv), else the module itself.
SCSCF = ([str(Path(sys.executable).parent / "scscf")]
         if (Path(sys.executable).parent / "scscf").exists() else [sys.executable, "-m", "scripts.cli"])


def scscf(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(SCSCF + list(args), cwd=cwd, capture_output=True, text=True, timeout=120)


def port_free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is fine
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


@pytest.mark.e2e
@pytest.mark.skipif(SIPP is None, reason="sipp is not installed")
def test_serve_with_embedded_defaults_registers_and_stops_cleanly(tmp_path):
    if not (port_free(5060) and port_free(3868) and port_free(5081)):
        pytest.skip("the default ports 5060/3868/5081 are in use on this machine")
    # Every default, the environment's included: no Ray token anywhere (a home of its own).
    bare = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    home = tmp_path / "home"
    server = start_registrar("", tmp_path, 5060, address=None, environment={**bare, "HOME": str(home)})
    try:
        assert any("udp:127.0.0.1:5060" in line and "tcp:127.0.0.1:5060" in line for line in server.output)
        # The README's sipp example, as written: challenged (authentication is on by default),
        # then registered with the emulator's test password.
        readme = subprocess.run(
            [SIPP, "127.0.0.1:5060", "-sf", str(ROOT / "scripts/sipp/register_one.xml"),
             "-m", "1", "-p", "5099", "-trace_msg", "-message_file",
             str(tmp_path / "readme.log"), "-nostdin", "-timeout", "30", "-timeout_error"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert readme.returncode == 0, readme.stderr[-2000:]
        unauthorised, ok = [m for m in received_messages(tmp_path / "readme.log")]
        assert unauthorised.status == 401
        assert 'algorithm=MD5' in unauthorised.headers.get("WWW-Authenticate")
        assert ok.status == 200
        assert ok.headers.get("P-Associated-URI") == "<sip:alice@ims.test>"
        assert ok.headers.get("Service-Route") == "<sip:orig@scscf.ims.test:5060;lr>"
    finally:
        server.process.send_signal(signal.SIGINT)
        assert server.stop() == 0
    assert "stopping\n" in server.output
    assert port_free(5060) and port_free(3868) and port_free(5081), (
        "something still holds the registrar's ports")
    token = home / ".ray" / "auth_token"  # Ray's token authentication was on, with a token made
    assert len(token.read_text()) == 64 and token.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("text, message", [
    ("[registrar]\nmin_expire = 5\n", "unknown key registrar.min_expire"),
    ("[sip]\nlisten = [\"udp:127.0.0.1\"]\n", "sip.listen: 'udp:127.0.0.1'"),
    ("[registrar\n", "is not valid TOML"),
])
def test_malformed_config_exits_2_naming_the_key(tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    proc = scscf("serve", "--config", str(config))
    assert proc.returncode == 2
    assert message in proc.stderr


def test_log_level_is_checked_before_anything_starts():
    proc = scscf("serve", "--log-level", "loud")
    assert proc.returncode == 2 and "invalid choice: 'loud'" in proc.stderr


@pytest.mark.parametrize("busy", ["hss.listen", "rpc.listen", "sip.listen", "metrics.listen"])
def test_a_port_in_use_is_one_line_naming_the_key(tmp_path, busy):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    keys = ("sip.listen", "hss.listen", "rpc.listen", "metrics.listen")
    sip, hss, rpc, metrics = (taken if busy == key else free_port() for key in keys)
    config = tmp_path / "scscf.toml"
    config.write_text(registrar_config("e2e-busy", tmp_path, sip, hss=f'listen = "127.0.0.1:{hss}"',
                                       rpc=f'listen = "127.0.0.1:{rpc}"',
                                       metrics=f'listen = "127.0.0.1:{metrics}"'))
    try:
        proc = scscf("serve", "--config", str(config), cwd=tmp_path)
    finally:
        holder.close()
    spec = {"sip.listen": f"tcp:127.0.0.1:{taken}"}.get(busy, f"127.0.0.1:{taken}")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"scscf: {busy}: {spec}: address already in use"
    assert "Traceback" not in proc.stderr


def test_a_broken_subscribers_file_is_one_line_naming_the_key(tmp_path):
    subscribers = tmp_path / "subscribers.toml"
    subscribers.write_text("[[subscriber]\n")
    config = tmp_path / "scscf.toml"
    config.write_text(registrar_config("e2e-broken", tmp_path, free_port(),
                                       hss=f'subscribers = "{subscribers}"'))
    proc = scscf("serve", "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"scscf: hss.subscribers: {subscribers}: ") and "line 1" in line


@pytest.mark.e2e
def test_status_and_rpc_reach_the_registrar_named_by_its_config(ray_address, tmp_path):
    """A second HSS peer that nobody serves: status shows it Closed, the log says so once at
    WARNING, and the shard reload is logged at the level [log] modules gives its module."""
    sip, dead, hss_listen = free_port(), free_port(), f"127.0.0.1:{free_port()}"
    text = registrar_config("e2e-status", tmp_path, sip, hss=f'listen = "{hss_listen}"',
                            cx=f'peers = ["{hss_listen}", "127.0.0.1:{dead}"]',
                            log='level = "warning"\nmodules = {"actors.hosts.shard_core" = "info"}')
    server = start_registrar(text, tmp_path, sip, ray_address)
    try:
        status = scscf("status", "--config", str(server.config))
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        assert lines[0] == "registrar   0 impus, 0 contacts, 0 subscriptions, 4096 slots"
        sections = [line[:12].strip() for line in lines if line[:12].strip()]
        assert sections == ["registrar", "nodes", "shards", "transports", "hss peers"]
        assert any(f"udp:127.0.0.1:{sip} tcp:127.0.0.1:{sip}  running" in line for line in lines)
        assert any(f"pool 0  {hss_listen}  I_Open  hss.ims.test (realm ims.test)" in line
                   for line in lines)
        assert any(line.endswith(f"pool 0  127.0.0.1:{dead}  Closed") for line in lines)
        peers = scscf("rpc", "cdp.list_peers", "--config", str(server.config))
        assert peers.returncode == 0, peers.stderr
        states = {p["Details"]["Address"]: p["Details"]["State"]
                  for p in json.loads(peers.stdout)["Peers"]}
        assert states == {hss_listen: "I_Open", f"127.0.0.1:{dead}": "Closed"}
        wrong = scscf("rpc", "cdp.list_peers", "extra", "--config", str(server.config))
        assert wrong.returncode == 1 and "error -32602" in wrong.stderr
    finally:
        assert server.stop() == 0
    log = "".join(server.output)
    assert log.count(f"WARNING actors.hosts.cx_pool: cx.peers: 127.0.0.1:{dead}: "
                     "HSS unreachable") == 1
    assert "INFO actors.hosts.shard_core: shard 0 loaded 0 identities" in log


def test_rpc_without_a_listener_says_so(tmp_path):
    config = tmp_path / "off.toml"
    config.write_text('[rpc]\nlisten = ""\n')
    proc = scscf("status", "--config", str(config))
    assert proc.returncode == 2 and "rpc.listen" in proc.stderr
    port = free_port()
    config.write_text(f'[rpc]\nlisten = "127.0.0.1:{port}"\n')
    proc = scscf("rpc", "ulscscf.status", "--config", str(config))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"scscf: cannot reach http://127.0.0.1:{port}/RPC")
