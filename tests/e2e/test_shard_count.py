"""`[ray] shards` changed between two starts, with either store: every registration is still
found, binding by binding, and expires as before (one TIMEOUT_DEREGISTRATION each)."""
from __future__ import annotations

import time
from collections import Counter

import pytest

from scripts.harness.ports import free_port
from scripts.harness.redis_server import available as redis_available
from scripts.harness.redis_server import store_section
from scripts.harness.registrar import hss_sar_log, registrar_config, start_registrar
from scripts.harness.sipp import SIPP
from tests.e2e.sipp import Step, register, run_sipp

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(SIPP is None, reason="sipp is not installed")]

USERS, SHORT, SHORT_EXPIRES = 40, 8, 30
DEADLINE = 60.0  # seconds the expiries may take beyond their time on a busy machine


def register_all(names: list[str], port: int, workdir, expires: int) -> None:
    run_sipp([Step(register(n, contact=f"<sip:{n}@10.2.0.{i % 250 + 1}:5090>",
                            expires=str(expires)), 200) for i, n in enumerate(names)],
             port, "udp", workdir, f"reg-{names[0]}")


def bindings(rpc, users: list[str]) -> dict[str, list[tuple]]:
    out = {}
    for user in users:
        shown = rpc("ulscscf.showimpu", user)["result"]
        out[user] = sorted((c["uri"], c["q"], tuple(c["path"])) for c in shown["contacts"])
    return out


def expire_once(rpc, admin: int, short: list[str], until: float) -> None:
    """Waits for the bindings of ``short`` to go, due at ``until``; each expiry sent the HSS
    one TIMEOUT_DEREGISTRATION."""
    gone = set()
    while len(gone) < len(short):
        assert time.time() < until + DEADLINE, gone
        gone |= {u for u, b in bindings(rpc, short).items() if not b}
        time.sleep(0.2)
    timeouts = Counter(e["public_identity"] for e in hss_sar_log(admin)
                       if e["assignment_type_name"] == "TIMEOUT_DEREGISTRATION")
    assert timeouts == Counter(short)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_new_shard_count_keeps_every_registration_and_its_expiry(ray_address, tmp_path,
                                                                   backend):
    if backend == "redis" and not redis_available():
        pytest.skip("redis-server is not installed")
    sip, admin, rpc_port = free_port(), free_port(), free_port()

    def rpc(method: str, *params: str) -> dict:  # the registrar running now, with its token
        return server.rpc(method, *params)

    def config(shards: int, store: str) -> str:
        return registrar_config(f"e2e-shard-count-{backend}", tmp_path, sip,
                                registrar="min_expires = 5", store=store,
                                ray=f"shards = {shards}", rpc=f'listen = "127.0.0.1:{rpc_port}"',
                                hss=f'admin_listen = "127.0.0.1:{admin}"')

    long_names = [f"sc{backend}{n}" for n in range(USERS - SHORT)]
    short_names = [f"sc{backend}short{n}" for n in range(SHORT)]
    everyone = [f"sip:{n}@ims.test" for n in long_names]
    short = [f"sip:{n}@ims.test" for n in short_names]
    with store_section(backend) as store:
        server = start_registrar(config(2, store), tmp_path, sip, ray_address)
        try:
            register_all(long_names, sip, tmp_path, 600)
            register_all(short_names, sip, tmp_path, SHORT_EXPIRES)
            short_until = time.time() + SHORT_EXPIRES
            before = bindings(rpc, everyone + short)
            assert all(len(b) == 1 for b in before.values())
            assert server.stop() == 0
            server = start_registrar(config(3, store), tmp_path, sip, ray_address)
            status = rpc("ulscscf.status")["result"]
            assert len(status["shards"]) == 3
            if time.time() < short_until - 2:  # the short ones are still there too
                assert status["impus"] == USERS
            assert bindings(rpc, everyone) == {u: before[u] for u in everyone}
            expire_once(rpc, admin, short, short_until)
            assert rpc("ulscscf.status")["result"]["impus"] == USERS - SHORT
            assert server.stop() == 0
        finally:
            server.stop()  # a test that failed leaves no registrar behind


@pytest.mark.skipif(not redis_available(), reason="redis-server is not installed")
def test_the_shard_count_changes_at_run_time_with_redis(ray_address, tmp_path):
    sip, admin, rpc_port = free_port(), free_port(), free_port()

    def rpc(method: str, *params: str) -> dict:  # the registrar running now, with its token
        return server.rpc(method, *params)
    long_names = [f"rt{n}" for n in range(USERS - SHORT)]
    short_names = [f"rtshort{n}" for n in range(SHORT)]
    everyone = [f"sip:{n}@ims.test" for n in long_names]
    short = [f"sip:{n}@ims.test" for n in short_names]
    with store_section("redis") as store:
        text = registrar_config("e2e-set-shards", tmp_path, sip, registrar="min_expires = 5",
                                store=store, rpc=f'listen = "127.0.0.1:{rpc_port}"',
                                hss=f'admin_listen = "127.0.0.1:{admin}"')
        server = start_registrar(text, tmp_path, sip, ray_address)
        try:
            register_all(long_names, sip, tmp_path, 600)
            register_all(short_names, sip, tmp_path, SHORT_EXPIRES)
            short_until = time.time() + SHORT_EXPIRES
            before = bindings(rpc, everyone)
            refused = rpc("scscf.set_shards", "none")["error"]
            assert refused["code"] == -32602 and "'none'" in refused["message"]
            for count in (3, 1):
                assert rpc("scscf.set_shards", str(count))["result"] == {"shards": count}
                status = rpc("ulscscf.status")["result"]
                assert len(status["shards"]) == count
                assert bindings(rpc, everyone) == before
                register_all([f"rt-after-{count}-{n}" for n in range(4)], sip, tmp_path, 600)
            expire_once(rpc, admin, short, short_until)
            assert rpc("ulscscf.status")["result"]["impus"] == USERS - SHORT + 8
            assert server.stop() == 0
        finally:
            server.stop()
