"""The Cx pool: Diameter peers towards the HSS, taking SARs and MARs in batches.

CxPoolCore answers batches over an injected CxClient; CxPool is its Ray-hosted shell, building
the client from the configuration (``ray.remote`` is applied in actors/ops/deployment.py).
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from actors.config import Config, parse_host_port
from transport.diameter.cx import MarRequest, SarRequest
from transport.diameter.router import CxClient, CxUnavailable


class CxPoolCore:
    def __init__(self, client: CxClient) -> None:
        self.client = client

    async def start(self) -> None:
        await self.client.start()

    async def stop(self) -> None:
        await self.client.close()

    async def sar_batch(self, requests: list[SarRequest]) -> list:
        """SAAs in order; a request the HSS could not serve comes back as its CxUnavailable."""
        return await _each(self.client.sar, requests)

    async def mar_batch(self, requests: list[MarRequest]) -> list:
        """MAAs in order; a request the HSS could not serve comes back as its CxUnavailable."""
        return await _each(self.client.mar, requests)


async def _each(send: Callable[[object], Awaitable[object]], requests: list) -> list:
    async def one(request):
        try:
            return await send(request)
        except CxUnavailable as exc:  # a value, so one failure does not fail the batch
            return exc

    return await asyncio.gather(*(one(r) for r in requests))


class CxPool(CxPoolCore):
    def __init__(self, index: int, config: Config) -> None:
        self.index = index
        cx, reg = config.cx, config.registrar
        super().__init__(CxClient(
            peers=[parse_host_port(p, "cx.peers") for p in cx.peers],
            origin_host=cx.origin_host,
            origin_realm=cx.origin_realm,
            dest_realm=reg.cxdx_dest_realm,
            forced_peer=reg.cxdx_forced_peer or None,
            request_timeout=cx.request_timeout,
            watchdog_interval=cx.watchdog_interval,
        ))
