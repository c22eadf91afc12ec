"""Third-party REGISTER (actors/rules/third_party.py) from a ShardCore with fakes, and the
charging headers (actors/rules/charging.py)."""
from __future__ import annotations

import asyncio

import pytest

from actors.config import config_from_dict
from actors.hosts.shard_core import ShardCore
from actors.rules.charging import charging_addresses, icid
from actors.rules.routing import shard_of
from actors.rules.third_party import fails, server_target
from actors.vocabulary import response_to_tag
from tests.unit.test_save import saa
from tests.unit.test_shard_core import SHARDS, Clock, MemoryStore, Network, register
from transport.diameter.cx import ServerAssignmentType as SAT
from transport.diameter.user_data import PublicIdentity, ServiceProfile, build_user_data
from transport.sip.parser import parse_message

ALICE = "sip:alice@ims.test"
MMTEL = "sip:mmtel@127.0.0.1:5071"
SMS = "sip:ipsmgw@127.0.0.1:5072;transport=tcp"
CHARGING = {"primary_charging_collection_function_name": "aaa://ccf1.ims.test",
            "secondary_charging_collection_function_name": "aaa://ccf2.ims.test",
            "primary_event_charging_function_name": "aaa://ecf1.ims.test"}
ADDRESSES = 'ccf="aaa://ccf1.ims.test";ccf="aaa://ccf2.ims.test";ecf="aaa://ecf1.ims.test"'


def ifc(server: str, *, priority: int, spts: str = "<SPT><Method>REGISTER</Method></SPT>",
        handling: int = 0, extra: str = "") -> str:
    return (f"<InitialFilterCriteria><Priority>{priority}</Priority><TriggerPoint>"
            f"<ConditionTypeCNF>0</ConditionTypeCNF>{spts}</TriggerPoint><ApplicationServer>"
            f"<ServerName>{server}</ServerName><DefaultHandling>{handling}</DefaultHandling>"
            f"{extra}</ApplicationServer></InitialFilterCriteria>")


def user_data(*ifcs: str) -> str:
    return build_user_data("alice@ims.test", [ServiceProfile([PublicIdentity(ALICE)],
                                                             ifc_xml=list(ifcs))])


class AsNetwork(Network):
    """The HSS answers with ``data`` and Charging-Information; the ASs with ``answers``."""

    def __init__(self, data: str) -> None:
        super().__init__()
        self.data = data

    async def sar(self, request):
        self.sars.append(request)
        answer = saa(user_data=self.data)
        answer.charging_information = CHARGING
        return answer


def core_for(network, clock, **registrar) -> ShardCore:
    config = config_from_dict({
        "ray": {"shards": SHARDS}, "auth": {"enabled": False},
        "registrar": {"scscf_name": "sip:scscf.ims.test:5060", **registrar}})
    return ShardCore(shard_of(ALICE, SHARDS), config, network.io(), MemoryStore(), clock=clock,
                     expire_in_background=False)


def from_ue(expires=600, cseq=1):
    request = register("sip:alice@10.0.0.1:5090", expires=expires, cseq=cseq)
    request.icid, request.visited_network = "icid-42", '"visited.net"'
    request.transport = "sip-transport-node-0"
    request.message = (b"REGISTER sip:ims.test SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5090;"
                       b"branch=z9hG4bK1\r\nFrom: <sip:alice@ims.test>;tag=1\r\nTo: <sip:alice"
                       b"@ims.test>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\n"
                       b"Content-Length: 0\r\n\r\n")
    return request


def sent(network) -> list[tuple[str, str, dict, bytes]]:
    """(transport, target, headers, body) of each third-party REGISTER, in send order."""
    return [(transport, job.received, dict(job.headers), job.body)
            for transport, job in network.notifies if job.method == "REGISTER"]


