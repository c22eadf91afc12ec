"""Requests the HSS sends the S-CSCF (RTR, PPR): decoded, handed to the registrar, answered.

``CxRequestHandler`` is the request handler of the S-CSCF's Diameter peers. The registrar's
answer to each request comes back as the Cx answer data class (RtaResult, PpaResult); a
request that cannot be decoded is answered by the connection with its protocol error, and a
registrar that fails is answered DIAMETER_UNABLE_TO_COMPLY (connection.py).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from diameter.message import Message

from .codec import Command, ResultCode
from .cx_base import PpaResult, PprRequest, RtaResult, RtrRequest
from .cx_hss import decode_ppr, decode_rtr, encode_ppa, encode_rta
from .errors import ProtocolError

Terminate = Callable[[RtrRequest], Awaitable[RtaResult]]
PushProfile = Callable[[PprRequest], Awaitable[PpaResult]]


class CxRequestHandler:
    def __init__(self, origin_host: str, origin_realm: str, terminate: Terminate,
                 push_profile: PushProfile) -> None:
        self.origin_host, self.origin_realm = origin_host, origin_realm
        self._terminate, self._push_profile = terminate, push_profile

    def __call__(self, msg: Message) -> Awaitable[Message]:
        command = msg.header.command_code
        if command == Command.REGISTRATION_TERMINATION:
            return self._rta(msg, decode_rtr(msg))
        if command == Command.PUSH_PROFILE:
            return self._ppa(msg, decode_ppr(msg))
        raise ProtocolError(ResultCode.DIAMETER_COMMAND_UNSUPPORTED, f"command {command}")

    async def _rta(self, msg: Message, rtr: RtrRequest) -> Message:
        result = await self._terminate(rtr)
        return encode_rta(msg, self.origin_host, self.origin_realm,
                          result_code=result.result_code,
                          experimental_result_code=result.experimental_result_code,
                          associated_identities=result.associated_identities)

    async def _ppa(self, msg: Message, ppr: PprRequest) -> Message:
        result = await self._push_profile(ppr)
        return encode_ppa(msg, self.origin_host, self.origin_realm,
                          result_code=result.result_code,
                          experimental_result_code=result.experimental_result_code)
