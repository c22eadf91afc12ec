"""What tests/e2e/test_kamailio_pcscf.py observes, run inside a network namespace of its own:
`scscf serve` (a local Ray of its own, the HSS emulator), Kamailio's P-CSCF in front of it and
sipp as the UE, all on that namespace's loopback.

    unshare --net python -m tests.e2e.kamailio_pcscf_flow WORKDIR

brings the loopback up, runs every flow and prints one JSON object: per flow, the responses
sipp got through the P-CSCF, the P-CSCF's usrloc and our registrar's bindings and
subscriptions at each point, and the P-CSCF's log lines that matter. It asserts nothing: the
test does, on that object, so every observation reaches the test even when one flow goes wrong.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import traceback
import urllib.request
from pathlib import Path

from scripts.harness.kamailio import Pcscf, start_pcscf
from scripts.harness.ports import free_port
from scripts.harness.registrar import (
    Registrar,
    registrar_config,
    rpc_statistics,
    show_impu,
    start_registrar,
)
from scripts.harness.sipp import PASSWORD
from tests.e2e.sipp import Step, run_sipp

DOMAIN = "ims.test"
DEADLINE = 30.0  # seconds any asynchronous outcome (a SUBSCRIBE, a NOTIFY) may take
HEADERS = ("Contact", "Path", "Service-Route", "P-Associated-URI", "P-Asserted-Identity",
           "WWW-Authenticate")
SUBSCRIPTIONS = "ims_usrloc_scscf:subscriptions"
# What ims_registrar_pcscf logs when a 200 OK to REGISTER carries no Contact, and what the
# configuration logs when pcscf_save() or reginfo_handle_notify() fails.
FAILURES = ("cannot get the Contact header", "pcscf_save(location) failed", "not applied")


def main(workdir: Path) -> dict:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    result: dict = {"flows": {}}
    scscf_port, pcscf_port, admin = free_port(), free_port(), free_port()
    config = registrar_config(
        "pcscf-e2e", workdir / "scscf", scscf_port,
        auth='enabled = true\nregistration_default_algorithm = "MD5"',
        registrar=f'scscf_name = "sip:127.0.0.1:{scscf_port}"\nmin_expires = 1',
        hss=f'admin_listen = "127.0.0.1:{admin}"',
        ray=f"dashboard = false\nshards = 1\nmetrics_export_port = {free_port()}",
    )
    started = time.monotonic()
    registrar = start_registrar(config, workdir / "scscf", scscf_port, None)
    registrar.hss_admin = admin
    result["registrar_start_s"] = round(time.monotonic() - started, 1)
    pcscf = None
    try:
        pcscf = start_pcscf(workdir, pcscf_port, scscf_port)
        result["pcscf_port"] = pcscf_port
        flows = {"udp": lambda: register_and_deregister(registrar, pcscf, workdir, "udp"),
                 "tcp": lambda: register_and_deregister(registrar, pcscf, workdir, "tcp"),
                 "network_dereg": lambda: network_deregistration(registrar, pcscf, workdir),
                 "expiry": lambda: expiry(registrar, pcscf, workdir)}
        for name, flow in flows.items():
            try:
                result["flows"][name] = flow()
            except Exception:  # noqa: BLE001 (reported to the test, which fails on it)
                result["flows"][name] = {"error": traceback.format_exc()}
        result["pcscf_failures"] = [line for text in FAILURES for line in pcscf.lines(text)]
    finally:
        if pcscf is not None:
            result["pcscf_exit"] = pcscf.stop()
            result["pcscf_log"] = "".join(pcscf.output[-200:])
        result["registrar_exit"] = registrar.stop()
        result["registrar_log"] = "".join(registrar.output[-60:])
    return result


# -- The flows --------------------------------------------------------------------------------

def register_and_deregister(registrar: Registrar, pcscf: Pcscf, workdir: Path,
                            transport: str) -> dict:
    """A UE registers through the P-CSCF (SIP Digest, the 401 carried back by the P-CSCF) and
    de-registers again: over UDP with ``Expires: 0``, over TCP with ``;expires=0`` on its
    Contact. The P-CSCF knows a UE by the address its REGISTER came from, so each sipp run of
    the UE sends from the same port (over TCP: a new connection from that port)."""
    user = f"pcscf-{transport}"
    impu = f"sip:{user}@{DOMAIN}"
    ue = Ue(user, transport)
    out: dict = {"ue_port": ue.port, "records_before": pcscf.usrloc_records()}
    out["register"] = summary(run_sipp(ue.register_steps() + [ue.probe(200)], pcscf.port,
                                       transport, workdir, name=f"{user}-register",
                                       local_port=ue.port))
    out["records_after_register"] = pcscf.usrloc_records()
    out["usrloc_statistics"] = pcscf.statistics("ims_usrloc_pcscf")
    out["registrar_after_register"] = show_impu(registrar, impu)
    out["subscriptions_after_register"] = wait_for(lambda: subscriptions(registrar), 1)
    out["notifies_applied"] = wait_for(lambda: len(applied(pcscf, impu)), 1)
    out["deregister"] = summary(run_sipp(
        ue.deregister_steps(header=transport == "udp") + [ue.probe(404)], pcscf.port,
        transport, workdir, name=f"{user}-deregister", local_port=ue.port))
    out["records_after_deregister"] = pcscf.usrloc_records()
    out["registrar_after_deregister"] = show_impu(registrar, impu)
    # The last NOTIFY says terminated; the P-CSCF ends its subscription.
    out["notifies_applied_after"] = wait_for(lambda: len(applied(pcscf, impu)), 2)
    out["subscriptions_after"] = wait_for(lambda: subscriptions(registrar), 0)
    return out


def network_deregistration(registrar: Registrar, pcscf: Pcscf, workdir: Path) -> dict:
    """The HSS ends the registration (RTR): the reg-event NOTIFY is all the P-CSCF learns."""
    user = "pcscf-rtr"
    impu = f"sip:{user}@{DOMAIN}"
    ue = Ue(user, "udp")
    out: dict = {"ue_port": ue.port, "records_before": pcscf.usrloc_records()}
    out["register"] = summary(run_sipp(ue.register_steps() + [ue.probe(200)], pcscf.port, "udp",
                                       workdir, name=user, local_port=ue.port))
    out["records_after_register"] = pcscf.usrloc_records()
    out["subscriptions_after_register"] = wait_for(lambda: subscriptions(registrar), 1)
    out["notifies_applied"] = wait_for(lambda: len(applied(pcscf, impu)), 1)
    out["rta"] = hss(registrar, "rtr", {"impi": f"{user}@{DOMAIN}",
                                        "reason_code": "SERVER_CHANGE"})
    out["records_after_rtr"] = wait_for(pcscf.usrloc_records, 0)
    out["notifies_applied_after"] = len(applied(pcscf, impu))
    out["registrar_after_rtr"] = show_impu(registrar, impu)
    return out | unregistered_at_the_pcscf(registrar, pcscf, ue, user, workdir)


def unregistered_at_the_pcscf(registrar: Registrar, pcscf: Pcscf, ue: Ue, user: str,
                              workdir: Path) -> dict:
    """The P-CSCF's probe of the UE (404: not registered there) and our subscriptions left."""
    return {"probe": summary(run_sipp([ue.probe(404)], pcscf.port, "udp", workdir,
                                      name=f"{user}-probe", local_port=ue.port)),
            "subscriptions_after": wait_for(lambda: subscriptions(registrar), 0)}


