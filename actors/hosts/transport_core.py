"""TransportCore: everything a SIP transport does between its sockets and the IMPU shards.

It answers what needs no registration state itself (OPTIONS, 405), turns REGISTER, SUBSCRIBE
and PUBLISH into the registrar's requests and sends them in per-shard batches to the shard
owning the identity, absorbs UDP retransmissions as RFC 3261 server transactions, and sends
NOTIFYs as client transactions. Its I/O is injected (the shard call, the forwarding of a
response to another transport, the endpoints, the clock, the timer), so it runs without Ray.

UDP retransmissions that reach this transport again are absorbed here; those that reach
another transport are absorbed by the IMPU (it caches its last reply).
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from actors.config import parse_listen
from actors.hosts.batching import Batcher
from actors.hosts.overload import OverloadGate
from actors.hosts.rate_limit import ADMIT, REFUSE, SourceRateLimit
from actors.hosts.timers import ExpiryHeap
from actors.reg_event.requests import BadEvent, publish_request, subscribe_request
from actors.rules.register_request import register_request
from actors.rules.routing import shard_of
from actors.vocabulary import (
    ALLOW,
    RETRY_AFTER,
    SERVER,
    NotifyJob,
    Reply,
    branch_owner,
    notify_branch,
    response_to_tag,
)
from transport.sip.errors import SipParseError
from transport.sip.message import Headers, Request, Response, make_response
from transport.sip.quick_response import quick_response
from transport.sip.transaction import (
    Final,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    Retransmit,
    Timeout,
    TransactionKey,
)

log = logging.getLogger(__name__)

Peer = tuple[str, int]
ServerKey = tuple[TransactionKey, Peer]
CallShard = Callable[[int, str, list], Awaitable[list]]  # (shard index, method, items) -> results
ForwardResponse = Callable[[str, bytes], Awaitable[None]]  # (owner transport, response bytes)
# Option tags a Require may name (RFC 3261 8.2.2.3): Path (RFC 3327) and outbound's flows
# (RFC 5626); a request requiring anything else gets 420.
OPTION_TAGS = frozenset(("path", "outbound"))
ANSWERED = frozenset(method.strip() for method in ALLOW.split(","))  # 405 for any other
SHARD_METHODS = frozenset(("REGISTER", "SUBSCRIBE", "PUBLISH"))  # what overload sheds
UNANSWERED_RETRANSMITS = 2  # [sip] notify_unanswered_retransmits
UDP_MTU = 1300  # [sip] udp_mtu: RFC 3261 18.1.1's bound when the path MTU is unknown
CONNECTION_FAILED = -1  # a NOTIFY that could not be sent at all
# Seconds a next hop's name stays resolved (or unresolved), and how many names are kept. Every
# NOTIFY of a dialog routed through a P-CSCF names the same host; each lookup took a thread of
# the loop's default executor (a handful), and a resolver that drops a query holds one for its
# 5 s timeout: NOTIFYs queued behind the lookups for longer than Timer F, and the shards' dialog
# queues grew behind them.
RESOLVED_FOR = 30.0
RESOLVED_MAX = 1024


class Endpoint(Protocol):
    """What the core needs of a bound endpoint (transport/sip/endpoints.py) to send NOTIFYs."""

    host: str
    port: int

    async def send(self, data: bytes, peer: Peer) -> None: ...

    def connected(self, peer: Peer) -> bool:
        """Whether a connection with ``peer`` is open (always False for UDP)."""
        ...


@dataclass(slots=True)
class _Notify:
    """A NOTIFY client transaction in flight and where its retransmissions go."""

    transaction: NonInviteClientTransaction
    outcome: asyncio.Future  # its final status
    endpoint: Endpoint
    peer: Peer
    retransmits: int = 0

    def finish(self, status: int) -> None:
        if not self.outcome.done():
            self.outcome.set_result(status)


class TransportCore:
    def __init__(self, *, name: str, shards: int, t1: float, call_shard: CallShard,
                 forward_response: ForwardResponse, clock: Callable[[], float],
                 arm: Callable[[float], None] = lambda deadline: None,
                 wall_clock: Callable[[], float] = time.time, max_in_flight: int = 0,
                 rate_limit: SourceRateLimit | None = None,
                 overload: OverloadGate | None = None,
                 unanswered_retransmits: int = UNANSWERED_RETRANSMITS,
                 udp_mtu: int = UDP_MTU) -> None:
        """``arm(deadline)``: the caller runs ``poll`` at ``deadline`` (or soon after);
        ``wall_clock`` dates the responses; ``max_in_flight`` ([sip] max_in_flight) bounds
        the requests waiting on the shards, 0 leaves them unbounded; ``rate_limit`` bounds
        the requests of each source ([sip] pike_*); ``overload`` ([sip] overload_delay) answers
        503 at once what would wait too long; ``unanswered_retransmits`` ([sip]
        notify_unanswered_retransmits) bounds the UDP retransmissions of a NOTIFY to a
        watcher that never answered one; ``udp_mtu`` ([sip] udp_mtu, 0: none) is the size
        past which a NOTIFY goes over TCP and a binding query over UDP is refused."""
        self.name = name
        self.shards = shards
        self.t1 = t1
        self._call_shard = call_shard
        self._forward_response = forward_response
        self._clock = clock
        self._wall_clock = wall_clock
        self._arm = arm
        self._max_in_flight = max_in_flight
        self._rate_limit = rate_limit
        self._overload = overload
        self._unanswered_retransmits = unanswered_retransmits
        self._answered = AnsweredPeers()
        self._udp_mtu = udp_mtu
        self.in_flight = 0  # requests waiting on a shard's answer
        self._endpoints: dict[str, Endpoint] = {}  # "udp"/"tcp" -> the one NOTIFYs leave from
        self._batchers: dict[tuple[int, str], Batcher] = {}
        # UDP server transactions by (RFC 3261 17.2.3 key, sender): two clients sharing a Via
        # never get each other's responses.
        self._servers: dict[ServerKey, NonInviteServerTransaction] = {}
        # Completed ones in order of completion, which is the order of their Timer J: every
        # UDP server transaction lingers the same 64*T1.
        self._completed: deque[tuple[ServerKey, NonInviteServerTransaction]] = deque()
        self._clients: dict[str, _Notify] = {}  # by branch
        self._client_timers = ExpiryHeap()  # branch -> its transaction's next deadline
        # (host, port) -> (when it is looked up again, the lookup: an address or None)
        self._resolved: OrderedDict[tuple[str, int], tuple[float, asyncio.Task]] = OrderedDict()

    def add_endpoint(self, proto: str, endpoint: Endpoint) -> None:
        self._endpoints.setdefault(proto, endpoint)

    def reshard(self, shards: int) -> None:
        """Routes onto ``shards`` shards from now on (the registrar's shard count changed)."""
        self.shards = shards
        self._batchers.clear()  # batches in flight finish on their own

    # -- Requests from the endpoints

    def on_message(self, message: Request | Response, peer: Peer,
                   reply) -> Awaitable[None] | None:
        """An endpoint's handler: ``reply(data)`` answers where the message came from. What
        needs no shard (a retransmission, a request shed under overload) is answered before
        it returns, with no task to run: under overload that is most of what arrives.
        Otherwise it returns the coroutine that answers."""
        if not isinstance(message, Request):
            return self.on_response(message)
        if message.method == "ACK":  # acknowledges a final response to an INVITE: not answered
            return None
        if self._rate_limit is not None and not self._admit(message, peer, reply):
            return None
        if reply.reliable:  # Timer J is zero on reliable transports: nothing to remember
            if self._shed(message, reply.queued):
                reply(self._response(message, _overloaded(), peer).to_bytes())
                return None
            return self._answer_stream(message, peer, reply)
        key = (TransactionKey.server(message), peer)
        server = self._servers.get(key)
        if server is not None:  # a retransmission: the last response again, if any yet
            again = server.on_request_retransmission()
            if again is not None:
                reply(again)
            return None
        server = NonInviteServerTransaction(reliable=False, t1=self.t1)
        self._servers[key] = server
        if self._shed(message, reply.queued):
            response = self._response(message, _overloaded(), peer)
            self._complete(key, server, response.status, response.to_bytes(), reply)
            return None
        return self._answer_datagram(message, peer, reply, key, server)

    def refuse_unparsed(self, data: bytes, reply) -> bool:
        """An endpoint's first look at a message, before it is parsed: True when it answered
        it, a new request refused 503 by overload (see overload.py), from its raw head
        (quick_response.py). Under overload most of what arrives is refused, and a parse and
        a Response cost three times as much. False leaves the message to be parsed and
        handled as usual: no overload, a request of an unusual shape, a retransmission. Not
        with the per-source rate limit on, which comes first and needs a parsed request."""
        if self._overload is None or self._rate_limit is not None or not self._overload.refuses(
                reply.queued, self.in_flight, self._clock()):
            return False
        outcome = _overloaded()
        quick = quick_response(data, SHARD_METHODS, outcome.status, outcome.reason,
                               [*outcome.headers, ("Server", SERVER)], to_tag=response_to_tag,
                               source=reply.peer, date=self._wall_clock())
        if quick is None:
            return False
        transaction, response = quick
        if reply.reliable:
            self._overload.shed += 1
            reply(response)
            return True
        key = (transaction, reply.peer)
        if key in self._servers:
            return False
        self._overload.shed += 1
        server = self._servers[key] = NonInviteServerTransaction(reliable=False, t1=self.t1)
        self._complete(key, server, outcome.status, response, reply)
        return True

    def _shed(self, request: Request, queued: float) -> bool:
        """True for a new request the shards should not see now (see overload.py)."""
        return (self._overload is not None and request.method in SHARD_METHODS
                and not self._overload.admit(queued, self.in_flight, self._clock()))

    async def _answer_stream(self, request: Request, peer: Peer, reply) -> None:
        reply((await self._answer(request, peer, True)).to_bytes())

    async def _answer_datagram(self, request: Request, peer: Peer, reply, key: ServerKey,
                               server: NonInviteServerTransaction) -> None:
        response = self._fit_udp(request, await self._answer(request, peer, False), peer)
        self._complete(key, server, response.status, response.to_bytes(), reply)

    def _complete(self, key: ServerKey, server: NonInviteServerTransaction, status: int,
                  response: bytes, reply) -> None:
        data = server.send_bytes(response, status, self._clock())
        self._completed.append((key, server))
        self._arm(server.next_deadline())
        reply(data)

    def _fit_udp(self, request: Request, response: Response, peer: Peer) -> Response:
        """A binding query (REGISTER without Contact) over UDP whose answer would exceed the
        MTU bound is answered 513: a small query with a forged source must not draw tens of
        KB onto its victim, and a query changes nothing, so the UE loses nothing by asking
        again over TCP (RFC 3261 18.1.1). Responses to requests that changed bindings are
        sent whole: refusing them after the change would leave the UE believing it failed."""
        if (not self._udp_mtu or request.method != "REGISTER" or response.status != 200
                or request.headers.get("Contact") is not None
                or len(response.to_bytes()) <= self._udp_mtu):
            return response
        return self._response(request, Reply(513, "Message Too Large (query over TCP)"), peer)

    def _admit(self, request: Request, peer: Peer, reply) -> bool:
        """False for a request over its source's rate: answered 503 here, or dropped."""
        verdict = self._rate_limit.check(peer[0], self._clock())
        if verdict == ADMIT:
            return True
        if verdict == REFUSE:
            retry = str(math.ceil(self._rate_limit.window))
            reply(self._response(request, Reply(503, "Too many requests from this source",
                                                [("Retry-After", retry)]), peer).to_bytes())
        return False

    async def _answer(self, request: Request, peer: Peer, reliable: bool) -> Response:
        received = f"{'tcp' if reliable else 'udp'}:{peer[0]}:{peer[1]}"
        try:
            outcome = await self._outcome(request, received)
        except SipParseError as exc:
            outcome = Reply(exc.status, exc.reason)
        except Exception:  # a bug must still end the transaction with an answer
            log.exception("%s from %s failed", request.method, received)
            outcome = Reply(500, "Server Internal Error")
        return self._response(request, outcome, peer)

    async def _outcome(self, request: Request, received: str) -> Reply:
        method = request.method
        unsupported = sorted(request.require - OPTION_TAGS) if method in ANSWERED else ()
        if unsupported:  # RFC 3261 8.2.2.3: what the UAC requires and we do not do
            return Reply(420, "Bad Extension", [("Unsupported", ", ".join(unsupported))])
        if method == "REGISTER":
            item = register_request(request, received)
            item.transport, item.message = self.name, request.wire  # for the ASs' iFCs
            return await self._to_shard(item.aor, "register_batch", item)
        if method == "SUBSCRIBE":
            try:
                item = subscribe_request(request, received, self.name, _to_tag(request))
            except BadEvent:
                return _bad_event()
            outcome = await self._to_shard(item.presentity, "subscribe_batch", item)
            if outcome.status == 200:
                outcome.headers.append(("Event", request.headers.get("Event")))
            return outcome
        if method == "PUBLISH":
            try:
                item = publish_request(request)
            except BadEvent:
                return _bad_event()
            return await self._to_shard(item.presentity, "publish_batch", item)
        if method == "OPTIONS":
            return Reply(200, "OK", [("Allow", ALLOW)])
        return Reply(405, "Method Not Allowed", [("Allow", ALLOW)])

    async def _to_shard(self, identity: str, method: str, item) -> Reply:
        """The shard owning ``identity`` answers ``item``, in the next batch of ``method``.

        Beyond ``max_in_flight`` waiting requests the registrar is behind: a 503 now lets the
        UE retry later, where queueing would answer after it retransmitted, or never."""
        if self._max_in_flight and self.in_flight >= self._max_in_flight:
            return _overloaded()
        index = shard_of(identity, self.shards)
        batcher = self._batchers.get((index, method))
        if batcher is None:
            batcher = self._batchers[(index, method)] = Batcher(
                lambda items: self._call_shard(index, method, items))
        self.in_flight += 1
        try:
            return await batcher.submit(item)
        except Exception as exc:  # shard restarting or unreachable: the UE should retry soon
            log.warning("shard %d unavailable: %s", index, exc)
            return Reply(503, "Registrar shard unavailable", [("Retry-After", RETRY_AFTER)])
        finally:
            self.in_flight -= 1
            if self._overload is not None:
                self._overload.answered(self._clock())

    def _response(self, request: Request, outcome: Reply, peer: Peer) -> Response:
        response = make_response(request, outcome.status, outcome.reason, to_tag=_to_tag(request),
                                 source=peer, date=self._wall_clock())
        for name, value in outcome.headers:
            response.headers.add(name, value)
        response.headers.add("Server", SERVER)
        return response

    # -- NOTIFYs: client transactions (RFC 3261 17.1.2)

    async def send_notifies(self, jobs: list[NotifyJob]) -> list[int]:
        """NOTIFYs, and third-party REGISTERs to application servers (``job.method``). Answers
        each job's final status: 408 when Timer F fired, 503 when the target cannot be
        reached."""
        return await asyncio.gather(*(self._notify(job) for job in jobs))

    async def _notify(self, job: NotifyJob) -> int:
        proto, host, port = await self._next_hop(job)
        if proto == "udp" and self._too_big_for_udp(job):
            status = await self._notify_over(job, "tcp", host, port)
            if status != CONNECTION_FAILED:
                return status
            # RFC 3261 18.1.1: refused or reset over TCP, the request SHOULD go over UDP
        status = await self._notify_over(job, proto, host, port)
        return 503 if status == CONNECTION_FAILED else status

    def _too_big_for_udp(self, job: NotifyJob) -> bool:
        """RFC 3261 18.1.1: a request over 1300 bytes (the path MTU unknown) goes over TCP,
        when this transport has TCP."""
        udp = self._endpoints.get("udp")
        if not self._udp_mtu or udp is None or "tcp" not in self._endpoints:
            return False
        probe = _notify_request(job, "udp", udp, notify_branch(self.name, "0" * 16))
        return len(probe.to_bytes()) > self._udp_mtu

    async def _notify_over(self, job: NotifyJob, proto: str, host: str, port: int) -> int:
        """The NOTIFY's final status, or CONNECTION_FAILED when it could not be sent."""
        endpoint = self._endpoints.get(proto)
        if endpoint is None:
            return CONNECTION_FAILED
        branch = notify_branch(self.name, secrets.token_hex(8))
        request = _notify_request(job, proto, endpoint, branch)
        transaction = NonInviteClientTransaction(request, self._clock(), reliable=proto == "tcp",
                                                 t1=self.t1)
        notify = self._clients[branch] = _Notify(
            transaction, asyncio.get_running_loop().create_future(), endpoint, (host, port))
        self._schedule(branch, transaction)
        try:
            await endpoint.send(transaction.data, notify.peer)
            return await notify.outcome
        except OSError as exc:
            log.info("%s to %s:%s:%s failed: %s", job.method, proto, host, port, exc)
            return CONNECTION_FAILED
        finally:
            del self._clients[branch]
            self._client_timers.cancel(branch)

    async def _next_hop(self, job: NotifyJob) -> tuple[str, str, int]:
        """The job's destination, but over TCP the SUBSCRIBE's connection while it is open
        (RFC 5626 flows; a P-CSCF's listening port may not be where it connected from). A
        destination whose name does not resolve falls back to that flow."""
        flow = parse_listen(job.received, "notify flow")
        if not job.destination:
            return flow
        proto, host, port = parse_listen(job.destination, "notify destination")
        endpoint = self._endpoints.get(proto)
        if proto == "tcp" and flow[0] == "tcp" and endpoint and endpoint.connected(flow[1:]):
            return flow
        if _is_address(host):
            return proto, host, port
        address = await self._resolve(host, port)
        return flow if address is None else (proto, address, port)

    async def _resolve(self, host: str, port: int) -> str | None:
        """``host``'s address, None when it does not resolve; one lookup for every NOTIFY that
        asks within RESOLVED_FOR seconds (those asking meanwhile wait for the same one)."""
        key, now, loop = (host, port), self._clock(), asyncio.get_running_loop()
        entry = self._resolved.get(key)
        if entry is None or entry[0] <= now or entry[1].get_loop() is not loop:
            lookup = loop.create_task(self._look_up(host, port))
            entry = self._resolved[key] = (now + RESOLVED_FOR, lookup)
            self._resolved.move_to_end(key)
            if len(self._resolved) > RESOLVED_MAX:
                self._resolved.popitem(last=False)
        return await asyncio.shield(entry[1])

    async def _look_up(self, host: str, port: int) -> str | None:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port)
        except OSError as exc:
            log.info("NOTIFY next hop %s unresolved (%s): sent on the flow", host, exc)
            return None
        return infos[0][4][0]

    def _schedule(self, branch: str, transaction: NonInviteClientTransaction) -> None:
        deadline = transaction.next_deadline()
        if deadline is None:
            self._client_timers.cancel(branch)
        else:
            self._client_timers.schedule(branch, deadline)
            self._arm(deadline)

    # -- Responses

    async def on_response(self, response: Response) -> None:
        """A response to one of our NOTIFYs, ours or, by its branch, another transport's."""
        branch = response.vias[0].branch or ""
        notify = self._clients.get(branch)
        if notify is not None:
            if TransactionKey.client(response) != TransactionKey.client(notify.transaction.request):
                return  # same branch, another method: not ours (RFC 3261 17.1.3)
            self._answered.add(notify.peer)  # it knew our unguessable branch: it got the NOTIFY
            for action in notify.transaction.on_response(response, self._clock()):
                if isinstance(action, Final):
                    notify.finish(action.response.status)
            return
        owner = branch_owner(branch)
        if owner is not None and owner != self.name:  # a NOTIFY another transport sent
            try:
                await self._forward_response(owner, response.to_bytes())
            except Exception as exc:
                log.info("response for %s dropped: %s", owner, exc)
        # anything else is a stray response, dropped (RFC 3261 18.1.2)

    # -- Timers

    def next_deadline(self) -> float | None:
        """When ``poll`` next has work: the earliest Timer J, E or F."""
        deadlines = [self._completed[0][1].next_deadline() if self._completed else None,
                     self._client_timers.next_deadline()]
        deadlines = [d for d in deadlines if d is not None]
        return min(deadlines) if deadlines else None

    async def poll(self, now: float) -> None:
        """Fires the timers due at ``now``: forgets server transactions past Timer J,
        retransmits NOTIFYs over UDP (Timer E), gives them up as 408 (Timer F)."""
        completed = self._completed
        while completed:
            key, server = completed[0]
            deadline = server.next_deadline()
            if deadline is not None and deadline > now:
                break
            completed.popleft()
            server.poll(now)
            if self._servers.get(key) is server:
                del self._servers[key]
        for branch in self._client_timers.due(now):
            notify = self._clients.get(branch)
            if notify is None:
                continue
            for action in notify.transaction.poll(now):
                if isinstance(action, Retransmit):
                    if not self._may_retransmit(notify):
                        continue
                    try:
                        await notify.endpoint.send(action.data, notify.peer)
                    except OSError as exc:  # the next retransmission or Timer F settles it
                        log.info("NOTIFY retransmission to %s:%s failed: %s", *notify.peer, exc)
                elif isinstance(action, Timeout):
                    notify.finish(408)
            if branch in self._clients and not notify.outcome.done():
                self._schedule(branch, notify.transaction)


    def _may_retransmit(self, notify: _Notify) -> bool:
        """A NOTIFY to a watcher that has never answered one goes out 1 + budget times: the
        SUBSCRIBE's source may be spoofed, and the victim gets no eleven copies of a reginfo
        body. Timer F still ends the transaction (408), and the subscription with it."""
        notify.retransmits += 1
        return (notify.retransmits <= self._unanswered_retransmits
                or notify.peer in self._answered)


