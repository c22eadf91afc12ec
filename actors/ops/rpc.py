"""JSON-RPC 2.0 over HTTP with Kamailio's method names, served by ``scscf serve``.

    ulscscf.status / ulpcscf.status      identities, contacts, subscriptions, shards and nodes
    ulscscf.showimpu IMPU                one identity: state, contacts, implicit set
    regscscf.dereg_impu IMPU             network-initiated de-registration (SAR to the HSS)
    stats.get_statistics all|GROUP:|NAME Kamailio-style "group:name = value" lines

Any POST path is accepted (Kamailio serves /RPC); params may be positional or named.
``call`` is the client side, for ``scscf rpc``.
"""
from __future__ import annotations

import inspect
import itertools
import json
import logging
import urllib.request

from aiohttp import web

from actors.config import parse_host_port
from actors.hosts.metrics import GROUPS, select
from actors.ops.registrar import Registrar
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


class RpcServer:
    def __init__(self, registrar: Registrar) -> None:
        self.registrar = registrar
        self.methods = {
            "ulscscf.status": registrar.status,
            "ulpcscf.status": registrar.status,  # the name the reference guide lists
            "ulscscf.showimpu": registrar.show_impu,
            "regscscf.dereg_impu": registrar.dereg_impu,
            "stats.get_statistics": self.get_statistics,
        }
        app = web.Application()
        app.router.add_post("/{path:.*}", self._http)
        self._runner = web.AppRunner(app, access_log=None)
        self.url = ""

    async def start(self, listen: str) -> str:
        host, port = parse_host_port(listen, "rpc.listen")
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError:
            await self._runner.cleanup()
            raise
        self.url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def get_statistics(self, *names: str) -> list[str]:
        try:
            chosen = select(await self.registrar.statistics(), list(names))
        except KeyError as exc:
            groups = ", ".join(f"{g}:" for g in GROUPS)
            raise RpcError(INVALID_PARAMS, f"no statistic or group {exc.args[0]!r} "
                                           f"(try all, {groups})") from None
        return [f"{name} = {value}" for name, value in chosen.items()]

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


def call(url: str, method: str, params: list[str], timeout: float = 30.0) -> dict:
    """Client side: one request; returns the response object (``result`` or ``error``)."""
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())