def expiry(registrar: Registrar, pcscf: Pcscf, workdir: Path) -> dict:
    """The binding expires at the S-CSCF (Expires: 2): its NOTIFY removes the P-CSCF's copy
    long before the P-CSCF's own timer would (it keeps expired contacts for an hour)."""
    user = "pcscf-expiry"
    impu = f"sip:{user}@{DOMAIN}"
    ue = Ue(user, "udp")
    out: dict = {"ue_port": ue.port, "records_before": pcscf.usrloc_records()}
    out["register"] = summary(run_sipp(ue.register_steps(expires=2) + [ue.probe(200)],
                                       pcscf.port, "udp", workdir, name=user,
                                       local_port=ue.port))
    out["records_after_register"] = pcscf.usrloc_records()
    started = time.monotonic()
    out["records_after_expiry"] = wait_for(pcscf.usrloc_records, 0)
    out["removed_after_s"] = round(time.monotonic() - started, 1)
    out["notifies_applied"] = len(applied(pcscf, impu))
    out["registrar_after_expiry"] = show_impu(registrar, impu)
    return out | unregistered_at_the_pcscf(registrar, pcscf, ue, user, workdir)


# -- The UE's requests ------------------------------------------------------------------------

class Ue:
    """The requests of one sipp UE: REGISTER with SIP Digest, de-REGISTER, and the OPTIONS
    probe that asks the P-CSCF whether it holds the UE's registration."""

    def __init__(self, user: str, transport: str) -> None:
        self.user, self.transport = user, transport
        self.port = free_port()  # over UDP every sipp run of the UE sends from here
        self.impi = f"{user}@{DOMAIN}"
        self.contact = f"<sip:{user}@[local_ip]:[local_port];transport=[transport]>"
        self.cseq = 0

    def register_steps(self, expires: int = 600) -> list[Step]:
        return [Step(self._register(f"Expires: {expires}", self._empty_answer()), 401,
                     challenge=True),
                Step(self._register(f"Expires: {expires}", self._answer()), 200)]

    def deregister_steps(self, header: bool) -> list[Step]:
        """``header``: ``Expires: 0``; else the Contact carries ``;expires=0``."""
        contact = None if header else f"{self.contact};expires=0"
        expires = "Expires: 0" if header else ""
        return [Step(self._register(expires, self._empty_answer(), contact), 401, challenge=True),
                Step(self._register(expires, self._answer(), contact), 200)]

    def probe(self, expect: int) -> Step:
        self.cseq += 1
        return Step("\n".join([
            "OPTIONS sip:[remote_ip]:[remote_port] SIP/2.0",
            "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{DOMAIN}>;tag=[pid]probe{self.cseq}",
            "To: <sip:[remote_ip]:[remote_port]>",
            "Call-ID: [call_id]",
            f"CSeq: {self.cseq} OPTIONS",
            f"Contact: {self.contact}",
            "Content-Length: 0",
        ]), expect)

    def _register(self, expires: str, authorization: str, contact: str | None = None) -> str:
        self.cseq += 1
        lines = [
            f"REGISTER sip:{DOMAIN} SIP/2.0",
            "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{DOMAIN}>;tag=[pid]reg",
            f"To: <sip:{self.user}@{DOMAIN}>",
            "Call-ID: [call_id]",
            f"CSeq: {self.cseq} REGISTER",
            f"Contact: {contact or self.contact}",
            expires,
            authorization,
            "Supported: path",
            "User-Agent: sipp-ue",
            "Content-Length: 0",
        ]
        return "\n".join(line for line in lines if line)

    def _empty_answer(self) -> str:
        return (f'Authorization: Digest username="{self.impi}", realm="{DOMAIN}", '
                f'uri="sip:{DOMAIN}", nonce="", response="", algorithm=MD5')

    def _answer(self) -> str:
        return f"[authentication username={self.impi} password={PASSWORD}]"


