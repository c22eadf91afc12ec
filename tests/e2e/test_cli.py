"""The README's first command: `scscf serve` with embedded defaults, and clear config errors."""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.harness.registrar import start_registrar
from scripts.harness.sipp import SIPP
from tests.e2e.sipp import received_messages

ROOT = Path(__file__).resolve().parents[2]


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
    if not (port_free(5060) and port_free(3868)):
        pytest.skip("the default ports 5060/3868 are in use on this machine")
    server = start_registrar("", tmp_path, 5060, address=None)  # empty file: every default
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
    assert port_free(5060) and port_free(3868), "something still holds the registrar's ports"


@pytest.mark.parametrize("text, message", [
    ("[registrar]\nmin_expire = 5\n", "unknown key registrar.min_expire"),
    ("[sip]\nlisten = [\"udp:127.0.0.1\"]\n", "sip.listen: 'udp:127.0.0.1'"),
    ("[registrar\n", "is not valid TOML"),
])
def test_malformed_config_exits_2_naming_the_key(tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    scscf = shutil.which("scscf") or None
    cmd = [scscf] if scscf else [sys.executable, "-m", "scripts.cli"]
    proc = subprocess.run(cmd + ["serve", "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr
