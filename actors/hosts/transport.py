"""SipTransport: a stateless Ray actor that owns SIP sockets and routes requests to IMPU shards.

Several transports per node bind the same port (SO_REUSEPORT). Each parses, answers what needs
no registration state itself, and sends REGISTERs in per-shard batches to the shard owning the
identity. UDP retransmissions that reach this transport again are absorbed here; those that
reach another transport are absorbed by the IMPU (it caches its last reply).
"""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import time

import ray

from actors.config import Config, parse_listen
from actors.hosts.batching import Batcher
from actors.reg_event.requests import BadEvent, publish_request, subscribe_request
from actors.rules.register_request import register_request
from actors.rules.routing import shard_of
from actors.vocabulary import (
    ALLOW,
    BRANCH_SEPARATOR,
    RETRY_AFTER,
    SERVER,
    NotifyJob,
    Reply,
    shard_name,
)
from transport.sip import endpoints
from transport.sip.errors import SipParseError
from transport.sip.message import Headers, Request, Response, make_response
from transport.sip.parser import parse_message
from transport.sip.transaction import Final, NonInviteClientTransaction, Retransmit, Timeout

log = logging.getLogger(__name__)

TIMER_J = 32.0  # 64*T1: how long a UDP server transaction remembers its final response


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class SipTransport:
    def __init__(self, config: Config, listen: list[str] | None = None) -> None:
        self.config = config
        self.listen = listen or config.sip.listen
        self.shards = config.ray.shards
        self.endpoints: list = []
        self._by_proto: dict[str, object] = {}  # "udp"/"tcp" -> the endpoint NOTIFYs leave from
        self._batchers: dict[tuple[int, str], Batcher] = {}
        self._completed: dict[tuple, tuple[float, bytes | None]] = {}
        self._sweeper: asyncio.Task | None = None
        self.name = ray.get_runtime_context().get_actor_name() or "sip-transport"
        self.t1 = config.sip.t1
        self._notifies = itertools.count(1)
        self._clients: dict[str, tuple[NonInviteClientTransaction, asyncio.Future]] = {}

    async def start(self) -> list[str]:
        """Binds every listener; returns them as 'udp:host:port' once each accepts traffic."""
        bound = []
        for spec in self.listen:
            proto, host, port = parse_listen(spec)
            if proto == "udp":  # one P-CSCF's datagrams go to every transport of the node
                endpoint = await endpoints.start_udp(
                    host, port, self._on_message, spread=self.config.ray.transports_per_node)
            else:  # a TCP connection stays with the transport that accepted it
                endpoint = await endpoints.start_tcp(host, port, self._on_message)
            self.endpoints.append(endpoint)
            self._by_proto.setdefault(proto, endpoint)
            bound.append(f"{proto}:{host}:{endpoint.port}")
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return bound

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        for endpoint in self.endpoints:
            endpoint.close()
        self.endpoints.clear()

    async def _on_message(self, message, peer, reply) -> None:
        if not isinstance(message, Request):
            await self._on_response(message)
            return
        reliable = getattr(reply, "reliable", False)
        key = None if reliable else _transaction_key(message)
        if key is not None:
            seen = self._completed.get(key)
            if seen is not None:
                if seen[1] is not None:
                    reply(seen[1])
                return  # absorbed retransmission
            self._completed[key] = (time.monotonic(), None)
        data = (await self._respond(message, peer, reliable)).to_bytes()
        if key is not None:
            self._completed[key] = (time.monotonic(), data)
        reply(data)

    async def _respond(self, request: Request, peer, reliable: bool) -> Response:
        method = request.method
        if method == "REGISTER":
            return await self._register(request, peer, reliable)
        if method in ("SUBSCRIBE", "PUBLISH"):
            return await self._event(request, peer, reliable)
        if method == "OPTIONS":
            return self._response(request, Reply(200, "OK", [("Allow", ALLOW)]))
        return self._response(request, Reply(405, "Method Not Allowed", [("Allow", ALLOW)]))

    async def _register(self, request: Request, peer, reliable: bool) -> Response:
        try:
            req = register_request(request, _flow(peer, reliable))
        except SipParseError as exc:
            return self._response(request, Reply(exc.status, exc.reason))
        return self._response(request, await self._to_shard(req.aor, "register_batch", req))

    async def _to_shard(self, identity: str, method: str, item) -> Reply:
        """The shard owning ``identity`` answers ``item``, in the next batch of ``method``."""
        index = shard_of(identity, self.shards)
        try:
            return await self._batcher(index, method).submit(item)
        except Exception as exc:  # shard restarting or unreachable: the UE should retry soon
            log.warning("shard %d unavailable: %s", index, exc)
            return Reply(503, "Registrar shard unavailable", [("Retry-After", RETRY_AFTER)])

    async def _event(self, request: Request, peer, reliable: bool) -> Response:
        received = _flow(peer, reliable)
        try:
            if request.method == "SUBSCRIBE":
                item = subscribe_request(request, received, self.name, _to_tag(request))
            else:
                item = publish_request(request)
        except BadEvent:
            return self._response(request, Reply(489, "Bad Event", [("Allow-Events", "reg")]))
        except SipParseError as exc:
            return self._response(request, Reply(exc.status, exc.reason))
        method = "subscribe_batch" if request.method == "SUBSCRIBE" else "publish_batch"
        outcome = await self._to_shard(item.presentity, method, item)
        if request.method == "SUBSCRIBE" and outcome.status == 200:
            outcome.headers.append(("Event", request.headers.get("Event")))
        return self._response(request, outcome)

    async def send_notifies(self, jobs: list[NotifyJob]) -> list[int]:
        """Sends NOTIFYs as client transactions (RFC 3261 17.1.2); answers each final status,
        408 when Timer F fired, 503 when the watcher's flow cannot be reached."""
        return await asyncio.gather(*(self._notify(job) for job in jobs))

    async def take_response(self, data: bytes) -> None:
        """A response to one of our NOTIFYs that reached another transport first."""
        await self._on_response(parse_message(data))

    async def _notify(self, job: NotifyJob) -> int:
        proto, host, port = parse_listen(job.received, "notify target")
        endpoint = self._by_proto.get(proto)
        if endpoint is None:
            return 503
        loop = asyncio.get_running_loop()
        branch = f"z9hG4bK{BRANCH_SEPARATOR}{self.name}{BRANCH_SEPARATOR}{next(self._notifies)}"
        headers = Headers()
        for name, value in job.headers:
            if name == "Via":  # ours to write: our address and a branch naming us
                value = f"SIP/2.0/{proto.upper()} {endpoint.host}:{endpoint.port};branch={branch}"
            headers.add(name, value)
        request = Request("NOTIFY", job.request_uri, headers, job.body)
        transaction = NonInviteClientTransaction(request, loop.time(), reliable=proto == "tcp", t1=self.t1)
        outcome = loop.create_future()
        self._clients[branch] = (transaction, outcome)
        try:
            await endpoint.send(transaction.data, (host, port))
            while not outcome.done():
                deadline = transaction.next_deadline()
                wait = None if deadline is None else max(0.0, deadline - loop.time())
                await asyncio.wait([outcome], timeout=wait)
                for action in transaction.poll(loop.time()):
                    if isinstance(action, Retransmit):
                        await endpoint.send(action.data, (host, port))
                    elif isinstance(action, Timeout) and not outcome.done():
                        outcome.set_result(408)
            return outcome.result()
        except OSError as exc:
            log.info("NOTIFY to %s:%s failed: %s", host, port, exc)
            return 503
        finally:
            self._clients.pop(branch, None)

    async def _on_response(self, response: Response) -> None:
        branch = response.vias[0].branch if response.vias else ""
        client = self._clients.get(branch)
        if client is not None:
            transaction, outcome = client
            for action in transaction.on_response(response, asyncio.get_running_loop().time()):
                if isinstance(action, Final) and not outcome.done():
                    outcome.set_result(action.response.status)
            return
        parts = branch.split(BRANCH_SEPARATOR)
        if len(parts) == 3 and parts[1] != self.name:  # DESIGN: the owner is in the branch
            try:
                owner = ray.get_actor(parts[1], namespace=self.config.ray.namespace)
                await owner.take_response.remote(response.to_bytes())
            except Exception as exc:
                log.info("response for %s dropped: %s", parts[1], exc)
        # anything else is a stray response, dropped (RFC 3261 18.1.2)

    def _response(self, request: Request, outcome: Reply) -> Response:
        response = make_response(request, outcome.status, outcome.reason, to_tag=_to_tag(request))
        for name, value in outcome.headers:
            response.headers.add(name, value)
        response.headers.add("Server", SERVER)
        return response

    def _batcher(self, index: int, method: str) -> Batcher:
        batcher = self._batchers.get((index, method))
        if batcher is None:
            handle = ray.get_actor(shard_name(index), namespace=self.config.ray.namespace)
            remote = getattr(handle, method)
            batcher = self._batchers[(index, method)] = Batcher(lambda items: remote.remote(items))
        return batcher

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(TIMER_J / 4)
            horizon = time.monotonic() - TIMER_J
            for key in [k for k, (t, _) in self._completed.items() if t < horizon]:
                del self._completed[key]


def _flow(peer, reliable: bool) -> str:
    """transport:host:port a request came on, as bindings and subscriptions keep it."""
    return f"{'tcp' if reliable else 'udp'}:{peer[0]}:{peer[1]}"


def _transaction_key(request: Request) -> tuple:
    via = request.vias[0]
    return (via.branch, via.host, via.port, request.method)


def _to_tag(request: Request) -> str:
    """Deterministic, so the reply to a retransmission carries the same tag on any transport."""
    seed = f"{request.call_id}|{request.cseq[0]}".encode()
    return hashlib.blake2b(seed, digest_size=8).hexdigest()
