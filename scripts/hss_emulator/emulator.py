"""A Cx HSS emulator: a real Diameter server answering SAR and MAR per TS 29.228, able to send
RTR and PPR to the S-CSCFs connected to it. For labs and tests; it keeps everything in memory.
"""
from __future__ import annotations

from collections import deque

from diameter.message import Message
from diameter.message.constants import AVP_ORIGIN_HOST

from scripts.hss_emulator.config import HssConfig, HssConfigError, SubscriberConfig
from scripts.hss_emulator.subscribers import Subscriber, SubscriberDirectory
from transport.diameter.base import LocalNode
from transport.diameter.codec import Command, ResultCode, SessionIds
from transport.diameter.connection import DiameterConnection
from transport.diameter.cx_base import (
    CxResult,
    DeregistrationReasonCode,
    PpaResult,
    PprRequest,
    RtaResult,
    RtrRequest,
    ServerAssignmentType,
)
from transport.diameter.cx_hss import decode_ppa, decode_rta, encode_ppr, encode_rtr
from transport.diameter.cx_scscf import decode_mar, decode_sar, encode_maa, encode_saa
from transport.diameter.errors import ProtocolError
from transport.diameter.peer import DiameterServer

__all__ = ["HssEmulator", "HssConfig", "HssConfigError", "SubscriberConfig", "HssError",
           "UnknownSubscriber", "NotConnected"]

SAR_LOG_LIMIT = 100_000


class HssError(Exception):
    """A command to the emulator (send RTR/PPR) could not be carried out."""


class UnknownSubscriber(HssError):
    pass


class NotConnected(HssError):
    pass


