"""Non-INVITE transactions of RFC 3261 17.1.2 (client) and 17.2.2 (server), as pure state
machines: the caller feeds messages and the current time, and carries out the actions they
return. Nothing here reads a clock or touches a socket."""
from __future__ import annotations

import enum
from dataclasses import dataclass

from .message import Request, Response

T1 = 0.5  # RTT estimate
T2 = 4.0  # longest retransmit interval of a non-INVITE request
T4 = 5.0  # longest time a message stays in the network
MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 8.1.1.7: a branch built the RFC 3261 way starts with it


class State(enum.Enum):
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    TERMINATED = "terminated"


@dataclass(frozen=True)
class Retransmit:
    data: bytes  # the request, to send again


@dataclass(frozen=True)
class Provisional:
    response: Response


@dataclass(frozen=True)
class Final:
    response: Response


@dataclass(frozen=True)
class Timeout:
    """Timer F fired: no final response came (the TU treats it as a 408)."""


@dataclass(frozen=True)
class Terminated:
    """The transaction is over and can be forgotten."""


@dataclass(frozen=True, slots=True)
class TransactionKey:
    """What matches a message to its transaction: RFC 3261 17.2.3 for servers (branch,
    sent-by, method), 17.1.3 for clients (branch, method). A branch without the magic
    cookie comes from an RFC 2543 element: its requests are matched on `legacy` instead."""

    branch: str
    sent_by: str
    method: str
    legacy: tuple = ()

    @classmethod
    def server(cls, request: Request) -> TransactionKey:
        via = request.vias[0]
        method = "INVITE" if request.method == "ACK" else request.method
        branch = via.branch or ""
        if branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
            return cls(branch, via.sent_by, method)
        # an ACK carries the To tag of the response, not of the request it acknowledges
        to_tag = None if request.method == "ACK" else request.to.tag
        legacy = (request.uri, request.from_.tag, to_tag, request.call_id, request.cseq[0],
                  str(via))
        return cls("", via.sent_by, method, legacy)

    @classmethod
    def client(cls, message: Request | Response) -> TransactionKey:
        return cls(message.vias[0].branch or "", "", message.cseq[1])


class NonInviteServerTransaction:
    """17.2.2: absorbs retransmitted requests by resending the last response. It keeps that
    response as the bytes sent, and not the request: a UDP server transaction lingers for
    Timer J (32 s), so a busy registrar holds tens of thousands of them."""

    __slots__ = ("state", "_linger", "_timer_j", "_last")

    def __init__(self, *, reliable: bool, t1: float = T1) -> None:
        self.state = State.TRYING
        self._linger = 0.0 if reliable else 64 * t1  # Timer J
        self._timer_j: float | None = None
        self._last: bytes | None = None

    def send_response(self, response: Response, now: float) -> bytes:
        """Records `response` as sent by the TU; returns its bytes, for the caller to send."""
        return self.send_bytes(response.to_bytes(), response.status, now)

    def send_bytes(self, response: bytes, status: int, now: float) -> bytes:
        """send_response for a response of ``status`` already serialized."""
        if self.state in (State.COMPLETED, State.TERMINATED):
            raise ValueError(f"a final response was already sent ({self.state.value})")
        self._last = response
        if status < 200:
            self.state = State.PROCEEDING
        else:
            self.state = State.COMPLETED
            self._timer_j = now + self._linger
        return self._last

    def on_request_retransmission(self) -> bytes | None:
        """The response to send again, or None (still trying: the TU has not answered yet)."""
        if self.state in (State.PROCEEDING, State.COMPLETED):
            return self._last
        return None

    def on_transport_error(self) -> list:
        self.state = State.TERMINATED
        self._timer_j = None
        return [Terminated()]

    def poll(self, now: float) -> list:
        if self._timer_j is not None and now >= self._timer_j:
            self.state = State.TERMINATED
            self._timer_j = None
            return [Terminated()]
        return []

    def next_deadline(self) -> float | None:
        return self._timer_j


class NonInviteClientTransaction:
    """17.1.2: retransmits the request (Timer E) until a response, gives up at Timer F, and
    absorbs retransmitted final responses until Timer K."""

    def __init__(self, request: Request, now: float, *, reliable: bool,
                 t1: float = T1, t2: float = T2, t4: float = T4) -> None:
        self.request = request
        self.data = request.to_bytes()
        self.state = State.TRYING
        self._t2 = t2
        self._linger = 0.0 if reliable else t4
        self._interval = t1
        self._timer_e: float | None = None if reliable else now + t1
        self._timer_f: float | None = now + 64 * t1
        self._timer_k: float | None = None

    def on_response(self, response: Response, now: float) -> list:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return []  # a retransmitted final response, absorbed
        if response.status < 200:
            self.state = State.PROCEEDING
            return [Provisional(response)]
        self.state = State.COMPLETED
        self._timer_e = self._timer_f = None
        self._timer_k = now + self._linger
        return [Final(response)]

    def on_transport_error(self) -> list:
        self.state = State.TERMINATED
        self._timer_e = self._timer_f = self._timer_k = None
        return [Timeout()]

    def poll(self, now: float) -> list:
        if self._timer_f is not None and now >= self._timer_f:
            self.state = State.TERMINATED
            self._timer_e = self._timer_f = None
            return [Timeout()]
        actions: list = []
        if self._timer_e is not None and now >= self._timer_e:
            actions.append(Retransmit(self.data))
            if self.state is State.TRYING:
                self._interval = min(2 * self._interval, self._t2)
            else:
                self._interval = self._t2
            self._timer_e = now + self._interval
        if self._timer_k is not None and now >= self._timer_k:
            self.state = State.TERMINATED
            self._timer_k = None
            actions.append(Terminated())
        return actions

    def next_deadline(self) -> float | None:
        timers = [t for t in (self._timer_e, self._timer_f, self._timer_k) if t is not None]
        return min(timers) if timers else None
