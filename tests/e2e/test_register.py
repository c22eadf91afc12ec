"""REGISTER end to end: sipp (UDP and TCP) -> `scscf serve` on Ray -> Diameter -> HSS emulator."""
from __future__ import annotations

import re

import pytest

from actors.vocabulary import RETRY_AFTER
from scripts.harness.ports import free_port
from scripts.harness.registrar import hss_sar_log, registrar_config, start_registrar
from scripts.harness.sipp import SIPP
from tests.e2e.sipp import Step, register, run_sipp

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(SIPP is None, reason="sipp is not installed")]

SUBSCRIBERS = """
[[subscriber]]
impi = "alice@ims.test"
impus = ["sip:alice@ims.test", "tel:+15550001", "sip:alice.work@ims.test"]
barred = ["sip:alice-barred@ims.test"]

[[subscriber]]
impi = "carol@ims.test"
impus = ["sip:carol@ims.test"]
barred = ["sip:carol-barred@ims.test"]

[[subscriber]]
impi = "bob@ims.test"
impus = ["sip:bob@ims.test", "sip:bob.home@ims.test"]
"""

ALICE_AUTH = 'Authorization: Digest username="alice@ims.test", realm="ims.test", uri="sip:ims.test", nonce="", response=""'
BOB_AUTH = ALICE_AUTH.replace("alice@", "bob@")
CAROL_AUTH = ALICE_AUTH.replace("alice@", "carol@")