class AnsweredPeers:
    """The UDP peers that answered one of our NOTIFYs, the most recent ``size`` of them."""

    def __init__(self, size: int = 65536) -> None:
        self._peers: OrderedDict[Peer, None] = OrderedDict()
        self._size = size

    def add(self, peer: Peer) -> None:
        self._peers[peer] = None
        self._peers.move_to_end(peer)
        if len(self._peers) > self._size:
            self._peers.popitem(last=False)

    def __contains__(self, peer: Peer) -> bool:
        return peer in self._peers


def _overloaded() -> Reply:
    return Reply(503, "Registrar overloaded", [("Retry-After", RETRY_AFTER)])


def _bad_event() -> Reply:
    return Reply(489, "Bad Event", [("Allow-Events", "reg")])


def _notify_request(job: NotifyJob, proto: str, endpoint: Endpoint, branch: str) -> Request:
    # The only Via of the NOTIFY (or third-party REGISTER): our sent-by (RFC 3261 18.1.1), a
    # branch naming us.
    via = f"SIP/2.0/{proto.upper()} {_sent_by(endpoint)};branch={branch}"
    return Request(job.method, job.request_uri, Headers([("Via", via), *job.headers]), job.body)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _sent_by(endpoint: Endpoint) -> str:
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return f"{host}:{endpoint.port}"


def _to_tag(request: Request) -> str:
    return response_to_tag(request.call_id, request.cseq[0])
