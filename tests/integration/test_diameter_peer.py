"""The asyncio Diameter peer over real TCP: capabilities exchange, watchdog, disconnect,
failures while requests are pending, and the listening side."""
import asyncio
import time

import pytest

from tests.integration.test_diameter_fixtures import (
    PEERS,
    TW,
    RawClient,
    ScriptedPeer,
    async_test,
    sar,
    start_hss,
    wait_until,
)
from transport.diameter.base import DisconnectCause, LocalNode, build_dwa
from transport.diameter.codec import (
    CX_APPLICATION_ID,
    VENDOR_3GPP,
    AvpReader,
    Command,
    ResultCode,
    serialize,
)
from transport.diameter.cx import (
    DeregistrationReasonCode,
    RtrRequest,
    decode_rta,
    decode_rtr,
    decode_saa,
    encode_rta,
    encode_rtr,
    encode_sar,
)
from transport.diameter.errors import DiameterTimeout, PeerDown
from transport.diameter.peer import DiameterPeer, DiameterServer

SCSCF = LocalNode("scscf.ims.test", "ims.test")


def peer_to(port: int, **options) -> DiameterPeer:
    settings = dict(watchdog_interval=TW, connect_timeout=1.0, backoff_initial=0.05,
                    backoff_max=0.2)
    settings.update(options)
    return DiameterPeer("127.0.0.1", port, SCSCF, **settings)


def a_sar():
    return encode_sar(sar("sip:alice@ims.test", "alice@ims.test"), "scscf.ims.test", "ims.test",
                      f"scscf.ims.test;1;{time.monotonic_ns()}", "ims.test")


def vendor_specific_application_ids(reader: AvpReader) -> list[tuple[int, int]]:
    return [(group.value(266), group.value(258)) for group in reader.groups(260)]


@async_test
async def test_cer_advertises_cx():
    scripted = ScriptedPeer("watchdog")
    peer = peer_to(await scripted.start())
    await peer.start()
    assert await peer.wait_open(2)
    cer = scripted.received[0]
    assert cer.header.command_code == Command.CAPABILITIES_EXCHANGE and cer.header.is_request
    assert not cer.header.is_proxyable
    reader = AvpReader(cer.avps)
    assert vendor_specific_application_ids(reader) == [(VENDOR_3GPP, CX_APPLICATION_ID)]
    assert reader.values(265) == [VENDOR_3GPP]  # Supported-Vendor-Id
    assert (reader.text(264), reader.text(296)) == ("scscf.ims.test", "ims.test")
    assert reader.value(257) == (1, "127.0.0.1")  # Host-IP-Address
    assert reader.value(266) == VENDOR_3GPP and reader.text(269) == "ray-scscf"
    product_name = next(avp for avp in cer.avps if avp.code == 269)
    assert not product_name.is_mandatory  # RFC 6733 5.3.7
    await peer.close()
    await scripted.stop()


@async_test
async def test_cea_from_the_emulator():
    hss = await start_hss()
    raw = await RawClient().connect(hss.bound_port)
    cea = AvpReader(raw.cea.avps)
    assert cea.value(268) == ResultCode.DIAMETER_SUCCESS
    assert vendor_specific_application_ids(cea) == [(VENDOR_3GPP, CX_APPLICATION_ID)]
    assert (cea.text(264), cea.text(296)) == ("hss.ims.test", "ims.test")
    await raw.close()
    peer = peer_to(hss.bound_port)
    await peer.start()
    assert await peer.wait_open(2)
    assert peer.remote.origin_host == "hss.ims.test" and peer.remote.supports(CX_APPLICATION_ID)
    await peer.close()
    await hss.stop()


@async_test
async def test_watchdog_exchange_keeps_an_idle_connection_open():
    scripted = ScriptedPeer("watchdog")
    peer = peer_to(await scripted.start())
    await peer.start()
    assert await peer.wait_open(2)
    await asyncio.sleep(4 * TW)
    watchdogs = [m for m in scripted.received if m.header.command_code == Command.DEVICE_WATCHDOG]
    assert len(watchdogs) >= 2 and peer.is_open
    await peer.close()
    await scripted.stop()


