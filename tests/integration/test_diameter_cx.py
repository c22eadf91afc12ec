"""CxClient against the HSS emulator over real TCP: TS 29.228 answers, routing, failover,
HSS-initiated RTR/PPR, and the emulator's admin interface."""
import asyncio
import hashlib
import time

import aiohttp
import pytest

from actors.auth import aka
from actors.auth.milenage import opc
from actors.hosts.cx_pool import CxPoolCore
from scripts.hss_emulator.config import TEST_K, TEST_OP
from scripts.hss_emulator.emulator import NotConnected, UnknownSubscriber
from tests.integration.test_diameter_fixtures import (
    SCSCF,
    ScriptedPeer,
    async_test,
    cx_client,
    mar,
    sar,
    start_hss,
    wait_until,
)
from transport.diameter.codec import Command, ResultCode
from transport.diameter.cx import (
    CxResult,
    DeregistrationReasonCode,
    MarRequest,
    decode_ppr,
    decode_rtr,
    encode_ppa,
    encode_rta,
)
from transport.diameter.cx import ServerAssignmentType as T
from transport.diameter.router import CxUnavailable
from transport.diameter.user_data import parse_user_data

ALICE_SET = ["sip:alice@ims.test", "tel:+15550001", "sip:alice-barred@ims.test",
             "sip:alice-chat!.*!@ims.test"]


@async_test
async def test_registration_returns_the_implicit_set():
    hss = await start_hss()
    cx = cx_client(hss.bound_port)
    assert await cx.start()
    saa = await cx.sar(sar("sip:alice@ims.test", "alice@ims.test"))
    assert saa.success and saa.result_code == ResultCode.DIAMETER_SUCCESS
    assert saa.user_name == "alice@ims.test"
    assert saa.charging_information == {
        "primary_event_charging_function_name": "aaa://ecf.ims.test",
        "primary_charging_collection_function_name": "aaa://ccf.ims.test"}
    profile = parse_user_data(saa.user_data)
    assert profile.all_identities() == ALICE_SET
    assert profile.unbarred_identities() == [i for i in ALICE_SET if "barred" not in i]
    assert hss.subscriber_state("alice@ims.test") == {
        "impi": "alice@ims.test", "impus": ALICE_SET[:2], "barred": ALICE_SET[2:3],
        "wildcards": ALICE_SET[3:], "server_name": SCSCF, "registered": True,
        "diameter_client": "scscf.ims.test", "sqn": None}
    assert list(hss.sar_log) == [("sip:alice@ims.test", T.REGISTRATION, SCSCF)]
    await cx.close()
    await hss.stop()


@async_test
async def test_ts_29228_answers():
    hss = await start_hss()
    cx = cx_client(hss.bound_port)
    await cx.start()
    unknown = await cx.sar(sar("sip:nobody@elsewhere.test", None))
    assert not unknown.success
    assert unknown.experimental_result_code == CxResult.DIAMETER_ERROR_USER_UNKNOWN
    mismatch = await cx.sar(sar("sip:alice@ims.test", "bob@ims.test"))
    assert mismatch.experimental_result_code == CxResult.DIAMETER_ERROR_IDENTITIES_DONT_MATCH
    assert "IDENTITIES_DONT_MATCH" in mismatch.description
    provisioned = await cx.sar(sar("sip:zoe@ims.test", "zoe@ims.test"))
    assert provisioned.success
    assert parse_user_data(provisioned.user_data).all_identities() == ["sip:zoe@ims.test"]

    # Re-registration with the profile cached: no user data sent again.
    await cx.sar(sar("sip:bob@ims.test", "bob@ims.test"))
    again = await cx.sar(sar("sip:bob@ims.test", "bob@ims.test", T.RE_REGISTRATION,
                             user_data_already_available=True))
    assert again.success and again.user_data is None

    # Another S-CSCF: REGISTRATION takes the user over, RE_REGISTRATION is refused.
    other = "sip:scscf2.ims.test"
    refused = await cx.sar(sar("sip:bob@ims.test", "bob@ims.test", T.RE_REGISTRATION, other))
    assert refused.result_code == ResultCode.DIAMETER_UNABLE_TO_COMPLY
    assert refused.server_name == SCSCF
    assert (await cx.sar(sar("sip:bob@ims.test", "bob@ims.test", server=other))).success
    assert hss.subscriber_state("bob@ims.test")["server_name"] == other

    # De-registration by the assigned S-CSCF; the *_STORE_SERVER_NAME kind keeps the name.
    dereg = await cx.sar(sar("sip:bob@ims.test", "bob@ims.test", T.USER_DEREGISTRATION, other))
    assert dereg.success and dereg.user_data is None
    state = hss.subscriber_state("bob@ims.test")
    assert (state["registered"], state["server_name"]) == (False, None)
    await cx.sar(sar("sip:bob@ims.test", "bob@ims.test"))
    await cx.sar(sar("", "bob@ims.test", T.TIMEOUT_DEREGISTRATION_STORE_SERVER_NAME))
    state = hss.subscriber_state("bob@ims.test")
    assert (state["registered"], state["server_name"]) == (False, SCSCF)

    # An unregistered user's terminating request: profile given, server name stored.
    unreg = await cx.sar(sar("tel:+15550001", None, T.UNREGISTERED_USER))
    assert unreg.success and unreg.user_name == "alice@ims.test" and unreg.user_data
    assert hss.subscriber_state("alice@ims.test")["server_name"] == SCSCF
    assert [entry[1] for entry in hss.sar_log][-2:] == [T.TIMEOUT_DEREGISTRATION_STORE_SERVER_NAME,
                                                        T.UNREGISTERED_USER]
    await cx.close()
    await hss.stop()


