"""JSON-RPC 2.0 over HTTP with Kamailio's method names, served by ``scscf serve``.

    ulscscf.status / ulpcscf.status      counts, nodes, shards, transports, Diameter peers
    ulscscf.showimpu IMPU                one identity: state, contacts, implicit set
    regscscf.dereg_impu IMPU             network-initiated de-registration (SAR to the HSS)
    stats.get_statistics all|GROUP:|NAME Kamailio-style "group:name = value" lines
    stats.reset_statistics all|GROUP:|NAME  the counters among them back to zero
    cdp.list_peers, cdp.list_realms      the HSS peers and their state, by realm
    core.version, core.uptime, system.listMethods

Any POST path is accepted (Kamailio serves /RPC); params may be positional or named. A call
needs the token of ``[rpc]`` and a JSON body, and is refused from another origin
(actors/ops/rpc_access.py). ``call`` is the client side, for ``scscf rpc``.
"""
from __future__ import annotations

import inspect
import itertools
import json
import logging
import time
import urllib.request
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web

from actors.hosts.cx_pool import OPEN
from actors.hosts.metrics import GROUPS, select
from actors.ops.http_site import HttpSite
from actors.ops.registrar import Registrar
from actors.ops.rpc_access import SCHEME, TokenFileError, origins, refusal, server_token
from actors.ops.startup_errors import StartupError
from transport.sip.errors import SipParseError

log = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL = -32603


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RpcServer(HttpSite):
    def __init__(self, registrar: Registrar) -> None:
        self.registrar = registrar
        self.started = time.time()
        self.methods = {
            "ulscscf.status": registrar.status,
            "ulpcscf.status": registrar.status,  # the name the reference guide lists
            "ulscscf.showimpu": registrar.show_impu,
            "regscscf.dereg_impu": registrar.dereg_impu,
            "stats.get_statistics": self.get_statistics,
            "stats.reset_statistics": self.reset_statistics,
            "cdp.list_peers": self.list_peers,
            "cdp.list_realms": self.list_realms,
            "core.version": self.version,
            "core.uptime": self.uptime,
            "system.listMethods": self.list_methods,
        }
        app = web.Application()
        app.router.add_post("/{path:.*}", self._http)
        super().__init__(app, "rpc.listen")
        self._token: str | None = None
        self._origins: frozenset[str] = frozenset()

    async def start(self, listen: str) -> str:
        rpc = self.registrar.config.rpc
        try:
            self._token = server_token(rpc)
        except TokenFileError as exc:
            raise StartupError("rpc.token_file", rpc.token_file, str(exc)) from exc
        url = await super().start(listen)
        self._origins = origins(url)
        return url

    async def get_statistics(self, *names: str) -> list[str]:
        chosen = await self._statistics(names)
        return [f"{name} = {value}" for name, value in chosen.items()]

    async def reset_statistics(self, *names: str) -> None:
        """As Kamailio: the counters among the statistics named are reset, current counts
        (impus, contacts...) skipped; nothing is answered."""
        chosen = list(await self._statistics(names))
        if not await self.registrar.reset_statistics(chosen):
            raise RpcError(INVALID_PARAMS, f"nothing to reset in {' '.join(names)}: "
                                           f"{', '.join(chosen)} are current counts")

    async def _statistics(self, names: tuple[str, ...]) -> dict[str, int]:
        try:
            return select(await self.registrar.statistics(), list(names))
        except KeyError as exc:
            groups = ", ".join(f"{g}:" for g in GROUPS)
            raise RpcError(INVALID_PARAMS, f"no statistic or group {exc.args[0]!r} "
                                           f"(try all, {groups})") from None

    async def list_peers(self) -> dict:
        """cdp.list_peers in Kamailio's shape; a list of peers where Kamailio repeats a key,
        one entry per Cx pool connection."""
        cx = self.registrar.config.cx
        peers = await self.registrar.peers()
        return {
            "Realm": cx.origin_realm,
            "Identity": cx.origin_host,
            "Accept unknown peers": 0,
            "Transaction timeout": cx.request_timeout,
            "Peer count": len(peers),
            "Peers": [{"FQDN": p["fqdn"], "Details": {
                "State": p["state"], "Disabled": "False", "Address": p["address"],
                "Pool": p["pool"], "Realm": p["realm"], "Pending": p["pending"],
                "Applications": p["applications"]}} for p in peers],
        }

    async def list_realms(self) -> dict:
        """The realm routing the Cx pools apply (ours, after cdp's routing table): each realm
        an open peer advertised with its peers, and the realm SARs and MARs go to."""
        reg = self.registrar.config.registrar
        peers = await self.registrar.peers()
        realms: dict[str, list[dict]] = {}
        for p in peers:
            if p["state"] == OPEN:
                realms.setdefault(p["realm"], []).append(
                    {"FQDN": p["fqdn"], "Address": p["address"], "Pool": p["pool"]})
        if reg.cxdx_forced_peer:
            routable = any(p["fqdn"] == reg.cxdx_forced_peer for p in peers if p["state"] == OPEN)
        else:
            routable = reg.cxdx_dest_realm in realms
        return {
            "Destination realm": reg.cxdx_dest_realm,
            "Forced peer": reg.cxdx_forced_peer,
            "Routable": routable,
            "Realms": [{"Realm": realm, "Routes": routes} for realm, routes in realms.items()],
        }

    async def version(self) -> str:
        try:
            return f"ray-scscf {version('ray-scscf')}"
        except PackageNotFoundError:  # run from a source tree that was never installed
            return "ray-scscf (not installed)"

    async def uptime(self) -> dict:
        """As Kamailio's core.uptime: now, up since (ctime), uptime in seconds."""
        now = time.time()
        return {"now": time.ctime(now), "up_since": time.ctime(self.started),
                "uptime": int(now - self.started)}

    async def list_methods(self) -> list[str]:
        return sorted(self.methods)

    async def handle(self, call) -> dict | None:
        """One JSON-RPC request object -> its response (None for a notification)."""
        if not (isinstance(call, dict) and call.get("jsonrpc") == "2.0"
                and isinstance(call.get("method"), str)):
            rid = call.get("id") if isinstance(call, dict) else None
            return _error(rid, INVALID_REQUEST, "Invalid Request: expected a JSON-RPC 2.0 object")
        try:
            reply = {"jsonrpc": "2.0", "result": await self._call(call["method"],
                                                                   call.get("params", [])),
                     "id": call.get("id")}
        except RpcError as exc:
            reply = _error(call.get("id"), exc.code, exc.message)
        except Exception as exc:  # a shard down, the HSS unreachable...
            log.exception("RPC %s failed", call["method"])
            reply = _error(call.get("id"), INTERNAL, f"Internal error: {exc}")
        return reply if "id" in call else None

    async def _call(self, name: str, params):
        method = self.methods.get(name)
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, f"Method not found: {name}")
        if isinstance(params, list):
            args, kwargs = params, {}
        elif isinstance(params, dict):
            args, kwargs = [], params
        else:
            raise RpcError(INVALID_PARAMS, "params must be an array or an object")
        try:
            inspect.signature(method).bind(*args, **kwargs)
        except TypeError as exc:
            raise RpcError(INVALID_PARAMS, f"Invalid params for {name}: {exc}") from None
        if not all(isinstance(v, str) for v in itertools.chain(args, kwargs.values())):
            raise RpcError(INVALID_PARAMS, f"Invalid params for {name}: expected strings")
        try:
            return await method(*args, **kwargs)
        except SipParseError as exc:
            raise RpcError(INVALID_PARAMS, f"Invalid params for {name}: not an IMPU "
                                           f"({exc.reason})") from None

    async def _http(self, request: web.Request) -> web.Response:
        refused = refusal(request.headers, self._token, self._origins)
        if refused is not None:
            status, reason = refused
            log.info("RPC from %s refused: %s", request.remote, reason)
            challenge = {"WWW-Authenticate": f'{SCHEME} realm="scscf-rpc"'} if status == 401 else {}
            return web.Response(status=status, text=reason + "\n", headers=challenge)
        try:
            body = json.loads(await request.read())
        except ValueError:  # also bad UTF-8
            return web.json_response(_error(None, PARSE_ERROR, "Parse error: body is not JSON"))
        if isinstance(body, list) and body:  # a batch
            replies = [r for r in [await self.handle(c) for c in body] if r is not None]
        else:
            replies = await self.handle(body if body != [] else None)
        return web.json_response(replies) if replies else web.Response(status=204)


def _error(rid, code: int, message: str) -> dict:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": rid}


def call(url: str, method: str, params: list[str], token: str | None = None,
         timeout: float = 30.0) -> dict:
    """Client side: one request; returns the response object (``result`` or ``error``). A
    refusal (401, 403, 415) raises urllib's HTTPError."""
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"{SCHEME} {token}"
    request = urllib.request.Request(url, body, headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())
