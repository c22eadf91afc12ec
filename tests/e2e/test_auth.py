"""Authentication at registration end to end: sipp and a small UE over UDP and TCP against
`scscf serve` (authentication on, as by default), MAR/MAA over Diameter to the HSS emulator."""
from __future__ import annotations

from pathlib import Path

import pytest

from actors.auth import aka, milenage
from scripts.harness.registrar import sar_types, show_impu, start_with_subscribers
from scripts.harness.sipp import SIPP
from scripts.hss_emulator.config import TEST_K, TEST_OP
from tests.e2e.sipp import Step, received_messages, register, run_sipp
from tests.e2e.ue import Ue, aka_answer, challenge
from transport.diameter.cx import ServerAssignmentType as SAT

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(SIPP is None, reason="sipp is not installed")]

# sipp copies aka_K, aka_OP and aka_AMF into the keys byte for byte: its subscriber's keys are
# printable text (hex-encoded here), its AMF the two bytes of "80".
SIPP_K, SIPP_OP = b"ims-aka-test-key", b"ims-aka-test-op!"
SUBSCRIBERS = f"""
[[subscriber]]
impi = "akasipp@ims.test"
impus = ["sip:akasipp@ims.test"]
k = "{SIPP_K.hex()}"
op = "{SIPP_OP.hex()}"
amf = "{b'80'.hex()}"
auth_scheme = "Digest-AKAv1-MD5"

[[subscriber]]
impi = "md5@ims.test"
impus = ["sip:md5@ims.test"]
password = "md5-secret"
auth_scheme = "SIP Digest"
"""
INITIAL_MD5 = ('Authorization: Digest username="md5@ims.test", realm="ims.test", '
               'uri="sip:ims.test", nonce="", response="", algorithm=MD5')
INITIAL_AKA = INITIAL_MD5.replace("md5@", "akasipp@").replace("MD5", "AKAv1-MD5")
OPC = milenage.opc(TEST_K, TEST_OP)  # auto-provisioned users' keys (TS 35.208 test set 1)


@pytest.fixture(scope="module")
def registrar(ray_address, tmp_path_factory):
    server = start_with_subscribers("e2e-auth", tmp_path_factory.mktemp("auth"), SUBSCRIBERS,
                                    ray_address, auth="enabled = true",
                                    hss='auto_provision_domain = "ims.test"')
    yield server
    assert server.stop() == 0, "".join(server.output[-40:])


@pytest.fixture(params=["udp", "tcp"])
def transport(request):
    return request.param


def sipp_res_is_cut(trace: Path) -> bool:
    """Whether the RES for the trace's 401 holds a zero byte. sipp 3.6 hashes the AKA password
    up to its first NUL (strlen), so it answers such a challenge (1 in 32) wrongly: 403."""
    challenged = [m for m in received_messages(trace) if getattr(m, "status", None) == 401]
    if not challenged:
        return False
    rand, _, _ = aka.split_aka_nonce(challenge(challenged[-1])["nonce"])
    return 0 in milenage.Milenage(SIPP_K, milenage.opc(SIPP_K, SIPP_OP)).f2(rand)


def test_sipp_registers_with_ims_aka(registrar, transport, tmp_path):
    user = f"akasipp-{transport}"
    answer = f"[authentication username=akasipp@ims.test aka_K={SIPP_K.decode()} " \
             f"aka_OP={SIPP_OP.decode()} aka_AMF=80]"
    steps = [
        Step(register("akasipp", extra=INITIAL_AKA, contact=f"<sip:{user}@[local_ip]:[local_port]>"),
             401, challenge=True),
        Step(register("akasipp", cseq=2, extra=answer,
                      contact=f"<sip:{user}@[local_ip]:[local_port]>"), 200),
    ]
    for attempt in range(4):
        name = f"aka{attempt}"
        try:
            unauthorised, ok = run_sipp(steps, registrar.sip_port, transport, tmp_path, name=name)
            break
        except AssertionError:
            if not sipp_res_is_cut(tmp_path / f"{name}_{transport}_messages.log"):
                raise
    else:
        pytest.fail("four challenges in a row had a RES sipp cuts")
    www = unauthorised.headers.get("WWW-Authenticate")
    assert www.startswith('Digest realm="ims.test", nonce="')
    assert "algorithm=AKAv1-MD5" in www and 'qop="auth' in www
    params = challenge(unauthorised)
    assert len(params["ck"]) == 32 and len(params["ik"]) == 32  # for the P-CSCF's IPsec SAs
    assert ok.headers.get("P-Associated-URI") == "<sip:akasipp@ims.test>"
    assert any(c["uri"].startswith(f"sip:{user}@")
               for c in show_impu(registrar, "sip:akasipp@ims.test")["contacts"])