@async_test
async def test_emulator_watchdogs_its_clients():
    hss = await start_hss()
    raw = await RawClient().connect(hss.bound_port)
    for _ in range(2):  # answer two DWRs from the server side; the connection stays up
        dwr = await raw.read(timeout=4 * TW)
        assert dwr.header.command_code == Command.DEVICE_WATCHDOG and dwr.header.is_request
        raw.send(serialize(build_dwa(dwr.header, raw.local)))
    assert len(hss.connections) == 1
    dwr = await raw.read(timeout=4 * TW)  # this one stays unanswered
    assert await raw.is_closed_by_peer(timeout=4 * TW)
    await raw.close()
    assert hss.connections == []
    await hss.stop()


@async_test
async def test_missed_watchdog_marks_the_peer_down_and_it_reconnects():
    scripted = ScriptedPeer("ignore")
    peer = peer_to(await scripted.start())
    await peer.start()
    assert await peer.wait_open(2)
    opened = time.monotonic()
    await wait_until(lambda: not peer.is_open, timeout=10 * TW)
    assert time.monotonic() - opened < 5 * TW  # idle Tw, then Tw for the DWA (+ jitter)
    with pytest.raises(PeerDown):
        await peer.request(a_sar(), timeout=5)
    await wait_until(lambda: peer.is_open, timeout=2)  # back-off, then a new connection
    await peer.close()
    await scripted.stop()


@async_test
async def test_connection_dropped_mid_request_fails_it_at_once():
    scripted = ScriptedPeer("close")
    peer = peer_to(await scripted.start())
    await peer.start()
    assert await peer.wait_open(2)
    started = time.monotonic()
    with pytest.raises(PeerDown):
        await peer.request(a_sar(), timeout=5)
    assert time.monotonic() - started < 0.5
    assert peer.pending_requests == 0
    await peer.close()
    await scripted.stop()


@async_test
async def test_requests_fail_fast_while_down_and_time_out_when_unanswered():
    silent = ScriptedPeer("ignore")
    port = await silent.start()
    peer = peer_to(port, watchdog_interval=30)
    started = time.monotonic()
    with pytest.raises(PeerDown):  # not started: no connection, no waiting
        await peer.request(a_sar(), timeout=5)
    assert time.monotonic() - started < 0.05
    await peer.start()
    assert await peer.wait_open(2)
    started = time.monotonic()
    requests = [peer.request(a_sar(), timeout=0.2) for _ in range(5)]
    results = await asyncio.gather(*requests, return_exceptions=True)
    assert all(isinstance(r, DiameterTimeout) for r in results)
    assert 0.2 <= time.monotonic() - started < 0.6
    assert peer.pending_requests == 0 and peer.is_open
    await peer.close()
    await silent.stop()


@async_test
async def test_close_sends_dpr():
    scripted = ScriptedPeer("watchdog")
    peer = peer_to(await scripted.start())
    await peer.start()
    assert await peer.wait_open(2)
    await peer.close(DisconnectCause.DO_NOT_WANT_TO_TALK_TO_YOU)
    dpr = scripted.received[-1]
    assert dpr.header.command_code == Command.DISCONNECT_PEER and dpr.header.is_request
    assert AvpReader(dpr.avps).value(273) == DisconnectCause.DO_NOT_WANT_TO_TALK_TO_YOU
    assert not peer.is_open
    await asyncio.sleep(0.2)  # several back-off periods
    assert len([m for m in scripted.received
                if m.header.command_code == Command.CAPABILITIES_EXCHANGE]) == 1  # no reconnect
    await scripted.stop()


@async_test
async def test_emulator_dpr_then_reconnect_after_restart():
    hss = await start_hss()
    port = hss.bound_port
    peer = peer_to(port)
    await peer.start()
    assert await peer.wait_open(2)
    await hss.stop()  # DPR to us: we answer, and drop the connection at once
    assert not peer.is_open
    with pytest.raises(PeerDown):
        await peer.request(a_sar(), timeout=1)
    hss = await start_hss(port=port)
    await wait_until(lambda: peer.is_open, timeout=3)
    answer = decode_saa(await peer.request(a_sar(), timeout=1))
    assert answer.success
    await peer.close()
    await hss.stop()


