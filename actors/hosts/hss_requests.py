"""RTR and PPR from the HSS, answered by fanning them out to every shard.

An RTR or PPR may name only an IMPI, and each shard finds the identities of an IMPI among its
own by their profiles: asking every shard is cheap for requests this rare, and needs no global
structure. ``fan_out(method, *args)`` calls ``method`` on every shard and returns their
answers; a shard that fails fails the request, which the HSS then hears as
DIAMETER_UNABLE_TO_COMPLY (transport/diameter/cx_inbound.py).
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from actors.rules.network_dereg import REMOVAL_REASONS
from transport.diameter.codec import ResultCode
from transport.diameter.cx import CxResult, PpaResult, PprRequest, RtaResult, RtrRequest
from transport.diameter.user_data import UserDataError

log = logging.getLogger(__name__)

FanOut = Callable[..., Awaitable[list]]


class HssRequests:
    def __init__(self, fan_out: FanOut, check_user_data: Callable[[str], object],
                 max_user_data: int = 65536) -> None:
        """``check_user_data`` raises UserDataError for user data the shards could not use;
        ``max_user_data``: the bytes of User-Data a PPR may push ([cx] max_user_data)."""
        self._fan_out = fan_out
        self._check_user_data = check_user_data
        self._max_user_data = max_user_data

    async def terminate(self, rtr: RtrRequest) -> RtaResult:
        """TS 29.228 6.1.3: the registrations of the IMPIs named (User-Name and
        Associated-Identities), or of their listed Public-Identities, end here. The RTA names
        every IMPI de-registered when there was more than one (Table 6.1.3.2);
        DIAMETER_ERROR_USER_UNKNOWN when none of them is known here."""
        impis = [rtr.user_name, *rtr.associated_identities]
        answers = await self._fan_out("terminate_registrations", impis, rtr.public_identities,
                                      REMOVAL_REASONS[rtr.reason_code])
        ended = sorted({impi for answer in answers for impi in answer if impi})
        log.info("RTR %s for %s %s: %d IMPIs de-registered", rtr.reason_code.name, impis,
                 rtr.public_identities or "(every identity)", len(ended))
        if not ended:
            return RtaResult(None, CxResult.DIAMETER_ERROR_USER_UNKNOWN, [])
        return RtaResult(ResultCode.DIAMETER_SUCCESS, None, ended if len(ended) > 1 else [])

    async def push_profile(self, ppr: PprRequest) -> PpaResult:
        """TS 29.228 6.2.2: the user data replaces the profile of every set of the IMPI.
        DIAMETER_ERROR_NOT_SUPPORTED_USER_DATA for user data that does not validate as an
        SAA's would, DIAMETER_ERROR_TOO_MUCH_DATA when it is larger than we accept,
        DIAMETER_ERROR_USER_UNKNOWN when the IMPI holds nothing here."""
        if ppr.user_data is not None and len(ppr.user_data.encode()) > self._max_user_data:
            return PpaResult(None, CxResult.DIAMETER_ERROR_TOO_MUCH_DATA)
        if ppr.user_data is not None:
            try:
                self._check_user_data(ppr.user_data)
            except UserDataError as exc:
                log.warning("PPR for %s: unusable user data: %s", ppr.user_name, exc)
                return PpaResult(None, CxResult.DIAMETER_ERROR_NOT_SUPPORTED_USER_DATA)
        answers = await self._fan_out("push_profile", ppr.user_name, ppr.user_data,
                                      ppr.charging_information)
        if not sum(answers):
            return PpaResult(None, CxResult.DIAMETER_ERROR_USER_UNKNOWN)
        return PpaResult(ResultCode.DIAMETER_SUCCESS, None)
