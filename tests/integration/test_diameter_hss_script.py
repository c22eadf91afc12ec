"""The `scscf hss` entry point and the SAR benchmark, run as their own processes."""
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.integration.test_diameter_fixtures import HSS_CONFIG, cx_client, sar

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                 os.environ.get("PYTHONPATH")]))}


def start_script(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "scripts.hss_emulator.cli", *args], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_runs_until_sigterm():
    process = start_script("--config", str(HSS_CONFIG), "--listen", "127.0.0.1:0",
                           "--admin-listen", "127.0.0.1:0")
    try:
        ready = process.stdout.readline()
        assert "ready" in ready, process.stderr.read()
        port = int(re.search(r"127\.0\.0\.1:(\d+)", ready).group(1))
        admin = int(re.search(r"admin on port (\d+)", ready).group(1))

        async def register():
            cx = cx_client(port)
            await cx.start()
            answer = await cx.sar(sar("sip:alice@ims.test", "alice@ims.test"))
            await cx.close()
            return answer

        assert asyncio.run(register()).success
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/sar_log", timeout=5) as response:
            assert json.load(response)[0]["public_identity"] == "sip:alice@ims.test"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.communicate()


def test_bad_config_names_the_key():
    process = start_script("--config", str(HSS_CONFIG.with_name("broken_subscriber.toml")))
    _, errors = process.communicate(timeout=20)
    assert process.returncode == 2
    assert "subscriber[0].impus" in errors


def test_benchmark_runs():
    result = subprocess.run([sys.executable, "scripts/bench_sar.py", "--requests", "300",
                             "--users", "50", "--concurrency", "8"], cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert re.match(r"\d+ SAR/s: 300 round trips", result.stdout)