@async_test
async def test_wildcarded_psi():
    hss = await start_hss()
    cx = cx_client(hss.bound_port)
    await cx.start()
    saa = await cx.sar(sar("sip:alice-chat-42@ims.test", None, T.UNREGISTERED_USER))
    assert saa.success and saa.wildcarded_public_identity == "sip:alice-chat!.*!@ims.test"
    profile = parse_user_data(saa.user_data)
    assert profile.profile_of("sip:alice-chat-42@ims.test") is profile.service_profiles[0]
    await cx.close()
    await hss.stop()


@async_test
async def test_multimedia_auth_sip_digest():
    hss = await start_hss()
    cx = cx_client(hss.bound_port)
    await cx.start()
    maa = await cx.mar(MarRequest("sip:alice@ims.test", "alice@ims.test", SCSCF))
    assert maa.success and maa.number_auth_items == 1
    item = maa.auth_items[0]
    assert (item.scheme, item.digest_realm, item.digest_algorithm, item.digest_qop) == (
        "SIP Digest", "ims.test", "MD5", "auth")
    assert item.digest_ha1 == hashlib.md5(b"alice@ims.test:ims.test:alice-secret").hexdigest()
    no_password = await cx.mar(MarRequest("sip:bob@ims.test", "bob@ims.test", SCSCF))
    assert no_password.experimental_result_code == \
        CxResult.DIAMETER_ERROR_AUTH_SCHEME_NOT_SUPPORTED
    aka_for_alice = await cx.mar(mar("sip:alice@ims.test", "alice@ims.test", "Digest-AKAv1-MD5"))
    assert aka_for_alice.experimental_result_code == \
        CxResult.DIAMETER_ERROR_AUTH_SCHEME_NOT_SUPPORTED
    await cx.close()
    await hss.stop()


@async_test
async def test_multimedia_auth_aka_and_resynchronisation():
    """An auto-provisioned user authenticates with the TS 35.208 test set 1 K/OP; a UE whose
    SQN is ahead sends AUTS, the HSS resynchronises and the next vector is fresh for it."""
    hss = await start_hss()
    cx = cx_client(hss.bound_port)
    await cx.start()
    k, opc_ = TEST_K, opc(TEST_K, TEST_OP)
    maa = await cx.mar(mar("sip:dave@ims.test", "dave@ims.test", number_auth_items=2))
    assert maa.success and [item.item_number for item in maa.auth_items] == [1, 2]
    first = maa.auth_items[0]
    assert first.scheme == "Digest-AKAv1-MD5"
    rand, autn = first.authenticate[:16], first.authenticate[16:]
    answer = aka.ue_respond(k, opc_, rand, autn, 0)
    assert (answer.sqn, answer.res, answer.ck, answer.ik) == (
        1, first.authorization, first.confidentiality_key, first.integrity_key)
    stale = aka.ue_respond(k, opc_, rand, autn, 500)  # this UE has seen SQN 500 already
    assert stale.synchronisation_failure
    resynced = await cx.mar(mar("sip:dave@ims.test", "dave@ims.test", "Digest-AKAv1-MD5",
                                resync_authorization=rand + stale.auts))
    assert resynced.success and hss.subscriber_state("dave@ims.test")["sqn"] == 502
    fresh = resynced.auth_items[0]
    assert aka.ue_respond(k, opc_, fresh.authenticate[:16], fresh.authenticate[16:], 500).sqn \
        == 501
    forged = await cx.mar(mar("sip:dave@ims.test", "dave@ims.test", "Digest-AKAv1-MD5",
                              resync_authorization=rand + bytes(14)))
    assert forged.result_code == ResultCode.DIAMETER_AUTHORIZATION_REJECTED
    assert forged.auth_items == [] and hss.subscriber_state("dave@ims.test")["sqn"] == 502
    await cx.close()
    await hss.stop()