class HssEmulator:
    def __init__(self, config: HssConfig):
        self.config = config
        self.subscribers = SubscriberDirectory(config)
        # The most recent SARs, oldest first: (public identity, assignment type, server name).
        self.sar_log: deque[tuple[str, ServerAssignmentType, str]] = deque(maxlen=SAR_LOG_LIMIT)
        self._local = LocalNode(config.origin_host, config.origin_realm,
                                product_name="ray-scscf HSS emulator")
        self._server = DiameterServer(self._local, request_handler=self.handle,
                                      watchdog_interval=config.watchdog_interval,
                                      allowed_peers=frozenset(config.allowed_peers))
        self._session_ids = SessionIds(config.origin_host)
        self._admin = None

    @property
    def bound_port(self) -> int | None:
        return self._server.bound_port

    @property
    def admin_port(self) -> int | None:
        return self._admin.bound_port if self._admin else None

    @property
    def connections(self) -> list[DiameterConnection]:
        return self._server.connections

    async def start(self, host: str = "127.0.0.1", port: int = 3868):
        await self._server.start(host, port)
        if self.config.admin_listen:
            from scripts.hss_emulator.admin import (
                AdminServer,  # aiohttp is only needed with the admin interface
            )
            self._admin = AdminServer(self)
            await self._admin.start(self.config.admin_listen)

    async def stop(self):
        """DPR to the connected S-CSCFs, then stop listening."""
        if self._admin is not None:
            await self._admin.stop()
            self._admin = None
        await self._server.stop()

    def subscriber_state(self, impi: str) -> dict:
        return self._subscriber(impi).state()

    # -- requests from the S-CSCF --------------------------------------------------------------

    def handle(self, msg: Message) -> Message:
        """The answer to one request from an S-CSCF."""
        command = msg.header.command_code
        if command == Command.SERVER_ASSIGNMENT:
            return self._on_sar(msg)
        if command == Command.MULTIMEDIA_AUTH:
            return self._on_mar(msg)
        raise ProtocolError(ResultCode.DIAMETER_COMMAND_UNSUPPORTED, f"command {command}")

    def _saa(self, request: Message, **fields) -> Message:
        return encode_saa(request, self.config.origin_host, self.config.origin_realm, **fields)

    def _on_sar(self, msg: Message) -> Message:
        sar = decode_sar(msg)
        self.sar_log.append((sar.public_identity, sar.assignment_type, sar.server_name))
        identity = sar.public_identity or sar.wildcarded_public_identity
        if identity:
            found = self.subscribers.by_identity(identity)
            sub, wildcard = found if found else (None, None)
        elif sar.user_name:
            sub, wildcard = self.subscribers.by_impi(sar.user_name), None
        else:
            raise ProtocolError(ResultCode.DIAMETER_MISSING_AVP, "neither Public-Identity nor "
                                "User-Name in the SAR")
        if sub is None:
            return self._saa(msg, experimental_result_code=CxResult.DIAMETER_ERROR_USER_UNKNOWN)
        if sar.user_name and sar.user_name != sub.impi:
            return self._saa(
                msg, experimental_result_code=CxResult.DIAMETER_ERROR_IDENTITIES_DONT_MATCH)
        outcome = sub.assign(sar.assignment_type, sar.server_name, _origin_host(msg),
                             sar.user_data_already_available)
        if outcome.result_code != ResultCode.DIAMETER_SUCCESS:
            return self._saa(msg, result_code=outcome.result_code,
                             experimental_result_code=outcome.experimental_result_code,
                             server_name=outcome.server_name)
        return self._saa(msg, user_name=sub.impi,
                         user_data=sub.user_data if outcome.with_user_data else None,
                         charging_information=(sub.config.charging_information
                                               or self.config.charging_information),
                         wildcarded_public_identity=wildcard)

    def _on_mar(self, msg: Message) -> Message:
        """TS 29.228 6.3.1: the identities first, then the scheme and the vectors."""
        mar = decode_mar(msg)
        found = self.subscribers.by_identity(mar.public_identity)
        if found is None:
            return self._maa(msg, experimental_result_code=CxResult.DIAMETER_ERROR_USER_UNKNOWN)
        sub = found[0]
        if sub.impi != mar.user_name:
            return self._maa(
                msg, experimental_result_code=CxResult.DIAMETER_ERROR_IDENTITIES_DONT_MATCH)
        realm = sub.impi.rpartition("@")[2] or self.config.origin_realm
        answer = sub.auth.answer(mar.auth_scheme, mar.number_auth_items, realm,
                                 mar.resync_authorization)
        if not answer.success:
            return self._maa(msg, result_code=answer.result_code,
                             experimental_result_code=answer.experimental_result_code)
        # TS 29.228 6.3 / 8.1: a MAR stores (and may overwrite) the S-CSCF name.
        sub.server_name, sub.diameter_client = mar.server_name, _origin_host(msg)
        return self._maa(msg, user_name=sub.impi, public_identity=mar.public_identity,
                         auth_items=list(answer.items))

    def _maa(self, request: Message, **fields) -> Message:
        return encode_maa(request, self.config.origin_host, self.config.origin_realm, **fields)

    # -- requests to the S-CSCF ----------------------------------------------------------------

    async def send_rtr(self, impi: str,
                       reason_code: DeregistrationReasonCode =
                       DeregistrationReasonCode.PERMANENT_TERMINATION,
                       impus: list[str] | None = None, reason_info: str | None = None,
                       timeout: float = 5.0) -> RtaResult:
        """De-register `impi` (or only `impus` of it) at its S-CSCF."""
        sub = self._subscriber(impi)
        connection = self._connection_for(sub)
        request = RtrRequest(user_name=impi, reason_code=reason_code, reason_info=reason_info,
                             public_identities=list(impus or []))
        msg = encode_rtr(request, self.config.origin_host, self.config.origin_realm,
                         self._session_ids.next(), connection.remote.origin_host,
                         connection.remote.origin_realm)
        result = decode_rta(await connection.request(msg, timeout))
        if result.success:
            sub.deregister()
        return result

    async def send_ppr(self, impi: str, user_data: str | None = None,
                       charging_information: dict | None = None,
                       timeout: float = 5.0) -> PpaResult:
        """Push the profile of `impi` (replaced by `user_data` when given) to its S-CSCF."""
        sub = self._subscriber(impi)
        connection = self._connection_for(sub)
        if user_data is not None:
            sub.replace_user_data(user_data)
        request = PprRequest(user_name=impi, user_data=sub.user_data.decode(),
                             charging_information=charging_information)
        msg = encode_ppr(request, self.config.origin_host, self.config.origin_realm,
                         self._session_ids.next(), connection.remote.origin_host,
                         connection.remote.origin_realm)
        return decode_ppa(await connection.request(msg, timeout))

    def _subscriber(self, impi: str) -> Subscriber:
        sub = self.subscribers.by_impi(impi, provision=False)
        if sub is None:
            raise UnknownSubscriber(f"unknown IMPI {impi}")
        return sub

    def _connection_for(self, sub: Subscriber) -> DiameterConnection:
        if sub.diameter_client:
            connection = self._server.connection_to(sub.diameter_client)
        else:  # never assigned: the only connected S-CSCF, if there is exactly one
            connections = self._server.connections
            connection = connections[0] if len(connections) == 1 else None
        if connection is None:
            raise NotConnected(f"no open connection to the S-CSCF of {sub.impi}")
        return connection


def _origin_host(msg: Message) -> str | None:
    for avp in msg.avps:
        if avp.code == AVP_ORIGIN_HOST and avp.vendor_id == 0:
            return avp.value.decode(errors="replace")
    return None
