"""Kamailio's own P-CSCF (ims_registrar_pcscf, ims_usrloc_pcscf; Debian's kamailio-ims-modules)
between sipp as the UE and `scscf serve`, over UDP and TCP.

A Kamailio P-CSCF drops its copy of a registration (and the IPsec SAs that go with it) only
when the S-CSCF's 200 OK to the de-REGISTER lists the contact with ``expires=0``; with no
Contact it logs "cannot get the Contact header" and keeps it. Network de-registration and
expiry reach it only through the reg-event NOTIFYs of the subscription it makes itself.

Kamailio 5.6's ims_registrar_pcscf does not load without ims_ipsec_pcscf, which deletes every
IPsec SA and policy of the host when it starts (and again whenever no contact is registered),
so everything here runs in a network namespace of its own (tests/e2e/kamailio_pcscf_flow.py
under `unshare --net`): the registrar with a local Ray and its HSS emulator, Kamailio and sipp,
on that namespace's loopback. This module runs that once and asserts on what it observed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.harness.kamailio import missing

ROOT = Path(__file__).resolve().parents[2]
UNSHARE = shutil.which("unshare")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(missing() is not None, reason=missing() or ""),
    pytest.mark.skipif(UNSHARE is None, reason="unshare (util-linux) is not installed"),
]

CHALLENGE = "Unauthorized - Challenging the UE"


def host_ipsec() -> str:
    """This namespace's IPsec SAs and policies, which the P-CSCF must leave alone."""
    listed = [subprocess.run(["ip", "xfrm", what], capture_output=True, text=True, check=True)
              for what in ("state", "policy")]
    return "".join(done.stdout for done in listed)


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("kamailio-pcscf")
    before = host_ipsec()
    # As root a network namespace; otherwise inside a user namespace of our own as well.
    unshare = [UNSHARE, "--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    child = subprocess.Popen(
        [*unshare, sys.executable, "-m", "tests.e2e.kamailio_pcscf_flow", str(workdir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
    try:
        stdout, stderr = child.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        child.terminate()  # it stops what it started, then ends
        stdout, stderr = child.communicate(timeout=60)
        pytest.fail(f"the namespace's run took over 600 s:\n{stderr[-6000:]}")
    assert child.returncode == 0, f"the namespace's run failed:\n{stderr[-6000:]}"
    result = json.loads(stdout.strip().splitlines()[-1])
    result["host_ipsec_before"], result["host_ipsec_after"] = before, host_ipsec()
    return result


def flow(observed: dict, name: str) -> dict:
    seen = observed["flows"][name]
    assert "error" not in seen, seen["error"] + "\nP-CSCF log:\n" + observed["pcscf_log"][-4000:]
    return seen


def path(observed: dict) -> str:
    return f"<sip:term@127.0.0.1:{observed['pcscf_port']};lr>"


def contact(user: str, transport: str, port: int) -> str:
    return f"<sip:{user}@127.0.0.1:{port};transport={transport.upper()}>"


@pytest.fixture(params=["udp", "tcp"])
def transport(request):
    return request.param


def test_sipp_registers_through_the_pcscf_and_the_pcscf_holds_the_contact(observed, transport):
    seen = flow(observed, transport)
    user = f"pcscf-{transport}"
    challenge, ok, probe = seen["register"]
    assert (challenge["status"], challenge["reason"]) == (401, CHALLENGE)
    assert challenge["WWW-Authenticate"][0].startswith('Digest realm="ims.test", nonce="')
    assert "algorithm=MD5" in challenge["WWW-Authenticate"][0]
    assert ok["status"] == 200
    assert ok["Contact"] == [f"{contact(user, transport, seen['ue_port'])};expires=600"]
    assert ok["Path"] == [path(observed)]
    assert ok["P-Associated-URI"] == [f"<sip:{user}@ims.test>"]
    # pcscf_is_registered() found the UE's contact registered in the P-CSCF's usrloc.
    assert (probe["status"], probe["reason"]) == (200, "Registered here")
    assert probe["P-Asserted-Identity"] == [f"<sip:{user}@ims.test>"]
    assert seen["records_before"] == 0
    assert seen["records_after_register"] == 1
    assert seen["usrloc_statistics"]["registered_contacts"] == 1
    registered = seen["registrar_after_register"]
    assert registered["state"] == "REGISTERED"
    assert [(c["uri"], c["path"]) for c in registered["contacts"]] == [
        (contact(user, transport, seen["ue_port"])[1:-1], [path(observed)])]


def test_deregistration_200_echoes_the_contact_and_the_pcscf_drops_its_copy(observed, transport):
    """UDP de-registers with ``Expires: 0``, TCP with ``;expires=0`` on the Contact."""
    seen = flow(observed, transport)
    user = f"pcscf-{transport}"
    challenge, ok, probe = seen["deregister"]
    assert (challenge["status"], challenge["reason"]) == (401, CHALLENGE)
    assert (ok["status"], ok["reason"]) == (200, "OK")
    assert ok["Contact"] == [f"{contact(user, transport, seen['ue_port'])};expires=0"]
    assert (probe["status"], probe["reason"]) == (404, "Not registered here")
    assert seen["records_after_deregister"] == 0
    assert seen["registrar_after_deregister"]["state"] == "NOT_REGISTERED"
    assert seen["registrar_after_deregister"]["contacts"] == []


def test_the_pcscf_subscribes_to_the_reg_event_and_accepts_our_notifies(observed, transport):
    """The P-CSCF's own SUBSCRIBE (subscribe_to_reginfo) is accepted; it answers 200 to the
    full-state NOTIFY, and to the terminated one after the de-registration, then ends it."""
    seen = flow(observed, transport)
    assert seen["subscriptions_after_register"] == 1
    assert seen["notifies_applied"] == 1
    assert seen["notifies_applied_after"] == 2
    assert seen["subscriptions_after"] == 0


def test_network_deregistration_reaches_the_pcscf_through_the_notify(observed):
    """RTR SERVER_CHANGE: the NOTIFY (contact terminated, event deactivated) is all the P-CSCF
    hears of it, and it drops the contact."""
    seen = flow(observed, "network_dereg")
    assert [r["status"] for r in seen["register"]] == [401, 200, 200]
    assert seen["records_after_register"] == 1
    assert seen["subscriptions_after_register"] == 1
    assert seen["rta"]["result_code"] == 2001
    assert seen["registrar_after_rtr"]["state"] == "NOT_REGISTERED"
    assert seen["records_after_rtr"] == 0
    assert seen["notifies_applied_after"] == 2
    assert [(r["status"], r["reason"]) for r in seen["probe"]] == [(404, "Not registered here")]
    assert seen["subscriptions_after"] == 0


def test_expiry_at_the_scscf_reaches_the_pcscf_through_the_notify(observed):
    """The P-CSCF keeps an expired contact for an hour (ims_usrloc_pcscf expires_grace): only
    our NOTIFY (contact terminated, event expired) removes it within seconds."""
    seen = flow(observed, "expiry")
    assert [r["status"] for r in seen["register"]] == [401, 200, 200]
    assert seen["register"][1]["Contact"][0].endswith(";expires=2")
    assert seen["records_after_register"] == 1
    assert seen["records_after_expiry"] == 0
    assert seen["notifies_applied"] == 2
    assert seen["registrar_after_expiry"]["state"] == "NOT_REGISTERED"
    assert [(r["status"], r["reason"]) for r in seen["probe"]] == [(404, "Not registered here")]
    assert seen["subscriptions_after"] == 0


def test_the_pcscf_logged_no_failure_and_left_the_host_ipsec_alone(observed):
    for name in observed["flows"]:
        flow(observed, name)
    assert observed["pcscf_failures"] == []
    assert observed["pcscf_exit"] == 0, observed["pcscf_log"][-4000:]
    assert observed["registrar_exit"] == 0, observed["registrar_log"]
    assert observed["host_ipsec_after"] == observed["host_ipsec_before"]