@async_test
async def test_failover_to_the_next_peer():
    first, second = await start_hss("hss1.ims.test"), await start_hss("hss2.ims.test")
    cx = cx_client(first.bound_port, second.bound_port)
    await cx.start()
    await wait_until(lambda: all(peer.is_open for peer in cx.peers))
    assert (await cx.sar(sar("sip:alice@ims.test", "alice@ims.test"))).success
    assert len(first.sar_log) == 1 and len(second.sar_log) == 0
    await first.stop()
    assert (await cx.sar(sar("sip:alice@ims.test", "alice@ims.test"))).success
    assert len(second.sar_log) == 1
    await cx.close()
    await second.stop()


@async_test
async def test_failover_of_a_request_caught_by_a_dropping_peer():
    dropping = ScriptedPeer("close")
    hss = await start_hss()
    cx = cx_client(await dropping.start(), hss.bound_port)
    await cx.start()
    await wait_until(lambda: all(peer.is_open for peer in cx.peers))
    started = time.monotonic()
    assert (await cx.sar(sar("sip:alice@ims.test", "alice@ims.test"))).success
    assert time.monotonic() - started < 0.5
    sent_first = dropping.received[-1]
    assert sent_first.header.command_code == Command.SERVER_ASSIGNMENT
    assert list(hss.sar_log) == [("sip:alice@ims.test", T.REGISTRATION, SCSCF)]
    await cx.close()
    await hss.stop()
    await dropping.stop()


@async_test
async def test_forced_peer():
    first, second = await start_hss("hss1.ims.test"), await start_hss("hss2.ims.test")
    cx = cx_client(first.bound_port, second.bound_port, forced_peer="hss2.ims.test")
    await cx.start()
    await wait_until(lambda: all(peer.is_open for peer in cx.peers))
    for _ in range(3):
        assert (await cx.sar(sar("sip:bob@ims.test", "bob@ims.test"))).success
    assert (len(first.sar_log), len(second.sar_log)) == (0, 3)
    await second.stop()
    with pytest.raises(CxUnavailable, match="forced peer hss2.ims.test"):
        await cx.sar(sar("sip:bob@ims.test", "bob@ims.test"))
    await cx.close()
    await first.stop()


@async_test
async def test_realm_routing():
    hss = await start_hss()
    cx = cx_client(hss.bound_port)
    cx.dest_realm = "other.test"
    await cx.start()
    with pytest.raises(CxUnavailable, match="realm other.test"):
        await cx.sar(sar("sip:bob@ims.test", "bob@ims.test"))
    assert (await cx.sar(sar("sip:bob@ims.test", "bob@ims.test",
                             destination_realm="ims.test"))).success
    await cx.close()
    await hss.stop()


@async_test
async def test_unavailable_fails_fast():
    hss = await start_hss()
    port = hss.bound_port
    await hss.stop()  # nothing listens there any more
    cx = cx_client(port, port)
    assert not await cx.start(wait=0.2)
    started = time.monotonic()
    with pytest.raises(CxUnavailable, match="no open Diameter peer"):
        await cx.sar(sar("sip:alice@ims.test", "alice@ims.test"))
    assert time.monotonic() - started < 0.05
    await cx.close()


@async_test
async def test_timeout_is_unavailable():
    silent = ScriptedPeer("ignore")
    cx = cx_client(await silent.start(), request_timeout=0.2, watchdog_interval=30)
    await cx.start()
    started = time.monotonic()
    with pytest.raises(CxUnavailable, match="timeout"):
        await cx.sar(sar("sip:alice@ims.test", "alice@ims.test"))
    assert time.monotonic() - started < 0.5
    await cx.close()
    await silent.stop()


@async_test
async def test_reconnects_after_the_emulator_restarts():
    hss = await start_hss()
    port = hss.bound_port
    cx = cx_client(port)
    await cx.start()
    assert (await cx.sar(sar("sip:alice@ims.test", "alice@ims.test"))).success
    await hss.stop()
    with pytest.raises(CxUnavailable):
        await cx.sar(sar("sip:alice@ims.test", "alice@ims.test"))
    hss = await start_hss(port=port)
    await wait_until(lambda: cx.peers[0].is_open)
    assert (await cx.sar(sar("sip:alice@ims.test", "alice@ims.test"))).success
    await cx.close()
    await wait_until(lambda: hss.connections == [])  # our DPR closed it
    await hss.stop()


