"""The HSS emulator's configuration, subscriber look-up, SAR rules (TS 29.228 6.1.2) and MAR
rules (TS 29.228 6.3, TS 33.102 6.3)."""
import hashlib
import re
from pathlib import Path

import pytest

from actors.auth import aka
from actors.auth.milenage import opc
from scripts.hss_emulator.authentication import SubscriberAuth
from scripts.hss_emulator.config import (
    AKA,
    SIP_DIGEST,
    TEST_K,
    TEST_OP,
    AkaCredentials,
    HssConfig,
    HssConfigError,
    SubscriberConfig,
)
from scripts.hss_emulator.emulator import HssEmulator
from scripts.hss_emulator.subscribers import Subscriber, SubscriberDirectory
from transport.diameter.codec import ResultCode, parse_message, serialize
from transport.diameter.cx import (
    CxResult,
    MarRequest,
    SarRequest,
    decode_maa,
    decode_saa,
    encode_mar,
    encode_sar,
)
from transport.diameter.cx import ServerAssignmentType as T
from transport.diameter.user_data import parse_user_data

HSS_DATA = Path(__file__).resolve().parents[1] / "data" / "hss"
S1, S2 = "sip:scscf1.ims.test", "sip:scscf2.ims.test"


@pytest.fixture
def config():
    return HssConfig.from_toml(HSS_DATA / "subscribers.toml")


def test_config_file(config):
    alice = config.subscribers[0]
    assert alice == SubscriberConfig("alice@ims.test", ("sip:alice@ims.test", "tel:+15550001"),
                                     ("sip:alice-barred@ims.test",),
                                     ("sip:alice-chat!.*!@ims.test",), "alice-secret")
    assert config.auto_provision_domain == "ims.test"
    assert config.charging_information["primary_event_charging_function_name"] == \
        "aaa://ecf.ims.test"


@pytest.mark.parametrize("table, key", [
    ({"subscriber": [{"impi": "a@x"}]}, "subscriber[0].impus"),
    ({"subscriber": [{"impus": ["sip:a@x"]}]}, "subscriber[0].impi"),
    ({"subscriber": [{"impi": "a@x", "impus": ["sip:a@x"], "barred": "sip:b@x"}]},
     "subscriber[0].barred"),
    ({"subscriber": [{"impi": "a@x", "impus": ["sip:a@x"], "wildcard": ["sip:!x@y"]}]},
     "subscriber[0].wildcard"),
    ({"subscriber": [{"impi": "a@x", "impus": ["sip:a@x"], "colour": "red"}]},
     "subscriber[0].colour"),
    ({"subscriber": [{"impi": "a@x", "impus": ["sip:a@x"]},
                     {"impi": "b@x", "impus": ["sip:a@x"]}]}, "subscriber[1]"),
    ({"subscriber": {"impi": "a@x"}}, "subscriber"),
    ({"origin_host": 7}, "origin_host"),
    ({"watchdog_interval": 0}, "watchdog_interval"),
    ({"allowed_peers": []}, "allowed_peers"),
    ({"allowed_peers": ["scscf.ims.test", 7]}, "allowed_peers"),
    ({"charging_information": {"primary": "x"}}, "charging_information.primary"),
    ({"orign_realm": "x"}, "orign_realm"),
    ({"subscriber": [{"impi": "a@x", "impus": ["sip:a@x"], "k": "00" * 15, "op": "00" * 16}]},
     "subscriber[0].k"),
    ({"subscriber": [{"impi": "a@x", "impus": ["sip:a@x"], "k": "zz" * 16, "op": "00" * 16}]},
     "subscriber[0].k"),
    ({"subscriber": [{"impi": "a@x", "impus": ["sip:a@x"], "k": "00" * 16}]}, "subscriber[0].op"),
    ({"subscriber": [{"impi": "a@x", "impus": ["sip:a@x"], "k": "00" * 16, "op": "00" * 16,
                      "opc": "00" * 16}]}, "subscriber[0].op"),
    ({"subscriber": [{"impi": "a@x", "impus": ["sip:a@x"], "op": "00" * 16}]},
     "subscriber[0].op"),
    ({"subscriber": [{"impi": "a@x", "impus": ["sip:a@x"], "k": "00" * 16, "opc": "00" * 16,
                      "amf": "80"}]}, "subscriber[0].amf"),
    ({"subscriber": [{"impi": "a@x", "impus": ["sip:a@x"], "k": "00" * 16, "opc": "00" * 16,
                      "sqn": 2 ** 48}]}, "subscriber[0].sqn"),
    ({"subscriber": [{"impi": "a@x", "impus": ["sip:a@x"], "auth_scheme": "Digest-AKAv2-MD5"}]},
     "subscriber[0].auth_scheme"),
    ({"subscriber": [{"impi": "a@x", "impus": ["sip:a@x"], "auth_scheme": "SIP Digest"}]},
     "subscriber[0].auth_scheme"),
    ({"subscriber": [{"impi": "a@x", "impus": ["sip:a@x"], "password": "p",
                      "auth_scheme": "Digest-AKAv1-MD5"}]}, "subscriber[0].auth_scheme"),
    ({"subscriber": [{"impi": "a@x", "impus": ["sip:a@x"], "ifc": ["<InitialFilterCriteria/>"]}]},
     "subscriber[0].ifc"),
    ({"subscriber": [{"impi": "a@x", "impus": ["sip:a@x"],
                      "charging_information": {"ccf": "aaa://x"}}]},
     "subscriber[0].charging_information.ccf"),
])
def test_config_errors_name_the_key(table, key):
    with pytest.raises(HssConfigError, match="^" + re.escape(key)):
        HssConfig.from_toml(table)


