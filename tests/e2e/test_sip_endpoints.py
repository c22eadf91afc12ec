"""UDP and TCP endpoints on loopback, driven by sipp and by raw sockets."""
from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from transport.sip import PING, Request, StreamFramer, make_response, parse_head, parse_message
from transport.sip.endpoints import TcpLimits, start_tcp, start_udp

DATA = Path(__file__).resolve().parents[1] / "data"
HOST = "127.0.0.1"


def register(call_id: str, transport: str = "UDP", extra: str = "") -> bytes:
    return (f"REGISTER sip:ims.test SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} 127.0.0.1:5999;branch=z9hG4bK{call_id}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:alice@ims.test>;tag=a1\r\nTo: <sip:alice@ims.test>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 REGISTER\r\n{extra}"
            f"Contact: <sip:alice@127.0.0.1:5999>\r\nContent-Length: 0\r\n\r\n").encode()


async def answer_register(message, peer, reply) -> None:
    """A coroutine handler: the endpoint runs it as a task."""
    if isinstance(message, Request) and message.method == "REGISTER":
        response = make_response(message, 200, "OK", to_tag="e2e")
        for contact in message.contacts:
            response.headers.add("Contact", f"{contact};expires=600")
        reply(response.to_bytes())


@pytest.fixture
def server():
    """UDP and TCP endpoints on one free loopback port, served by a loop in a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    seen = []

    def run(coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=10)

    async def on_message(message, peer, reply):
        seen.append((message, peer, reply.reliable))
        await answer_register(message, peer, reply)

    async def start():
        udp = await start_udp(HOST, 0, on_message)
        try:
            tcp = await start_tcp(HOST, udp.port, on_message)
        except OSError:  # that TCP port is taken: any other will do
            tcp = await start_tcp(HOST, 0, on_message)
        return udp, tcp

    udp, tcp = run(start())
    try:
        yield SimpleNamespace(udp=udp, tcp=tcp, seen=seen, run=run)
    finally:
        async def stop():
            udp.close()
            tcp.close()
            await asyncio.sleep(0.05)

        run(stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def udp_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(data, (HOST, port))
        try:
            return sock.recv(65535)
        except socket.timeout:
            return None


class TcpClient:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=5)
        self.framer = StreamFramer()
        self.frames: list = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self):
        while not self.frames:
            data = self.sock.recv(65535)
            if not data:
                return None  # closed by the server
            self.frames += self.framer.feed(data)
        return self.frames.pop(0)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def tcp_client(server):
    client = TcpClient(server.tcp.port)
    yield client
    client.close()


# sipp


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["u1", "t1"])
def test_sipp_registers(server, mode, tmp_path):
    if shutil.which("sipp") is None:
        pytest.skip("sipp is not installed")
    port = server.udp.port if mode == "u1" else server.tcp.port
    command = ["sipp", f"{HOST}:{port}", "-sf", str(DATA / "sipp" / "register_ok.xml"),
               "-t", mode, "-i", HOST, "-m", "5", "-l", "1", "-timeout", "20s",
               "-timeout_error", "-nostdin"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    registers = [m for m, _, reliable in server.seen if reliable == (mode == "t1")]
    assert len(registers) >= 5
    assert all(m.method == "REGISTER" and m.contacts[0].params["reg-id"] == "1" for m in registers)


# Raw sockets: malformed requests get the parse error's status and reason


@pytest.mark.parametrize("name, status_line", [
    ("badvers", b"SIP/2.0 505 Version Not Supported"),
    ("mismatch01", b"SIP/2.0 400 CSeq method mismatch"),
    ("clerr", b"SIP/2.0 400 Content-Length mismatch"),
    ("unkscm", b"SIP/2.0 416 Unsupported URI Scheme"),
])
def test_udp_malformed_requests_are_answered(server, name, status_line):
    data = (DATA / "rfc4475" / f"{name}.dat").read_bytes()
    reply = udp_exchange(server.udp.port, data)
    assert reply.startswith(status_line + b"\r\n")
    response = parse_message(reply)
    assert response.call_id == parse_head(data)[1].get("Call-ID")
    assert response.to.tag is not None
    assert server.seen == []  # never handed to the application


@pytest.mark.parametrize("name, status_line", [
    ("badaspec", b"SIP/2.0 400 Bad URI"),
    ("baddn", b"SIP/2.0 400 Bad display name"),
    ("badinv01", b"SIP/2.0 400 Bad Via"),
    ("quotbal", b"SIP/2.0 400 Bad display name"),
    ("scalar02", b"SIP/2.0 400 Bad CSeq"),
])
def test_udp_requests_with_malformed_echoed_headers_are_answered_verbatim(server, name,
                                                                         status_line):
    data = (DATA / "rfc4475" / f"{name}.dat").read_bytes()
    reply = udp_exchange(server.udp.port, data)
    assert reply.startswith(status_line + b"\r\n")
    _, headers, _ = parse_head(reply)
    request_headers = parse_head(data)[1]
    assert headers.lines("Via") == request_headers.lines("Via")
    for header in ("From", "Call-ID", "CSeq"):
        assert headers.get(header) == request_headers.get(header)
    assert server.seen == []


def test_udp_unanswerable_messages_are_dropped_and_service_goes_on(server):
    for name in ("bigcode", "insuf"):  # a broken response; a request without a To
        data = (DATA / "rfc4475" / f"{name}.dat").read_bytes()
        assert udp_exchange(server.udp.port, data, timeout=0.5) is None
    reply = parse_message(udp_exchange(server.udp.port, register("after-garbage")))
    assert (reply.status, reply.call_id) == (200, "after-garbage")
    assert reply.headers.get("Contact") == "<sip:alice@127.0.0.1:5999>;expires=600"


def test_tcp_bad_request_keeps_the_connection_and_pings_are_answered(server, tcp_client):
    tcp_client.send((DATA / "rfc4475" / "mismatch01.dat").read_bytes())
    response = parse_message(tcp_client.receive())
    assert (response.status, response.reason) == (400, "CSeq method mismatch")
    tcp_client.send(b"\r\n\r\n")
    assert tcp_client.sock.recv(2) == b"\r\n"  # RFC 5626 pong
    tcp_client.send(register("first", "TCP") + register("second", "TCP"))
    replies = [parse_message(tcp_client.receive()) for _ in range(2)]
    assert sorted((r.status, r.call_id) for r in replies) == [(200, "first"), (200, "second")]


def test_tcp_framing_error_is_answered_then_closed(server, tcp_client):
    tcp_client.send(register("no-length", "TCP").replace(b"Content-Length: 0\r\n", b""))
    response = parse_message(tcp_client.receive())
    assert (response.status, response.reason) == (400, "Missing Content-Length")
    assert response.call_id == "no-length"
    assert tcp_client.receive() is None


def test_tcp_bad_version_is_505(server, tcp_client):
    data = (DATA / "rfc4475" / "badvers.dat").read_bytes()
    tcp_client.send(data)
    assert tcp_client.receive().startswith(b"SIP/2.0 505 Version Not Supported\r\n")


# TCP limits


@pytest.fixture
def limited(server):
    """A second TCP endpoint with small limits, on the server's loop."""
    async def start():
        return await start_tcp(HOST, 0, answer_register, limits=TcpLimits(
            max_connections=3, max_per_source=2, idle_timeout=0.2, write_buffer=4096))

    async def stop():
        endpoint.close()

    endpoint = server.run(start())
    yield endpoint
    server.run(stop())