@async_test
async def test_rtr_and_ppr_reach_the_handler():
    hss = await start_hss()
    cx = cx_client(hss.bound_port)
    received = []

    async def on_hss_request(msg):
        await asyncio.sleep(0)  # a real handler awaits the registrar
        if msg.header.command_code == Command.REGISTRATION_TERMINATION:
            received.append(decode_rtr(msg))
            return encode_rta(msg, cx.origin_host, cx.origin_realm)
        received.append(decode_ppr(msg))
        return encode_ppa(msg, cx.origin_host, cx.origin_realm)

    cx.set_request_handler(on_hss_request)
    with pytest.raises(NotConnected):  # no S-CSCF connected yet
        await hss.send_rtr("alice@ims.test")
    await cx.start()
    await cx.sar(sar("sip:alice@ims.test", "alice@ims.test"))

    ppa = await hss.send_ppr("alice@ims.test")
    assert ppa.success
    assert parse_user_data(received[-1].user_data).all_identities() == ALICE_SET

    rta = await hss.send_rtr("alice@ims.test", DeregistrationReasonCode.PERMANENT_TERMINATION,
                             impus=["tel:+15550001"], reason_info="contract ended")
    assert rta.success
    rtr = received[-1]
    assert (rtr.user_name, rtr.public_identities, rtr.reason_info) == (
        "alice@ims.test", ["tel:+15550001"], "contract ended")
    assert hss.subscriber_state("alice@ims.test")["registered"] is False
    with pytest.raises(UnknownSubscriber):
        await hss.send_ppr("nobody@elsewhere.test")
    await cx.close()
    await hss.stop()


@async_test
async def test_handler_failure_reaches_the_hss_as_unable_to_comply():
    hss = await start_hss()
    cx = cx_client(hss.bound_port)

    def on_hss_request(msg):
        raise ValueError("registrar not ready")

    cx.set_request_handler(on_hss_request)
    await cx.start()
    await cx.sar(sar("sip:bob@ims.test", "bob@ims.test"))
    rta = await hss.send_rtr("bob@ims.test")
    assert rta.result_code == ResultCode.DIAMETER_UNABLE_TO_COMPLY and not rta.success
    assert hss.subscriber_state("bob@ims.test")["registered"] is True
    await cx.close()
    await hss.stop()


@async_test
async def test_admin_interface():
    hss = await start_hss(admin_listen="127.0.0.1:0")
    cx = cx_client(hss.bound_port)

    def answer(msg):
        return encode_rta(msg, cx.origin_host, cx.origin_realm) \
            if msg.header.command_code == Command.REGISTRATION_TERMINATION \
            else encode_ppa(msg, cx.origin_host, cx.origin_realm)

    cx.set_request_handler(answer)
    await cx.start()
    await cx.sar(sar("sip:alice@ims.test", "alice@ims.test"))
    base = f"http://127.0.0.1:{hss.admin_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/sar_log") as response:
            assert await response.json() == [
                {"public_identity": "sip:alice@ims.test", "assignment_type": 1,
                 "assignment_type_name": "REGISTRATION", "server_name": SCSCF}]
        async with http.get(f"{base}/subscribers/alice@ims.test") as response:
            assert (await response.json())["registered"] is True
        async with http.get(f"{base}/subscribers/nobody@elsewhere.test") as response:
            assert response.status == 404
        async with http.post(f"{base}/ppr", json={"impi": "alice@ims.test"}) as response:
            assert (await response.json())["success"] is True
        async with http.post(f"{base}/rtr", json={"impi": "alice@ims.test",
                                                  "reason_code": "SERVER_CHANGE"}) as response:
            assert await response.json() == {"result_code": 2001,
                                             "experimental_result_code": None,
                                             "success": True,
                                             "description": "DIAMETER_SUCCESS (2001)"}
        async with http.post(f"{base}/rtr", json={"impi": "alice@ims.test",
                                                  "reason_code": "NO_SUCH"}) as response:
            assert response.status == 400
        async with http.post(f"{base}/rtr", data="not json") as response:
            assert response.status == 400
    assert hss.subscriber_state("alice@ims.test")["registered"] is False
    await cx.close()
    await hss.stop()


@async_test
async def test_a_request_that_cannot_be_encoded_fails_alone_and_the_connection_stays():
    hss = await start_hss()
    cx = cx_client(hss.bound_port)
    assert await cx.start()
    pool = CxPoolCore(cx)
    bad, good = await pool.sar_batch([sar("sip:alice@ims.test", "alice\udcff@ims.test"),
                                      sar("sip:alice@ims.test", "alice@ims.test")])
    assert isinstance(bad, CxUnavailable) and good.success
    for _ in range(3):  # later requests are still served over the same connection
        (later,) = await pool.sar_batch([sar("sip:alice@ims.test", "alice@ims.test")])
        assert later.success
    await cx.close()
    await hss.stop()
