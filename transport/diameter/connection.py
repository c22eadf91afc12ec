"""One Diameter transport connection: capabilities exchange, watchdog, request/answer matching.

Implements the parts of the RFC 6733 peer state machine that a single connection needs (no
election: each side either connects or accepts) and the RFC 3539 watchdog: after Tw without
traffic a DWR goes out, and a DWR left unanswered for another Tw takes the connection down.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import random
from enum import Enum
from typing import Awaitable, Callable, Union

from diameter.message import Message, MessageHeader
from diameter.message.constants import AVP_DISCONNECT_CAUSE

from .base import (
    DisconnectCause,
    LocalNode,
    PeerInfo,
    accept_cea,
    answer_cer,
    answer_result,
    build_cea,
    build_cer,
    build_dpa,
    build_dpr,
    build_dwa,
    build_dwr,
    build_error_answer,
)
from .codec import (
    DEFAULT_MAX_MESSAGE_LENGTH,
    HEADER_LENGTH,
    AvpReader,
    Command,
    ResultCode,
    first_session_id,
    message_length,
    next_end_to_end_id,
    parse_message,
    read_header,
    serialize,
)
from .errors import DiameterError, DiameterTimeout, PeerDown, ProtocolError

log = logging.getLogger("transport.diameter")

# A handler gets an inbound application request and returns its answer, directly or awaitably.
RequestHandler = Callable[[Message], Union[Message, Awaitable[Message]]]


class State(Enum):
    CONNECTING = "connecting"  # transport up, capabilities exchange under way
    OPEN = "open"
    CLOSING = "closing"  # our DPR is out
    CLOSED = "closed"


class DiameterConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 local: LocalNode, *, initiator: bool, handler: RequestHandler | None = None,
                 watchdog_interval: float = 30.0, handshake_timeout: float = 5.0,
                 max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH,
                 allowed_peers: frozenset[str] | None = None):
        self.local = local
        self._allowed_peers = allowed_peers  # responder: the Origin-Hosts whose CER we accept
        self.remote: PeerInfo | None = None
        self.state = State.CONNECTING
        self.close_reason: str | None = None
        self.remote_disconnect_cause: int | None = None  # from the peer's DPR, if it sent one
        self._reader, self._writer = reader, writer
        self._initiator = initiator
        self._handler = handler
        self._watchdog_interval = watchdog_interval
        self._handshake_timeout = handshake_timeout
        self._max_message_length = max_message_length
        self._loop = asyncio.get_running_loop()
        self._pending: dict[int, asyncio.Future] = {}
        self._hop_by_hop = random.getrandbits(32)
        self._tasks: set[asyncio.Task] = set()
        self._handshake_settled = asyncio.Event()
        self._closed = asyncio.Event()
        self._last_received = self._loop.time()
        # Messages written in one turn of the loop leave in one write: a batch of SARs (or
        # their answers) costs one system call instead of one each.
        self._outbox: list[bytes] = []
        sockname = writer.get_extra_info("sockname")
        self._host_ip = sockname[0] if sockname else "127.0.0.1"
        self.peer_address = writer.get_extra_info("peername")

    @property
    def is_open(self) -> bool:
        return self.state is State.OPEN

    @property
    def pending_requests(self) -> int:
        """Requests sent on this connection still waiting for their answer."""
        return len(self._pending)

    @property
    def name(self) -> str:
        if self.remote:
            return self.remote.origin_host
        return ":".join(map(str, self.peer_address[:2])) if self.peer_address else "peer"

    async def open(self) -> PeerInfo:
        """Run the capabilities exchange; on failure the connection is closed and this raises."""
        self._spawn(self._read_loop())
        try:
            if self._initiator:
                cea = await self._exchange(build_cer(self.local, self._host_ip),
                                           self._handshake_timeout)
                self.remote, self.state = accept_cea(cea, self.local), State.OPEN
            else:
                await asyncio.wait_for(self._handshake_settled.wait(), self._handshake_timeout)
                if self.state is not State.OPEN:
                    raise PeerDown(f"capabilities exchange failed: {self.close_reason}")
        except asyncio.TimeoutError:
            self.abort("no capabilities exchange")
            raise DiameterTimeout("no capabilities exchange within "
                                  f"{self._handshake_timeout:g}s") from None
        except DiameterError as exc:
            self.abort(f"capabilities exchange failed: {exc}")
            raise
        self._spawn(self._watchdog())
        return self.remote

    async def request(self, msg: Message, timeout: float) -> Message:
        """Send a request and wait for its answer; fails at once if the connection is not open."""
        if self.state is not State.OPEN:
            raise PeerDown(f"connection to {self.name} is {self.state.value}")
        return await self._exchange(msg, timeout)

    async def disconnect(self, cause: int = DisconnectCause.REBOOTING, timeout: float = 1.0):
        """DPR/DPA, then close. Requests still pending fail with PeerDown."""
        if self.state is State.OPEN:
            self.state = State.CLOSING
            try:
                await self._exchange(build_dpr(self.local, cause), timeout)
            except DiameterError as exc:
                log.info("%s: no DPA (%s)", self.name, exc)
        self._teardown("disconnected locally")
        await self.wait_closed()

    def abort(self, reason: str):
        """Drop the connection at once (framing lost, watchdog failure)."""
        self._teardown(reason, hard=True)

    async def wait_closed(self):
        await self._closed.wait()
        try:
            await self._writer.wait_closed()  # the socket itself, not only our state
        except (ConnectionError, OSError):
            pass

    # -- reading ----------------------------------------------------------------------------

    async def _read_loop(self):
        reason = "connection closed by peer"
        try:
            while self.state is not State.CLOSED:
                header = await self._reader.readexactly(HEADER_LENGTH)
                try:
                    length = message_length(header, self._max_message_length)
                    data = header + await self._reader.readexactly(length - HEADER_LENGTH)
                    self._last_received = self._loop.time()
                    msg = parse_message(data)
                except ProtocolError as err:
                    self._reject(read_header(header), err)
                    if err.fatal:
                        reason = f"framing lost: {err}"
                        break
                    continue
                if msg.header.is_request:
                    self._on_request(msg)
                else:
                    self._on_answer(msg)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except Exception:  # a bug here must close the connection, not leave it half alive
            log.exception("%s: failed to process a message", self.name)
            reason = "internal error"
        finally:
            self._teardown(reason)

    def _reject(self, header: MessageHeader, err: ProtocolError):
        log.warning("%s: malformed message (%s)", self.name, err)
        if header.is_request:
            self._write(build_error_answer(header, self.local, err.result_code, str(err),
                                           failed_avp=err.failed_avp, session_id=err.session_id))
            return
        waiter = self._pending.pop(header.hop_by_hop_identifier, None)
        if waiter and not waiter.done():
            waiter.set_exception(err)

    def _on_answer(self, msg: Message):
        waiter = self._pending.pop(msg.header.hop_by_hop_identifier, None)
        if waiter is None:
            log.debug("%s: answer to no pending request (late?) dropped", self.name)
        elif not waiter.done():
            waiter.set_result(msg)

    def _on_request(self, msg: Message):
        command = msg.header.command_code
        if command == Command.CAPABILITIES_EXCHANGE:
            self._on_cer(msg)
        elif command == Command.DEVICE_WATCHDOG:
            self._write(build_dwa(msg.header, self.local))
        elif command == Command.DISCONNECT_PEER:
            self.remote_disconnect_cause = AvpReader(msg.avps).value(AVP_DISCONNECT_CAUSE)
            self._write(build_dpa(msg.header, self.local))
            self._teardown("peer sent DPR")
        elif self.state is State.CONNECTING:
            self.abort("request before the capabilities exchange")  # RFC 6733 5.6
        elif self.state is not State.OPEN:
            self._answer_error(msg, ResultCode.DIAMETER_UNABLE_TO_COMPLY, "disconnecting")
        elif not self.local.supports(msg.header.application_id):
            self._answer_error(msg, ResultCode.DIAMETER_APPLICATION_UNSUPPORTED,
                               f"application {msg.header.application_id} not supported")
        else:
            self._dispatch(msg)

    def _on_cer(self, msg: Message):
        if self._initiator or self.state is not State.CONNECTING:
            self._write(build_cea(msg.header, self.local, self._host_ip,
                                  ResultCode.DIAMETER_UNABLE_TO_COMPLY))
            return
        cea, info = answer_cer(msg, self.local, self._host_ip, self._allowed_peers)
        self._write(cea)
        if info is None:
            self._teardown(f"CER refused with {answer_result(cea)}")
            return
        self.remote, self.state = info, State.OPEN
        self._handshake_settled.set()

    # -- inbound application requests --------------------------------------------------------

    def _dispatch(self, msg: Message):
        if self._handler is None:
            self._answer_error(msg, ResultCode.DIAMETER_COMMAND_UNSUPPORTED, "no handler")
            return
        try:
            result = self._handler(msg)
        except Exception as exc:
            self._answer_failure(msg, exc)
            return
        if inspect.isawaitable(result):
            self._spawn(self._answer_when_ready(msg, result))
        else:
            self._send_answer(msg, result)

    async def _answer_when_ready(self, msg: Message, pending_answer: Awaitable[Message]):
        try:
            answer = await pending_answer
        except Exception as exc:
            self._answer_failure(msg, exc)
            return
        self._send_answer(msg, answer)

    def _send_answer(self, request: Message, answer: Message | None):
        if answer is None:
            self._answer_error(request, ResultCode.DIAMETER_UNABLE_TO_COMPLY, "no answer")
            return
        answer.header.hop_by_hop_identifier = request.header.hop_by_hop_identifier
        answer.header.end_to_end_identifier = request.header.end_to_end_identifier
        try:
            self._write(answer)
        except Exception as exc:  # an answer the codec cannot encode
            self._answer_failure(request, exc)

    def _answer_failure(self, request: Message, exc: Exception):
        if isinstance(exc, ProtocolError):
            self._answer_error(request, exc.result_code, str(exc), exc.failed_avp)
        else:
            log.exception("%s: request handler failed", self.name, exc_info=exc)
            self._answer_error(request, ResultCode.DIAMETER_UNABLE_TO_COMPLY, "internal error")

    def _answer_error(self, request: Message, result_code: int, text: str,
                      failed_avp: bytes | None = None):
        self._write(build_error_answer(request.header, self.local, result_code, text,
                                       failed_avp=failed_avp,
                                       session_id=first_session_id(request.avps)))

    # -- sending ----------------------------------------------------------------------------

    async def _exchange(self, msg: Message, timeout: float) -> Message:
        header = msg.header
        self._hop_by_hop = (self._hop_by_hop + 1) & 0xFFFFFFFF
        hop_by_hop = header.hop_by_hop_identifier = self._hop_by_hop
        if not header.end_to_end_identifier:  # kept on a failover retransmission
            header.end_to_end_identifier = next_end_to_end_id()
        waiter = self._loop.create_future()
        self._pending[hop_by_hop] = waiter
        timer = self._loop.call_later(timeout, _expire, waiter, timeout)
        try:
            if not self._write(msg):
                raise PeerDown(f"connection to {self.name} is closed")
            return await waiter
        finally:
            timer.cancel()
            self._pending.pop(hop_by_hop, None)

    def _write(self, msg: Message) -> bool:
        if self._writer.is_closing():
            return False
        data = serialize(msg)  # first: a message the codec cannot encode schedules nothing
        if not self._outbox:
            self._loop.call_soon(self._flush)
        self._outbox.append(data)
        return True

    def _flush(self):
        data, self._outbox = b"".join(self._outbox), []
        if data and not self._writer.is_closing():
            self._writer.write(data)

    async def _watchdog(self):
        tw = self._watchdog_interval
        while self.state is State.OPEN:
            jitter = random.uniform(-1.0, 1.0) * min(2.0, tw / 10)  # RFC 3539: up to +-2 s
            wait = self._last_received + tw + jitter - self._loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            sent_at = self._loop.time()
            try:
                await self._exchange(build_dwr(self.local), tw)
            except DiameterTimeout:
                if self._last_received <= sent_at:  # RFC 3539: any message proves liveness
                    self.abort(f"watchdog: no DWA within {tw:g}s")
            except DiameterError:
                return

    # -- teardown -----------------------------------------------------------------------------

    def _spawn(self, coro):
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _teardown(self, reason: str, hard: bool = False):
        if self.state is State.CLOSED:
            return
        self.state, self.close_reason = State.CLOSED, reason
        log.info("%s: connection closed (%s)", self.name, reason)
        waiters, self._pending = self._pending, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(PeerDown(f"{self.name}: {reason}"))
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if hard:
            self._writer.transport.abort()
        else:
            self._flush()
            self._writer.close()  # flushes what is buffered (a DPA, an error answer)
        self._handshake_settled.set()
        self._closed.set()


def _expire(waiter: asyncio.Future, timeout: float):
    if not waiter.done():
        waiter.set_exception(DiameterTimeout(f"no answer within {timeout:g}s"))
