import pytest

from actors.config import Config, ConfigError, config_from_dict, cx_origin_host, load_config


def test_embedded_defaults_use_the_emulator_and_derive_names():
    config = load_config(None)
    assert config.sip.listen == ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
    assert config.cx.peers == ["127.0.0.1:3868"]
    assert config.hss.auto_provision_domain == "ims.test"
    assert config.registrar.scscf_name == "sip:scscf.ims.test:5060"
    assert config.registrar.cxdx_dest_realm == "ims.test"
    # the reference module's defaults, but for the limits it leaves open
    reg = config.registrar
    assert (reg.default_expires, reg.min_expires, reg.max_expires) == (3600, 60, 7200)
    assert reg.max_contacts == 20
    assert (reg.subscription_min_expires, reg.subscription_max_expires) == (10, 1000000)


def test_file_values_are_read(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text('[sip]\nlisten = ["udp:127.0.0.1:5070"]\ndomain = "example.net"\n'
                    '[registrar]\nmin_expires = 1800\n[cx]\nrequest_timeout = 3\n')
    config = load_config(path)
    assert config.registrar.min_expires == 1800
    assert config.cx.request_timeout == 3.0
    assert config.registrar.scscf_name == "sip:scscf.example.net:5070"


@pytest.mark.parametrize("raw, message", [
    ({"registrar": {"min_expire": 1}}, "unknown key registrar.min_expire"),
    ({"registrar": {"min_expires": "60"}}, "registrar.min_expires must be int, not str"),
    ({"registrar": {"default_expires_range": 150}}, "registrar.default_expires_range must be between 0 and 100"),
    ({"registrar": {"max_contacts_policy": "drop"}}, "registrar.max_contacts_policy"),
    ({"sip": {"listen": ["sctp:1.2.3.4:5060"]}}, "sip.listen: 'sctp:1.2.3.4:5060'"),
    ({"sip": {"listen": "udp:127.0.0.1:5060"}}, "sip.listen must be a list of strings"),
    ({"cx": {"peers": ["hss:notaport"]}}, "cx.peers: 'hss:notaport' has no valid port"),
    ({"hss": {"emulator": False}}, "cx.peers is empty and hss.emulator is false"),
    ({"ray": {"shards": 0}}, "ray.shards must be at least 1"),
    ({"database": {}}, "unknown section [database]"),
])
def test_bad_values_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=None) as info:
        config_from_dict(raw)
    assert message in str(info.value)


@pytest.mark.parametrize("raw, message", [
    ({"sip": {"t1": 0}}, "sip.t1 must be a positive number of seconds"),
    ({"sip": {"t1": -0.5}}, "sip.t1 must be a positive number of seconds"),
    ({"sip": {"t1": float("nan")}}, "sip.t1 must be a positive number of seconds"),
    ({"cx": {"request_timeout": float("nan")}}, "cx.request_timeout must be a positive number"),
    ({"cx": {"watchdog_interval": 0}}, "cx.watchdog_interval must be a positive number"),
    ({"cx": {"watchdog_interval": float("inf")}}, "cx.watchdog_interval must be a positive"),
    ({"sip": {"domain": ""}}, "sip.domain must not be empty"),
    ({"cx": {"origin_host": " "}}, "cx.origin_host must not be empty"),
    ({"cx": {"origin_realm": ""}}, "cx.origin_realm must not be empty"),
    ({"ray": {"namespace": ""}}, "ray.namespace must not be empty"),
    ({"registrar": {"default_expires": 0}}, "registrar.default_expires must be at least 1"),
    ({"registrar": {"subscription_default_expires": 0}},
     "registrar.subscription_default_expires must be at least 1"),
    ({"registrar": {"min_expires": 7201}},
     "registrar.min_expires must not exceed registrar.max_expires"),
    ({"registrar": {"subscription_min_expires": 2000000}},
     "registrar.subscription_min_expires must not exceed registrar.subscription_max_expires"),
    ({"registrar": {"support_wildcardPSI": 2}}, "registrar.support_wildcardPSI must be 0 or 1"),
    ({"registrar": {"third_party_register": 2}}, "registrar.third_party_register must be 0 or 1"),
    ({"registrar": {"user_data_xsd": "/nonexistent/CxDataType.xsd"}},
     "registrar.user_data_xsd: no such file '/nonexistent/CxDataType.xsd'"),
    ({"registrar": {"user_data_dtd": "/nonexistent/CxDataType.dtd"}},
     "registrar.user_data_dtd: no such file"),
    ({"hss": {"subscribers": "/nonexistent/subscribers.toml"}},
     "hss.subscribers: no such file"),
    ({"sip": {"listen": ["udp:127.0.0.1:5²"]}}, "sip.listen: 'udp:127.0.0.1:5²' has no valid port"),
    ({"rpc": {"listen": "127.0.0.1:²"}}, "rpc.listen: '127.0.0.1:²' has no valid port"),
    ({"metrics": {"listen": "5081"}}, "metrics.listen: '5081' is not 'HOST:PORT'"),
    ({"ray": {"dashboard_port": 0}}, "ray.dashboard_port must be a port between 1 and 65535"),
    ({"ray": {"metrics_export_port": 70000}}, "ray.metrics_export_port must be a port"),
    ({"ray": {"dashboard_host": ""}}, "ray.dashboard_host must not be empty"),
])
def test_dangerous_values_are_refused_in_one_line_naming_the_key(raw, message):
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_existing_files_and_limits_switched_off_are_accepted(tmp_path):
    xsd = tmp_path / "CxDataType.xsd"
    xsd.write_text("<xs:schema/>")
    config = config_from_dict({"registrar": {"user_data_xsd": str(xsd), "max_expires": 0,
                                             "min_expires": 100000, "max_contacts": 0}})
    assert (config.registrar.max_expires, config.registrar.max_contacts) == (0, 0)