def closed_by_server(client: TcpClient) -> bool:
    try:
        return client.sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_tcp_connections_from_one_source_are_bounded(limited):
    first, second = TcpClient(limited.port), TcpClient(limited.port)
    third = TcpClient(limited.port)  # accepted by the kernel, then dropped by the endpoint
    try:
        assert closed_by_server(third)
        second.send(register("still-served", "TCP"))
        assert parse_message(second.receive()).status == 200
    finally:
        for client in (first, second, third):
            client.close()


def test_tcp_connections_are_bounded_in_all(limited):
    clients = []
    try:
        for source in ("127.0.0.2", "127.0.0.3"):
            for _ in range(2 if source == "127.0.0.2" else 1):
                sock = socket.create_connection((HOST, limited.port), timeout=5,
                                                source_address=(source, 0))
                client = TcpClient.__new__(TcpClient)
                client.sock, client.framer, client.frames = sock, StreamFramer(), []
                clients.append(client)
        clients[-1].send(register("third", "TCP"))
        assert parse_message(clients[-1].receive()).status == 200  # three open: the limit
        fourth = TcpClient(limited.port)
        clients.append(fourth)
        assert closed_by_server(fourth)
    finally:
        for client in clients:
            client.close()


def test_an_idle_tcp_connection_is_closed_and_keep_alives_count(limited):
    client = TcpClient(limited.port)
    try:
        client.send(b"\r\n\r\n")
        assert client.sock.recv(2) == b"\r\n"
        assert closed_by_server(client)  # nothing more: closed after idle_timeout
    finally:
        client.close()


