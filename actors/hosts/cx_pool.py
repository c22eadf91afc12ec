"""CxPool: a Ray actor holding the Diameter peers towards the HSS; SARs arrive in batches."""
from __future__ import annotations

import asyncio

import ray

from actors.config import Config, parse_host_port
from transport.diameter.cx import SarRequest
from transport.diameter.router import CxClient, CxUnavailable


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class CxPool:
    def __init__(self, index: int, config: Config) -> None:
        self.index = index
        cx, reg = config.cx, config.registrar
        self.client = CxClient(
            peers=[parse_host_port(p, "cx.peers") for p in cx.peers],
            origin_host=cx.origin_host,
            origin_realm=cx.origin_realm,
            dest_realm=reg.cxdx_dest_realm,
            forced_peer=reg.cxdx_forced_peer or None,
            request_timeout=cx.request_timeout,
            watchdog_interval=cx.watchdog_interval,
        )

    async def start(self) -> None:
        await self.client.start()

    async def stop(self) -> None:
        await self.client.close()

    async def sar_batch(self, requests: list[SarRequest]) -> list:
        """Answers in order; a request the HSS could not serve comes back as CxUnavailable."""
        return await asyncio.gather(*(self._sar(r) for r in requests))

    async def _sar(self, request: SarRequest):
        try:
            return await self.client.sar(request)
        except CxUnavailable as exc:
            return exc
