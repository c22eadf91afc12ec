"""IMS AKA vectors, the UE's checks, SQN resynchronisation (TS 33.102) and RFC 3310 nonces."""
from __future__ import annotations

import base64

import pytest

from actors.auth import digest
from actors.auth.aka import (
    MacFailure,
    aka_nonce,
    decode_auts,
    encode_auts,
    make_auts,
    make_vector,
    resync_sqn,
    split_aka_nonce,
    ue_respond,
)

# TS 35.208 test set 1.
K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
RAND = bytes.fromhex("23553cbe9637a89d218ae64dae47bf35")
SQN = 0xFF9BB4D0B607
AMF = bytes.fromhex("b9b9")
MAC_A = bytes.fromhex("4a9ffac354dfafb3")
XRES = bytes.fromhex("a54211d5e3ba50bf")
CK = bytes.fromhex("b40ba9a3c58b2a05bbf0d987b21bf8cb")
IK = bytes.fromhex("f769bcd751044604127672711c6d3441")
SQN_XOR_AK = bytes.fromhex("55f328b43577")  # ff9bb4d0b607 xor f5 aa689c648370
SQN_XOR_AK_STAR = bytes.fromhex("ba853f3c123c")  # ff9bb4d0b607 xor f5* 451e8beca43b
OTHER_RAND = bytes.fromhex("9f7c8d021accf4db213ccff0c7f71a6a")


def test_vector_carries_published_values_and_autn_layout():
    vector = make_vector(K, OPC, SQN, AMF, RAND)
    assert vector.rand == RAND
    assert vector.autn == SQN_XOR_AK + AMF + MAC_A
    assert (vector.xres, vector.ck, vector.ik) == (XRES, CK, IK)


def test_vector_repr_hides_xres_and_keys():
    text = repr(make_vector(K, OPC, SQN, AMF, RAND))
    for secret in (XRES, CK, IK):
        assert secret.hex() not in text and repr(secret) not in text


def test_ue_accepts_a_fresh_sqn_and_derives_the_same_keys():
    vector = make_vector(K, OPC, SQN, AMF, RAND)
    answer = ue_respond(K, OPC, vector.rand, vector.autn, sqn_ms=SQN - 1)
    assert not answer.synchronisation_failure
    assert (answer.res, answer.ck, answer.ik, answer.sqn) == (XRES, CK, IK, SQN)
    assert answer.auts is None


@pytest.mark.parametrize("octet", range(16))
def test_ue_rejects_an_altered_autn(octet):
    autn = bytearray(make_vector(K, OPC, SQN, AMF, RAND).autn)
    autn[octet] ^= 0x01
    with pytest.raises(MacFailure):
        ue_respond(K, OPC, RAND, bytes(autn), sqn_ms=0)


def test_ue_rejects_a_network_without_the_key():
    vector = make_vector(bytes(16), OPC, SQN, AMF, RAND)
    with pytest.raises(MacFailure):
        ue_respond(K, OPC, vector.rand, vector.autn, sqn_ms=0)


def test_ue_asks_for_resync_when_sqn_is_not_fresh_and_hss_recovers_sqn_ms():
    vector = make_vector(K, OPC, 5, AMF, RAND)  # the HSS is at 5, the UE at 10
    answer = ue_respond(K, OPC, vector.rand, vector.autn, sqn_ms=10)
    assert answer.synchronisation_failure
    assert (answer.res, answer.ck, answer.ik, answer.sqn) == (None, None, None, None)
    assert len(answer.auts) == 14
    assert resync_sqn(K, OPC, vector.rand, answer.auts) == 10

    fresh = make_vector(K, OPC, 11, AMF, OTHER_RAND)
    assert ue_respond(K, OPC, fresh.rand, fresh.autn, sqn_ms=10).sqn == 11


def test_a_replayed_sqn_is_not_fresh():
    vector = make_vector(K, OPC, 10, AMF, RAND)
    assert ue_respond(K, OPC, vector.rand, vector.autn, sqn_ms=10).synchronisation_failure


def test_auts_conceals_sqn_ms_with_f5_star():
    auts = make_auts(K, OPC, RAND, SQN)
    assert auts[:6] == SQN_XOR_AK_STAR
    assert resync_sqn(K, OPC, RAND, auts) == SQN


@pytest.mark.parametrize("octet", range(14))
def test_altered_auts_does_not_verify(octet):
    auts = bytearray(make_auts(K, OPC, RAND, 10))
    auts[octet] ^= 0x80
    assert resync_sqn(K, OPC, RAND, bytes(auts)) is None


