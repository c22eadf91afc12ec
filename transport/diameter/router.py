"""CxClient: Cx requests from the S-CSCF, routed over several HSS peers by realm with failover."""
from __future__ import annotations

import asyncio
import dataclasses
import logging

from diameter.message import Message

from .base import LocalNode
from .codec import FLAG_RETRANSMIT, SessionIds
from .connection import RequestHandler
from .cx_base import MaaResult, MarRequest, SaaResult, SarRequest
from .cx_scscf import decode_maa, decode_saa, encode_mar, encode_sar
from .errors import DiameterError, DiameterTimeout, PeerDown
from .peer import DiameterPeer

log = logging.getLogger("transport.diameter")


class CxUnavailable(Exception):
    """No HSS answered: no open peer for the realm, or the request timed out."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class CxTimeout(CxUnavailable):
    """The HSS did not answer within the request timeout (counted apart in the statistics)."""


class CxClient:
    """Sends SAR/MAR to the HSS and takes RTR/PPR from it.

    Peers are tried in the configured order (the first open one in the destination realm,
    as advertised in its CEA, wins); `forced_peer` names one peer by its Origin-Host and
    disables the others, like Kamailio's `cxdx_forced_peer`. When the chosen peer drops while
    a request is pending, the request is sent once more, flagged as a retransmission, to the
    next open peer. Nothing waits for a connection: with no peer up, requests fail at once.
    """

    def __init__(self, peers: list[tuple[str, int]], origin_host: str, origin_realm: str,
                 dest_realm: str, forced_peer: str | None = None, request_timeout: float = 2.0,
                 *, watchdog_interval: float = 30.0, connect_timeout: float = 3.0,
                 backoff_initial: float = 0.5, backoff_max: float = 30.0):
        if not peers:
            raise ValueError("CxClient needs at least one peer")
        self.origin_host, self.origin_realm, self.dest_realm = origin_host, origin_realm, dest_realm
        self.forced_peer = forced_peer
        self.request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        local = LocalNode(origin_host, origin_realm)
        self.peers = [DiameterPeer(host, port, local, watchdog_interval=watchdog_interval,
                                   connect_timeout=connect_timeout,
                                   backoff_initial=backoff_initial, backoff_max=backoff_max)
                      for host, port in peers]
        self._session_ids = SessionIds(origin_host)
        self._peer_hosts: set[str] = set()  # Origin-Hosts our own peers have had

    async def start(self, wait: float | None = None) -> bool:
        """Start connecting; wait up to `wait` seconds (default: the connect timeout) for a
        first peer to open. Returns whether one did; the peers keep trying either way."""
        for peer in self.peers:
            await peer.start()
        timeout = self._connect_timeout if wait is None else wait
        waits = [asyncio.ensure_future(peer.wait_open(timeout)) for peer in self.peers]
        for finished in asyncio.as_completed(waits):
            if await finished:
                break
        for pending in waits:
            pending.cancel()
        return any(peer.is_open for peer in self.peers)

    async def close(self):
        """DPR to every open peer, then stop."""
        await asyncio.gather(*(peer.close() for peer in self.peers))

    def set_request_handler(self, handler: RequestHandler | None):
        """Handler for RTR and PPR from the HSS: takes the request, returns the answer."""
        for peer in self.peers:
            peer.set_request_handler(handler)

    async def sar(self, req: SarRequest) -> SaaResult:
        req = self._reachable(req)
        msg = encode_sar(req, self.origin_host, self.origin_realm, self._session_ids.next(),
                         self.dest_realm)
        answer = await self._send(msg, req.destination_realm or self.dest_realm,
                                  req.destination_host)
        return self._decode(decode_saa, answer)

    async def mar(self, req: MarRequest) -> MaaResult:
        req = self._reachable(req)
        msg = encode_mar(req, self.origin_host, self.origin_realm, self._session_ids.next(),
                         self.dest_realm)
        answer = await self._send(msg, req.destination_realm or self.dest_realm,
                                  req.destination_host)
        return self._decode(decode_maa, answer)

    def _reachable(self, req):
        """The request without its Destination-Host when that host is one of our own peers
        and down: realm routing finds another HSS. A host we never had as a peer is kept
        (it sits behind a relay, which routes on it)."""
        host = req.destination_host
        if not host or host not in self._peer_hosts:
            return req
        if any(peer.is_open and peer.remote.origin_host == host for peer in self.peers):
            return req
        log.info("HSS %s is down: routing by realm instead", host)
        return dataclasses.replace(req, destination_host=None)

    def routes(self, realm: str, host: str | None = None) -> list[DiameterPeer]:
        """Open peers able to take a request for `realm`, best first."""
        open_peers = [peer for peer in self.peers if peer.is_open]
        self._peer_hosts.update(peer.remote.origin_host for peer in open_peers)
        if self.forced_peer:
            return [peer for peer in open_peers if peer.remote.origin_host == self.forced_peer]
        in_realm = [peer for peer in open_peers if peer.remote.origin_realm == realm]
        if host:  # Destination-Host named: that peer first if we talk to it directly
            in_realm.sort(key=lambda peer: peer.remote.origin_host != host)
        return in_realm

    async def _send(self, msg: Message, realm: str, host: str | None) -> Message:
        candidates = self.routes(realm, host)
        if not candidates:
            wanted = f"forced peer {self.forced_peer}" if self.forced_peer else f"realm {realm}"
            raise CxUnavailable(f"no open Diameter peer for {wanted}")
        failure: DiameterError | None = None
        for peer in candidates[:2]:
            if failure is not None:
                msg.header.command_flags |= FLAG_RETRANSMIT  # RFC 6733 5.5.4 failover
                log.info("Cx request failing over to %s (%s)", peer.remote.origin_host, failure)
            try:
                return await peer.request(msg, self.request_timeout)
            except PeerDown as exc:
                failure = exc
            except DiameterTimeout as exc:
                raise CxTimeout(f"HSS timeout: {exc}") from exc
            except DiameterError as exc:
                raise CxUnavailable(f"HSS error: {exc}") from exc
        raise CxUnavailable(f"HSS peer down: {failure}")

    @staticmethod
    def _decode(decoder, answer: Message):
        try:
            return decoder(answer)
        except DiameterError as exc:
            raise CxUnavailable(f"malformed answer from the HSS: {exc}") from exc
