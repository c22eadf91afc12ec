"""Hostile input against `scscf serve` over real sockets and real Diameter: a request that
would poison the store or a SAR batch is refused with a 400 naming the header, and the
registrar keeps serving everyone else; the RPC refuses callers without the token, other
origins and non-JSON bodies; a source over its request rate is answered 503, then dropped."""
from __future__ import annotations

import json
import secrets
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from actors.config import load_config
from scripts.cli import rpc_url
from scripts.harness.ports import free_port
from scripts.harness.registrar import registrar_config, start_registrar
from tests.e2e.ue import read_messages
from transport.sip.framing import StreamFramer
from transport.sip.message import Request, make_response
from transport.sip.parser import parse_message

pytestmark = pytest.mark.e2e

BAD = b"\xff"  # never valid in UTF-8


@pytest.fixture(scope="module")
def registrar(ray_address, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hostile")
    sip = free_port()
    # 127.0.0.1 plays the trusted P-CSCF; the rate limit tests send from other loopback
    # addresses. Ten requests a source per ten seconds, dropped beyond fifty.
    # T1 0.1 s: Timer F, which ends a NOTIFY nobody answers, is 6.4 s.
    sip_limits = ('pike_reqs_density_per_sec = 1\npike_drop_density_per_sec = 5\n'
                  'pike_sampling_time_unit = 10.0\npike_trusted = ["127.0.0.1"]\n'
                  't1 = 0.1\ntcp_connect_timeout = 1.0')
    subscription_limits = "max_subscriptions_per_identity = 3\nmax_subscriptions_per_watcher = 2"
    server = start_registrar(registrar_config("e2e-hostile", workdir, sip, sip=sip_limits,
                                              registrar=subscription_limits),
                             workdir, sip, ray_address)
    yield server
    assert server.stop() == 0, "".join(server.output[-40:])


def exchange(port: int, data: bytes, source: str = "127.0.0.1", timeout: float = 10):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.sendto(data.replace(b"LOCALPORT", str(sock.getsockname()[1]).encode()),
                    ("127.0.0.1", port))
        return parse_message(sock.recvfrom(65535)[0])


def register(user: str, *, user_agent: bytes = b"ue", path: bytes = b"",
             contact_param: bytes = b"", username: bytes | None = None) -> bytes:
    lines = [
        b"REGISTER sip:ims.test SIP/2.0",
        b"Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bK" + secrets.token_hex(6).encode(),
        b"Max-Forwards: 70",
        b"From: <sip:%s@ims.test>;tag=f1" % user.encode(),
        b"To: <sip:%s@ims.test>" % user.encode(),
        b"Call-ID: " + secrets.token_hex(8).encode(),
        b"CSeq: 1 REGISTER",
        b"Contact: <sip:%s@127.0.0.1:LOCALPORT>%s" % (user.encode(), contact_param),
        b"Expires: 600",
        b"User-Agent: " + user_agent,
        b"Supported: path",
    ]
    if path:
        lines.append(b"Path: " + path)
    if username is not None:
        lines.append(b'Authorization: Digest username="%s", realm="ims.test", '
                     b'uri="sip:ims.test", nonce="", response=""' % username)
    return b"\r\n".join(lines + [b"Content-Length: 0", b"", b""])


def subscribe(user: str, record_route: bytes) -> bytes:
    return b"\r\n".join([
        b"SUBSCRIBE sip:%s@ims.test SIP/2.0" % user.encode(),
        b"Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bK" + secrets.token_hex(6).encode(),
        b"Max-Forwards: 70",
        b"From: <sip:%s@ims.test>;tag=s1" % user.encode(),
        b"To: <sip:%s@ims.test>" % user.encode(),
        b"Call-ID: " + secrets.token_hex(8).encode(),
        b"CSeq: 1 SUBSCRIBE",
        b"Contact: <sip:%s@127.0.0.1:LOCALPORT>" % user.encode(),
        b"Record-Route: " + record_route,
        b"Event: reg",
        b"Expires: 600",
        b"Content-Length: 0", b"", b""])


@pytest.mark.parametrize("request_bytes, header", [
    (register("ua-bad", user_agent=b"ue" + BAD), "User-Agent"),
    (register("path-bad", path=b"<sip:p" + BAD + b"@pcscf.ims.test;lr>"), "Path"),
    (register("param-bad", contact_param=b";x=" + BAD), "Contact"),
    (register("user-bad", username=b"user-bad" + BAD + b"@ims.test"), "Authorization"),
    (subscribe("rr-bad", b"<sip:p" + BAD + b"@pcscf.ims.test;lr>"), "Record-Route"),
], ids=["user-agent", "path", "contact-param", "authorization-username", "record-route"])
def test_non_utf8_is_refused_naming_the_header_and_service_goes_on(registrar, request_bytes,
                                                                   header):
    refused = exchange(registrar.sip_port, request_bytes)
    assert (refused.status, refused.reason) == (400, f"Invalid UTF-8 in {header}")
    # The same identity, and anyone else, still registers: nothing bad was stored or sent
    # to the HSS, and the Cx pool kept its connection.
    for user in ("ua-bad", f"after-{secrets.token_hex(3)}"):
        ok = exchange(registrar.sip_port, register(user))
        assert (ok.status, ok.reason) == (200, "OK")


@pytest.mark.parametrize("request_bytes, header", [
    (register("ctl-contact", contact_param=b';+sip.instance="<urn:\x1b[2J>"'), "Contact"),
    (register("ctl-path", path=b"<sip:p\x00@pcscf.ims.test;lr>"), "Path"),
    (subscribe("ctl-rr", b"<sip:p\x07@pcscf.ims.test;lr>"), "Record-Route"),
], ids=["contact-param", "path", "record-route"])
def test_control_characters_are_refused_and_the_identity_still_serves(registrar, request_bytes,
                                                                      header):
    """Found by scripts/fuzz_sip.py: a stored Contact parameter holding ESC made every later
    NOTIFY, save and expiry of its identity fail (XML cannot carry it)."""
    refused = exchange(registrar.sip_port, request_bytes)
    assert (refused.status, refused.reason) == (400, f"Control character in {header}")
    assert exchange(registrar.sip_port, register("ctl-contact")).status == 200


def test_a_register_with_a_contact_that_does_not_parse_is_answered_400(registrar):
    # RFC 4475 3.1.2.13 regbadct: a Contact URI with headers outside <>.
    data = (Path(__file__).resolve().parents[1] / "data" / "rfc4475" / "regbadct.dat").read_bytes()
    refused = exchange(registrar.sip_port, data)
    assert (refused.status, refused.reason) == (400, "URI with headers outside <>")
    assert refused.call_id == "regbadct.k345asrl3fdbv@10.0.0.1"


def options(source: str) -> bytes:
    return b"\r\n".join([
        b"OPTIONS sip:ims.test SIP/2.0",
        b"Via: SIP/2.0/UDP %s:LOCALPORT;branch=z9hG4bK%s" % (
            source.encode(), secrets.token_hex(6).encode()),
        b"Max-Forwards: 70",
        b"From: <sip:probe@ims.test>;tag=o1",
        b"To: <sip:ims.test>",
        b"Call-ID: " + secrets.token_hex(8).encode(),
        b"CSeq: 1 OPTIONS",
        b"Content-Length: 0", b"", b""])


def test_a_source_over_its_rate_is_answered_503_then_dropped_and_the_p_cscf_is_not(registrar):
    flooder = "127.0.0.2"
    first = [exchange(registrar.sip_port, register(f"pike-{n}"), flooder) for n in range(10)]
    assert [r.status for r in first] == [200] * 10
    over = exchange(registrar.sip_port, register("pike-over"), flooder)
    assert (over.status, over.reason, over.headers.get("Retry-After")) == (
        503, "Too many requests from this source", "10")
    refused = [exchange(registrar.sip_port, options(flooder), flooder) for _ in range(39)]
    assert {(r.status, r.headers.get("Retry-After")) for r in refused} == {(503, "10")}
    with pytest.raises(TimeoutError):  # past five a second: no answer at all
        exchange(registrar.sip_port, options(flooder), flooder, timeout=3)
    # The trusted P-CSCF, at a higher rate, and another source are served meanwhile.
    assert {exchange(registrar.sip_port, options("127.0.0.1")).status for _ in range(60)} == {200}
    assert exchange(registrar.sip_port, register("pike-other"), "127.0.0.3").status == 200
    rpc = registrar.rpc("ulscscf.showimpu", "sip:pike-over@ims.test")["result"]
    assert rpc["contacts"] == []


def rpc_request(registrar, headers: dict[str, str], body: bytes | None = None):
    """(status, body, headers) of a POST to the registrar's RPC."""
    url = rpc_url(load_config(registrar.config).rpc.listen)
    body = body or json.dumps({"jsonrpc": "2.0", "method": "ulscscf.status", "id": 1}).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=10) as r:
            return r.status, r.read().decode(), r.headers
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode(), refused.headers


