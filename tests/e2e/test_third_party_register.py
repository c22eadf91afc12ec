"""Third-party REGISTER end to end (TS 24.229 5.4.1.7): UEs register over UDP and TCP with
`scscf serve`, the HSS emulator's user data carries iFCs naming application servers played by
this test over UDP and TCP, and those servers see the REGISTERs the iFCs ask for (and nothing
else). An AS that fails under DefaultHandling SESSION_TERMINATED de-registers the user; the
200 OK carries the SAA's charging function addresses."""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request

import pytest

from scripts.harness.registrar import sar_types, show_impu, start_with_subscribers
from tests.e2e.ue import Ue
from transport.diameter.cx import ServerAssignmentType as SAT
from transport.sip.framing import StreamFramer
from transport.sip.message import Request, make_response
from transport.sip.parser import parse_message

pytestmark = pytest.mark.e2e

T1 = 0.1  # Timer F, when an AS never answers: 64 * T1 = 6.4 s
ADMINISTRATIVE_DEREGISTRATION = SAT.ADMINISTRATIVE_DEREGISTRATION
ADDRESSES = 'ccf="aaa://ccf1.ims.test";ccf="aaa://ccf2.ims.test";ecf="aaa://ecf1.ims.test"'
SERVICE_INFO = "mmtel profile <7>"


class ApplicationServer:
    """A UDP and a TCP SIP server on loopback answering each request by its Request-URI's user:
    ``fail500`` 500, ``silent`` nothing, anyone else 200. Keeps every request by that user."""

    def __init__(self) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen()
        self.udp_port, self.tcp_port = self.udp.getsockname()[1], self.tcp.getsockname()[1]
        self.received: dict[str, list[Request]] = {}
        self._changed = threading.Condition()
        for loop in (self._serve_udp, self._serve_tcp):
            threading.Thread(target=loop, daemon=True).start()

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()

    def uri(self, user: str, transport: str = "udp") -> str:
        port = self.udp_port if transport == "udp" else self.tcp_port
        return f"sip:{user}@127.0.0.1:{port};transport={transport}"

    def requests(self, user: str) -> list[Request]:
        with self._changed:
            return list(self.received.get(user, []))

    def wait_for(self, user: str, count: int, timeout: float = 30.0) -> list[Request]:
        """The first ``count`` distinct requests to ``user`` (retransmissions not counted)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.received.get(user, [])) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{user} got {len(self.received.get(user, []))} of {count}"
                self._changed.wait(left)
            return self.received[user][:count]

    def wait_for_match(self, user: str, predicate, timeout: float = 30.0) -> Request:
        """The first request to ``user`` for which ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (found := [r for r in self.received.get(user, []) if predicate(r)]):
                left = deadline - time.monotonic()
                assert left > 0, [(r.headers.get("To"), r.headers.get("Expires"))
                                  for r in self.received.get(user, [])]
                self._changed.wait(left)
            return found[0]

    def _take(self, data: bytes) -> bytes | None:
        request = parse_message(data)
        user = request.request_uri.user
        with self._changed:
            kept = self.received.setdefault(user, [])
            if all(r.vias[0].branch != request.vias[0].branch for r in kept):
                kept.append(request)
            self._changed.notify_all()
        if user == "silent":
            return None
        status, reason = (500, "Server Internal Error") if user == "fail500" else (200, "OK")
        return make_response(request, status, reason, to_tag="as").to_bytes()

    def _serve_udp(self) -> None:
        while True:
            try:
                data, peer = self.udp.recvfrom(65535)
            except OSError:
                return
            answer = self._take(data)
            if answer is not None:
                self.udp.sendto(answer, peer)

    def _serve_tcp(self) -> None:
        while True:
            try:
                connection, _ = self.tcp.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_connection, args=(connection,),
                             daemon=True).start()

    def _serve_connection(self, connection: socket.socket) -> None:
        framer = StreamFramer()
        with connection:
            while data := connection.recv(65535):
                for frame in framer.feed(data):
                    if isinstance(frame, bytes):
                        answer = self._take(frame)
                        if answer is not None:
                            connection.sendall(answer)


def ifc(priority: int, server: str, spts: str, handling: int = 0, extra: str = "") -> str:
    return (f"<InitialFilterCriteria><Priority>{priority}</Priority><TriggerPoint>"
            f"<ConditionTypeCNF>1</ConditionTypeCNF>{spts}</TriggerPoint><ApplicationServer>"
            f"<ServerName>{server}</ServerName><DefaultHandling>{handling}</DefaultHandling>"
            f"{extra}</ApplicationServer></InitialFilterCriteria>")


