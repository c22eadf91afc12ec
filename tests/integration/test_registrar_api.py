"""The Registrar handle against real shard actors on Ray, with Diameter to the HSS emulator.

REGISTERs go straight to the shards (as a transport sends them); the terminating functions are
then called the way another Ray driver or actor would.
"""
import asyncio
import threading
import time

import pytest
import ray

from actors.config import config_from_dict
from actors.ops.deployment import start_registrar
from actors.ops.registrar import Registrar
from actors.rules.register_request import register_request
from actors.rules.routing import SLOTS, shard_of
from actors.vocabulary import FOUND, INTERNAL_ERROR, METHOD_NOT_ALLOWED, NOT_FOUND, shard_name
from scripts.cli import start_embedded_hss
from scripts.harness.ports import free_port
from transport.diameter.cx import ServerAssignmentType as SAT
from transport.sip.parser import parse_message

NAMESPACE = "it-registrar-api"
SHARDS = 2
PCSCF = "<sip:term@pcscf.ims.test:5070;lr>"
SUBSCRIBERS = """
[[subscriber]]
impi = "alice@ims.test"
impus = ["sip:alice@ims.test", "tel:+15550001"]
"""


class LoopThread:
    """One event loop for the module: the embedded HSS and the Registrar's batchers live in it."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout=60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


@pytest.fixture(scope="module")
def env(ray_address, tmp_path_factory):
    subscribers = tmp_path_factory.mktemp("api") / "subscribers.toml"
    subscribers.write_text(SUBSCRIBERS)
    config = config_from_dict({
        "sip": {"listen": [f"udp:127.0.0.1:{free_port()}"]},
        "registrar": {"append_branches": 1, "method_filtering": 1, "unreg_validity": 2},
        "hss": {"listen": f"127.0.0.1:{free_port()}", "subscribers": str(subscribers)},
        "ray": {"namespace": NAMESPACE, "shards": SHARDS},
        "store": {"backend": "none"},
        "rpc": {"listen": ""},
        "metrics": {"listen": ""},
        "auth": {"enabled": False},  # REGISTERs go straight to the shards, unauthenticated
    })
    loop = LoopThread()
    hss = loop.run(start_embedded_hss(config))
    deployment = loop.run(start_registrar(config), timeout=120)
    yield loop, Registrar(config), hss
    loop.run(deployment.stop())
    loop.run(hss.stop())
    loop.close()


def sip(text):
    return parse_message(text.strip().replace("\n", "\r\n").encode() + b"\r\n\r\n")


def register(user, contact, cseq=1, extra=""):
    message = sip(f"""