def test_config_file_errors(tmp_path):
    with pytest.raises(HssConfigError, match=r"subscriber\[0\]\.impus"):
        HssConfig.from_toml(HSS_DATA / "broken_subscriber.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("origin_host = \n")
    with pytest.raises(HssConfigError, match="bad.toml"):
        HssConfig.from_toml(bad)
    with pytest.raises(HssConfigError, match="cannot read"):
        HssConfig.from_toml(tmp_path / "missing.toml")


def test_directory_lookups(config):
    directory = SubscriberDirectory(config)
    alice, _ = directory.by_identity("tel:+15550001")
    assert alice.impi == "alice@ims.test"
    assert directory.by_identity("sip:alice-barred@ims.test") == (alice, None)
    assert directory.by_identity("sip:alice-chat-42@ims.test") == (
        alice, "sip:alice-chat!.*!@ims.test")
    assert directory.by_impi("alice@ims.test") is alice
    carol, wildcard = directory.by_identity("sip:carol@ims.test")  # auto-provisioned
    assert (carol.impi, carol.config.impus, wildcard) == ("carol@ims.test",
                                                          ("sip:carol@ims.test",), None)
    assert directory.by_identity("sip:carol@ims.test")[0] is carol
    assert directory.by_impi("dave@ims.test", provision=False) is None
    assert directory.by_impi("dave@ims.test").config.impus == ("sip:dave@ims.test",)
    assert directory.by_identity("sip:erin@elsewhere.test") is None
    assert directory.by_identity("tel:+15559999") is None
    assert directory.by_impi("erin@elsewhere.test") is None


def test_user_data_holds_the_whole_set(config):
    alice = Subscriber(config.subscribers[0])
    profile = parse_user_data(alice.user_data)
    assert profile.private_id == "alice@ims.test"
    assert profile.all_identities() == ["sip:alice@ims.test", "tel:+15550001",
                                        "sip:alice-barred@ims.test", "sip:alice-chat!.*!@ims.test"]
    assert profile.unbarred_identities() == ["sip:alice@ims.test", "tel:+15550001",
                                             "sip:alice-chat!.*!@ims.test"]
    assert alice.user_data is alice.user_data  # built once


def new_subscriber():
    return Subscriber(SubscriberConfig("a@ims.test", ("sip:a@ims.test",)))


def test_registration_stores_the_server_and_sends_data():
    sub = new_subscriber()
    outcome = sub.assign(T.REGISTRATION, S1, "scscf1.ims.test", False)
    assert outcome.result_code == ResultCode.DIAMETER_SUCCESS and outcome.with_user_data
    assert (sub.server_name, sub.registered, sub.diameter_client) == (S1, True, "scscf1.ims.test")
    assert not sub.assign(T.RE_REGISTRATION, S1, "scscf1.ims.test", True).with_user_data


def test_registration_elsewhere_overwrites_but_other_requests_are_refused():
    sub = new_subscriber()
    sub.assign(T.REGISTRATION, S1, "c1", False)
    for kind in (T.RE_REGISTRATION, T.UNREGISTERED_USER, T.USER_DEREGISTRATION, T.NO_ASSIGNMENT):
        outcome = sub.assign(kind, S2, "c2", False)
        assert (outcome.result_code, outcome.server_name) == (
            ResultCode.DIAMETER_UNABLE_TO_COMPLY, S1), kind
    assert sub.assign(T.REGISTRATION, S2, "c2", False).result_code == 2001
    assert (sub.server_name, sub.diameter_client) == (S2, "c2")


@pytest.mark.parametrize("kind, keeps_server", [
    (T.USER_DEREGISTRATION, False), (T.TIMEOUT_DEREGISTRATION, False),
    (T.ADMINISTRATIVE_DEREGISTRATION, False), (T.DEREGISTRATION_TOO_MUCH_DATA, False),
    (T.USER_DEREGISTRATION_STORE_SERVER_NAME, True),
    (T.TIMEOUT_DEREGISTRATION_STORE_SERVER_NAME, True)])
def test_deregistrations(kind, keeps_server):
    sub = new_subscriber()
    sub.assign(T.REGISTRATION, S1, "c1", False)
    outcome = sub.assign(kind, S1, "c1", False)
    assert outcome.result_code == 2001 and not outcome.with_user_data
    assert not sub.registered
    assert sub.server_name == (S1 if keeps_server else None)


def test_unregistered_user_gets_the_profile_and_keeps_the_server():
    sub = new_subscriber()
    outcome = sub.assign(T.UNREGISTERED_USER, S1, "c1", False)
    assert outcome.with_user_data and sub.server_name == S1 and not sub.registered
    # Not registered anywhere: another S-CSCF may take the unregistered user over.
    assert sub.assign(T.UNREGISTERED_USER, S2, "c2", False).result_code == 2001
    assert sub.server_name == S2


def test_authentication_failure_only_clears_an_unregistered_assignment():
    sub = new_subscriber()
    sub.assign(T.UNREGISTERED_USER, S1, "c1", False)
    sub.assign(T.AUTHENTICATION_FAILURE, S1, "c1", False)
    assert sub.server_name is None
    sub.assign(T.REGISTRATION, S1, "c1", False)
    sub.assign(T.AUTHENTICATION_TIMEOUT, S1, "c1", False)
    assert sub.registered and sub.server_name == S1


@pytest.mark.parametrize("kind", [T.AAA_USER_DATA_REQUEST, T.PGW_UPDATE, T.RESTORATION])
def test_unsupported_assignment_types(kind):
    outcome = new_subscriber().assign(kind, S1, "c1", False)
    assert (outcome.result_code, outcome.experimental_result_code) == (
        None, CxResult.DIAMETER_ERROR_IN_ASSIGNMENT_TYPE)


# -- Multimedia-Auth -----------------------------------------------------------------------------

# TS 35.208 4.3, test set 1: what Milenage gives for this K, OP, RAND, SQN and AMF.
RAND1 = bytes.fromhex("23553cbe9637a89d218ae64dae47bf35")
SET1 = AkaCredentials(TEST_K, opc(TEST_K, TEST_OP), amf=bytes.fromhex("b9b9"),
                      sqn=0xff9bb4d0b607)


def fixed_random(value: bytes):
    return lambda size: value[:size]


def aka_subscriber(**fields):
    config = SubscriberConfig("a@ims.test", ("sip:a@ims.test",), aka=SET1, **fields)
    return SubscriberAuth(config, fixed_random(RAND1))


def test_aka_config_keys_are_read():
    entry = {"impi": "a@x", "impus": ["sip:a@x"], "k": TEST_K.hex(), "op": TEST_OP.hex(),
             "amf": "B9B9", "sqn": 5, "password": "pw"}
    (sub,) = HssConfig.from_toml({"subscriber": [entry]}).subscribers
    assert sub.aka == AkaCredentials(TEST_K, opc(TEST_K, TEST_OP), b"\xb9\xb9", 5)
    assert sub.schemes == (AKA, SIP_DIGEST)  # AKA first when the MAR leaves the choice
    with_opc = dict(entry, opc=sub.aka.opc.hex(), auth_scheme="Digest-MD5")
    del with_opc["op"]
    (sub,) = HssConfig.from_toml({"subscriber": [with_opc]}).subscribers
    assert sub.aka.opc == opc(TEST_K, TEST_OP) and sub.schemes == (SIP_DIGEST,)
    assert "pw" not in repr(sub) and TEST_K.hex() not in repr(sub)  # secrets stay out of logs


def test_an_aka_vector_is_milenage_of_test_set_1():
    answer = aka_subscriber().answer("Digest-AKAv1-MD5", 1, "ims.test")
    (item,) = answer.items
    assert (item.scheme, item.item_number) == (AKA, 1)
    assert item.authenticate == RAND1 + bytes.fromhex("55f328b43577" "b9b9" "4a9ffac354dfafb3")
    assert item.authorization == bytes.fromhex("a54211d5e3ba50bf")
    assert item.confidentiality_key == bytes.fromhex("b40ba9a3c58b2a05bbf0d987b21bf8cb")
    assert item.integrity_key == bytes.fromhex("f769bcd751044604127672711c6d3441")


def test_sqn_advances_per_vector_and_items_are_capped_at_what_was_asked():
    sub = aka_subscriber()
    items = sub.answer("Unknown", 3, "ims.test").items
    assert [item.item_number for item in items] == [1, 2, 3]
    sqns = [aka.ue_respond(SET1.k, SET1.opc, RAND1, item.authenticate[16:], 0).sqn
            for item in items]
    assert sqns == [SET1.sqn, SET1.sqn + 1, SET1.sqn + 2]
    assert sub.sqn == SET1.sqn + 3
    assert len(sub.answer("Unknown", 1000, "ims.test").items) == 16


def test_resynchronisation_continues_after_the_ue_sqn():
    sub = aka_subscriber()
    auts = aka.make_auts(SET1.k, SET1.opc, RAND1, 0xffffffff0000)
    (item,) = sub.answer("Digest-AKAv1-MD5", 1, "ims.test", resync=RAND1 + auts).items
    assert sub.sqn == 0xffffffff0002
    answer = aka.ue_respond(SET1.k, SET1.opc, RAND1, item.authenticate[16:], 0xffffffff0000)
    assert answer.sqn == 0xffffffff0001 and answer.res == item.authorization


@pytest.mark.parametrize("resync", [RAND1 + bytes(14), RAND1 + bytes(13), b""])
def test_a_resynchronisation_that_does_not_verify_is_rejected(resync):
    sub = aka_subscriber()
    answer = sub.answer("Digest-AKAv1-MD5", 1, "ims.test", resync=resync)
    assert not answer.success
    assert (answer.result_code, answer.experimental_result_code) == (
        ResultCode.DIAMETER_AUTHORIZATION_REJECTED, None)
    assert sub.sqn == SET1.sqn  # nothing handed out, SQN_HE unchanged


def test_sip_digest_gives_ha1_of_impi_realm_password():
    sub = SubscriberAuth(SubscriberConfig("a@ims.test", ("sip:a@ims.test",), password="pw"))
    (item,) = sub.answer("SIP Digest", 4, "ims.test").items
    assert (item.scheme, item.digest_realm, item.digest_algorithm, item.digest_qop) == (
        SIP_DIGEST, "ims.test", "MD5", "auth")
    assert item.digest_ha1 == hashlib.md5(b"a@ims.test:ims.test:pw").hexdigest()
    assert sub.answer("Unknown", 1, "ims.test").items == (item,)
    assert sub.answer("digest-md5", 1, "ims.test").items == (item,)


@pytest.mark.parametrize("config, scheme", [
    (SubscriberConfig("a@x", ("sip:a@x",)), "Unknown"),  # no credentials at all
    (SubscriberConfig("a@x", ("sip:a@x",), password="pw"), "Digest-AKAv1-MD5"),
    (SubscriberConfig("a@x", ("sip:a@x",), aka=SET1), "SIP Digest"),
    (SubscriberConfig("a@x", ("sip:a@x",), password="pw", aka=SET1, auth_scheme=AKA),
     "SIP Digest"),
    (SubscriberConfig("a@x", ("sip:a@x",), aka=SET1), "NASS-Bundled"),
])
def test_a_scheme_the_subscriber_lacks_is_not_supported(config, scheme):
    answer = SubscriberAuth(config).answer(scheme, 1, "x")
    assert (answer.result_code, answer.experimental_result_code) == (
        None, CxResult.DIAMETER_ERROR_AUTH_SCHEME_NOT_SUPPORTED)


def test_auto_provisioned_subscribers_have_the_documented_test_credentials():
    directory = SubscriberDirectory(HssConfig(auto_provision_domain="ims.test"))
    sub, _ = directory.by_identity("sip:carol@ims.test")
    assert sub.config.password == "imstest"
    assert sub.config.aka == AkaCredentials(bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc"),
                                            opc(TEST_K, bytes.fromhex(
                                                "cdc202d5123e20f62b6d676ac72cb318")),
                                            b"\x80\x00", 1)
    (item,) = sub.auth.answer("Unknown", 1, "ims.test").items
    rand, autn = item.authenticate[:16], item.authenticate[16:]
    answer = aka.ue_respond(TEST_K, opc(TEST_K, TEST_OP), rand, autn, 0)
    assert (answer.sqn, answer.res) == (1, item.authorization)
    assert sub.state()["sqn"] == 2


def mar_through(emulator: HssEmulator, request: MarRequest):
    """The emulator's MAA for ``request``, both over the wire codec."""
    msg = parse_message(serialize(encode_mar(request, "scscf.ims.test", "ims.test", "s;1;1",
                                             "ims.test")))
    return decode_maa(parse_message(serialize(emulator.handle(msg))))


def test_mar_identity_checks_come_first(config):
    emulator = HssEmulator(config)
    unknown = mar_through(emulator, MarRequest("sip:x@elsewhere.test", "x@elsewhere.test", S1))
    assert unknown.experimental_result_code == CxResult.DIAMETER_ERROR_USER_UNKNOWN
    mismatch = mar_through(emulator, MarRequest("sip:alice@ims.test", "bob@ims.test", S1))
    assert mismatch.experimental_result_code == CxResult.DIAMETER_ERROR_IDENTITIES_DONT_MATCH
    assert emulator.subscriber_state("alice@ims.test")["server_name"] is None


def test_a_successful_mar_stores_the_server_name(config):
    emulator = HssEmulator(config)
    maa = mar_through(emulator, MarRequest("sip:carol@ims.test", "carol@ims.test", S1,
                                           number_auth_items=2))
    assert maa.success and maa.number_auth_items == 2
    assert [item.scheme for item in maa.auth_items] == [AKA, AKA]
    assert (maa.user_name, maa.public_identity) == ("carol@ims.test", "sip:carol@ims.test")
    state = emulator.subscriber_state("carol@ims.test")
    assert (state["server_name"], state["diameter_client"], state["sqn"]) == (
        S1, "scscf.ims.test", 3)


IFC = ("<InitialFilterCriteria><Priority>0</Priority><ApplicationServer><ServerName>"
       "sip:as.ims.test</ServerName></ApplicationServer></InitialFilterCriteria>")


def test_a_subscriber_has_its_own_ifcs_and_charging_information():
    own = {"primary_event_charging_function_name": "aaa://ecf.own.test"}
    config = HssConfig.from_toml({
        "charging_information": {"primary_event_charging_function_name": "aaa://ecf.all.test"},
        "subscriber": [{"impi": "a@ims.test", "impus": ["sip:a@ims.test"], "ifc": [IFC],
                        "charging_information": own},
                       {"impi": "b@ims.test", "impus": ["sip:b@ims.test"]}]})
    emulator = HssEmulator(config)
    for impi, ifcs, charging in (("a", [IFC], own), ("b", [], config.charging_information)):
        request = SarRequest(f"sip:{impi}@ims.test", f"{impi}@ims.test", "sip:scscf.ims.test",
                             T.REGISTRATION, destination_realm="ims.test")
        msg = parse_message(serialize(encode_sar(request, "scscf.ims.test", "ims.test",
                                                 "s;1;1", "ims.test")))
        saa = decode_saa(parse_message(serialize(emulator.handle(msg))))
        (profile,) = parse_user_data(saa.user_data).service_profiles
        assert (profile.ifc_xml, saa.charging_information) == (ifcs, charging)