def test_a_registration_reaches_each_matching_as_with_the_headers_of_5_4_1_7():
    network = AsNetwork(user_data(
        ifc(SMS, priority=2, extra="<ServiceInfo>sms &lt;on&gt;</ServiceInfo>"),
        ifc(MMTEL, priority=1),
        ifc("sip:term@127.0.0.1:5073", priority=0,
            spts="<SPT><SessionCase>1</SessionCase></SPT>")))

    async def scenario():
        core = core_for(network, Clock())
        (reply,) = await core.register_batch([from_ue()])
        await core.third_party_registers_sent()
        return reply, await core.show(ALICE)

    reply, shown = asyncio.run(scenario())
    assert ("P-Charging-Function-Addresses", ADDRESSES) in reply.headers
    (mmtel, sms) = sent(network)
    assert mmtel[:2] == ("sip-transport-node-0", "udp:127.0.0.1:5071")
    headers = mmtel[2]
    assert headers["From"].startswith("<sip:scscf.ims.test:5060>;tag=")
    assert {k: v for k, v in headers.items() if k not in ("From", "Call-ID")} == {
        "Max-Forwards": "70", "To": f"<{ALICE}>", "CSeq": "1 REGISTER",
        "Contact": "<sip:scscf.ims.test:5060>", "Expires": "600",
        "P-Visited-Network-ID": '"visited.net"', "P-Charging-Vector": "icid-value=icid-42", "P-Charging-Function-Addresses": ADDRESSES}
    assert mmtel[3] == b""
    assert sms[1] == "tcp:127.0.0.1:5072"
    assert sms[2]["Content-Type"] == "application/3gpp-ims+xml"
    assert sms[3] == (b'<?xml version="1.0" encoding="UTF-8"?><ims-3gpp version="1">'
                      b"<service-info>sms &lt;on&gt;</service-info></ims-3gpp>")
    assert shown["charging"] == ADDRESSES
    assert [(c["visited_network"], c["icid"]) for c in shown["contacts"]] == [
        ('"visited.net"', "icid-42")]


def test_the_registration_type_extension_spares_a_refresh():
    initial_only = ("<SPT><Method>REGISTER</Method><Extension><RegistrationType>0"
                    "</RegistrationType></Extension></SPT>")
    network = AsNetwork(user_data(
        ifc(MMTEL, priority=0, spts=initial_only),
        ifc("sip:every@127.0.0.1:5074", priority=1,
            extra="<Extension><IncludeRegisterRequest/></Extension>")))

    async def scenario():
        core = core_for(network, Clock())
        await core.register_batch([from_ue(cseq=1)])
        await core.register_batch([from_ue(cseq=2)])
        await core.third_party_registers_sent()

    asyncio.run(scenario())
    assert [target for _, target, _, _ in sent(network)] == [
        "udp:127.0.0.1:5071", "udp:127.0.0.1:5074", "udp:127.0.0.1:5074"]
    every = sent(network)[2]
    assert every[2]["Content-Type"] == "message/sip"
    assert every[3] == from_ue().message


def test_include_register_response_quotes_the_200_ok_the_ue_got():
    network = AsNetwork(user_data(ifc(MMTEL, priority=0, extra=(
        "<Extension><IncludeRegisterResponse/></Extension>"))))

    async def scenario():
        core = core_for(network, Clock())
        (reply,) = await core.register_batch([from_ue()])
        await core.third_party_registers_sent()
        return reply

    reply = asyncio.run(scenario())
    ((_, _, headers, body),) = sent(network)
    assert headers["Content-Type"] == "message/sip"
    ok = parse_message(body)
    assert (ok.status, ok.reason, ok.call_id, ok.cseq) == (200, "OK", "c1", (1, "REGISTER"))
    assert ok.headers.get("To") == f"<{ALICE}>;tag={response_to_tag('c1', 1)}"
    assert ok.headers.get("Via") == "SIP/2.0/UDP 10.0.0.1:5090;branch=z9hG4bK1"
    assert [(n, v) for n, v in ok.headers if n not in (
        "Via", "From", "To", "Call-ID", "CSeq", "Server", "Content-Length")] == reply.headers


def test_de_registration_and_expiry_send_expires_0():
    network = AsNetwork(user_data(ifc(MMTEL, priority=0)))
    clock = Clock()

    async def scenario():
        core = core_for(network, clock, min_expires=1)
        await core.register_batch([from_ue(expires=600, cseq=1)])
        await core.register_batch([from_ue(expires=0, cseq=2)])
        await core.register_batch([from_ue(expires=60, cseq=3)])
        clock.now += 61
        await core.run_due(clock.now)
        await core.third_party_registers_sent()

    asyncio.run(scenario())
    assert [h["Expires"] for _, _, h, _ in sent(network)] == ["600", "0", "60", "0"]
    assert "P-Charging-Vector" not in sent(network)[3][2]  # the expiry had no REGISTER