@pytest.fixture(scope="module")
def registrar(ray_address, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("registrar")
    (workdir / "subscribers.toml").write_text(SUBSCRIBERS)
    sip, admin = free_port(), free_port()
    config = registrar_config("e2e-register", workdir, sip, registrar=f"""
min_expires = 60
max_expires = 7200
scscf_name = "sip:scscf.ims.test:{sip}"
""", hss=f"""
subscribers = "{workdir / 'subscribers.toml'}"
auto_provision_domain = "ims.test"
admin_listen = "127.0.0.1:{admin}"
""")
    server = start_registrar(config, workdir, sip, ray_address)
    server.hss_admin = admin
    yield server
    assert server.stop() == 0, "".join(server.output[-40:])


@pytest.fixture(params=["udp", "tcp"])
def transport(request):
    return request.param


def contacts(response):
    return response.headers.get_all("Contact")


def exchange(registrar, tmp_path, transport, *steps):
    return run_sipp(list(steps), registrar.sip_port, transport, tmp_path)


def test_initial_registration_200_ok_has_exact_headers(registrar, tmp_path, transport):
    user = f"initial-{transport}"
    path = "<sip:term@pcscf.ims.test:5070;lr>"
    (ok,) = exchange(registrar, tmp_path, transport, Step(register(
        user, contact=f"<sip:{user}@10.0.0.1:5090>;expires=600",
        extra=f"Path: {path}\nSupported: path"), 200))
    assert (ok.status, ok.reason) == (200, "OK")
    assert contacts(ok) == [f"<sip:{user}@10.0.0.1:5090>;expires=600"]
    assert ok.headers.get_all("Path") == [path]
    assert ok.headers.get("Service-Route") == f"<sip:orig@scscf.ims.test:{registrar.sip_port};lr>"
    assert ok.headers.get("P-Associated-URI") == f"<sip:{user}@ims.test>"
    assert ok.to.params.get("tag")
    assert ok.to.uri.aor() == f"sip:{user}@ims.test"
    assert ok.cseq == (1, "REGISTER")
    assert ok.vias[0].branch.startswith("z9hG4bK")


def test_refresh_second_contact_and_removing_one(registrar, tmp_path, transport):
    user = f"multi-{transport}"
    a, b = f"<sip:{user}@10.0.0.1:5090>", f"<sip:{user}@10.0.0.2:5090>"
    first, refresh, second, removed = exchange(
        registrar, tmp_path, transport,
        Step(register(user, contact=f"{a}", expires="600", cseq=1), 200),
        Step(register(user, contact=f"{a}", expires="1200", cseq=2), 200),
        Step(register(user, contact=f"{b};q=0.9", expires="300", cseq=3), 200),
        Step(register(user, contact=f"{a};expires=0", expires=None, cseq=4), 200),
    )
    assert contacts(first) == [f"{a};expires=600"]
    assert contacts(refresh) == [f"{a};expires=1200"]
    listed = contacts(second)
    assert sorted(listed) == sorted([f"{a};expires=1200", f"{b};q=0.9;expires=300"]) or \
        sorted(listed) == sorted([f"{a};expires=1199", f"{b};q=0.9;expires=300"])
    assert contacts(removed) in ([f"{b};q=0.9;expires=300", f"{a};expires=0"],
                                 [f"{b};q=0.9;expires=299", f"{a};expires=0"])


def test_star_removes_every_binding_only_with_expires_zero(registrar, tmp_path, transport):
    user = f"star-{transport}"
    _, bad, ok = exchange(
        registrar, tmp_path, transport,
        Step(register(user, contact=f"<sip:{user}@10.0.0.1>, <sip:{user}@10.0.0.2>", cseq=1), 200),
        Step(register(user, contact="*", expires="60", cseq=2), 400),
        Step(register(user, contact="*", expires="0", cseq=3), 200),
    )
    assert bad.reason == "Contact * requires Expires: 0"
    assert sorted(contacts(ok)) == [f"<sip:{user}@10.0.0.1>;expires=0",
                                    f"<sip:{user}@10.0.0.2>;expires=0"]
    assert ok.headers.get("P-Associated-URI") is None


def test_expires_is_clamped_to_min_and_max(registrar, tmp_path, transport):
    user = f"clamp-{transport}"
    low, high = exchange(
        registrar, tmp_path, transport,
        Step(register(user, contact=f"<sip:{user}@10.0.0.1>", expires="5", cseq=1), 200),
        Step(register(user, contact=f"<sip:{user}@10.0.0.1>", expires="999999", cseq=2), 200),
    )
    assert contacts(low) == [f"<sip:{user}@10.0.0.1>;expires=60"]
    assert contacts(high) == [f"<sip:{user}@10.0.0.1>;expires=7200"]


def test_same_instance_replaces_its_old_binding(registrar, tmp_path, transport):
    user = f"instance-{transport}"
    inst = '+sip.instance="<urn:gsma:imei:35-209900-176148-1>";reg-id=1'
    _, moved = exchange(
        registrar, tmp_path, transport,
        Step(register(user, contact=f"<sip:{user}@10.0.0.1:5090>;{inst}", cseq=1), 200),
        Step(register(user, contact=f"<sip:{user}@10.0.0.7:6000>;{inst}", cseq=2), 200),
    )
    assert contacts(moved) == [f"<sip:{user}@10.0.0.7:6000>;{inst};expires=600"]


def test_implicit_set_registers_every_identity(registrar, tmp_path, transport):
    name = "alice" if transport == "udp" else "bob"
    auth = ALICE_AUTH if name == "alice" else BOB_AUTH
    other = "alice.work" if name == "alice" else "bob.home"
    contact = f"<sip:{name}@10.1.1.1:5090;transport={transport}>"
    ok, query = exchange(
        registrar, tmp_path, transport,
        Step(register(name, contact=contact, extra=auth, cseq=1), 200),
        # A REGISTER without Contact is a query (RFC 3261 10.2.3): the other identity of the
        # set answers with the binding registered through the first one.
        Step(register(other, contact="", extra=auth, cseq=2), 200),
    )
    if name == "alice":
        assert ok.headers.get("P-Associated-URI") == "<sip:alice@ims.test>, <tel:+15550001>, <sip:alice.work@ims.test>"
    else:
        assert ok.headers.get("P-Associated-URI") == "<sip:bob@ims.test>, <sip:bob.home@ims.test>"
    assert contacts(query) == [f"{contact};expires=600"]


def test_barred_and_unknown_users_are_forbidden(registrar, tmp_path, transport):
    barred, unknown = exchange(
        registrar, tmp_path, transport,
        Step(register("carol-barred", extra=CAROL_AUTH, cseq=1), 403),
        Step(register("nobody", domain="elsewhere.test", cseq=2), 403),
    )
    assert barred.reason == "Public identity barred"
    assert unknown.reason == "User unknown"
    # the HSS recorded the barred identity's REGISTRATION, then heard it undone
    sars = [(e["assignment_type_name"]) for e in hss_sar_log(registrar.hss_admin)
            if e["public_identity"] == "sip:carol-barred@ims.test"]
    assert sars[-2:] == ["REGISTRATION", "USER_DEREGISTRATION"]


def test_malformed_register_is_400_with_reason(registrar, tmp_path, transport):
    user = f"bad-{transport}"
    (bad,) = exchange(registrar, tmp_path, transport, Step(register(
        user, contact=f"<sip:{user}@10.0.0.1>;q=7"), 400))
    assert bad.reason == "Bad q value in Contact"


@pytest.fixture(scope="module")
def registrar_without_hss(ray_address, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("nohss")
    sip = free_port()
    config = registrar_config("e2e-nohss", workdir, sip, hss="emulator = false", ray="shards = 1",
                              cx=f'peers = ["127.0.0.1:{free_port()}"]\nrequest_timeout = 1.0')
    server = start_registrar(config, workdir, sip, ray_address)
    yield server
    assert server.stop() == 0


def test_hss_down_is_a_fast_503_with_retry_after(registrar_without_hss, tmp_path, transport):
    (busy,) = run_sipp([Step(register(f"down-{transport}"), 503)], registrar_without_hss.sip_port,
                       transport, tmp_path)
    assert busy.headers.get("Retry-After") == RETRY_AFTER
    assert busy.reason.startswith("HSS unavailable")


def sars_of(registrar, identity):
    return [e["assignment_type_name"] for e in hss_sar_log(registrar.hss_admin)
            if e["public_identity"] == identity]


def test_removing_one_of_three_contacts_echoes_it_and_sends_the_hss_nothing(registrar, tmp_path,
                                                                            transport):
    user = f"three-{transport}"
    a, b, c = (f"<sip:{user}@10.0.0.{i}:5090>" for i in (1, 2, 3))
    *_, removed, star = exchange(
        registrar, tmp_path, transport,
        Step(register(user, contact=f"{a}, {b}, {c}", cseq=1), 200),
        Step(register(user, contact=f"{b};expires=0", expires=None, cseq=2), 200),
        Step(register(user, contact="*", expires="0", cseq=3), 200),
    )
    listed = contacts(removed)
    assert listed[-1] == f"{b};expires=0"
    assert sorted(listed[:-1]) in ([f"{a};expires=600", f"{c};expires=600"],
                                   [f"{a};expires=599", f"{c};expires=599"])
    assert sorted(contacts(star)) == [f"{a};expires=0", f"{c};expires=0"]
    assert sars_of(registrar, f"sip:{user}@ims.test") == ["REGISTRATION", "USER_DEREGISTRATION"]


def test_star_on_an_identity_with_no_binding_tells_the_hss(registrar, tmp_path, transport):
    user = f"nobinding-{transport}"
    (ok,) = exchange(registrar, tmp_path, transport,
                     Step(register(user, contact="*", expires="0"), 200))
    assert contacts(ok) == []
    assert sars_of(registrar, f"sip:{user}@ims.test") == ["USER_DEREGISTRATION"]


def test_a_port_in_the_to_uri_names_the_same_identity(registrar, tmp_path, transport):
    user = f"port-{transport}"
    contact = f"<sip:{user}@10.0.0.1:5090>"
    first, query = exchange(
        registrar, tmp_path, transport,
        Step(register(user, contact=contact, domain="ims.test:5060", cseq=1), 200),
        Step(register(user, contact="", cseq=2), 200),
    )
    assert first.headers.get("P-Associated-URI") == f"<sip:{user}@ims.test>"
    assert contacts(query) in ([f"{contact};expires=600"], [f"{contact};expires=599"])
    assert sars_of(registrar, f"sip:{user}@ims.test")[0] == "REGISTRATION"


def test_unsupported_require_is_420_and_every_answer_is_dated_with_rport_filled(
        registrar, tmp_path, transport):
    user = f"require-{transport}"
    rport = "Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]"
    refused, ok = exchange(
        registrar, tmp_path, transport,
        Step(register(user, extra="Require: path, x-unknown", cseq=1), 420),
        Step(register(user, cseq=2).replace(
            "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]", rport), 200),
    )
    assert refused.headers.get("Unsupported") == "x-unknown"
    assert sars_of(registrar, f"sip:{user}@ims.test") == ["REGISTRATION"]  # only the second
    for response in (refused, ok):
        assert re.fullmatch(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT",
                            response.headers.get("Date"))
    via = ok.vias[0]
    assert via.params["received"] == "127.0.0.1"
    if transport == "udp":  # sipp sends from the port its Via names; over TCP from another
        assert via.params["rport"] == str(via.port)
    else:
        assert via.params["rport"].isdigit()
