"""The HSS emulator's configuration, subscriber look-up and SAR rules (TS 29.228 6.1.2)."""
import re
from pathlib import Path

import pytest

from scripts.hss_emulator.config import HssConfig, HssConfigError, SubscriberConfig
from scripts.hss_emulator.subscribers import Subscriber, SubscriberDirectory
from transport.diameter.codec import ResultCode
from transport.diameter.cx import CxResult
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
    ({"charging_information": {"primary": "x"}}, "charging_information.primary"),
    ({"orign_realm": "x"}, "orign_realm"),
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
