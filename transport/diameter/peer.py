"""Diameter peers over asyncio: an outbound peer that keeps itself connected, and a listener."""
from __future__ import annotations

import asyncio
import logging
import random

from diameter.message import Message

from .base import DisconnectCause, LocalNode, PeerInfo
from .codec import DEFAULT_MAX_MESSAGE_LENGTH, ResultCode
from .connection import DiameterConnection, RequestHandler
from .errors import DiameterError, DiameterTimeout, PeerDown, ProtocolError

__all__ = ["DiameterPeer", "DiameterServer", "DiameterTimeout", "PeerDown"]

log = logging.getLogger("transport.diameter")


class DiameterPeer:
    """One configured peer (host, port): connects, re-connects with exponential back-off after a
    failure or a drop, and sends requests over the open connection.

    `request()` never waits for a connection: while the peer is down it raises PeerDown at once,
    so a router can move on to another peer.
    """

    def __init__(self, host: str, port: int, local: LocalNode, *,
                 watchdog_interval: float = 30.0, connect_timeout: float = 3.0,
                 backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 request_handler: RequestHandler | None = None,
                 max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH):
        self.host, self.port, self.local = host, port, local
        self._watchdog_interval = watchdog_interval
        self._connect_timeout = connect_timeout
        self._backoff_initial, self._backoff_max = backoff_initial, backoff_max
        self._handler = request_handler
        self._max_message_length = max_message_length
        self._connection: DiameterConnection | None = None
        self._runner: asyncio.Task | None = None
        self._opened = asyncio.Event()
        self._closing = False

    def __repr__(self):
        return f"DiameterPeer({self.host}:{self.port}, {'open' if self.is_open else 'down'})"

    @property
    def is_open(self) -> bool:
        return self._connection is not None and self._connection.is_open

    @property
    def pending_requests(self) -> int:
        return self._connection.pending_requests if self._connection else 0

    @property
    def remote(self) -> PeerInfo | None:
        """Capabilities the peer advertised on the current connection (None while down)."""
        return self._connection.remote if self.is_open else None

    def set_request_handler(self, handler: RequestHandler | None):
        self._handler = handler

    async def start(self):
        if self._runner is None:
            self._closing = False
            self._runner = asyncio.get_running_loop().create_task(self._keep_connected())

    async def wait_open(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._opened.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def request(self, msg: Message, timeout: float) -> Message:
        connection = self._connection
        if connection is None or not connection.is_open:
            raise PeerDown(f"peer {self.host}:{self.port} is not connected")
        return await connection.request(msg, timeout)

    async def close(self, cause: int = DisconnectCause.REBOOTING):
        """Stop re-connecting, send DPR on the open connection and close it."""
        self._closing = True
        connection = self._connection
        if connection is not None:
            await connection.disconnect(cause)
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None

    async def _keep_connected(self):
        delay = self._backoff_initial
        while not self._closing:
            try:
                connection = await self._connect()
            except (OSError, asyncio.TimeoutError, DiameterError) as exc:
                log.info("peer %s:%s unreachable (%s); retrying in %.2fs",
                         self.host, self.port, exc, delay)
            else:
                if self._closing:  # close() ran while we were connecting
                    await connection.disconnect()
                    break
                self._connection = connection
                self._opened.set()
                delay = self._backoff_initial
                await connection.wait_closed()
                self._opened.clear()
                self._connection = None
                if self._closing:
                    break
                if connection.remote_disconnect_cause == DisconnectCause.DO_NOT_WANT_TO_TALK_TO_YOU:
                    delay = self._backoff_max  # RFC 6733 5.4.1: it asked to be left alone
            # Jitter keeps many clients from reconnecting in lock-step after an HSS restart.
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self._backoff_max)

    async def _connect(self) -> DiameterConnection:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self._connect_timeout)
        connection = DiameterConnection(reader, writer, self.local, initiator=True,
                                        handler=self._dispatch,
                                        watchdog_interval=self._watchdog_interval,
                                        handshake_timeout=self._connect_timeout,
                                        max_message_length=self._max_message_length)
        try:
            await connection.open()
        except BaseException:  # includes cancellation by close()
            connection.abort("connect abandoned")
            raise
        return connection

    def _dispatch(self, msg: Message):
        # Looked up per request so set_request_handler() applies to the live connection too.
        if self._handler is None:
            raise ProtocolError(ResultCode.DIAMETER_COMMAND_UNSUPPORTED, "no request handler")
        return self._handler(msg)


class DiameterServer:
    """Accepts Diameter connections (the responder side of the capabilities exchange)."""

    def __init__(self, local: LocalNode, *, request_handler: RequestHandler | None = None,
                 watchdog_interval: float = 30.0, handshake_timeout: float = 5.0,
                 max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH,
                 allowed_peers: frozenset[str] | None = None):
        """``allowed_peers``: the Origin-Hosts accepted; None accepts any peer."""
        self.local = local
        self._handler = request_handler
        self._allowed_peers = allowed_peers
        self._watchdog_interval = watchdog_interval
        self._handshake_timeout = handshake_timeout
        self._max_message_length = max_message_length
        self._server: asyncio.base_events.Server | None = None
        self._connections: dict[DiameterConnection, None] = {}  # insertion-ordered set

    @property
    def bound_port(self) -> int | None:
        if self._server is None or not self._server.sockets:
            return None
        return self._server.sockets[0].getsockname()[1]

    @property
    def connections(self) -> list[DiameterConnection]:
        """The open connections, oldest first."""
        return [c for c in self._connections if c.is_open]

    def connection_to(self, origin_host: str) -> DiameterConnection | None:
        for connection in self.connections:
            if connection.remote.origin_host == origin_host:
                return connection
        return None

    async def start(self, host: str, port: int):
        self._server = await asyncio.start_server(self._accept, host, port)

    async def stop(self, cause: int = DisconnectCause.REBOOTING):
        """Stop listening, then DPR every open connection."""
        if self._server is None:
            return
        self._server.close()
        await asyncio.gather(*(c.disconnect(cause) for c in list(self._connections)),
                             return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        connection = DiameterConnection(reader, writer, self.local, initiator=False,
                                        handler=self._handler,
                                        watchdog_interval=self._watchdog_interval,
                                        handshake_timeout=self._handshake_timeout,
                                        max_message_length=self._max_message_length,
                                        allowed_peers=self._allowed_peers)
        self._connections[connection] = None
        try:
            await connection.open()
            await connection.wait_closed()
        except DiameterError as exc:
            log.info("inbound connection from %s refused: %s", connection.name, exc)
        finally:
            self._connections.pop(connection, None)