def test_a_peer_that_does_not_read_is_disconnected(server, limited):
    client = TcpClient(limited.port)

    async def flood():  # more than the kernel's buffers take, from a peer reading nothing
        connection = next(iter(limited.connections.values()))
        connection.write(b"x" * (64 << 20))
        return connection.transport.is_closing()

    try:
        client.send(b"\r\n\r\n")
        assert client.sock.recv(2) == b"\r\n"
        assert server.run(flood())  # aborted, not buffering 64 MB for it
    finally:
        client.close()


# Sending to peers (NOTIFY and friends)


def test_send_over_udp(server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(5)
        server.run(server.udp.send(b"NOTIFY over UDP", sock.getsockname()))
        data, source = sock.recvfrom(100)
    assert (data, source) == (b"NOTIFY over UDP", (HOST, server.udp.port))


def test_send_over_tcp_reuses_the_peers_connection(server, tcp_client):
    tcp_client.send(register("over-tcp", "TCP"))
    assert parse_message(tcp_client.receive()).status == 200
    [(_, peer, reliable)] = server.seen
    assert reliable and peer == tcp_client.sock.getsockname()
    server.run(server.tcp.send(b"\r\n\r\n", peer))
    assert tcp_client.receive() is PING


def test_send_over_tcp_opens_a_connection(server):
    with socket.create_server((HOST, 0)) as listener:
        listener.settimeout(5)
        server.run(server.tcp.send(b"hello", listener.getsockname()))
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(5)
            assert connection.recv(5) == b"hello"


def test_sync_handlers_work_too():
    async def scenario():
        answered = []

        def on_message(message, peer, reply):
            answered.append(message.call_id)
            reply(make_response(message, 200, "OK").to_bytes())

        endpoint = await start_udp(HOST, 0, on_message, reuse_port=False)
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            await loop.sock_connect(sock, endpoint.address)
            await loop.sock_sendall(sock, register("sync"))
            reply = await asyncio.wait_for(loop.sock_recv(sock, 65535), 5)
        endpoint.close()
        return answered, reply

    answered, reply = asyncio.run(scenario())
    assert answered == ["sync"]
    assert reply.startswith(b"SIP/2.0 200 OK\r\n")


def test_a_first_look_at_the_bytes_answers_alone_and_a_failing_one_leaves_the_parse_to_answer(
        caplog):
    async def scenario():
        parsed = []

        def on_bytes(data, reply):
            if b"Call-ID: broken" in data:
                raise RuntimeError("a bug in the first look")
            if b"Call-ID: refused" in data:
                reply(b"SIP/2.0 503 Refused unparsed\r\n\r\n")
                return True
            return False

        def on_message(message, peer, reply):
            parsed.append(message.call_id)
            reply(make_response(message, 200, "OK").to_bytes())

        udp = await start_udp(HOST, 0, on_message, reuse_port=False, on_bytes=on_bytes)
        tcp = await start_tcp(HOST, 0, on_message, reuse_port=False, on_bytes=on_bytes)
        loop = asyncio.get_running_loop()
        answers = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            await loop.sock_connect(sock, udp.address)
            for call_id in ("refused", "broken", "plain"):
                await loop.sock_sendall(sock, register(call_id))
                answers.append(await asyncio.wait_for(loop.sock_recv(sock, 65535), 5))
        reader, writer = await asyncio.open_connection(HOST, tcp.port)
        writer.write(register("refused", "TCP"))
        answers.append(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5))
        writer.close()
        udp.close()
        tcp.close()
        return parsed, answers

    with caplog.at_level(logging.ERROR, logger="transport.sip.endpoints"):
        parsed, answers = asyncio.run(scenario())
    assert parsed == ["broken", "plain"]
    assert [answer.split(b"\r\n", 1)[0] for answer in answers] == [
        b"SIP/2.0 503 Refused unparsed", b"SIP/2.0 200 OK", b"SIP/2.0 200 OK",
        b"SIP/2.0 503 Refused unparsed"]
    failures = [r.getMessage() for r in caplog.records if "first look" in r.getMessage()]
    assert len(failures) == 1 and failures[0].endswith(" failed")