def test_the_rpc_wants_its_token_a_json_body_and_no_other_origin(registrar):
    token_file = registrar.config.parent / "rpc.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert registrar.rpc_token == token and len(token) >= 40
    good = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    status, body, _ = rpc_request(registrar, good)
    assert status == 200 and "impus" in json.loads(body)["result"]

    status, body, headers = rpc_request(registrar, {"Content-Type": "application/json"})
    assert (status, headers["WWW-Authenticate"]) == (401, 'Bearer realm="scscf-rpc"')
    assert body == ("missing or wrong token: send 'Authorization: Bearer TOKEN' "
                    "([rpc] token)\n")
    assert rpc_request(registrar, {**good, "Authorization": "Bearer x" + token})[0] == 401
    status, body, _ = rpc_request(registrar, {**good, "Origin": "http://evil.test"})
    assert (status, body) == (403, "cross-origin request refused (Origin http://evil.test)\n")
    status, body, _ = rpc_request(registrar, {**good, "Content-Type": "text/plain"})
    assert (status, body) == (415, "Content-Type must be application/json, not text/plain\n")
    form = {**good, "Content-Type": "application/x-www-form-urlencoded"}
    assert rpc_request(registrar, form, b"jsonrpc=2.0&method=regscscf.dereg_impu")[0] == 415


