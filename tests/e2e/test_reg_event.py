"""The reg event end to end: sipp watchers SUBSCRIBE to `scscf serve` and get NOTIFYs for changes
other sipp UEs make; every NOTIFY body is checked against the RFC 3680 schema."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import ray
from lxml import etree

from actors.rules.routing import shard_of
from actors.vocabulary import shard_name
from scripts.harness.ports import free_port
from scripts.harness.registrar import registrar_config, start_registrar
from scripts.harness.sipp import SIPP
from tests.e2e.sipp import SippRun, Step, register, run_sipp

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(SIPP is None, reason="sipp is not installed")]

SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).resolve().parents[1] / "data" / "reginfo.xsd")))
NS = {"r": "urn:ietf:params:xml:ns:reginfo"}
NAMESPACE = "e2e-regevent"


@pytest.fixture(scope="module")
def registrar(ray_address, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("regevent")
    sip = free_port()
    config = registrar_config(NAMESPACE, workdir, sip, sip="t1 = 0.1")
    server = start_registrar(config, workdir, sip, ray_address)
    yield server
    assert server.stop() == 0, "".join(server.output[-40:])


def subscribe_text(user: str, *, event: str = "reg", expires: int = 600, watcher: str | None = None,
                   asserted: str | None = None, cseq: int = 1, in_dialog: bool = False) -> str:
    watcher = watcher or f"sip:{user}@ims.test"
    lines = [
        f"SUBSCRIBE sip:{user}@ims.test SIP/2.0",
        "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
        "Max-Forwards: 70",
        f"From: <{watcher}>;tag=[pid]W[call_number]",
        f"To: <sip:{user}@ims.test>" + ("[peer_tag_param]" if in_dialog else ""),
        "Call-ID: [call_id]",
        f"CSeq: {cseq} SUBSCRIBE",
        "Contact: <sip:watcher@[local_ip]:[local_port];transport=[transport]>",
        f"Event: {event}",
        "Accept: application/reginfo+xml",
        f"Expires: {expires}",
    ]
    if asserted:
        lines.append(f"P-Asserted-Identity: <{asserted}>")
    lines.append("Content-Length: 0")
    return "\n".join(lines)


ANSWER_NOTIFY = """<send><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>"""


def watcher_xml(subscribe: str, later_notifies: int, *, unsubscribe: str | None = None,
                answer_last: bool = True) -> str:
    """SUBSCRIBE, its 200 OK and first NOTIFY in either order, then more NOTIFYs; optionally an
    unsubscribe with its own 200/NOTIFY pair. ``answer_last`` False leaves the last NOTIFY
    unanswered (a watcher that went away)."""
    parts = ['<?xml version="1.0" encoding="ISO-8859-1" ?>', '<scenario name="watcher">']

    def exchange(request: str, label: str) -> None:
        parts.append(f'<send retrans="500"><![CDATA[\n\n{request}\n\n]]></send>')
        parts.append(f'<recv request="NOTIFY" optional="true" next="{label}_notify_first"/>')
        parts.append('<recv response="200" timeout="10000"/>')
        parts.append('<recv request="NOTIFY" timeout="10000"/>')
        parts.append(ANSWER_NOTIFY.replace("<send>", f'<send next="{label}_done">'))
        parts.append(f'<label id="{label}_notify_first"/>')
        parts.append(ANSWER_NOTIFY)
        parts.append('<recv response="200" timeout="10000"/>')
        parts.append(f'<label id="{label}_done"/>')

    exchange(subscribe, "sub")
    for n in range(later_notifies):
        parts.append('<recv request="NOTIFY" timeout="20000"/>')
        if answer_last or n < later_notifies - 1:
            parts.append(ANSWER_NOTIFY)
    if unsubscribe:
        exchange(unsubscribe, "unsub")
    parts.append("</scenario>")
    return "\n".join(parts)


def notifies(messages) -> list:
    return [m for m in messages if getattr(m, "method", None) == "NOTIFY"]


def reginfo(notify) -> etree._Element:
    document = etree.fromstring(notify.body)
    SCHEMA.assertValid(document)
    return document


def contact_events(document) -> dict[str, tuple[str, str]]:
    return {c.findtext("r:uri", namespaces=NS): (c.get("state"), c.get("event"))
            for c in document.iterfind(".//r:contact", NS)}


def wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def subscriptions() -> int:
    handles = [ray.get_actor(shard_name(i), namespace=NAMESPACE) for i in range(2)]
    return sum(c["subscriptions"] for c in ray.get([h.counts.remote() for h in handles]))


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_ue_watches_its_registration_change_by_change(registrar, tmp_path, transport):
    user = f"watch-{transport}"
    first, second = f"sip:{user}@10.0.0.1:5090", f"sip:{user}@10.0.0.2:5090"
    run_sipp([Step(register(user, contact=f"<{first}>"), 200)], registrar.sip_port, "udp", tmp_path, "reg1")
    watcher = SippRun(watcher_xml(subscribe_text(user, asserted=f"sip:{user}@ims.test"), 2),
                      registrar.sip_port, transport, tmp_path, "watcher")
    wait_for(lambda: len(notifies(watcher.messages())) == 1)
    run_sipp([Step(register(user, contact=f"<{second}>", cseq=2), 200)], registrar.sip_port, "udp", tmp_path, "reg2")
    wait_for(lambda: len(notifies(watcher.messages())) == 2)
    run_sipp([Step(register(user, contact="*", expires="0", cseq=3), 200)], registrar.sip_port, "udp", tmp_path, "reg3")
    full, added, ended = notifies(watcher.wait())

    documents = [reginfo(n) for n in (full, added, ended)]
    assert [d.get("version") for d in documents] == ["0", "1", "2"]
    assert all(d.get("state") == "full" for d in documents)
    assert [n.headers.get("Event") for n in (full, added, ended)] == ["reg"] * 3
    assert [n.cseq[0] for n in (full, added, ended)] == [1, 2, 3]
    assert full.headers.get("Subscription-State").startswith("active;expires=")
    assert full.headers.get("Content-Type") == "application/reginfo+xml"
    assert contact_events(documents[0]) == {first: ("active", "registered")}
    assert contact_events(documents[1]) == {first: ("active", "registered"), second: ("active", "registered")}
    registration = documents[1].find("r:registration", NS)
    assert (registration.get("aor"), registration.get("state")) == (f"sip:{user}@ims.test", "active")
    assert ended.headers.get("Subscription-State") == "terminated;reason=noresource"
    assert contact_events(documents[2]) == {first: ("terminated", "unregistered"),
                                            second: ("terminated", "unregistered")}
    assert documents[2].find("r:registration", NS).get("state") == "terminated"
    # ids come from the identities, so the same contact keeps its id across NOTIFYs
    ids = [{c.findtext("r:uri", namespaces=NS): c.get("id") for c in d.iterfind(".//r:contact", NS)}
           for d in documents]
    assert ids[0][first] == ids[1][first] == ids[2][first]


def test_pcscf_on_the_path_may_subscribe_and_unsubscribe(registrar, tmp_path):
    user = "pathwatched"
    path = "<sip:pcscf.ims.test:5070;lr>"
    run_sipp([Step(register(user, contact=f"<sip:{user}@10.0.0.3>", extra=f"Path: {path}\nSupported: path"), 200)],
             registrar.sip_port, "udp", tmp_path, "regp")
    pcscf = "sip:pcscf.ims.test:5070"
    messages = SippRun(watcher_xml(
        subscribe_text(user, watcher=pcscf, asserted=pcscf), 0,
        unsubscribe=subscribe_text(user, watcher=pcscf, asserted=pcscf, expires=0, cseq=2, in_dialog=True)),
        registrar.sip_port, "udp", tmp_path, "pcscf").wait()
    full, last = notifies(messages)
    assert contact_events(reginfo(full)) == {f"sip:{user}@10.0.0.3": ("active", "registered")}
    assert last.headers.get("Subscription-State") == "terminated;reason=timeout"
    assert reginfo(last).get("version") == "1"
    oks = [m for m in messages if getattr(m, "status", None) == 200]
    assert [m.headers.get("Expires") for m in oks] == ["600", "0"]


def test_stranger_is_forbidden_and_other_events_are_489(registrar, tmp_path):
    user = "guarded"
    run_sipp([Step(register(user, contact=f"<sip:{user}@10.0.0.4>"), 200)], registrar.sip_port, "udp", tmp_path, "regg")
    stranger, other_event = run_sipp([
        Step(subscribe_text(user, watcher="sip:mallory@ims.test", asserted="sip:mallory@ims.test"), 403),
        Step(subscribe_text(user, event="presence", asserted=f"sip:{user}@ims.test", cseq=2), 489),
    ], registrar.sip_port, "udp", tmp_path, "strangers")
    assert stranger.reason == "Not authorised to subscribe to this registration"
    assert other_event.headers.get("Allow-Events") == "reg"


def test_subscribing_to_an_unregistered_user_is_480(registrar, tmp_path):
    (answer,) = run_sipp([Step(subscribe_text("nobody-here", asserted="sip:nobody-here@ims.test"), 480)],
                         registrar.sip_port, "udp", tmp_path, "unreg")
    assert answer.reason == "Temporarily Unavailable"


def test_a_watcher_that_stops_answering_is_dropped(registrar, tmp_path):
    user = "silent"
    run_sipp([Step(register(user, contact=f"<sip:{user}@10.0.0.5>"), 200)], registrar.sip_port, "udp", tmp_path, "regs")
    before = subscriptions()
    watcher = SippRun(watcher_xml(subscribe_text(user, asserted=f"sip:{user}@ims.test"), 1, answer_last=False),
                      registrar.sip_port, "udp", tmp_path, "silent")
    wait_for(lambda: len(notifies(watcher.messages())) == 1)
    assert subscriptions() == before + 1
    run_sipp([Step(register(user, contact=f"<sip:{user}@10.0.0.6>", cseq=2), 200)], registrar.sip_port, "udp", tmp_path, "regs2")
    watcher.wait()  # it saw the second NOTIFY and never answered; with T1 = 0.1 s Timer F is 6.4 s
    wait_for(lambda: subscriptions() == before, timeout=15)


def publish_text(user: str, body: str, *, publisher: str) -> str:
    return "\n".join([
        f"PUBLISH sip:{user}@ims.test SIP/2.0",
        "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
        "Max-Forwards: 70",
        f"From: <{publisher}>;tag=[pid]P[call_number]",
        f"To: <sip:{user}@ims.test>",
        "Call-ID: [call_id]",
        "CSeq: 1 PUBLISH",
        "Event: reg",
        "Expires: 600",
        f"P-Asserted-Identity: <{publisher}>",
        "Content-Type: application/reginfo+xml",
        "Content-Length: [len]",
        "",
        body,
    ])


def test_publish_that_terminates_a_contact_removes_its_binding(registrar, tmp_path):
    user = "published"
    path = "<sip:pcscf.ims.test:5070;lr>"
    gone, kept = f"sip:{user}@10.0.0.7", f"sip:{user}@10.0.0.8"
    run_sipp([Step(register(user, contact=f"<{gone}>, <{kept}>", extra=f"Path: {path}\nSupported: path"), 200)],
             registrar.sip_port, "udp", tmp_path, "regpub")
    body = (f'<?xml version="1.0"?><reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="partial">'
            f'<registration aor="sip:{user}@ims.test" id="r1" state="active">'
            f'<contact id="c1" state="terminated" event="unregistered"><uri>{gone}</uri></contact>'
            f'</registration></reginfo>')
    pcscf = "sip:pcscf.ims.test:5070"
    (ok, refused) = run_sipp([Step(publish_text(user, body, publisher=pcscf), 200),
                              Step(publish_text(user, body, publisher="sip:mallory@ims.test"), 403)],
                             registrar.sip_port, "udp", tmp_path, "publish")
    assert ok.headers.get("SIP-ETag") and ok.headers.get("Expires") == "600"
    assert refused.reason == "Not authorised to publish this registration"
    (query,) = run_sipp([Step(register(user, contact="", cseq=9), 200)], registrar.sip_port, "udp", tmp_path, "q")
    assert [c.split(";")[0] for c in query.headers.get_all("Contact")] == [f"<{kept}>"]


def test_network_deregistration_tells_watchers_deactivated(registrar, tmp_path):
    user = "netdereg"
    contact = f"sip:{user}@10.0.0.9"
    run_sipp([Step(register(user, contact=f"<{contact}>"), 200)], registrar.sip_port, "udp", tmp_path, "regn")
    watcher = SippRun(watcher_xml(subscribe_text(user, asserted=f"sip:{user}@ims.test"), 1),
                      registrar.sip_port, "udp", tmp_path, "netwatch")
    wait_for(lambda: len(notifies(watcher.messages())) == 1)
    shard = ray.get_actor(shard_name(shard_of(f"sip:{user}@ims.test", 2)), namespace=NAMESPACE)
    assert ray.get(shard.unregister.remote(f"sip:{user}@ims.test")).removed == 1
    _, last = notifies(watcher.wait())
    assert last.headers.get("Subscription-State") == "terminated;reason=noresource"
    assert contact_events(reginfo(last)) == {contact: ("terminated", "deactivated")}
