"""asyncio UDP and TCP endpoints: the only I/O of the SIP stack.

Each parsed message goes to `on_message(message, peer, reply)`; a coroutine it returns runs
as a task, so a slow handler never holds up reading. An `on_bytes(data, reply)` handler, when
given, sees each message before it is parsed, and answers it alone when it returns True.
Requests that fail to parse are answered here with the parse error's status and reason;
broken responses are dropped.
Sockets set SO_REUSEADDR and SO_REUSEPORT so that several processes can serve one port.
TCP connections are bounded (TcpLimits): in all, per source address, idle time and unsent bytes,
so that neither slow readers nor idle or piled-up connections exhaust memory or descriptors.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import math
import secrets
import socket
import struct
import sys
import time
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
OnBytes = Callable[[bytes, "Reply"], bool]


class Reply:
    """Sends bytes back to where a message came from; `reliable` tells TCP from UDP;
    `queued`: seconds the message waited in the kernel before we read it (UDP only)."""

    __slots__ = ("_send", "peer", "reliable", "queued")

    def __init__(self, send: Callable[[bytes], None], peer: Peer, reliable: bool) -> None:
        self._send = send
        self.peer = peer
        self.reliable = reliable
        self.queued = 0.0

    def __call__(self, data: bytes) -> None:
        self._send(data)


class _DatagramReply(Reply):
    """A Reply to a datagram: sends straight with the endpoint's socket (no closure to
    build for each datagram)."""

    __slots__ = ("_endpoint", "_addr")

    def __init__(self, endpoint: UdpEndpoint, addr, queued: float) -> None:
        self._endpoint = endpoint
        self._addr = addr
        self.peer = addr[:2]
        self.reliable = False
        self.queued = queued

    def __call__(self, data: bytes) -> None:
        self._endpoint.sendto(data, self._addr)


class _Dispatcher:
    def __init__(self, on_message: OnMessage, on_bytes: OnBytes | None) -> None:
        self.on_message = on_message
        self.on_bytes = on_bytes
        self.tasks: set[asyncio.Future] = set()

    def handle(self, data: bytes, reply: Reply) -> None:
        if self.on_bytes is not None:
            try:
                if self.on_bytes(data, reply):
                    return
            except Exception:  # a bug there must not cost the message its answer
                log.exception("first look at a message from %s failed", reply.peer)
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
    def __init__(self, on_message: OnMessage, on_bytes: OnBytes | None) -> None:
        self.dispatcher = _Dispatcher(on_message, on_bytes)
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


# The kernel stamps each datagram with its arrival (Linux SO_TIMESTAMPNS, a struct timespec),
# which tells how long it waited in the socket's queue: what an overloaded registrar sheds on.
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_STAMP = struct.Struct("@qq")
_STAMP_SPACE = socket.CMSG_SPACE(_STAMP.size)
_MAX_DATAGRAM = 65535
# Datagrams read per wake-up of the loop: one each (asyncio's own) spends most of a busy
# loop on polling; a bound keeps tasks and timers served between reads.
_READS_PER_WAKEUP = 32

class UdpEndpoint(_Endpoint):
    """Reads its socket straight from the loop (recvmsg, for the kernel's timestamps).

    A request that waited longer than ``stale_after`` in the kernel's queue is dropped unread,
    as a full queue would have dropped it: its sender has sent it again by then. Answering it
    would cost a parse, and a transport that cannot answer as fast as requests arrive would
    otherwise only ever read requests too old to serve. Responses are always read."""

    def __init__(self, on_message: OnMessage, sock: socket.socket,
                 stale_after: float = math.inf, on_bytes: OnBytes | None = None) -> None:
        super().__init__(on_message, on_bytes)
        self._sock = sock
        self._stale_after = stale_after
        self.address = sock.getsockname()[:2]
        self._stamped = _ask_for_timestamps(sock)
        # One buffer for every read, each datagram copied out at its size: a 64 KiB buffer
        # allocated per datagram and shrunk left the heap fragmented by the long-lived ones.
        self._buffer = memoryview(bytearray(_MAX_DATAGRAM))
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._read_ready)

    def _read_ready(self) -> None:
        for _ in range(_READS_PER_WAKEUP):
            try:
                size, ancillary, _, addr = self._sock.recvmsg_into([self._buffer], _STAMP_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error reported on a read: the next may work
                log.debug("UDP error on %s: %s", self.address, exc)
                continue
            queued = _queued(ancillary) if self._stamped else 0.0
            if queued > self._stale_after and self._buffer[:4] != b"SIP/":
                continue
            self.dispatcher.handle(bytes(self._buffer[:size]), _DatagramReply(self, addr, queued))

    def sendto(self, data: bytes, addr) -> None:
        try:
            self._sock.sendto(data, addr)
        except OSError as exc:  # a full buffer or an unreachable peer: UDP loses it, the
            log.debug("UDP send to %s failed: %s", addr, exc)  # peer retransmits

    def connected(self, peer: Peer) -> bool:
        return False  # datagrams have no connection

    async def send(self, data: bytes, peer: Peer) -> None:
        self.sendto(data, peer)

    def close(self) -> None:
        self.dispatcher.cancel()
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()


def _ask_for_timestamps(sock: socket.socket) -> bool:
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:  # not Linux: nothing is shed for its time in the queue
        return False
    return True


def _queued(ancillary) -> float:
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(value) >= _STAMP.size:
            seconds, nanoseconds = _STAMP.unpack_from(value)
            return max(time.time() - seconds - nanoseconds * 1e-9, 0.0)
    return 0.0


async def start_udp(host: str, port: int, on_message: OnMessage, *,
                    reuse_port: bool = True, spread: int = 1, receive_buffer: int = 0,
                    stale_after: float = math.inf,
                    on_bytes: OnBytes | None = None) -> UdpEndpoint:
    """``spread``: how many processes share the port; above 1, datagrams are spread over them
    at random rather than by sender (see reuseport.py). ``receive_buffer``: SO_RCVBUF bytes,
    0 leaves the system's default. ``stale_after``: see UdpEndpoint."""
    sock = _bound_socket(host, port, socket.SOCK_DGRAM, reuse_port)
    if reuse_port and spread > 1:
        spread_randomly(sock, spread)
    if receive_buffer:
        _ask_for_receive_buffer(sock, receive_buffer)
    return UdpEndpoint(on_message, sock, stale_after, on_bytes)


def _ask_for_receive_buffer(sock: socket.socket, size: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    # Linux caps the size at net.core.rmem_max without a word, and reports twice what it set
    # (the other half is its own bookkeeping).
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    if sys.platform.startswith("linux"):
        granted //= 2
    if granted < size:
        log.warning("sip.udp_receive_buffer: the kernel granted %d of the %d bytes asked "
                    "(raise net.core.rmem_max): a burst beyond it is dropped, not answered 503",
                    granted, size)


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


class _Connection(asyncio.BufferedProtocol):
    """One TCP connection: frames the stream, answers keep-alive pings, closes when idle.
    Reads into its endpoint's one buffer (asyncio hands each read to buffer_updated before
    the next), so no read allocates more than it received."""

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

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.endpoint.read_buffer

    def buffer_updated(self, size: int) -> None:
        self.data_received(bytes(self.endpoint.read_buffer[:size]))

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
    def __init__(self, on_message: OnMessage, limits: TcpLimits = TcpLimits(),
                 on_bytes: OnBytes | None = None) -> None:
        super().__init__(on_message, on_bytes)
        self.limits = limits
        self.connections: dict[Peer, _Connection] = {}
        self.read_buffer = memoryview(bytearray(_MAX_DATAGRAM))  # shared: see _Connection
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
                    limits: TcpLimits = TcpLimits(),
                    on_bytes: OnBytes | None = None) -> TcpEndpoint:
    sock = _bound_socket(host, port, socket.SOCK_STREAM, reuse_port)
    endpoint = TcpEndpoint(on_message, limits, on_bytes)
    endpoint.address = sock.getsockname()[:2]
    endpoint.server = await asyncio.get_running_loop().create_server(
        lambda: _Connection(endpoint), sock=sock)
    return endpoint