# -- Observations -----------------------------------------------------------------------------

def summary(responses: list) -> list[dict]:
    """Status, reason and the headers that matter of each response sipp received."""
    return [{"status": r.status, "reason": r.reason,
             **{name: r.headers.lines(name) for name in HEADERS if r.headers.lines(name)}}
            for r in responses]


def subscriptions(registrar: Registrar) -> int:
    return rpc_statistics(registrar, SUBSCRIPTIONS)[SUBSCRIPTIONS]


def applied(pcscf: Pcscf, impu: str) -> list[str]:
    """The reg-event NOTIFYs about ``impu`` the P-CSCF applied and answered 200."""
    return pcscf.lines(f"reg-event NOTIFY for {impu} applied, answering 200")


def hss(registrar: Registrar, command: str, body: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{registrar.hss_admin}/{command}",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def wait_for(read, value, deadline: float = DEADLINE):
    """``read()`` polled until it returns ``value`` or the deadline passes; its last value."""
    end = time.monotonic() + deadline
    while True:
        seen = read()
        if seen == value or time.monotonic() > end:
            return seen
        time.sleep(0.2)


if __name__ == "__main__":
    # SIGTERM (the test giving up) unwinds main(), which stops Kamailio and the registrar.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    print(json.dumps(main(Path(sys.argv[1]))))