@async_test
async def test_server_mode_takes_requests_from_a_connecting_hss():
    """The S-CSCF listening, and an HSS connecting to it to send an RTR."""
    received = []

    async def on_request(msg):
        received.append(decode_rtr(msg))
        return encode_rta(msg, "scscf.ims.test", "ims.test")

    server = DiameterServer(SCSCF, request_handler=on_request, watchdog_interval=TW)
    await server.start("127.0.0.1", 0)
    hss = DiameterPeer("127.0.0.1", server.bound_port, LocalNode("hss.ims.test", "ims.test"),
                       watchdog_interval=TW, backoff_initial=0.05)
    await hss.start()
    assert await hss.wait_open(2)
    await wait_until(lambda: server.connection_to("hss.ims.test") is not None)
    rtr = encode_rtr(RtrRequest("alice@ims.test", DeregistrationReasonCode.REMOVE_S_CSCF),
                     "hss.ims.test", "ims.test", "hss.ims.test;1;1", "scscf.ims.test",
                     "ims.test")
    assert decode_rta(await hss.request(rtr, timeout=1)).success
    assert received[0].reason_code == DeregistrationReasonCode.REMOVE_S_CSCF
    await hss.close()
    await wait_until(lambda: server.connections == [])
    await server.stop()


@async_test
async def test_failing_handler_answers_unable_to_comply():
    def broken(msg):
        raise RuntimeError("bug in the handler")

    server = DiameterServer(SCSCF, request_handler=broken, watchdog_interval=TW)
    await server.start("127.0.0.1", 0)
    hss = DiameterPeer("127.0.0.1", server.bound_port, LocalNode("hss.ims.test", "ims.test"),
                       watchdog_interval=TW)
    await hss.start()
    assert await hss.wait_open(2)
    rtr = encode_rtr(RtrRequest("alice@ims.test", DeregistrationReasonCode.SERVER_CHANGE),
                     "hss.ims.test", "ims.test", "hss.ims.test;1;2", "scscf.ims.test",
                     "ims.test")
    answer = await hss.request(rtr, timeout=1)
    assert AvpReader(answer.avps).value(268) == ResultCode.DIAMETER_UNABLE_TO_COMPLY
    assert answer.avps[0].value == "hss.ims.test;1;2"  # Session-Id echoed
    await hss.close()
    await server.stop()


@async_test
async def test_cer_without_a_common_application_is_refused():
    hss = await start_hss(allowed_peers=PEERS + ("pcef.ims.test",))  # known, but speaks only Gx
    gx_only = LocalNode("pcef.ims.test", "ims.test", applications=((VENDOR_3GPP, 16777238),))
    raw = await RawClient(gx_only).connect(hss.bound_port)
    assert AvpReader(raw.cea.avps).value(268) == ResultCode.DIAMETER_NO_COMMON_APPLICATION
    assert await raw.is_closed_by_peer()
    await raw.close()
    peer = DiameterPeer("127.0.0.1", hss.bound_port, gx_only, backoff_initial=5)
    await peer.start()
    assert not await peer.wait_open(0.3)
    await peer.close()
    await hss.stop()


@async_test
async def test_a_peer_that_asked_us_to_go_away_is_left_alone():
    server = DiameterServer(LocalNode("hss.ims.test", "ims.test"), watchdog_interval=TW)
    await server.start("127.0.0.1", 0)
    port = server.bound_port
    peer = peer_to(port, backoff_max=5)
    await peer.start()
    assert await peer.wait_open(2)
    await server.stop(DisconnectCause.DO_NOT_WANT_TO_TALK_TO_YOU)
    server = DiameterServer(LocalNode("hss.ims.test", "ims.test"), watchdog_interval=TW)
    await server.start("127.0.0.1", port)
    assert not await peer.wait_open(0.5)  # a REBOOTING peer is back within 0.1 s
    await peer.close()
    await server.stop()
