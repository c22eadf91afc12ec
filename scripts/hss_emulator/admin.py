"""JSON admin interface of the HSS emulator, so tests in other processes can drive it.

    GET  /sar_log               [{"public_identity", "assignment_type", "assignment_type_name",
                                  "server_name"}, ...] oldest first
    GET  /subscribers/{impi}    registration state of one subscriber
    POST /rtr   {"impi", "reason_code"?, "reason_info"?, "impus"?}   -> the RTA's result
    POST /ppr   {"impi", "user_data"?, "charging_information"?}       -> the PPA's result
"""
from __future__ import annotations

import json

from aiohttp import web

from scripts.hss_emulator.config import split_host_port
from scripts.hss_emulator.emulator import HssEmulator, NotConnected, UnknownSubscriber
from transport.diameter.cx_base import AnswerOutcome, DeregistrationReasonCode
from transport.diameter.errors import DiameterError


class AdminServer:
    def __init__(self, emulator: HssEmulator):
        self._emulator = emulator
        app = web.Application()
        app.add_routes([web.get("/sar_log", self._sar_log),
                        web.get("/subscribers/{impi}", self._subscriber),
                        web.post("/rtr", self._rtr),
                        web.post("/ppr", self._ppr)])
        self._runner = web.AppRunner(app, access_log=None)

    @property
    def bound_port(self) -> int | None:
        addresses = self._runner.addresses
        return addresses[0][1] if addresses else None

    async def start(self, address: str):
        host, port = split_host_port(address)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()

    async def stop(self):
        await self._runner.cleanup()

    async def _sar_log(self, request: web.Request) -> web.Response:
        return web.json_response([
            {"public_identity": impu, "assignment_type": int(kind),
             "assignment_type_name": kind.name, "server_name": server}
            for impu, kind, server in self._emulator.sar_log])

    async def _subscriber(self, request: web.Request) -> web.Response:
        async def state():
            return self._emulator.subscriber_state(request.match_info["impi"])
        return await _guarded(state)

    async def _rtr(self, request: web.Request) -> web.Response:
        body = await _json_body(request)

        async def send():
            reason = body.get("reason_code", "PERMANENT_TERMINATION")
            # by TS 29.229's name (REMOVE_S-CSCF) or the enum's (REMOVE_S_CSCF), or by value
            reason = (DeregistrationReasonCode[reason.replace("-", "_")] if isinstance(reason, str)
                      else DeregistrationReasonCode(reason))
            return _outcome(await self._emulator.send_rtr(
                body["impi"], reason, impus=body.get("impus"),
                reason_info=body.get("reason_info")))
        return await _guarded(send)

    async def _ppr(self, request: web.Request) -> web.Response:
        body = await _json_body(request)

        async def send():
            return _outcome(await self._emulator.send_ppr(
                body["impi"], user_data=body.get("user_data"),
                charging_information=body.get("charging_information")))
        return await _guarded(send)


async def _json_body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except json.JSONDecodeError:
        raise web.HTTPBadRequest(text="body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("impi"), str):
        raise web.HTTPBadRequest(text='expected a JSON object with "impi"')
    return body


async def _guarded(action) -> web.Response:
    """Run `action` (an async function returning JSON data), mapping failures to statuses."""
    try:
        result = await action()
    except UnknownSubscriber as exc:
        return web.json_response({"error": str(exc)}, status=404)
    except NotConnected as exc:
        return web.json_response({"error": str(exc)}, status=409)
    except (KeyError, ValueError) as exc:
        return web.json_response({"error": f"bad request: {exc}"}, status=400)
    except DiameterError as exc:
        return web.json_response({"error": f"Diameter: {exc}"}, status=504)
    return web.json_response(result)


def _outcome(result: AnswerOutcome) -> dict:
    return {"result_code": result.result_code,
            "experimental_result_code": result.experimental_result_code,
            "success": result.success, "description": result.description}
