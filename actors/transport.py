"""SipTransport: a stateless Ray actor that owns SIP sockets and routes requests to IMPU shards.

Several transports per node bind the same port (SO_REUSEPORT). Each parses, answers what needs
no registration state itself, and sends REGISTERs in per-shard batches to the shard owning the
identity. UDP retransmissions that reach this transport again are absorbed here; those that
reach another transport are absorbed by the IMPU (it caches its last reply).
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time

import ray

from actors.batching import Batcher
from actors.config import Config, parse_listen
from actors.impu import Reply
from actors.register_request import register_request
from actors.routing import shard_name, shard_of
from transport.sip import endpoints
from transport.sip.errors import SipParseError
from transport.sip.message import Request, Response, make_response

log = logging.getLogger(__name__)

ALLOW = "REGISTER, OPTIONS"
SERVER = "ray-scscf"
RETRY_AFTER = "5"
TIMER_J = 32.0  # 64*T1: how long a UDP server transaction remembers its final response


def transport_name(node_ip: str, index: int) -> str:
    return f"sip-transport-{node_ip}-{index}"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class SipTransport:
    def __init__(self, config: Config, listen: list[str] | None = None) -> None:
        self.config = config
        self.listen = listen or config.sip.listen
        self.shards = config.ray.shards
        self.endpoints: list = []
        self._batchers: dict[int, Batcher] = {}
        self._completed: dict[tuple, tuple[float, bytes | None]] = {}
        self._sweeper: asyncio.Task | None = None

    async def start(self) -> list[str]:
        """Binds every listener; returns them as 'udp:host:port' once each accepts traffic."""
        bound = []
        for spec in self.listen:
            proto, host, port = parse_listen(spec)
            start = endpoints.start_udp if proto == "udp" else endpoints.start_tcp
            endpoint = await start(host, port, self._on_message, reuse_port=True)
            self.endpoints.append(endpoint)
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
            return  # no client transactions yet: a stray response is dropped (RFC 3261 18.1.2)
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
        if method == "OPTIONS":
            return self._response(request, Reply(200, "OK", [("Allow", ALLOW)]))
        return self._response(request, Reply(405, "Method Not Allowed", [("Allow", ALLOW)]))

    async def _register(self, request: Request, peer, reliable: bool) -> Response:
        received = f"{'tcp' if reliable else 'udp'}:{peer[0]}:{peer[1]}"
        try:
            req = register_request(request, received)
        except SipParseError as exc:
            return self._response(request, Reply(exc.status, exc.reason))
        index = shard_of(req.aor, self.shards)
        try:
            outcome = await self._batcher(index).submit(req)
        except Exception as exc:  # shard restarting or unreachable: the UE should retry soon
            log.warning("shard %d unavailable: %s", index, exc)
            outcome = Reply(503, "Registrar shard unavailable", [("Retry-After", RETRY_AFTER)])
        return self._response(request, outcome)

    def _response(self, request: Request, outcome: Reply) -> Response:
        response = make_response(request, outcome.status, outcome.reason, to_tag=_to_tag(request))
        for name, value in outcome.headers:
            response.headers.add(name, value)
        response.headers.add("Server", SERVER)
        return response

    def _batcher(self, index: int) -> Batcher:
        batcher = self._batchers.get(index)
        if batcher is None:
            handle = ray.get_actor(shard_name(index), namespace=self.config.ray.namespace)
            batcher = self._batchers[index] = Batcher(lambda items: handle.register_batch.remote(items))
        return batcher

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(TIMER_J / 4)
            horizon = time.monotonic() - TIMER_J
            for key in [k for k, (t, _) in self._completed.items() if t < horizon]:
                del self._completed[key]


def _transaction_key(request: Request) -> tuple:
    via = request.vias[0]
    return (via.branch, via.host, via.port, request.method)


def _to_tag(request: Request) -> str:
    """Deterministic, so the reply to a retransmission carries the same tag on any transport."""
    seed = f"{request.call_id}|{request.cseq[0]}".encode()
    return hashlib.blake2b(seed, digest_size=8).hexdigest()
