"""The sipp scenario library (scripts/sipp/README.md) against `scscf serve` with authentication
on, as a user points it at a deployment: each scenario passes for the users of a CSV, and the
registrar's state afterwards is what the scenario says it leaves."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.harness.ports import free_port
from scripts.harness.registrar import registrar_config, start_registrar
from scripts.harness.sipp import SCENARIOS, SIPP, sipp_command

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(SIPP is None, reason="sipp is not installed")]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registrar(ray_address, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sipp-library")
    sip = free_port()
    server = start_registrar(registrar_config("e2e-sipp-library", workdir, sip,
                                              auth="enabled = true"), workdir, sip, ray_address)
    yield server
    assert server.stop() == 0, "".join(server.output[-40:])


def run(server, tmp_path: Path, scenario: str, users: list[str]) -> None:
    csv = tmp_path / "users.csv"
    csv.write_text("SEQUENTIAL\n" + "".join(
        f"{u};ims.test;[authentication username={u}@ims.test password=imstest]\n"
        for u in users))
    done = subprocess.run(
        sipp_command(SCENARIOS / scenario, server.sip_port, "udp", "-inf", str(csv),
                     "-m", str(len(users)), "-d", "200", "-timeout", "60", "-timeout_error",
                     "-trace_msg", "-message_file", str(tmp_path / "messages.log")),
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (tmp_path / "messages.log").read_text()[-3000:]


def rpc(server, method: str, *params: str):
    done = subprocess.run([sys.executable, "-m", "scripts.cli", "rpc", method, *params,
                           "--config", str(server.config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def state(server, user: str) -> tuple[str, int]:
    shown = rpc(server, "ulscscf.showimpu", f"sip:{user}@ims.test")
    return shown["state"], len(shown["contacts"])


def test_reregister_leaves_one_refreshed_contact(registrar, tmp_path):
    run(registrar, tmp_path, "reregister.xml", ["lib-rr1", "lib-rr2"])
    assert [state(registrar, u) for u in ("lib-rr1", "lib-rr2")] == [("REGISTERED", 1)] * 2


def test_deregister_leaves_nothing(registrar, tmp_path):
    run(registrar, tmp_path, "deregister.xml", ["lib-dr1", "lib-dr2"])
    assert [state(registrar, u) for u in ("lib-dr1", "lib-dr2")] == [("NOT_REGISTERED", 0)] * 2


def test_subscribe_watches_and_unsubscribes(registrar, tmp_path):
    run(registrar, tmp_path, "subscribe.xml", ["lib-sub1"])
    log = (tmp_path / "messages.log").read_text()
    assert log.count("Subscription-State: active") == 1
    assert log.count("Subscription-State: terminated") == 1
    assert state(registrar, "lib-sub1") == ("REGISTERED", 1)
    assert rpc(registrar, "ulscscf.status")["subscriptions"] == 0


def test_publish_removes_the_binding_it_marks_terminated(registrar, tmp_path):
    run(registrar, tmp_path, "publish.xml", ["lib-pub1"])
    assert state(registrar, "lib-pub1") == ("NOT_REGISTERED", 0)