@pytest.mark.parametrize("answer, handling, still_registered", [
    (500, 1, False), (408, 1, False), (503, 0, True), (486, 1, True), (200, 1, True)])
def test_a_failed_third_party_register_de_registers_only_under_session_terminated(
        answer, handling, still_registered):
    network = AsNetwork(user_data(ifc(MMTEL, priority=0, handling=handling)))
    network.answers = asyncio.Queue()

    async def scenario():
        core = core_for(network, Clock())
        network.answers.put_nowait(answer)
        network.answers.put_nowait(200)  # the de-registration's own third-party REGISTER
        (reply,) = await core.register_batch([from_ue()])
        await core.third_party_registers_sent()
        return reply, await core.show(ALICE)

    reply, shown = asyncio.run(scenario())
    assert reply.status == 200  # the UE's 200 never waits for the AS
    assert (shown is not None and shown["state"] == "REGISTERED") is still_registered
    assignments = [s.assignment_type for s in network.sars]
    if still_registered:
        assert assignments == [SAT.REGISTRATION]
    else:
        assert assignments == [SAT.REGISTRATION, SAT.ADMINISTRATIVE_DEREGISTRATION]
        assert shown is None  # forgotten: nothing of it is left
        assert [h["Expires"] for _, _, h, _ in sent(network)] == ["600", "0"]


def test_no_third_party_register_when_switched_off():
    network = AsNetwork(user_data(ifc(MMTEL, priority=0)))

    async def scenario():
        core = core_for(network, Clock(), third_party_register=0)
        await core.register_batch([from_ue()])
        await core.third_party_registers_sent()

    asyncio.run(scenario())
    assert sent(network) == []


def test_server_targets_and_failures():
    assert server_target("sip:as.ims.test") == "udp:as.ims.test:5060"
    assert server_target("sip:[::1]:5071;transport=TCP") == "tcp:::1:5071"
    assert server_target("sips:as.ims.test") is None
    assert server_target("sip:as;transport=sctp") is None
    assert server_target("not a uri") is None
    assert [fails(s) for s in (200, 302, 404, 408, 500, 503, 603)] == [
        False, False, False, True, True, True, True]


def test_charging_helpers():
    assert charging_addresses(None) == ()
    assert charging_addresses(CHARGING) == (("ccf", "aaa://ccf1.ims.test"),
                                            ("ccf", "aaa://ccf2.ims.test"),
                                            ("ecf", "aaa://ecf1.ims.test"))
    assert charging_addresses({"primary_event_charging_function_name": 'a"b'}) == ()
    assert icid('icid-value="AyretyU0dm+6O2IrT5tAFrbHLso=023551024";orig-ioi=home.net') == \
        "AyretyU0dm+6O2IrT5tAFrbHLso=023551024"
    assert icid("icid-value=1234bc9876e; icid-generated-at=192.0.6.8") == "1234bc9876e"
    assert icid("orig-ioi=home.net") is None
    assert icid(None) is None


def test_unusable_stored_ifcs_spare_the_registration(caplog):
    bad = user_data(ifc(MMTEL, priority=0)).replace("<ServerName>sip:mmtel@127.0.0.1:5071"
                                                     "</ServerName>", "")
    network = AsNetwork(user_data(ifc(MMTEL, priority=0)))

    async def scenario():
        core = core_for(network, Clock())
        await core.register_batch([from_ue(cseq=1)])
        core.impus[ALICE].profile.user_data = bad  # as a record of an older version held it
        network.data = None  # the refresh's SAA brings no user data: the stored profile stays
        (reply,) = await core.register_batch([from_ue(cseq=2)])
        await core.third_party_registers_sent()
        return reply

    assert asyncio.run(scenario()).status == 200
    assert len(sent(network)) == 1
    assert "third-party REGISTERs for sip:alice@ims.test not built" in caplog.text
