"""Hostile input against `scscf serve` over real sockets and real Diameter: a request that
would poison the store or a SAR batch is refused with a 400 naming the header, and the
registrar keeps serving everyone else."""
from __future__ import annotations

import secrets
import socket
from pathlib import Path

import pytest

from scripts.harness.ports import free_port
from scripts.harness.registrar import registrar_config, start_registrar
from transport.sip.parser import parse_message

pytestmark = pytest.mark.e2e

BAD = b"\xff"  # never valid in UTF-8


@pytest.fixture(scope="module")
def registrar(ray_address, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hostile")
    sip = free_port()
    server = start_registrar(registrar_config("e2e-hostile", workdir, sip), workdir, sip,
                             ray_address)
    yield server
    assert server.stop() == 0, "".join(server.output[-40:])


def exchange(port: int, data: bytes):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.bind(("127.0.0.1", 0))
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


def test_a_register_with_a_contact_that_does_not_parse_is_answered_400(registrar):
    # RFC 4475 3.1.2.13 regbadct: a Contact URI with headers outside <>.
    data = (Path(__file__).resolve().parents[1] / "data" / "rfc4475" / "regbadct.dat").read_bytes()
    refused = exchange(registrar.sip_port, data)
    assert (refused.status, refused.reason) == (400, "URI with headers outside <>")
    assert refused.call_id == "regbadct.k345asrl3fdbv@10.0.0.1"
