"""Implicit sets end to end: counted once per UE binding, two devices registering two members
at once (the HSS held with SIGSTOP so their REGISTERs overlap), and a de-registration while the
HSS is away. `scscf serve` runs with the HSS emulator as a process of its own."""
from __future__ import annotations

import signal
import time

import pytest

from scripts.harness.ports import free_port
from scripts.harness.registrar import (
    hss_sar_log,
    registrar_config,
    rpc_result,
    rpc_statistics,
    start_hss,
    start_registrar,
)
from scripts.harness.sipp import SIPP
from tests.e2e.sipp import SippRun, Step, register, run_sipp, scenario_xml

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(SIPP is None, reason="sipp is not installed")]

NAMESPACE = "e2e-sets"
TRIO = ("sip:trio@ims.test", "sip:trio.work@ims.test", "tel:+15550003")
SUBSCRIBERS = f"""
auto_provision_domain = "ims.test"

[[subscriber]]
impi = "trio@ims.test"
impus = {list(TRIO)!r}
""".replace("'", '"')
# One IMPI registers every member of the set (the HSS checks the pair).
TRIO_IMPI = ('Authorization: Digest username="trio@ims.test", realm="ims.test", '
             'uri="sip:ims.test", nonce="", response=""')


@pytest.fixture(scope="module")
def registrar(ray_address, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sets")
    hss_config = workdir / "hss.toml"
    hss_config.write_text(SUBSCRIBERS)
    diameter, admin, sip, rpc = free_port(), free_port(), free_port(), free_port()
    hss = start_hss(hss_config, diameter, admin)
    config = registrar_config(NAMESPACE, workdir, sip, hss="emulator = false",
                              cx=f'peers = ["127.0.0.1:{diameter}"]\nrequest_timeout = 10.0',
                              rpc=f'listen = "127.0.0.1:{rpc}"')
    try:
        server = start_registrar(config, workdir, sip, ray_address)
    except Exception:
        hss.stop()
        raise
    server.hss = hss
    server.restart_hss = lambda: start_hss(hss_config, diameter, admin)
    server.hss_admin = admin
    yield server
    try:
        assert server.stop() == 0, "".join(server.output[-40:])
    finally:
        server.hss.stop()


def rpc(server, method: str, *params: str):
    return rpc_result(server, method, *params)


def stats(server) -> dict[str, int]:
    return rpc_statistics(server, "ims_usrloc_scscf:")


def sipp(server, tmp_path, *steps):
    return run_sipp(list(steps), server.sip_port, "udp", tmp_path)


def test_one_ue_in_a_set_of_three_counts_one_contact_and_three_impus(registrar, tmp_path):
    before = stats(registrar)
    sipp(registrar, tmp_path, Step(register("trio", contact="<sip:trio@10.0.2.1:5090>"), 200))
    during, status = stats(registrar), rpc(registrar, "ulscscf.status")
    sipp(registrar, tmp_path, Step(register("trio", contact="*", expires="0", cseq=2), 200))
    after = stats(registrar)

    def grown(snapshot, name):
        return snapshot[f"ims_usrloc_scscf:{name}"] - before[f"ims_usrloc_scscf:{name}"]

    assert (grown(during, "impus"), grown(during, "registered_contacts")) == (3, 1)
    assert (grown(during, "active_impus"), grown(during, "active_contacts")) == (3, 1)
    assert during["ims_usrloc_scscf:active_subscriptions"] == during[
        "ims_usrloc_scscf:subscriptions"]
    assert (status["impus"], status["contacts"]) == (
        during["ims_usrloc_scscf:impus"], during["ims_usrloc_scscf:registered_contacts"])
    assert (grown(after, "impus"), grown(after, "active_contacts")) == (0, 0)


def sars_of(server, identity: str) -> list[str]:
    return [e["assignment_type_name"] for e in hss_sar_log(server.hss_admin)
            if e["public_identity"] == identity]


def test_deregistration_while_the_hss_is_down_is_answered_and_told_once_it_is_back(
        registrar, tmp_path):
    user, identity = "outage", "sip:outage@ims.test"
    a, b = "<sip:outage@10.0.2.2:5090>", "<sip:outage@10.0.2.3:5090>"
    sipp(registrar, tmp_path, Step(register(user, contact=f"{a}, {b}"), 200))
    assert registrar.hss.stop() == 0
    try:
        (gone,) = sipp(registrar, tmp_path,
                       Step(register(user, contact="*", expires="0", cseq=2), 200))
        shown = rpc(registrar, "ulscscf.showimpu", identity)
    finally:
        registrar.hss = registrar.restart_hss()
    assert sorted(gone.headers.get_all("Contact")) == [f"{a};expires=0", f"{b};expires=0"]
    assert (shown["state"], shown["contacts"]) == ("NOT_REGISTERED", [])

    deadline = time.monotonic() + 90  # the SAR's retry back-off doubles from 1 s
    while not sars_of(registrar, identity):
        assert time.monotonic() < deadline, "".join(registrar.output[-80:])
        time.sleep(0.2)
    # A registration after it: the retried SAR came once and before it.
    sipp(registrar, tmp_path, Step(register(user, contact=a, cseq=3), 200))
    assert sars_of(registrar, identity) == ["USER_DEREGISTRATION", "REGISTRATION"]


def contacts_of(server, identity: str) -> list[str]:
    return sorted(c["uri"] for c in rpc(server, "ulscscf.showimpu", identity)["contacts"])


def sars_pending(server) -> int:
    return sum(p["Details"]["Pending"] for p in rpc(server, "cdp.list_peers")["Peers"])


def test_two_devices_registering_two_members_at_once_both_stay_bound(registrar, tmp_path):
    one, two = "sip:trio@10.0.2.5:5090", "sip:trio.work@10.0.2.6:5090"
    registrar.hss.process.send_signal(signal.SIGSTOP)  # both SARs wait: the REGISTERs overlap
    try:
        runs = [SippRun(scenario_xml([Step(register(user, contact=f"<{contact}>",
                                                    extra=TRIO_IMPI), 200)]),
                        registrar.sip_port, "udp", tmp_path, name)
                for user, contact, name in (("trio", one, "one"), ("trio.work", two, "two"))]
        deadline = time.monotonic() + 30
        while sars_pending(registrar) < 2:
            assert time.monotonic() < deadline, "the REGISTERs never reached the HSS"
            time.sleep(0.05)
    finally:
        registrar.hss.process.send_signal(signal.SIGCONT)
    for run in runs:
        run.wait()
    both = sorted([one, two])
    assert [contacts_of(registrar, i) for i in TRIO] == [both] * 3
    sipp(registrar, tmp_path, Step(register("trio", contact=f"<{one}>", cseq=2), 200))
    assert [contacts_of(registrar, i) for i in TRIO] == [both] * 3  # the refresh kept the other
    sipp(registrar, tmp_path, Step(register("trio", contact="*", expires="0", cseq=3), 200))
    assert [contacts_of(registrar, i) for i in TRIO] == [[]] * 3
