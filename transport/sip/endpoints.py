"""asyncio UDP and TCP endpoints: the only I/O of the SIP stack.

Each parsed message goes to `on_message(message, peer, reply)`; a coroutine it returns runs
as a task, so a slow handler never holds up reading. Requests that fail to parse are
answered here with the parse error's status and reason; broken responses are dropped.
Sockets set SO_REUSEADDR and SO_REUSEPORT so that several processes can serve one port.
TCP connections are bounded (TcpLimits): in all, per source address, idle time and unsent bytes,
so that neither slow readers nor idle or piled-up connections exhaust memory or descriptors.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import socket
from dataclasses import dataclass
from typing import Awaitable, Callable

from .errors import SipParseError
from .framing import PING, StreamFramer
from .message import Request, Response
from .parser import parse_message
from .rejection import error_response
from .reuseport import spread_randomly

log = logging.getLogger(__name__)

Peer = tuple[str, int]
OnMessage = Callable[[Request | Response, Peer, "Reply"], Awaitable[None] | None]


class Reply:
    """Sends bytes back to where a message came from; `reliable` tells TCP from UDP."""

    __slots__ = ("_send", "peer", "reliable")

    def __init__(self, send: Callable[[bytes], None], peer: Peer, reliable: bool) -> None:
        self._send = send
        self.peer = peer
        self.reliable = reliable

    def __call__(self, data: bytes) -> None:
        self._send(data)


class _DatagramReply(Reply):
    """A Reply to a datagram: sends straight with the endpoint's transport (no closure to
    build for each datagram)."""

    __slots__ = ("_transport", "_addr")

    def __init__(self, transport: asyncio.DatagramTransport, addr) -> None:
        self._transport = transport
        self._addr = addr
        self.peer = addr[:2]
        self.reliable = False

    def __call__(self, data: bytes) -> None:
        self._transport.sendto(data, self._addr)


class _Dispatcher:
    def __init__(self, on_message: OnMessage) -> None:
        self.on_message = on_message
        self.tasks: set[asyncio.Future] = set()

    def handle(self, data: bytes, reply: Reply) -> None:
        try:
            message = parse_message(data)
        except SipParseError as error:
            self.reject(data, error, reply)
            return
        try:
            result = self.on_message(message, reply.peer, reply)
        except Exception:
            log.exception("message handler failed for %r from %s", message, reply.peer)
            return
        if result is not None and inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self.tasks.add(task)
            task.add_done_callback(self._finished)

    def reject(self, data: bytes, error: SipParseError, reply: Reply) -> None:
        response = error_response(data, error, to_tag=secrets.token_hex(4))
        if response is None:
            log.info("dropped an unparsable message from %s: %s", reply.peer, error)
        else:
            reply(response.to_bytes())

    def _finished(self, task: asyncio.Future) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("message handler failed", exc_info=task.exception())

    def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()


class _Endpoint:
    def __init__(self, on_message: OnMessage) -> None:
        self.dispatcher = _Dispatcher(on_message)
        self.address: Peer = ("", 0)  # bound (host, port)

    @property
    def host(self) -> str:
        return self.address[0]

    @property
    def port(self) -> int:
        return self.address[1]


def _bound_socket(host: str, port: int, kind: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class UdpEndpoint(_Endpoint, asyncio.DatagramProtocol):
    transport: asyncio.DatagramTransport

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.dispatcher.handle(data, _DatagramReply(self.transport, addr))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error on %s: %s", self.address, exc)

    def connected(self, peer: Peer) -> bool:
        return False  # datagrams have no connection

    async def send(self, data: bytes, peer: Peer) -> None:
        self.transport.sendto(data, peer)

    def close(self) -> None:
        self.dispatcher.cancel()
        self.transport.close()


async def start_udp(host: str, port: int, on_message: OnMessage, *,
                    reuse_port: bool = True, spread: int = 1) -> UdpEndpoint:
    """``spread``: how many processes share the port; above 1, datagrams are spread over them
    at random rather than by sender (see reuseport.py)."""
    sock = _bound_socket(host, port, socket.SOCK_DGRAM, reuse_port)
    if reuse_port and spread > 1:
        spread_randomly(sock, spread)
    endpoint = UdpEndpoint(on_message)
    endpoint.address = sock.getsockname()[:2]
    await asyncio.get_running_loop().create_datagram_endpoint(lambda: endpoint, sock=sock)
    return endpoint


@dataclass(frozen=True)
class TcpLimits:
    """Kamailio's names where it has them (tcp_max_connections, tcp_connection_lifetime,
    tcp_conn_wq_max); the defaults are those of [sip] in the README."""

    max_connections: int = 2048  # accepted and opened, in all
    max_per_source: int = 64  # from one IP address
    idle_timeout: float = 600.0  # seconds without a byte received (CRLF keep-alives count)
    write_buffer: int = 1 << 20  # bytes the kernel would not take yet: past it, disconnected
    # Seconds a connection we open (a NOTIFY's) may take: a black-holed watcher would hold its
    # NOTIFY, and the batch it came in, for the kernel's SYN retries (two minutes).
    connect_timeout: float = 3.0


class _Connection(asyncio.Protocol):
    """One TCP connection: frames the stream, answers keep-alive pings, closes when idle."""

    def __init__(self, endpoint: TcpEndpoint) -> None:
        self.endpoint = endpoint
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.reply: Reply | None = None
        self._last_received = 0.0
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")[:2]
        self.reply = Reply(self.write, peer, reliable=True)
        refusal = self.endpoint.refusal(peer[0])
        if refusal is not None:
            log.warning("TCP connection from %s refused: %s", peer, refusal)
            transport.abort()
            return
        self.endpoint.connections[peer] = self
        self._last_received = asyncio.get_running_loop().time()
        self._arm_idle(self.endpoint.limits.idle_timeout)

    def _arm_idle(self, delay: float) -> None:
        self._idle = asyncio.get_running_loop().call_later(delay, self._on_idle)

    def _on_idle(self) -> None:
        # Re-armed from the last byte rather than reset on every read: one timer per period.
        now = asyncio.get_running_loop().time()
        left = self._last_received + self.endpoint.limits.idle_timeout - now
        if left > 0:
            self._arm_idle(left)
        else:
            log.info("TCP connection from %s idle: closed", self.reply.peer)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._last_received = asyncio.get_running_loop().time()
        try:
            frames = self.framer.feed(data)
        except SipParseError as error:  # the stream cannot be resynchronised: answer, close
            self.endpoint.dispatcher.reject(self.framer.pending, error, self.reply)
            self.transport.close()
            return
        for frame in frames:
            if frame is PING:
                self.write(b"\r\n")
            else:
                self.endpoint.dispatcher.handle(frame, self.reply)

    def write(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        self.transport.write(data)  # what the kernel does not take at once stays with us
        if self.transport.get_write_buffer_size() > self.endpoint.limits.write_buffer:
            log.warning("TCP peer %s reads too slowly: disconnected", self.reply.peer)
            self.transport.abort()

    def connection_lost(self, exc) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if self.endpoint.connections.get(self.reply.peer) is self:
            del self.endpoint.connections[self.reply.peer]


class TcpEndpoint(_Endpoint):
    def __init__(self, on_message: OnMessage, limits: TcpLimits = TcpLimits()) -> None:
        super().__init__(on_message)
        self.limits = limits
        self.connections: dict[Peer, _Connection] = {}
        self.server: asyncio.Server | None = None

    def refusal(self, host: str) -> str | None:
        """Why one more connection with ``host`` is refused, or None."""
        if len(self.connections) >= self.limits.max_connections:
            return f"{len(self.connections)} connections open (tcp_max_connections)"
        if sum(peer[0] == host for peer in self.connections) >= self.limits.max_per_source:
            return f"{self.limits.max_per_source} connections from {host} already"
        return None

    def connected(self, peer: Peer) -> bool:
        return peer in self.connections

    async def send(self, data: bytes, peer: Peer) -> None:
        """Over the connection from or to `peer`, opening one if there is none (TimeoutError
        past ``limits.connect_timeout``)."""
        connection = self.connections.get(peer)
        if connection is None:
            opening = asyncio.get_running_loop().create_connection(
                lambda: _Connection(self), peer[0], peer[1])
            _, connection = await asyncio.wait_for(opening, self.limits.connect_timeout)
        connection.write(data)

    def close(self) -> None:
        self.dispatcher.cancel()
        self.server.close()
        for connection in list(self.connections.values()):
            connection.transport.close()


async def start_tcp(host: str, port: int, on_message: OnMessage, *, reuse_port: bool = True,
                    limits: TcpLimits = TcpLimits()) -> TcpEndpoint:
    sock = _bound_socket(host, port, socket.SOCK_STREAM, reuse_port)
    endpoint = TcpEndpoint(on_message, limits)
    endpoint.address = sock.getsockname()[:2]
    endpoint.server = await asyncio.get_running_loop().create_server(
        lambda: _Connection(endpoint), sock=sock)
    return endpoint
