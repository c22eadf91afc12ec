"""The HSS's requests end to end: RTR and PPR sent by the HSS emulator (its admin interface)
over Diameter to `scscf serve`, with sipp UEs registered and sipp watchers subscribed; SAA
errors answered as mapped, and a Cx pool that Ray restarts serving REGISTERs again."""
from __future__ import annotations

import asyncio
import json
import sqlite3
import urllib.request

import pytest
import ray

from actors.rules.routing import shard_of
from actors.store.records import decode_impu
from actors.store.sqlite_backend import SqliteStore
from actors.vocabulary import RegState, cx_pool_name, shard_name
from scripts.harness.ports import free_port
from scripts.harness.registrar import hss_sar_log, registrar_config, start_registrar
from scripts.harness.sipp import SIPP
from tests.e2e.ray_actors import pid_of
from tests.e2e.sipp import SippRun, Step, register, run_sipp
from tests.e2e.test_reg_event import (
    NS,
    contact_events,
    notifies,
    reginfo,
    subscribe_text,
    wait_for,
    watcher_xml,
)
from tests.e2e.ue import Ue
from transport.diameter.cx import MarRequest
from transport.diameter.router import CxClient
from transport.diameter.user_data import PublicIdentity, ServiceProfile, build_user_data

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(SIPP is None, reason="sipp is not installed")]

NAMESPACE = "e2e-netdereg"
SHARDS = 2
REASONS = {"PERMANENT_TERMINATION": "rejected", "NEW_SERVER_ASSIGNED": "deactivated",
           "SERVER_CHANGE": "deactivated", "REMOVE_S-CSCF": "rejected"}
# Users of the subscribers file: each test its own, each an implicit set of a SIP URI and a tel.
USERS = [f"rtr-{n}" for n in range(len(REASONS))] + [
    "list-udp", "list-tcp", "ppr-bar", "ppr-ifc", "ppr-drop", "ppr-add", "ppr-charge", "busy",
    "restart"]
IFC = ("<InitialFilterCriteria><Priority>0</Priority><TriggerPoint><ConditionTypeCNF>0"
       "</ConditionTypeCNF><SPT><ConditionNegated>0</ConditionNegated><Group>0</Group>"
       "<Method>INVITE</Method></SPT></TriggerPoint><ApplicationServer>"
       "<ServerName>sip:as.ims.test</ServerName><DefaultHandling>0</DefaultHandling>"
       "</ApplicationServer></InitialFilterCriteria>")


def tel(user: str) -> str:
    return f"tel:+1555{USERS.index(user):04d}"


def sip(user: str) -> str:
    return f"sip:{user}@ims.test"


