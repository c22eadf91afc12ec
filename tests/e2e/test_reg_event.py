"""The reg event end to end: sipp watchers SUBSCRIBE to `scscf serve` and get NOTIFYs for changes
other sipp UEs make; every NOTIFY body is checked against the RFC 3680 schema."""
from __future__ import annotations

import base64
import secrets
import socket
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
from tests.e2e.ue import Ue, read_messages
from transport.sip.framing import StreamFramer
from transport.sip.message import Request, make_response
from transport.sip.parser import parse_message

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(SIPP is None, reason="sipp is not installed")]

SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).resolve().parents[1] / "data" / "reginfo.xsd")))
NS = {"r": "urn:ietf:params:xml:ns:reginfo"}
NAMESPACE = "e2e-regevent"


# One implicit set of two IMPUs whose profile sends its calls to an application server.
SUBSCRIBERS = """
[[subscriber]]
impi = "setuser@ims.test"
impus = ["sip:setuser@ims.test", "sip:setuser.work@ims.test"]
ifc = ["<InitialFilterCriteria><Priority>0</Priority><TriggerPoint><ConditionTypeCNF>1</ConditionTypeCNF><SPT><ConditionNegated>0</ConditionNegated><Group>0</Group><Method>INVITE</Method></SPT></TriggerPoint><ApplicationServer><ServerName>sip:as.ims.test:5065</ServerName><DefaultHandling>0</DefaultHandling></ApplicationServer></InitialFilterCriteria>"]
"""