def test_scscf_rpc_sends_the_token_of_its_config(registrar, tmp_path):
    cli = [sys.executable, "-m", "scripts.cli", "rpc", "ulscscf.status", "--config"]
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(cli + [str(registrar.config)], cwd=root, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "impus" in json.loads(done.stdout), done.stderr
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(registrar.config.read_text().replace("[rpc]\n", '[rpc]\ntoken = "nope"\n'))
    done = subprocess.run(cli + [str(wrong)], cwd=root, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    url = rpc_url(load_config(registrar.config).rpc.listen)
    assert done.stderr == (f"scscf: {url} refused the call: 401 missing or wrong "
                           "token: send 'Authorization: Bearer TOKEN' ([rpc] token)\n")


class Watcher:
    """One UDP socket that SUBSCRIBEs and, if ``answers``, answers its NOTIFYs with 200; the
    NOTIFYs it got are in ``notifies``."""

    def __init__(self, port: int, answers: bool = True) -> None:
        self.port = port
        self.answers = answers
        self.notifies: list[Request] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(10)
        self.sock.bind(("127.0.0.1", 0))
        self.local = str(self.sock.getsockname()[1]).encode()

    def subscribe(self, presentity: str, watcher: str, call_id: str, cseq: int = 1,
                  to_tag: str = "", expires: int = 600) -> object:
        self.send(subscribe_request(presentity, watcher, call_id, cseq, to_tag, b"UDP",
                                    self.local, expires))
        return self.receive_response()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, ("127.0.0.1", self.port))

    def receive_response(self):
        while True:
            message = self.receive()
            if not isinstance(message, Request):
                return message

    def receive(self):
        data, peer = self.sock.recvfrom(65535)
        return self._take(parse_message(data), lambda answer: self.sock.sendto(answer, peer))

    def drain(self) -> None:
        """Takes in what already arrived."""
        self.sock.setblocking(False)
        try:
            while True:
                self.receive()
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(10)

    def _take(self, message, answer):
        if isinstance(message, Request):
            self.notifies.append(message)
            if self.answers:
                answer(make_response(message, 200, "OK").to_bytes())
        return message


def subscribe_request(presentity: str, watcher: str, call_id: str, cseq: int, to_tag: str,
                      transport: bytes, local_port: bytes, expires: int = 600) -> bytes:
    return b"\r\n".join([
        b"SUBSCRIBE sip:%s@ims.test SIP/2.0" % presentity.encode(),
        b"Via: SIP/2.0/%s 127.0.0.1:%s;branch=z9hG4bK%s" % (
            transport, local_port, secrets.token_hex(6).encode()),
        b"Max-Forwards: 70",
        b"From: <%s>;tag=w1" % watcher.encode(),
        b"To: <sip:%s@ims.test>%s" % (presentity.encode(),
                                      b";tag=" + to_tag.encode() if to_tag else b""),
        b"Call-ID: " + call_id.encode(),
        b"CSeq: %d SUBSCRIBE" % cseq,
        b"Contact: <sip:w@127.0.0.1:%s>" % local_port,
        b"P-Asserted-Identity: <sip:%s@ims.test>" % presentity.encode(),
        b"Event: reg",
        b"Expires: %d" % expires,
        b"Content-Length: 0", b"", b""])


def test_subscriptions_over_the_limits_are_refused_and_refreshes_are_not(registrar):
    assert exchange(registrar.sip_port, register("sublim")).status == 200
    before = subscriptions(registrar)
    watcher = Watcher(registrar.sip_port)
    ue, device = "sip:sublim@ims.test", "sip:sublim-tablet@ims.test"
    accepted = [watcher.subscribe("sublim", ue, f"sub-{n}") for n in range(2)]
    assert [r.status for r in accepted] == [200, 200]
    third = watcher.subscribe("sublim", ue, "sub-2")
    assert (third.status, third.reason) == (403, "Too many subscriptions from this watcher")
    accepted.append(watcher.subscribe("sublim", device, "sub-3"))
    assert accepted[-1].status == 200
    full = watcher.subscribe("sublim", "sip:sublim-watch@ims.test", "sub-4")
    assert (full.status, full.reason) == (503, "Too many subscriptions to this identity")
    assert 590 <= int(full.headers.get("Retry-After")) <= 600
    refreshed = watcher.subscribe("sublim", ue, "sub-0", cseq=2,
                                  to_tag=accepted[0].to.params["tag"])
    assert (refreshed.status, refreshed.headers.get("Expires")) == (200, "600")
    assert subscriptions(registrar) == before + 3
    for n, (who, ok) in enumerate(zip((ue, ue, device), accepted)):  # unsubscribed: all gone
        gone = watcher.subscribe("sublim", who, f"sub-{n if n < 2 else 3}", cseq=3,
                                 to_tag=ok.to.params["tag"], expires=0)
        assert (gone.status, gone.headers.get("Expires")) == (200, "0")
    wait_for_subscriptions(registrar, before)


def subscriptions(registrar) -> int:
    return registrar.rpc("ulscscf.status")["result"]["subscriptions"]


def wait_for_subscriptions(registrar, count: int, watcher: Watcher | None = None) -> None:
    """Until the registrar holds ``count`` subscriptions (taking in the NOTIFYs meanwhile)."""
    deadline = time.monotonic() + 30
    while subscriptions(registrar) != count:
        assert time.monotonic() < deadline, f"still {subscriptions(registrar)} subscriptions"
        time.sleep(0.2)
    if watcher is not None:
        watcher.drain()


def copies(notifies: list[Request]) -> list[int]:
    """How many times each NOTIFY (by branch) arrived, in order."""
    branches = [n.vias[0].branch for n in notifies]
    return [branches.count(b) for b in dict.fromkeys(branches)]


def test_a_notify_to_a_watcher_that_never_answered_is_sent_three_times_only(registrar):
    assert exchange(registrar.sip_port, register("budget")).status == 200
    before = subscriptions(registrar)
    silent = Watcher(registrar.sip_port, answers=False)
    assert silent.subscribe("budget", "sip:budget@ims.test", "budget-1").status == 200
    wait_for_subscriptions(registrar, before, silent)  # Timer F: 408 ends the subscription
    assert copies(silent.notifies) == [3]  # 1 + notify_unanswered_retransmits

    # A watcher that answered once is known to be there: RFC 3261's retransmissions.
    once = Watcher(registrar.sip_port)
    assert once.subscribe("budget", "sip:budget@ims.test", "budget-2").status == 200
    while not once.notifies:
        once.receive()
    once.answers = False
    assert exchange(registrar.sip_port, register("budget")).status == 200  # a change: NOTIFY
    wait_for_subscriptions(registrar, before, once)
    first, second = copies(once.notifies)  # the first answered; the second not, and resent
    assert second >= 5


def test_a_black_holed_tcp_watcher_costs_a_connect_timeout_not_the_kernels_minutes(registrar):
    assert exchange(registrar.sip_port, register("hole")).status == 200
    before = subscriptions(registrar)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    client.bind(("127.0.0.1", 0))
    local = client.getsockname()
    client.connect(("127.0.0.1", registrar.sip_port))
    client.settimeout(10)
    client.sendall(subscribe_request("hole", "sip:hole@ims.test", "hole-1", 1, "", b"TCP",
                                     str(local[1]).encode()))
    framer, messages = StreamFramer(), []
    while len(messages) < 2:  # the 200 OK and the first NOTIFY
        messages += [parse_message(f) for f in read_messages(client, framer)]
    assert (messages[0].status, messages[1].method) == (200, "NOTIFY")
    client.sendall(make_response(messages[1], 200, "OK").to_bytes())
    wait_for_subscriptions(registrar, before + 1)
    client.close()
    # The watcher's address now drops every SYN: a listener with its accept queue full.
    hole = socket.socket()
    hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hole.bind(local)
    hole.listen(0)
    filler = socket.create_connection(local)
    try:
        assert exchange(registrar.sip_port, register("hole")).status == 200  # NOTIFY: connect
        wait_for_subscriptions(registrar, before)  # given up after tcp_connect_timeout: 503
    finally:
        filler.close()
        hole.close()


def with_contacts(data: bytes, contacts: list[bytes]) -> bytes:
    """``data`` (a register()) with these Contact lines instead of its own."""
    head, _, rest = data.partition(b"\r\nContact: ")
    return head + b"".join(b"\r\nContact: " + c for c in contacts) + b"\r\n" + \
        rest.partition(b"\r\n")[2]


def tcp_exchange(port: int, data: bytes):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        local = str(sock.getsockname()[1]).encode()
        sock.sendall(data.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP").replace(b"LOCALPORT", local))
        framer = StreamFramer()
        while True:
            for frame in read_messages(sock, framer):
                return parse_message(frame)


CONTACTS = [b"<sip:big-%d-%s@127.0.0.1:5999;transport=udp>" % (n, b"x" * 60) for n in range(12)]


def test_a_binding_query_too_big_for_udp_is_513_and_answered_whole_over_tcp(registrar):
    registered = exchange(registrar.sip_port, with_contacts(register("big"), CONTACTS))
    assert registered.status == 200 and len(registered.headers.get_all("Contact")) == 12
    query = with_contacts(register("big"), [])
    refused = exchange(registrar.sip_port, query)
    assert (refused.status, refused.reason) == (513, "Message Too Large (query over TCP)")
    assert refused.headers.get_all("Contact") == []
    answered = tcp_exchange(registrar.sip_port, query)
    assert answered.status == 200 and len(answered.headers.get_all("Contact")) == 12
    small = exchange(registrar.sip_port, with_contacts(register("sublim"), []))
    assert small.status == 200  # a query whose answer fits is answered over UDP


def watcher_with_its_tcp_port(sip_port: int) -> tuple[Watcher, socket.socket]:
    """A Watcher and a TCP socket bound, not listening, to the same port number. Held, the port
    takes no other TCP socket: a connection to it is refused unless the test listens, and the
    number can be neither another process's listener nor the registrar's own source port."""
    while True:
        watcher, tcp = Watcher(sip_port), socket.socket()
        try:
            tcp.bind(("127.0.0.1", int(watcher.local)))
            return watcher, tcp
        except OSError:  # taken over TCP: another port
            tcp.close()
            watcher.sock.close()


def test_a_notify_too_big_for_udp_goes_over_tcp_or_udp_when_tcp_is_refused(registrar):
    assert exchange(registrar.sip_port, with_contacts(register("bignotify"), CONTACTS)).status == 200
    watcher, listener = watcher_with_its_tcp_port(registrar.sip_port)
    listener.listen(1)
    listener.settimeout(10)
    try:
        assert watcher.subscribe("bignotify", "sip:bignotify@ims.test", "big-1").status == 200
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(10)
            framer, frames = StreamFramer(), []
            while not frames:
                frames = read_messages(connection, framer)
            notify = parse_message(frames[0])
            connection.sendall(make_response(notify, 200, "OK").to_bytes())
    finally:
        listener.close()
    assert notify.method == "NOTIFY" and len(frames[0]) > 1300
    assert notify.headers.get("Via").startswith("SIP/2.0/TCP ")
    assert notify.body.count(b"<contact ") == 12
    watcher.drain()
    assert watcher.notifies == []  # nothing came over UDP

    # No TCP at the watcher's address: the connection is refused, the NOTIFY goes over UDP.
    udp_only, not_listening = watcher_with_its_tcp_port(registrar.sip_port)
    try:
        assert udp_only.subscribe("bignotify", "sip:bignotify@ims.test", "big-2").status == 200
        while not udp_only.notifies:
            udp_only.receive()
    finally:
        not_listening.close()
    assert udp_only.notifies[0].headers.get("Via").startswith("SIP/2.0/UDP ")
    assert udp_only.notifies[0].body.count(b"<contact ") == 12
