"""Helpers shared by the Diameter integration tests (no tests here).

Everything runs over real TCP on 127.0.0.1 with ephemeral ports, and with a short watchdog
interval so that failures show within a second.
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
from pathlib import Path

from scripts.hss_emulator.config import HssConfig
from scripts.hss_emulator.emulator import HssEmulator
from transport.diameter.base import LocalNode, build_cea, build_cer, build_dpa, build_dwa
from transport.diameter.codec import (
    HEADER_LENGTH,
    Command,
    ResultCode,
    message_length,
    parse_message,
    serialize,
)
from transport.diameter.cx import MarRequest, SarRequest, ServerAssignmentType
from transport.diameter.router import CxClient

HSS_CONFIG = Path(__file__).resolve().parents[1] / "data" / "hss" / "subscribers.toml"
TW = 0.2  # watchdog interval (s)
SCSCF = "sip:scscf.ims.test:6060"


def async_test(fn):
    """Run an async test in its own event loop, bounded in time."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 20))
    return run


# The emulator accepts only the peers it knows: our S-CSCF and the tests' raw peer.
PEERS = ("scscf.ims.test", "raw.ims.test")


async def start_hss(origin_host: str = "hss.ims.test", port: int = 0, **changes) -> HssEmulator:
    changes.setdefault("allowed_peers", PEERS)
    config = dataclasses.replace(HssConfig.from_toml(HSS_CONFIG), origin_host=origin_host,
                                 watchdog_interval=TW, **changes)
    emulator = HssEmulator(config)
    await emulator.start("127.0.0.1", port)
    return emulator


def cx_client(*ports: int, **options) -> CxClient:
    settings = dict(watchdog_interval=TW, connect_timeout=1.0, backoff_initial=0.05,
                    backoff_max=0.2, request_timeout=1.0)
    settings.update(options)
    return CxClient([("127.0.0.1", port) for port in ports], "scscf.ims.test", "ims.test",
                    "ims.test", **settings)


def sar(impu: str, impi: str | None, kind=ServerAssignmentType.REGISTRATION,
        server: str = SCSCF, **fields) -> SarRequest:
    return SarRequest(impu, impi, server, kind, **fields)


def mar(impu: str, impi: str, scheme: str = "Unknown", server: str = SCSCF,
        **fields) -> MarRequest:
    return MarRequest(impu, impi, server, scheme, **fields)


async def wait_until(condition, timeout: float = 3.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def read_message(reader: asyncio.StreamReader, timeout: float = 2.0):
    """The next message, or None once the other side has closed the connection."""
    try:
        header = await asyncio.wait_for(reader.readexactly(HEADER_LENGTH), timeout)
        body = await reader.readexactly(message_length(header) - HEADER_LENGTH)
    except asyncio.IncompleteReadError:
        return None
    return parse_message(header + body)


class RawClient:
    """A hand-driven Diameter client for sending exactly the bytes a test wants."""

    def __init__(self, local: LocalNode = LocalNode("raw.ims.test", "ims.test")):
        self.local = local
        self.cea = None

    async def connect(self, port: int, handshake: bool = True) -> RawClient:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        if handshake:
            self.send(serialize(build_cer(self.local, "127.0.0.1")))
            self.cea = await self.read()
            assert self.cea.header.command_code == Command.CAPABILITIES_EXCHANGE
        return self

    def send(self, data: bytes):
        self.writer.write(data)

    async def read(self, timeout: float = 2.0):
        return await read_message(self.reader, timeout)

    async def is_closed_by_peer(self, timeout: float = 2.0) -> bool:
        try:
            return await asyncio.wait_for(self.reader.read(), timeout) == b""
        except ConnectionError:
            return True

    async def close(self):
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


class ScriptedPeer:
    """A Diameter server that completes the capabilities exchange, then behaves as told:
    `on_request="ignore"` never answers anything (not even DWR), `"close"` drops the
    connection when the first request after the CER arrives, `"watchdog"` answers DWR and
    DPR only."""
    local = LocalNode("scripted.ims.test", "ims.test")

    def __init__(self, on_request: str):
        self.on_request = on_request
        self.received = []
        self._writers = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self):
        self._server.close()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in self._writers), return_exceptions=True)

    async def _serve(self, reader, writer):
        self._writers.append(writer)
        while (msg := await read_message(reader, timeout=10)) is not None:
            self.received.append(msg)
            if msg.header.command_code == Command.CAPABILITIES_EXCHANGE:
                writer.write(serialize(build_cea(msg.header, self.local, "127.0.0.1",
                                                 ResultCode.DIAMETER_SUCCESS)))
            elif self.on_request == "close":
                writer.close()
                return
            elif self.on_request == "watchdog":
                answer = {Command.DEVICE_WATCHDOG: build_dwa,
                          Command.DISCONNECT_PEER: build_dpa}.get(msg.header.command_code)
                if answer:
                    writer.write(serialize(answer(msg.header, self.local)))