REGISTER = "<SPT><Method>REGISTER</Method></SPT>"
TERMINATING = "<SPT><Group>1</Group><SessionCase>1</SessionCase></SPT>"
INITIAL_ONLY = ("<SPT><Method>REGISTER</Method><Extension><RegistrationType>0</RegistrationType>"
                "</Extension></SPT>")


def subscribers(server: ApplicationServer) -> str:
    """mmtel-udp/-tcp: an MMTel AS for every REGISTER (with ServiceInfo), one for initial
    registrations only (over TCP), one for terminating requests (never a REGISTER); the
    others: one AS each that answers 500 or nothing, under either DefaultHandling."""
    entries = []
    for ue in ("udp", "tcp"):
        ifcs = [ifc(0, server.uri(f"mmtel-{ue}"), REGISTER,
                    extra=f"<ServiceInfo>{SERVICE_INFO.replace('<', '&lt;')}</ServiceInfo>"),
                ifc(1, server.uri(f"terminating-{ue}"), REGISTER + TERMINATING),
                ifc(2, server.uri(f"initial-{ue}", "tcp"), INITIAL_ONLY)]
        entries.append((f"mmtel-{ue}", ifcs))
    entries.append(("rtr", [ifc(0, server.uri("rtr"), REGISTER)]))
    for answer in ("fail500", "silent"):
        for handling, name in ((0, "continued"), (1, "terminated")):
            entries.append((f"{answer}-{name}", [ifc(0, server.uri(answer), REGISTER, handling)]))
    text = ""
    for user, ifcs in entries:
        text += (f'[[subscriber]]\nimpi = "{user}@ims.test"\nimpus = ["sip:{user}@ims.test"]\n'
                 f"ifc = {json.dumps(ifcs)}\n[subscriber.charging_information]\n"
                 'primary_charging_collection_function_name = "aaa://ccf1.ims.test"\n'
                 'secondary_charging_collection_function_name = "aaa://ccf2.ims.test"\n'
                 'primary_event_charging_function_name = "aaa://ecf1.ims.test"\n\n')
    return text


@pytest.fixture(scope="module")
def application_server():
    server = ApplicationServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def registrar(ray_address, tmp_path_factory, application_server):
    server = start_with_subscribers("e2e-third-party", tmp_path_factory.mktemp("third-party"),
                                    subscribers(application_server), ray_address,
                                    sip=f"t1 = {T1}")
    yield server
    assert server.stop() == 0, "".join(server.output[-40:])


def scscf_uri(server) -> str:
    return f"sip:scscf.ims.test:{server.sip_port}"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_registration_refresh_and_deregistration_reach_the_matching_servers(
        registrar, application_server, transport):
    user, impu = f"mmtel-{transport}", f"sip:mmtel-{transport}@ims.test"
    ue = Ue(f"{user}@ims.test", impu, registrar.sip_port, transport)
    vector = 'icid-value="AyretyU0dm+6O2IrT5tAFrbHLso=023551024";orig-ioi=visited.example'
    charging = (f"P-Charging-Vector: {vector}", 'P-Visited-Network-ID: "Visited Network"')
    try:
        ok = ue.register(headers=charging)
        assert ok.status == 200
        assert ok.headers.get_all("P-Charging-Function-Addresses") == [ADDRESSES]
        (first,) = application_server.wait_for(user, 1)
        assert first.method == "REGISTER"
        assert first.uri == application_server.uri(user)
        assert first.headers.get("From").startswith(f"<{scscf_uri(registrar)}>;tag=")
        assert first.headers.get("To") == f"<{impu}>"
        assert first.headers.get("Contact") == f"<{scscf_uri(registrar)}>"
        assert first.headers.get("Expires") == "600"
        assert first.headers.get("CSeq") == "1 REGISTER"
        assert first.headers.get("P-Charging-Vector") == \
            "icid-value=AyretyU0dm+6O2IrT5tAFrbHLso=023551024"
        assert first.headers.get("P-Charging-Function-Addresses") == ADDRESSES
        assert first.headers.get("P-Visited-Network-ID") == '"Visited Network"'
        assert first.headers.get("Content-Type") == "application/3gpp-ims+xml"
        assert first.body == (b'<?xml version="1.0" encoding="UTF-8"?><ims-3gpp version="1">'
                              b"<service-info>mmtel profile &lt;7&gt;</service-info></ims-3gpp>")
        (initial,) = application_server.wait_for(f"initial-{transport}", 1)  # over TCP
        assert (initial.headers.get("To"), initial.headers.get("Expires")) == (f"<{impu}>", "600")
        shown = show_impu(registrar, impu)
        assert shown["charging"] == ADDRESSES
        assert [(c["visited_network"], c["icid"]) for c in shown["contacts"]] == [
            ('"Visited Network"', "AyretyU0dm+6O2IrT5tAFrbHLso=023551024")]

        assert ue.register(expires=300).status == 200  # a refresh: initial-only hears nothing
        refresh = application_server.wait_for(user, 2)[1]
        assert refresh.headers.get("Expires") == "300"
        assert refresh.headers.get("P-Charging-Vector") is None  # this REGISTER had none

        assert ue.register(expires=0).status == 200
        last = application_server.wait_for(user, 3)[2]
        assert (last.headers.get("To"), last.headers.get("Expires")) == (f"<{impu}>", "0")
        time.sleep(1.0)  # what was sent with the REGISTERs above has arrived by now
        assert len(application_server.requests(f"initial-{transport}")) == 1
        assert application_server.requests(f"terminating-{transport}") == []
    finally:
        ue.close()