def test_invalid_toml_and_missing_file_are_clear(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[sip\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml")


def test_config_is_picklable_for_actors():
    import pickle
    assert pickle.loads(pickle.dumps(Config())).sip.domain == "ims.test"


def test_auth_defaults_are_those_of_ims_auth():
    auth = load_config(None).auth
    assert auth.enabled is True
    assert auth.registration_default_algorithm == "AKAv1-MD5"
    assert (auth.auth_data_timeout, auth.max_nonce_reuse, auth.av_request_at_once) == (60, 0, 1)
    assert auth.ignore_failed_auth == 0
    assert auth.registration_qop == "auth,auth-int"
    assert auth.realm == "ims.test"  # the SIP domain


def test_auth_values_are_read():
    config = config_from_dict({"sip": {"domain": "example.net"},
                               "auth": {"registration_default_algorithm": "MD5",
                                        "registration_qop": "", "av_request_at_once": 3}})
    assert config.auth.registration_default_algorithm == "MD5"
    assert (config.auth.registration_qop, config.auth.av_request_at_once) == ("", 3)
    assert config.auth.realm == "example.net"
    assert config_from_dict({"auth": {"realm": "home.test"}}).auth.realm == "home.test"


@pytest.mark.parametrize("auth, message", [
    ({"enabled": 1}, "auth.enabled must be bool, not int"),
    ({"registration_default_algorithm": "SHA-256"}, "auth.registration_default_algorithm"),
    ({"auth_data_timeout": 0}, "auth.auth_data_timeout must be at least 1 second"),
    ({"max_nonce_reuse": -1}, "auth.max_nonce_reuse must not be negative"),
    ({"av_request_at_once": 0}, "auth.av_request_at_once must be between 1 and 16"),
    ({"ignore_failed_auth": 2}, "auth.ignore_failed_auth must be 0 or 1"),
    ({"registration_qop": "auth,auth-conf"}, "auth.registration_qop"),
    ({"realm": 'ims"test'}, "auth.realm"),
    ({"nonce_expire": 30}, "unknown key auth.nonce_expire"),
])
def test_bad_auth_values_name_the_key(auth, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"auth": auth})
    assert str(err.value).startswith(message)


def test_speed_keys_default_to_sar_avoidance_no_bound_and_ordinary_priority():
    config = config_from_dict({})
    assert config.registrar.sar_reregistration_interval == 1800
    assert config.sip.max_in_flight == 0
    assert config.ray.worker_niceness == 0
    assert config.ray.placement_interval == 2.0
    config = config_from_dict({"registrar": {"sar_reregistration_interval": 0},
                               "sip": {"max_in_flight": 64}, "ray": {"worker_niceness": 15}})
    assert (config.registrar.sar_reregistration_interval, config.sip.max_in_flight,
            config.ray.worker_niceness) == (0, 64, 15)


@pytest.mark.parametrize("raw, message", [
    ({"registrar": {"sar_reregistration_interval": -1}},
     "registrar.sar_reregistration_interval must not be negative"),
    ({"sip": {"max_in_flight": -1}}, "sip.max_in_flight must not be negative"),
    ({"ray": {"gc_threshold": -1}}, "ray.gc_threshold must not be negative"),
    ({"ray": {"worker_niceness": 20}}, "ray.worker_niceness must be between 0 and 19"),
    ({"ray": {"worker_niceness": -5}}, "ray.worker_niceness must be between 0 and 19"),
    ({"ray": {"placement_interval": 0}}, "ray.placement_interval must be positive"),
])
def test_bad_speed_keys_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_each_cx_pool_actor_has_an_origin_host_of_its_own():
    cx = config_from_dict({"ray": {"cx_pool": 3}, "cx": {"origin_host": "scscf.ims.test"}}).cx
    assert [cx_origin_host(cx, i) for i in range(3)] == [
        "scscf.ims.test", "scscf-1.ims.test", "scscf-2.ims.test"]


def test_max_user_data_must_be_at_least_one_byte():
    with pytest.raises(ConfigError, match="^cx.max_user_data must be at least 1$"):
        config_from_dict({"cx": {"max_user_data": 0}})