@pytest.fixture(scope="module")
def registrar(ray_address, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("netdereg")
    subscribers = workdir / "subscribers.toml"
    subscribers.write_text("".join(
        f'[[subscriber]]\nimpi = "{u}@ims.test"\nimpus = ["{sip(u)}", "{tel(u)}"]\n'
        f'password = "secret"\n'
        for u in USERS))
    sip_port, admin, diameter = free_port(), free_port(), free_port()
    config = registrar_config(
        NAMESPACE, workdir, sip_port, sip="t1 = 0.1",
        registrar="sar_reregistration_interval = 0",
        hss=f'listen = "127.0.0.1:{diameter}"\nadmin_listen = "127.0.0.1:{admin}"\n'
            f'subscribers = "{subscribers}"')
    server = start_registrar(config, workdir, sip_port, ray_address)
    server.admin_port, server.diameter_port, server.workdir = admin, diameter, workdir
    yield server
    assert server.stop() == 0, "".join(server.output[-40:])


def hss(registrar, command: str, body: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{registrar.admin_port}/{command}",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def show(identity: str) -> dict | None:
    shard = ray.get_actor(shard_name(shard_of(identity, SHARDS)), namespace=NAMESPACE)
    return ray.get(shard.show.remote(identity))


def stored(registrar, identity: str):
    """The identity's record as its shard's SQLite file holds it; None without one."""
    file = SqliteStore.shard_file(str(registrar.workdir / "data"), shard_of(identity, SHARDS))
    with sqlite3.connect(file) as db:
        row = db.execute("SELECT data FROM impu WHERE identity = ?", (identity,)).fetchone()
    return None if row is None else decode_impu(identity, row[0])


def registered_and_watched(registrar, tmp_path, user: str, transport: str = "udp"):
    """``user`` registered from one contact, and a sipp watcher (over ``transport``) that has
    its first NOTIFY and waits for one more."""
    contact = f"sip:{user}@10.1.0.1"
    run_sipp([Step(register(user, contact=f"<{contact}>"), 200)], registrar.sip_port, "udp",
             tmp_path, f"reg-{user}")
    assert [c["uri"] for c in show(tel(user))["contacts"]] == [contact]
    watcher = SippRun(watcher_xml(subscribe_text(user, asserted=sip(user)), 1),
                      registrar.sip_port, transport, tmp_path, f"watch-{user}")
    wait_for(lambda: len(notifies(watcher.messages())) == 1)
    return contact, watcher


def gone(identity: str) -> bool:
    shown = show(identity)
    return shown is None or (shown["state"] == RegState.NOT_REGISTERED.name
                             and not shown["contacts"])


def sars_of(registrar, identity: str) -> list[str]:
    return [s["assignment_type_name"] for s in hss_sar_log(registrar.admin_port)
            if s["public_identity"] == identity]


@pytest.mark.parametrize("reason", REASONS)
def test_rtr_by_impi_ends_the_set_and_tells_the_watcher(registrar, tmp_path, reason):
    user = f"rtr-{list(REASONS).index(reason)}"
    contact, watcher = registered_and_watched(registrar, tmp_path, user)
    sars = sars_of(registrar, sip(user))

    answer = hss(registrar, "rtr", {"impi": f"{user}@ims.test", "reason_code": reason})

    assert (answer["result_code"], answer["experimental_result_code"]) == (2001, None)
    assert gone(sip(user)) and gone(tel(user))
    _, last = notifies(watcher.wait())
    assert last.headers.get("Subscription-State") == "terminated;reason=noresource"
    document = reginfo(last)
    assert {(r.get("aor"), r.get("state")) for r in document.iterfind("r:registration", NS)} \
        == {(sip(user), "terminated"), (tel(user), "terminated")}
    assert contact_events(document) == {contact: ("terminated", REASONS[reason])}
    assert sars_of(registrar, sip(user)) == sars  # no SAR: the HSS asked
    assert stored(registrar, sip(user)) is None


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_rtr_by_impu_list_ends_the_implicit_set_of_each(registrar, tmp_path, transport):
    user = f"list-{transport}"
    contact, watcher = registered_and_watched(registrar, tmp_path, user, transport)

    answer = hss(registrar, "rtr", {"impi": f"{user}@ims.test", "impus": [tel(user)],
                                    "reason_code": "SERVER_CHANGE"})

    assert answer["result_code"] == 2001
    assert gone(sip(user)) and gone(tel(user))
    _, last = notifies(watcher.wait())
    assert contact_events(reginfo(last)) == {contact: ("terminated", "deactivated")}


def test_rtr_for_what_is_not_registered_here_is_user_unknown(registrar):
    unknown = hss(registrar, "rtr", {"impi": "rtr-0@ims.test", "impus": ["sip:nobody@ims.test"]})
    assert (unknown["result_code"], unknown["experimental_result_code"]) == (None, 5001)
    # the HSS emulator names its subscriber; nothing of it is registered here
    never = hss(registrar, "rtr", {"impi": "busy@ims.test"})
    assert never["experimental_result_code"] == 5001


def pushed(user: str, *, barred: tuple[str, ...] = (), without: tuple[str, ...] = (),
           ifcs: tuple[str, ...] = (), added: tuple[str, ...] = ()) -> str:
    identities = [PublicIdentity(i, barred=i in barred)
                  for i in (sip(user), tel(user), *added) if i not in without]
    return build_user_data(f"{user}@ims.test", [ServiceProfile(identities, list(ifcs))])


def test_ppr_barring_an_identity_hides_it_and_tells_the_watcher(registrar, tmp_path):
    user = "ppr-bar"
    contact, watcher = registered_and_watched(registrar, tmp_path, user)

    answer = hss(registrar, "ppr", {"impi": f"{user}@ims.test",
                                    "user_data": pushed(user, barred=(tel(user),))})

    assert (answer["result_code"], answer["experimental_result_code"]) == (2001, None)
    assert show(tel(user))["associated"] == [sip(user)]
    shard = ray.get_actor(shard_name(shard_of(tel(user), SHARDS)), namespace=NAMESPACE)
    (view,) = ray.get(shard.view_batch.remote([tel(user)]))
    assert view.bindings == ()  # a barred identity is not reachable
    _, update = notifies(watcher.wait())
    assert update.headers.get("Subscription-State").startswith("active;")
    registrations = {r.get("aor"): r for r in reginfo(update).iterfind("r:registration", NS)}
    assert registrations[sip(user)].get("state") == "active"
    assert registrations[tel(user)].get("state") == "terminated"
    assert contact_events(registrations[tel(user)]) == {contact: ("terminated", "rejected")}
    assert stored(registrar, tel(user)).profile.barred == {tel(user)}


def test_ppr_adding_an_ifc_is_stored_with_the_profile(registrar, tmp_path):
    user = "ppr-ifc"
    run_sipp([Step(register(user, contact=f"<sip:{user}@10.1.0.2>"), 200)], registrar.sip_port,
             "udp", tmp_path, "reg-ifc")

    answer = hss(registrar, "ppr", {"impi": f"{user}@ims.test",
                                    "user_data": pushed(user, ifcs=(IFC,))})

    assert answer["result_code"] == 2001
    for identity in (sip(user), tel(user)):
        record = stored(registrar, identity)
        assert "<ServerName>sip:as.ims.test</ServerName>" in record.profile.user_data
        assert record.state == RegState.REGISTERED and len(record.bindings) == 1
    assert stored(registrar, sip(user)).hss_host == "hss.ims.test"  # the SAA's Origin-Host


def test_ppr_with_charging_information_replaces_the_addresses_of_the_set(registrar, tmp_path):
    user = "ppr-charge"
    run_sipp([Step(register(user, contact=f"<sip:{user}@10.1.0.7>"), 200)], registrar.sip_port,
             "udp", tmp_path, "reg-charge")

    answer = hss(registrar, "ppr", {"impi": f"{user}@ims.test", "charging_information": {
        "primary_charging_collection_function_name": "aaa://ccf2.ims.test",
        "secondary_event_charging_function_name": "aaa://ecf2.ims.test"}})

    assert answer["result_code"] == 2001
    for identity in (sip(user), tel(user)):
        record = stored(registrar, identity)
        assert record.profile.charging == (("ccf", "aaa://ccf2.ims.test"),
                                           ("ecf", "aaa://ecf2.ims.test"))
        assert record.state == RegState.REGISTERED and len(record.bindings) == 1
    assert show(sip(user))["charging"] == 'ccf="aaa://ccf2.ims.test";ecf="aaa://ecf2.ims.test"'


def test_ppr_removing_an_identity_ends_its_bindings(registrar, tmp_path):
    user = "ppr-drop"
    run_sipp([Step(register(user, contact=f"<sip:{user}@10.1.0.3>"), 200)], registrar.sip_port,
             "udp", tmp_path, "reg-drop")

    answer = hss(registrar, "ppr", {"impi": f"{user}@ims.test",
                                    "user_data": pushed(user, without=(tel(user),))})

    assert answer["result_code"] == 2001
    assert gone(tel(user))
    assert [c["uri"] for c in show(sip(user))["contacts"]] == [f"sip:{user}@10.1.0.3"]
    assert show(sip(user))["associated"] == [sip(user)]


def test_ppr_adding_an_identity_registers_it_with_the_set(registrar, tmp_path):
    user, added = "ppr-add", "sip:ppr-add-second@ims.test"
    run_sipp([Step(register(user, contact=f"<sip:{user}@10.1.0.6>"), 200)], registrar.sip_port,
             "tcp", tmp_path, "reg-add")

    answer = hss(registrar, "ppr", {"impi": f"{user}@ims.test",
                                    "user_data": pushed(user, added=(added,))})

    assert answer["result_code"] == 2001
    shown = show(added)
    assert shown["state"] == RegState.REGISTERED.name
    assert [c["uri"] for c in shown["contacts"]] == [f"sip:{user}@10.1.0.6"]
    assert shown["associated"] == [sip(user), tel(user), added]


def test_ppr_with_user_data_that_does_not_parse_is_not_supported(registrar):
    answer = hss(registrar, "ppr", {"impi": "ppr-ifc@ims.test", "user_data": "<IMSSubscription>"})
    assert answer["experimental_result_code"] == 5009


def test_ppr_with_more_user_data_than_max_user_data_is_too_much_data(registrar):
    big = pushed("ppr-ifc", ifcs=(IFC,) * 300)
    assert len(big) > 65536  # [cx] max_user_data's default
    answer = hss(registrar, "ppr", {"impi": "ppr-ifc@ims.test", "user_data": big})
    assert answer["experimental_result_code"] == 5008


def test_an_saa_unable_to_comply_is_answered_500(registrar, tmp_path):
    """The HSS answers DIAMETER_UNABLE_TO_COMPLY to a re-registration once another S-CSCF
    took the user over (here: a MAR naming another S-CSCF, sent straight to the HSS)."""
    user = "busy"
    run_sipp([Step(register(user, contact=f"<sip:{user}@10.1.0.4>"), 200)], registrar.sip_port,
             "udp", tmp_path, "reg-busy")
    asyncio.run(mar_from_another_scscf(registrar, user))
    (refused,) = run_sipp([Step(register(user, contact=f"<sip:{user}@10.1.0.4>", cseq=2), 500)],
                          registrar.sip_port, "udp", tmp_path, "rereg-busy")
    assert refused.reason == "SAR failed (5012)"


async def mar_from_another_scscf(registrar, user: str) -> None:
    client = CxClient([("127.0.0.1", registrar.diameter_port)], "scscf.ims.test", "ims.test",
                      "ims.test")
    assert await client.start(wait=5)
    try:
        maa = await client.mar(MarRequest(sip(user), f"{user}@ims.test", "sip:other.ims.test"))
        assert maa.success
    finally:
        await client.close()


def test_a_cx_pool_restarted_by_ray_reconnects_and_serves(registrar):
    pool = ray.get_actor(cx_pool_name(0), namespace=NAMESPACE)
    old_pid = pid_of(pool)
    ray.kill(pool, no_restart=False)
    # ray.kill only asks: the old process may serve a while longer. Register once the new one
    # runs, or a 200 from the old one is followed by the restart this test means to precede it.
    wait_for(lambda: pid_of(pool) not in (old_pid, None), timeout=60)
    ue = Ue("restart@ims.test", sip("restart"), registrar.sip_port, "tcp")
    statuses = []
    try:
        wait_for(lambda: statuses.append(ue.register().status) or statuses[-1] == 200,
                 timeout=60)
    finally:
        ue.close()
    assert set(statuses[:-1]) <= {503}, statuses  # "HSS unavailable" while the pool came back
    assert "REGISTRATION" in sars_of(registrar, sip("restart"))
    assert [p["state"] for p in ray.get(pool.peers.remote())] == ["I_Open"]
    wait_for(lambda: any("restarted by Ray: reopening its Diameter peers" in line
                         for line in registrar.output), timeout=30)


@pytest.fixture(scope="module")
def two_pools(ray_address, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("twopools")
    sip_port, admin = free_port(), free_port()
    config = registrar_config(f"{NAMESPACE}-pools", workdir, sip_port, ray="cx_pool = 2",
                              hss=f'admin_listen = "127.0.0.1:{admin}"')
    server = start_registrar(config, workdir, sip_port, ray_address)
    server.admin_port = admin
    yield server
    assert server.stop() == 0, "".join(server.output[-40:])


def test_two_cx_pools_connect_under_two_names_and_each_takes_the_rtrs_of_its_users(two_pools):
    users = [f"pool-{n}" for n in range(4)]
    for user in users:
        ue = Ue(f"{user}@ims.test", sip(user), two_pools.sip_port)
        try:
            assert ue.register().status == 200
        finally:
            ue.close()
    clients = {}
    for user in users:
        url = f"http://127.0.0.1:{two_pools.admin_port}/subscribers/{user}@ims.test"
        with urllib.request.urlopen(url, timeout=5) as answer:
            clients[user] = json.load(answer)["diameter_client"]
    assert set(clients.values()) == {"scscf.ims.test", "scscf-1.ims.test"}
    for user, client in clients.items():
        answer = hss(two_pools, "rtr", {"impi": f"{user}@ims.test"})
        assert answer["result_code"] == 2001, (user, client, answer)
