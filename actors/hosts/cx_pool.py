"""The Cx pool: Diameter peers towards the HSS, taking SARs and MARs in batches, and RTRs and
PPRs from it.

CxPoolCore answers batches over an injected CxClient and hands the HSS's requests to
HssRequests; CxPool is its Ray-hosted shell, building the client from the configuration
(``ray.remote`` is applied in actors/ops/deployment.py). Each pool actor has an Origin-Host of
its own (config.cx_origin_host). The shell opens its peers when it is built, so a pool that
Ray restarts after a crash reconnects by itself.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import ray

from actors.config import Config, cx_origin_host, parse_host_port
from actors.hosts.hss_requests import HssRequests
from actors.hosts.ray_channels import ChannelDirectory
from actors.hosts.restarts import restarts
from actors.rules.save import profile_from_user_data
from actors.vocabulary import shard_name
from transport.diameter.cx import MarRequest, SarRequest
from transport.diameter.cx_inbound import CxRequestHandler
from transport.diameter.router import CxClient, CxUnavailable

log = logging.getLogger(__name__)


PEER_WATCH_INTERVAL = 1.0  # seconds between looks at the peers' state, for the log


class CxPoolCore:
    def __init__(self, client: CxClient, hss_requests: HssRequests | None = None) -> None:
        """``hss_requests`` None: RTR and PPR are answered DIAMETER_COMMAND_UNSUPPORTED."""
        self.client = client
        self._logged: dict[str, str] = {}  # peer address -> the state last logged
        self._watch: asyncio.Task | None = None
        self._started: asyncio.Future | None = None
        if hss_requests is not None:
            client.set_request_handler(CxRequestHandler(
                client.origin_host, client.origin_realm, hss_requests.terminate,
                hss_requests.push_profile))

    async def start(self) -> None:
        """Opens the peers, once however often it is called."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        await self.client.start()
        self.log_peer_changes()
        self._watch = asyncio.get_running_loop().create_task(self._watch_peers())

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        await self.client.close()

    def peers(self) -> list[dict]:
        """Each HSS peer: its address, its state under cdp's names (``I_Open`` or ``Closed``),
        and what it advertised in its CEA while open."""
        return [_peer_state(peer) for peer in self.client.peers]

    def log_peer_changes(self) -> None:
        """A WARNING for every peer found down on the first look, and for every peer that went
        down or came up since the last one: the operator's view of the HSS."""
        for peer in self.peers():
            before = self._logged.get(peer["address"])
            self._logged[peer["address"]] = peer["state"]
            if before is None and peer["state"] == CLOSED:
                log.warning("cx.peers: %s: HSS unreachable; retrying (REGISTERs get 503 while "
                            "no peer is open)", peer["address"])
            elif before is not None and before != peer["state"]:
                up = peer["state"] == OPEN
                log.warning("cx.peers: %s: Diameter peer %s", peer["address"],
                            f"up ({peer['fqdn']}, realm {peer['realm']})" if up else "down")

    async def _watch_peers(self) -> None:
        while True:
            await asyncio.sleep(PEER_WATCH_INTERVAL)
            self.log_peer_changes()

    async def sar_batch(self, requests: list[SarRequest]) -> list:
        """SAAs in order; a request the HSS could not serve comes back as its CxUnavailable."""
        return await _each(self.client.sar, requests)

    async def mar_batch(self, requests: list[MarRequest]) -> list:
        """MAAs in order; a request the HSS could not serve comes back as its CxUnavailable."""
        return await _each(self.client.mar, requests)


async def _each(send: Callable[[object], Awaitable[object]], requests: list) -> list:
    """Each request answered on its own: a failure is a value, so it fails no other request
    of the batch, and every failure is a CxUnavailable (the shard answers it 503)."""
    async def one(request):
        try:
            return await send(request)
        except CxUnavailable as exc:
            return exc
        except Exception as exc:  # a request that cannot even be encoded
            log.warning("Cx request %r failed: %s", request, exc)
            return CxUnavailable(f"Cx request failed: {type(exc).__name__}")

    return await asyncio.gather(*(one(r) for r in requests))


OPEN, CLOSED = "I_Open", "Closed"  # cdp's names: we always initiate the connection


def _peer_state(peer) -> dict:
    remote = peer.remote  # what the CEA said; None while down
    return {
        "address": f"{peer.host}:{peer.port}",
        "state": OPEN if peer.is_open else CLOSED,
        "fqdn": remote.origin_host if remote else "",
        "realm": remote.origin_realm if remote else "",
        "applications": sorted(remote.applications) if remote else [],
        "pending": peer.pending_requests,
    }


class CxPool(CxPoolCore):
    def __init__(self, index: int, config: Config) -> None:
        self.index = index
        self.namespace = config.ray.namespace
        self._shards = [shard_name(i) for i in range(config.ray.shards)]
        cx, reg = config.cx, config.registrar
        super().__init__(CxClient(
            peers=[parse_host_port(p, "cx.peers") for p in cx.peers],
            origin_host=cx_origin_host(cx, index),
            origin_realm=cx.origin_realm,
            dest_realm=reg.cxdx_dest_realm,
            forced_peer=reg.cxdx_forced_peer or None,
            request_timeout=cx.request_timeout,
            watchdog_interval=cx.watchdog_interval,
        ), HssRequests(self._fan_out, lambda xml: profile_from_user_data(
            xml, reg.user_data_xsd or None, reg.user_data_dtd or None,
            bool(reg.support_wildcardPSI)), cx.max_user_data))
        self._channel = ChannelDirectory(config).serve(
            {"sar_batch": self.sar_batch, "mar_batch": self.mar_batch})
        if restarts():
            log.warning("cx pool %d restarted by Ray: reopening its Diameter peers", index)
        self._started = asyncio.ensure_future(self._start())

    async def _fan_out(self, method: str, *args) -> list:
        """``method`` on every shard (looked up by name: one restarted keeps its name)."""
        handles = [ray.get_actor(name, namespace=self.namespace) for name in self._shards]
        return await asyncio.gather(*(getattr(h, method).remote(*args) for h in handles))

    async def channel_address(self) -> tuple[str, int]:
        return await self._channel.address()
