"""The small HTTP server of ``[metrics] listen``, for Prometheus, load balancers and Kubernetes.

    GET /metrics   the registrar's statistics in Prometheus text (prometheus.py)
    GET /health    200 while the process runs: a liveness probe
    GET /ready     200 when SIP is bound on every node, every shard has loaded its identities
                   and a Cx pool has an open HSS peer; else 503 and what is not ready

Bodies of /health and /ready are short JSON objects. Every answer waits at most
``ANSWER_TIMEOUT`` for the actors, so a restarting shard makes a probe fail, never hang.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import ray
from aiohttp import web

from actors.hosts.cx_pool import OPEN
from actors.ops.http_site import HttpSite
from actors.ops.off_loop import off_loop
from actors.ops.prometheus import CONTENT_TYPE, exposition
from actors.ops.registrar import Registrar
from actors.ops.startup_errors import one_line

ANSWER_TIMEOUT = 5.0  # seconds


class StatusServer(HttpSite):
    def __init__(self, registrar: Registrar) -> None:
        self.registrar = registrar  # its own: stats.reset_statistics never resets these counters
        self.labels = {"namespace": registrar.namespace}
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        app.router.add_get("/ready", self._ready)
        super().__init__(app, "metrics.listen")

    async def _metrics(self, _: web.Request) -> web.Response:
        try:
            stats = await asyncio.wait_for(self.registrar.statistics(), ANSWER_TIMEOUT)
        except Exception as exc:  # a scrape that fails is what Prometheus records as down
            return web.Response(status=503, text=f"statistics unavailable: {_why(exc)}\n")
        return web.Response(body=exposition(stats, self.labels).encode(),
                            headers={"Content-Type": CONTENT_TYPE})

    async def _health(self, _: web.Request) -> web.Response:
        return _json(200, {"status": "up"})

    async def _ready(self, _: web.Request) -> web.Response:
        async def check() -> list[str]:
            return await not_ready(await self.registrar.status(), self._listening)
        try:
            missing = await asyncio.wait_for(check(), ANSWER_TIMEOUT)
        except Exception as exc:
            missing = [f"registrar: {_why(exc)}"]
        if missing:
            return _json(503, {"ready": False, "not_ready": missing})
        return _json(200, {"ready": True})

    async def _listening(self, transport: str) -> list[str]:
        handle = await off_loop(ray.get_actor, transport, self.registrar.namespace)
        return await handle.listening.remote()


async def not_ready(status: dict, listening: Callable[[str], Awaitable[list[str]]]) -> list[str]:
    """What keeps the registrar from serving, one line each, from ``ulscscf.status`` and each
    running transport's bound listeners; empty when it is ready."""
    missing = []
    for transport in status["transports"]:
        if not transport["running"] or not await listening(transport["name"]):
            missing.append(f"{transport['name']}: SIP not bound")
    missing += [f"{s['name']}: {s['load_error']}" for s in status["shards"] if s["load_error"]]
    if not any(peer["state"] == OPEN for peer in status["peers"]):
        missing.append("cx: no HSS peer open")
    return missing


def _json(status: int, body: dict) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer in {ANSWER_TIMEOUT:.0f} s"
    return one_line(exc)