REGISTER sip:ims.test SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1:5090;branch=z9hG4bK-{user}-{cseq}
From: <sip:{user}@ims.test>;tag=1
To: <sip:{user}@ims.test>
Call-ID: reg-{user}
CSeq: {cseq} REGISTER
Contact: {contact}
Path: {PCSCF}
Supported: path
Expires: 600
{extra}
Content-Length: 0""".replace("\n\n", "\n"))
    req = register_request(message, "udp:10.0.0.1:5090")
    shard = ray.get_actor(shard_name(shard_of(req.aor, SHARDS)), namespace=NAMESPACE)
    (reply,) = ray.get(shard.register_batch.remote([req]), timeout=30)
    assert reply.status == 200, reply


def request(method, ruri, to=None):
    return sip(f"""
{method} {ruri} SIP/2.0
Via: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bK-{method}
From: <sip:caller@ims.test>;tag=9
To: <{to or ruri}>
Call-ID: {method}-call
CSeq: 1 {method}
Content-Length: 0""")


def sar_log(hss):
    return [(impu, kind) for impu, kind, _ in list(hss.sar_log)]


def test_lookup_orders_filters_by_method_and_routes_through_path(env):
    loop, registrar, _ = env
    register("alice", "<sip:alice@10.0.0.1:5090>;q=0.5", extra="Allow: INVITE, ACK, BYE")
    register("alice", '<sip:alice@10.0.0.2:5090>;q=0.9;methods="MESSAGE"', cseq=2)
    code, targets = loop.run(registrar.lookup(request("INVITE", "sip:alice@ims.test")))
    assert code == FOUND and [t.uri for t in targets] == ["sip:alice@10.0.0.1:5090"]
    assert targets[0].dst_uri == "sip:term@pcscf.ims.test:5070;lr"
    code, targets = loop.run(registrar.lookup("sip:alice@ims.test", "MESSAGE"))
    assert code == FOUND and [t.uri for t in targets] == ["sip:alice@10.0.0.2:5090"]
    assert loop.run(registrar.lookup("sip:alice@ims.test", "SUBSCRIBE")) == (METHOD_NOT_ALLOWED, [])
    # No method: every contact, best first (append_branches = 1); the tel: IMPU of the same
    # implicit set (possibly on the other shard) has the same contacts.
    for identity in ("<sip:alice@ims.test>", "tel:+15550001"):
        code, targets = loop.run(registrar.lookup(identity))
        assert code == FOUND
        assert [t.uri for t in targets] == ["sip:alice@10.0.0.2:5090", "sip:alice@10.0.0.1:5090"]
    assert loop.run(registrar.lookup("sip:nobody@ims.test")) == (NOT_FOUND, [])
    assert loop.run(registrar.lookup("not a uri")) == (INTERNAL_ERROR, [])


def test_path_to_contact_registered_checks_and_fetched_contacts(env):
    loop, registrar, _ = env
    register("bob", "<sip:bob@10.0.0.3:5090;transport=tcp>")
    assert loop.run(registrar.lookup_path_to_contact("sip:bob@10.0.0.3:5090;transport=tcp")) == (
        FOUND, [PCSCF])
    assert loop.run(registrar.lookup_path_to_contact("sip:bob@10.0.0.3:5091")) == (NOT_FOUND, [])
    subscribe = request("SUBSCRIBE", "sip:ims.test", to="sip:bob@ims.test")
    assert loop.run(registrar.impu_registered(subscribe)) == FOUND  # the To header
    assert loop.run(registrar.term_impu_registered(subscribe)) == NOT_FOUND  # the Request-URI
    assert loop.run(registrar.term_impu_registered("sip:bob@ims.test")) == FOUND
    assert loop.run(registrar.reg_fetch_contacts("sip:bob@ims.test", "callee")) == FOUND
    profile = registrar.profiles["callee"]
    assert (profile["aor"], profile["count"]) == ("sip:bob@ims.test", 1)
    (contact,) = profile["contacts"]
    assert contact["uri"] == "sip:bob@10.0.0.3:5090;transport=tcp"
    assert contact["path"] == [PCSCF] and contact["callid"] == "reg-bob" and contact["cseq"] == 1
    assert contact["expires"] - time.time() == pytest.approx(600, abs=5)
    assert loop.run(registrar.reg_fetch_contacts("sip:nobody@ims.test", "callee")) == NOT_FOUND
    assert "callee" not in registrar.profiles
    loop.run(registrar.reg_fetch_contacts("sip:bob@ims.test", "caller"))
    assert loop.run(registrar.reg_free_contacts("caller")) == FOUND and not registrar.profiles


def test_unregister_removes_the_identity_and_tells_the_hss(env):
    loop, registrar, hss = env
    register("dave", "<sip:dave@10.0.0.4>")
    assert loop.run(registrar.unregister("sip:dave@ims.test")) == FOUND
    assert sar_log(hss)[-1] == ("sip:dave@ims.test", SAT.ADMINISTRATIVE_DEREGISTRATION)
    assert loop.run(registrar.lookup("sip:dave@ims.test")) == (NOT_FOUND, [])
    assert loop.run(registrar.unregister("sip:dave@ims.test")) == NOT_FOUND


def test_an_unregistered_user_is_assigned_then_lapses(env):
    loop, registrar, hss = env
    assert loop.run(registrar.assign_server_unreg("sip:carol@ims.test")) == FOUND
    assert sar_log(hss)[-1] == ("sip:carol@ims.test", SAT.UNREGISTERED_USER)
    assert loop.run(registrar.show_impu("sip:carol@ims.test"))["state"] == "UNREGISTERED"
    assert loop.run(registrar.term_impu_registered("sip:carol@ims.test")) == NOT_FOUND
    assert loop.run(registrar.assign_server_unreg("sip:carol@ims.test", "sideways")) == INTERNAL_ERROR
    invite_from_erin = request("INVITE", "sip:somebody@ims.test")
    invite_from_erin.headers.add("P-Asserted-Identity", "<sip:erin@ims.test>")
    assert loop.run(registrar.assign_server_unreg(invite_from_erin, "orig")) == FOUND
    assert sar_log(hss)[-1] == ("sip:erin@ims.test", SAT.UNREGISTERED_USER)
    time.sleep(3)  # unreg_validity = 2
    assert loop.run(registrar.show_impu("sip:carol@ims.test"))["state"] == "NOT_REGISTERED"


def test_status_and_statistics_sum_the_shards(env):
    loop, registrar, _ = env
    register("frank", "<sip:frank@10.0.0.6>")
    status = loop.run(registrar.status())
    assert [s["name"] for s in status["shards"]] == ["impu-shard-0", "impu-shard-1"]
    assert sum(s["slots"] for s in status["shards"]) == SLOTS
    assert all(s["node"] and s["node_id"] for s in status["shards"])
    assert status["impus"] == sum(s["impus"] for s in status["shards"]) >= 1
    stats = loop.run(registrar.statistics())
    assert stats["ims_registrar_scscf:accepted_regs"] >= 1
    assert stats["ims_usrloc_scscf:impus"] == status["impus"]
    assert stats["ims_registrar_scscf:sar_avg_response_time"] >= 0