@pytest.fixture(scope="module")
def registrar(ray_address, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("regevent")
    (workdir / "subscribers.toml").write_text(SUBSCRIBERS)
    sip = free_port()
    config = registrar_config(NAMESPACE, workdir, sip, sip="t1 = 0.1", hss=f"""
subscribers = "{workdir / 'subscribers.toml'}"
auto_provision_domain = "ims.test"
""")
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


# -- Dialogs driven by a small UE: refreshes sent where the 200 OK's Contact says, NOTIFYs
# routed by the route set.


def subscribe_bytes(ue: Ue, request_uri: str, presentity: str, *, cseq: int, expires: int,
                    to_tag: str | None = None, from_tag: str = "w1", asserted: str | None = None,
                    extra: tuple[str, ...] = ()) -> bytes:
    proto = ue.transport.upper()
    lines = [
        f"SUBSCRIBE {request_uri} SIP/2.0",
        f"Via: SIP/2.0/{proto} 127.0.0.1:{ue.local_port};branch=z9hG4bK{secrets.token_hex(6)}",
        "Max-Forwards: 70",
        f"From: <{ue.impu}>;tag={from_tag}",
        f"To: <{presentity}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {ue.call_id}",
        f"CSeq: {cseq} SUBSCRIBE",
        f"Contact: <sip:ue@127.0.0.1:{ue.local_port};transport={ue.transport}>",
        "Event: reg",
        f"Expires: {expires}",
        *(() if asserted is None else (f"P-Asserted-Identity: <{asserted}>",)),
        *extra,
        "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def answer(peer_send, notify) -> None:
    peer_send(make_response(notify, 200, "OK").to_bytes())


def subscribe_exchange(ue: Ue, data: bytes) -> tuple:
    """Sends a SUBSCRIBE; returns its final response and, after a 2xx, the NOTIFY that follows
    it (answered 200), in whichever order they came."""
    ue.send(data)
    response = notify = None
    while response is None or (response.status < 300 and notify is None):
        message = ue.receive()
        if isinstance(message, Request):
            notify = message
            answer(ue.send, message)
        elif message.status >= 200:
            response = message
    return response, notify


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_refresh_and_unsubscribe_reach_the_dialog_through_its_contact(registrar, tmp_path,
                                                                      transport):
    user = f"dialog-{transport}"
    presentity = f"sip:{user}@ims.test"
    run_sipp([Step(register(user, contact=f"<sip:{user}@10.0.1.1>"), 200)], registrar.sip_port,
             "udp", tmp_path, "reg")
    before = subscriptions()
    ue = Ue(f"{user}@ims.test", presentity, registrar.sip_port, transport)
    try:
        ok, first = subscribe_exchange(ue, subscribe_bytes(
            ue, presentity, presentity, cseq=1, expires=600, asserted=presentity))
        contact = f"sip:scscf.ims.test:{registrar.sip_port};reg-dialog={b64(presentity)}"
        assert (ok.status, ok.headers.get("Contact")) == (200, f"<{contact}>")
        assert first.headers.get("Contact") == f"<{contact}>"
        assert first.headers.get("From") == f"<{presentity}>;tag={ok.to.params['tag']}"
        # the P-CSCF asserts the UE's identity on every request, in-dialog ones too
        dialog = {"to_tag": ok.to.params["tag"], "asserted": presentity}

        refreshed, notify = subscribe_exchange(ue, subscribe_bytes(
            ue, contact, presentity, cseq=2, expires=300, **dialog))
        assert (refreshed.status, refreshed.headers.get("Expires")) == (200, "300")
        assert notify.cseq == (2, "NOTIFY")
        assert notify.headers.get("Subscription-State") == "active;expires=300"
        assert reginfo(notify).get("version") == "1"

        unknown, _ = subscribe_exchange(ue, subscribe_bytes(
            ue, contact, presentity, cseq=3, expires=300, from_tag="other", **dialog))
        assert (unknown.status, unknown.reason) == (481, "Subscription does not exist")
        forged, _ = subscribe_exchange(ue, subscribe_bytes(
            ue, contact.replace(b64(presentity), "_w"), presentity, cseq=3, expires=300,
            **dialog))
        assert forged.status == 481

        ended, last = subscribe_exchange(ue, subscribe_bytes(
            ue, contact, presentity, cseq=4, expires=0, **dialog))
        assert (ended.status, ended.headers.get("Expires")) == (200, "0")
        assert last.headers.get("Subscription-State") == "terminated;reason=timeout"
        assert (last.cseq, reginfo(last).get("version")) == ((3, "NOTIFY"), "2")
    finally:
        ue.close()
    assert subscriptions() == before


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def test_udp_notify_follows_the_record_route_not_the_source(registrar, tmp_path):
    user = "routed-udp"
    presentity = f"sip:{user}@ims.test"
    run_sipp([Step(register(user, contact=f"<sip:{user}@10.0.1.2>"), 200)], registrar.sip_port,
             "udp", tmp_path, "reg")
    pcscf = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pcscf.settimeout(10)
    pcscf.bind(("127.0.0.1", 0))
    route = f"<sip:127.0.0.1:{pcscf.getsockname()[1]};lr>"
    ue = Ue(f"{user}@ims.test", presentity, registrar.sip_port, "udp")
    try:
        ue.send(subscribe_bytes(ue, presentity, presentity, cseq=1, expires=0,
                                asserted=presentity, extra=(f"Record-Route: {route}",)))
        assert ue.receive().status == 200
        data, source = pcscf.recvfrom(65535)
        notify = parse_message(data)
        answer(lambda reply: pcscf.sendto(reply, source), notify)
    finally:
        ue.close()
        pcscf.close()
    assert str(notify.uri) == f"sip:ue@127.0.0.1:{ue.local_port};transport=udp"
    assert notify.headers.get_all("Route") == [route]
    assert notify.headers.get("Subscription-State") == "terminated;reason=timeout"


def test_tcp_notify_reconnects_to_the_route_once_the_flow_closed(registrar, tmp_path):
    user = "routed-tcp"
    presentity = f"sip:{user}@ims.test"
    run_sipp([Step(register(user, contact=f"<sip:{user}@10.0.1.3>"), 200)], registrar.sip_port,
             "udp", tmp_path, "reg1")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    route = f"<sip:127.0.0.1:{listener.getsockname()[1]};transport=tcp;lr>"
    ue = Ue(f"{user}@ims.test", presentity, registrar.sip_port, "tcp")
    try:  # the first NOTIFY takes the SUBSCRIBE's connection, still open
        ok, first = subscribe_exchange(ue, subscribe_bytes(
            ue, presentity, presentity, cseq=1, expires=600, asserted=presentity,
            extra=(f"Record-Route: {route}",)))
    finally:
        ue.close()
    assert (ok.status, first.headers.get_all("Route")) == (200, [route])
    run_sipp([Step(register(user, contact=f"<sip:{user}@10.0.1.4>", cseq=2), 200)],
             registrar.sip_port, "udp", tmp_path, "reg2")
    connection, _ = listener.accept()  # the flow is gone: a connection to the route's address
    with connection, listener:
        connection.settimeout(10)
        framer = StreamFramer()
        frames: list = []
        while not frames:
            frames += read_messages(connection, framer)
        notify = parse_message(frames[0])
        answer(connection.sendall, notify)
    assert str(notify.uri) == f"sip:ue@127.0.0.1:{ue.local_port};transport=tcp"
    assert notify.headers.get_all("Route") == [route]
    assert notify.cseq == (2, "NOTIFY")
    assert set(contact_events(reginfo(notify))) == {f"sip:{user}@10.0.1.3",
                                                    f"sip:{user}@10.0.1.4"}


@pytest.mark.parametrize("asserted, status", [
    ("sip:setuser@ims.test", 200),  # the user
    ("sip:setuser.work@ims.test", 200),  # another member of its implicit set
    ("sip:pcscf.ims.test:5070", 200),  # the P-CSCF on the Path of its binding
    ("sip:as.ims.test", 200),  # the application server of its iFC
    ("sip:mallory@ims.test", 403),  # a stranger
    (None, 403),  # the P-CSCF's address in From, but no P-Asserted-Identity
])
def test_who_may_subscribe(registrar, tmp_path, asserted, status):
    presentity = "sip:setuser@ims.test"
    run_sipp([Step(register("setuser", contact="<sip:setuser@10.0.1.5>",
                            extra="Path: <sip:pcscf.ims.test:5070;lr>\nSupported: path"), 200)],
             registrar.sip_port, "udp", tmp_path, "reg")
    ue = Ue("setuser@ims.test", "sip:pcscf.ims.test:5070", registrar.sip_port, "udp")
    try:  # a fetch (Expires: 0): its answer and one NOTIFY, no subscription left behind
        response, notify = subscribe_exchange(ue, subscribe_bytes(
            ue, presentity, presentity, cseq=1, expires=0, asserted=asserted))
    finally:
        ue.close()
    assert response.status == status
    if status == 200:
        aors = [r.get("aor") for r in reginfo(notify).iterfind("r:registration", NS)]
        assert aors == ["sip:setuser@ims.test", "sip:setuser.work@ims.test"]
    else:
        assert response.reason == "Not authorised to subscribe to this registration"