def test_requests_older_than_stale_after_in_the_queue_are_dropped_unread_responses_are_read():
    async def scenario():
        seen = []  # (Call-ID, seconds it waited in the kernel's queue)

        def on_message(message, peer, reply):
            seen.append((message.call_id, reply.queued))
            if isinstance(message, Request):
                reply(make_response(message, 200, "OK").to_bytes())

        def response(call_id):
            return make_response(parse_message(register(call_id)), 200, "OK").to_bytes()

        endpoint = await start_udp(HOST, 0, on_message, reuse_port=False, stale_after=0.1)
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(endpoint.address)
            sock.setblocking(False)
            # Linux turns on arrival stamps for the whole system a moment after the first
            # socket asks (until then a datagram is stamped when read): probe until a held
            # response shows its wait. Responses are never dropped.
            for attempt in range(50):
                sock.send(response(f"probe-{attempt}"))
                time.sleep(0.15)  # the loop is held: the probe waits in the kernel's queue
                while not seen:
                    await asyncio.sleep(0.01)
                if seen.pop()[1] > 0.1:
                    break
            sock.send(register("stale"))
            sock.send(response("notify-answer"))
            time.sleep(0.3)  # held again: both wait past stale_after
            sock.send(register("fresh"))
            reply = await asyncio.wait_for(loop.sock_recv(sock, 65535), 5)
            await asyncio.sleep(0.2)  # anything else the endpoint would have answered
            try:
                extra = sock.recv(65535)
            except BlockingIOError:
                extra = None
        endpoint.close()
        return [call_id for call_id, _ in seen], reply, extra

    seen, reply, extra = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert seen == ["notify-answer", "fresh"]
    assert parse_message(reply).call_id == "fresh" and extra is None


def test_a_receive_buffer_the_kernel_caps_is_warned_of_naming_the_key(caplog):
    limit = int(Path("/proc/sys/net/core/rmem_max").read_text())

    async def scenario():
        endpoint = await start_udp(HOST, 0, lambda *args: None, reuse_port=False,
                                   receive_buffer=limit + 2**20)
        endpoint.close()
        endpoint = await start_udp(HOST, 0, lambda *args: None, reuse_port=False,
                                   receive_buffer=limit // 4)
        endpoint.close()

    with caplog.at_level(logging.WARNING, logger="transport.sip.endpoints"):
        asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert warnings[0].startswith("sip.udp_receive_buffer: the kernel granted ")
    assert f"of the {limit + 2**20} bytes asked (raise net.core.rmem_max)" in warnings[0]


def test_two_endpoints_share_a_port_with_reuse_port():
    async def scenario():
        first = await start_udp(HOST, 0, lambda *args: None)
        second = await start_udp(HOST, first.port, lambda *args: None)
        ports = (first.port, second.port)
        first.close()
        second.close()
        return ports

    first, second = asyncio.run(scenario())
    assert first == second


def black_hole() -> tuple[socket.socket, socket.socket]:
    """A listener whose accept queue is full: the kernel drops further SYNs unanswered, as a
    watcher gone behind a firewall does."""
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname())
    return listener, filler


def test_a_connection_to_a_black_holed_peer_gives_up_at_the_connect_timeout(server):
    async def start():
        return await start_tcp(HOST, 0, answer_register,
                               limits=TcpLimits(connect_timeout=0.5))

    async def stop():
        endpoint.close()

    endpoint = server.run(start())
    listener, filler = black_hole()
    try:
        with pytest.raises(TimeoutError):
            server.run(endpoint.send(b"NOTIFY", listener.getsockname()))
        assert endpoint.connections == {}
    finally:
        server.run(stop())
        filler.close()
        listener.close()