@pytest.mark.parametrize("answer", ["fail500", "silent"])
def test_a_failing_server_de_registers_the_user_only_under_session_terminated(
        registrar, application_server, answer):
    continued, terminated = (f"sip:{answer}-{name}@ims.test" for name in ("continued",
                                                                          "terminated"))
    ues = [Ue(impu[4:], impu, registrar.sip_port) for impu in (continued, terminated)]
    try:
        for ue in ues:  # continued first: its transaction ends first
            assert ue.register().status == 200
        application_server.wait_for(answer, 2)
        deadline = time.monotonic() + 64 * T1 + 30
        # the bindings go first, then the HSS hears of it
        while ADMINISTRATIVE_DEREGISTRATION not in sar_types(registrar, terminated):
            assert time.monotonic() < deadline, (show_impu(registrar, terminated),
                                                 sar_types(registrar, terminated))
            time.sleep(0.2)
        gone = show_impu(registrar, terminated)
        assert (gone["state"], gone["contacts"]) == ("NOT_REGISTERED", [])
        time.sleep(1.0)  # the continued user's transaction ended before the other's
        kept = show_impu(registrar, continued)
        assert kept["state"] == "REGISTERED" and len(kept["contacts"]) == 1
        assert sar_types(registrar, continued) == [SAT.REGISTRATION]
        # The de-registration is a third-party REGISTER of its own, Expires: 0; the continued
        # user's server hears of no de-registration.
        application_server.wait_for_match(answer, lambda r: (
            r.headers.get("To"), r.headers.get("Expires")) == (f"<{terminated}>", "0"))
        assert [r.headers.get("Expires") for r in application_server.requests(answer)
                if r.headers.get("To") == f"<{continued}>"][:1] == ["600"]
        assert all(r.headers.get("Expires") != "0" for r in application_server.requests(answer)
                   if r.headers.get("To") == f"<{continued}>")
    finally:
        for ue in ues:
            ue.close()


def test_an_rtr_tells_the_servers_with_a_third_party_de_registration(registrar,
                                                                      application_server):
    impu = "sip:rtr@ims.test"
    ue = Ue("rtr@ims.test", impu, registrar.sip_port)
    try:
        assert ue.register().status == 200
        (first,) = application_server.wait_for("rtr", 1)
        assert first.headers.get("Expires") == "600"
        body = json.dumps({"impi": "rtr@ims.test", "reason_code": "PERMANENT_TERMINATION"})
        request = urllib.request.Request(f"http://127.0.0.1:{registrar.hss_admin}/rtr",
                                         body.encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert json.load(answer)["result_code"] == 2001
        last = application_server.wait_for("rtr", 2)[1]  # TS 24.229 5.4.1.5, step 4
        assert (last.headers.get("To"), last.headers.get("Expires")) == (f"<{impu}>", "0")
        assert show_impu(registrar, impu)["contacts"] == []
        assert sar_types(registrar, impu) == [SAT.REGISTRATION]  # an RTR sends no SAR
    finally:
        ue.close()
