"""CxPoolCore over a fake CxClient: answers in request order, HSS failures as values."""
from __future__ import annotations

import asyncio

from actors.hosts.cx_pool import CxPoolCore
from actors.hosts.hss_requests import HssRequests
from transport.diameter.cx import MarRequest, SarRequest, ServerAssignmentType
from transport.diameter.cx_inbound import CxRequestHandler
from transport.diameter.router import CxTimeout, CxUnavailable


class FakeCxClient:
    """Answers after a delay that makes later requests finish first; fails the identities in
    ``failing``."""

    def __init__(self, failing: dict[str, CxUnavailable]) -> None:
        self.failing = failing
        self.sent: list[tuple[str, str]] = []

    async def _answer(self, kind: str, identity: str, position: int):
        self.sent.append((kind, identity))
        await asyncio.sleep(0.001 * (3 - position))
        if identity in self.failing:
            raise self.failing[identity]
        return f"{kind.upper()[:2]}A for {identity}"

    async def sar(self, request: SarRequest):
        return await self._answer("sar", request.public_identity, len(self.sent))

    async def mar(self, request: MarRequest):
        return await self._answer("mar", request.public_identity, len(self.sent))


IDENTITIES = ["sip:a@ims.test", "sip:b@ims.test", "sip:c@ims.test"]


def sar(identity: str) -> SarRequest:
    return SarRequest(identity, "a@ims.test", "sip:scscf.ims.test",
                      ServerAssignmentType.REGISTRATION)


def test_sar_batch_answers_in_order_with_failures_as_values():
    down = CxTimeout("HSS timeout: 2.0 s")
    client = FakeCxClient({"sip:b@ims.test": down})
    results = asyncio.run(CxPoolCore(client).sar_batch([sar(i) for i in IDENTITIES]))
    assert results == ["SAA for sip:a@ims.test", down, "SAA for sip:c@ims.test"]
    assert client.sent == [("sar", i) for i in IDENTITIES]


def test_mar_batch_answers_in_order_with_failures_as_values():
    down = CxUnavailable("no open Diameter peer for realm ims.test")
    client = FakeCxClient({"sip:c@ims.test": down})
    requests = [MarRequest(i, "a@ims.test", "sip:scscf.ims.test") for i in IDENTITIES]
    results = asyncio.run(CxPoolCore(client).mar_batch(requests))
    assert results == ["MAA for sip:a@ims.test", "MAA for sip:b@ims.test", down]
    assert client.sent == [("mar", i) for i in IDENTITIES]


def test_a_request_that_cannot_be_sent_fails_alone():
    class Unencodable(FakeCxClient):
        async def sar(self, request):
            if request.public_identity == IDENTITIES[1]:
                "\udcff".encode()  # what the Diameter encoder does with non-UTF-8 text
            return await super().sar(request)

    results = asyncio.run(CxPoolCore(Unencodable({})).sar_batch([sar(i) for i in IDENTITIES]))
    assert results[0] == "SAA for sip:a@ims.test" and results[2] == "SAA for sip:c@ims.test"
    assert isinstance(results[1], CxUnavailable)
    assert str(results[1]) == "Cx request failed: UnicodeEncodeError"


class StartingClient(FakeCxClient):
    """Counts how often the pool opens its peers; keeps the request handler it is given."""

    origin_host, origin_realm, peers = "scscf-1.ims.test", "ims.test", []

    def __init__(self) -> None:
        super().__init__({})
        self.starts = 0
        self.handler = None

    async def start(self):
        self.starts += 1
        await asyncio.sleep(0)

    async def close(self):
        pass

    def set_request_handler(self, handler):
        self.handler = handler


def test_the_peers_open_once_however_often_start_is_called():
    client = StartingClient()

    async def scenario():
        pool = CxPoolCore(client)
        await asyncio.gather(pool.start(), pool.start())
        await pool.start()
        await pool.stop()

    asyncio.run(scenario())
    assert client.starts == 1


def test_a_pool_with_hss_requests_answers_what_the_hss_sends_under_its_own_name():
    client = StartingClient()
    CxPoolCore(client, HssRequests(lambda *args: asyncio.sleep(0, []), lambda xml: None))
    assert isinstance(client.handler, CxRequestHandler)
    assert client.handler.origin_host == "scscf-1.ims.test"
    assert CxPoolCore(StartingClient()).client.handler is None