def test_sipp_registers_with_md5_digest_and_a_wrong_password_is_403(registrar, transport, tmp_path):
    good = "[authentication username=md5@ims.test password=md5-secret]"
    unauthorised, ok = run_sipp([
        Step(register("md5", extra=INITIAL_MD5), 401, challenge=True),
        Step(register("md5", cseq=2, extra=good), 200),
    ], registrar.sip_port, transport, tmp_path, name="good")
    assert challenge(unauthorised)["algorithm"] == "MD5"
    assert "ck" not in challenge(unauthorised)
    assert ok.status == 200
    bad = "[authentication username=md5@ims.test password=guessed]"
    _, forbidden = run_sipp([
        Step(register("md5", extra=INITIAL_MD5), 401, challenge=True),
        Step(register("md5", cseq=2, extra=bad), 403),
    ], registrar.sip_port, transport, tmp_path, name="bad")
    assert forbidden.status == 403


def test_no_credentials_and_a_forged_integrity_protected_get_401_never_200(registrar, transport, tmp_path):
    no_header, = run_sipp([Step(register("stranger"), 401)], registrar.sip_port, transport, tmp_path)
    assert no_header.headers.get("WWW-Authenticate").startswith("Digest ")
    ue = Ue("victim@ims.test", "sip:victim@ims.test", registrar.sip_port, transport)
    try:
        forged = ue.register(integrity_protected="yes")
        assert forged.status == 401
        forged_answer = ue.register('Digest username="victim@ims.test", realm="ims.test", '
                                    'uri="sip:ims.test", nonce="bm9uc2Vuc2U=", response="' + "0" * 32
                                    + '", integrity-protected="yes"')
        assert forged_answer.status == 401 and "stale=TRUE" in forged_answer.headers.get("WWW-Authenticate")
    finally:
        ue.close()
    assert show_impu(registrar, "sip:victim@ims.test")["contacts"] == []


def test_aka_with_the_test_credentials_a_resynchronisation_and_a_protected_refresh(registrar, transport):
    """An auto-provisioned user (test set 1 keys) whose USIM is ahead of the HSS: AUTS, a fresh
    vector, 200; then a re-REGISTER the P-CSCF marks integrity-protected is not challenged."""
    impu = f"sip:resync-{transport}@ims.test"
    ue = Ue(f"resync-{transport}@ims.test", impu, registrar.sip_port, transport)
    try:
        first = ue.register()
        assert first.status == 401
        authorization, answer = aka_answer(ue, challenge(first), TEST_K, OPC, sqn_ms=1000)
        assert answer.synchronisation_failure
        second = ue.register(authorization)
        assert second.status == 401, second  # the new vector, its SQN past the USIM's
        authorization, answer = aka_answer(ue, challenge(second), TEST_K, OPC, sqn_ms=1000)
        assert not answer.synchronisation_failure
        ok = ue.register(authorization)
        assert ok.status == 200, ok
        refresh = ue.register(integrity_protected="yes")
        assert refresh.status == 200, refresh
    finally:
        ue.close()
    # The refresh needs no SAR: the last one is younger than sar_reregistration_interval.
    assert sar_types(registrar, impu) == [SAT.REGISTRATION]


def test_a_wrong_res_is_403_and_the_hss_hears_authentication_failure(registrar, transport):
    impu = f"sip:wrongkey-{transport}@ims.test"
    ue = Ue(f"wrongkey-{transport}@ims.test", impu, registrar.sip_port, transport)
    try:
        first = ue.register()
        authorization, _ = aka_answer(ue, challenge(first), TEST_K, OPC, sqn_ms=0,
                                      password_override=b"\x00" * 8)
        assert ue.register(authorization).status == 403
    finally:
        ue.close()
    assert sar_types(registrar, impu) == [SAT.AUTHENTICATION_FAILURE]
    assert show_impu(registrar, impu)["contacts"] == []