def test_auts_for_another_rand_does_not_verify():
    assert resync_sqn(K, OPC, OTHER_RAND, make_auts(K, OPC, RAND, 10)) is None


@pytest.mark.parametrize("call, argument", [
    (lambda: make_vector(K, OPC, 1 << 48, AMF, RAND), "SQN"),
    (lambda: make_vector(K, OPC, -1, AMF, RAND), "SQN"),
    (lambda: make_vector(K, OPC, 1, b"\x00", RAND), "AMF"),
    (lambda: make_vector(K, OPC, 1, AMF, RAND[:8]), "RAND"),
    (lambda: make_vector(K[:8], OPC, 1, AMF, RAND), "K"),
    (lambda: resync_sqn(K, OPC, RAND, bytes(13)), "AUTS"),
    (lambda: ue_respond(K, OPC, RAND, bytes(15), 0), "AUTN"),
    (lambda: ue_respond(K, OPC, RAND, bytes(16), -1), "SQN_MS"),
    (lambda: make_auts(K, OPC, RAND, 1 << 48), "SQN_MS"),
])
def test_bad_inputs_name_the_argument(call, argument):
    with pytest.raises(ValueError, match=rf"^{argument} must be"):
        call()


def test_nonce_round_trip():
    vector = make_vector(K, OPC, SQN, AMF, RAND)
    nonce = aka_nonce(vector.rand, vector.autn, b"\x01server")
    assert base64.b64decode(nonce) == RAND + vector.autn + b"\x01server"
    assert split_aka_nonce(nonce) == (RAND, vector.autn, b"\x01server")
    assert split_aka_nonce(aka_nonce(RAND, vector.autn)) == (RAND, vector.autn, b"")


@pytest.mark.parametrize("nonce", [
    "", "AAAA", base64.b64encode(bytes(31)).decode(), "not base64!", "QUJD\n", "é" * 44,
    base64.b64encode(bytes(32)).decode()[:-1],
])
def test_bad_nonce_is_a_value_error(nonce):
    with pytest.raises(ValueError, match="nonce"):
        split_aka_nonce(nonce)


def test_auts_parameter_round_trip():
    auts = make_auts(K, OPC, RAND, 10)
    value = encode_auts(auts)
    assert base64.b64decode(value) == auts
    assert decode_auts(value) == auts


@pytest.mark.parametrize("value", ["", base64.b64encode(bytes(13)).decode(), "@@@@"])
def test_bad_auts_parameter_is_a_value_error(value):
    with pytest.raises(ValueError, match="auts"):
        decode_auts(value)


def _ue_authorization(nonce: str, sqn_ms: int) -> str:
    """What a test UE sends back for an AKA challenge: the RFC 3310 answer or a resync."""
    rand, autn, _ = split_aka_nonce(nonce)
    answer = ue_respond(K, OPC, rand, autn, sqn_ms)
    common = (f'Digest username="alice@ims.test", realm="ims.test", uri="sip:ims.test", '
              f'nonce="{nonce}", algorithm=AKAv1-MD5')
    if answer.synchronisation_failure:
        return f'{common}, response="", auts="{encode_auts(answer.auts)}"'
    ha1 = digest.aka_ha1("alice@ims.test", "ims.test", answer.res)
    digest_response = digest.response(ha1, nonce, "REGISTER", "sip:ims.test",
                                      qop="auth", nc="00000001", cnonce="0a4f113b")
    return f'{common}, response="{digest_response}", qop=auth, nc=00000001, cnonce="0a4f113b"'


def test_digest_aka_answer_verifies_against_xres():
    vector = make_vector(K, OPC, SQN, AMF, RAND)
    nonce = aka_nonce(vector.rand, vector.autn)
    credentials = digest.parse_authorization(_ue_authorization(nonce, SQN - 1))
    expected = digest.response(
        digest.aka_ha1(credentials.username, credentials.realm, vector.xres),
        credentials.nonce, "REGISTER", credentials.uri, credentials.qop, credentials.nc,
        credentials.cnonce)
    assert digest.constant_time_equal(credentials.response, expected)


def test_digest_aka_resync_carries_sqn_ms_to_the_hss():
    vector = make_vector(K, OPC, 5, AMF, RAND)
    nonce = aka_nonce(vector.rand, vector.autn)
    credentials = digest.parse_authorization(_ue_authorization(nonce, 10))
    assert credentials.is_resync and not credentials.is_initial
    rand, _, _ = split_aka_nonce(credentials.nonce)
    assert resync_sqn(K, OPC, rand, decode_auts(credentials.auts)) == 10
