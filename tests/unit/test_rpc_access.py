"""Who may call the JSON-RPC (actors/ops/rpc_access.py): the token file made on first start,
the checks on each request, and where `scscf rpc` finds the token."""
from __future__ import annotations

import stat

import pytest

from actors.config import RpcConfig, config_from_dict, load_config
from actors.ops.rpc_access import TokenFileError, client_token, origins, refusal, server_token

OWN = origins("http://127.0.0.1:5080")
JSON = {"Content-Type": "application/json"}


def test_the_first_start_creates_a_private_token_file_that_later_starts_reuse(tmp_path):
    rpc = RpcConfig(token_file=str(tmp_path / "rpc.token"))
    token = server_token(rpc)
    assert len(token) >= 40
    assert stat.S_IMODE((tmp_path / "rpc.token").stat().st_mode) == 0o600
    assert server_token(rpc) == token == client_token(rpc)


def test_a_token_file_others_can_read_or_an_unwritable_place_is_refused(tmp_path):
    shared = tmp_path / "rpc.token"
    shared.write_text("secret\n")
    shared.chmod(0o644)
    with pytest.raises(TokenFileError, match="readable by other users"):
        server_token(RpcConfig(token_file=str(shared)))
    with pytest.raises(TokenFileError, match="cannot create"):
        server_token(RpcConfig(token_file=str(tmp_path / "missing-dir" / "rpc.token")))


def test_a_configured_token_wins_and_an_open_rpc_must_be_asked_for(tmp_path):
    assert server_token(RpcConfig(token="given", token_file=str(tmp_path / "t"))) == "given"
    assert not (tmp_path / "t").exists()
    assert server_token(RpcConfig(require_token=False)) is None
    assert client_token(RpcConfig(token_file=str(tmp_path / "none"))) is None


def test_the_token_file_is_relative_to_the_config_file(tmp_path):
    (tmp_path / "site.toml").write_text('[rpc]\ntoken_file = "secret/rpc.token"\n')
    assert load_config(tmp_path / "site.toml").rpc.token_file == str(
        tmp_path.resolve() / "secret" / "rpc.token")


@pytest.mark.parametrize("raw, message", [
    ({"rpc": {"token": "two words"}}, "rpc.token must not contain white space"),
    ({"rpc": {"token_file": " "}}, "rpc.token_file must not be empty"),
    ({"rpc": {"require_token": "no"}}, "rpc.require_token must be bool, not str"),
])
def test_bad_rpc_keys_are_named(raw, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(raw)


@pytest.mark.parametrize("headers, expected", [
    ({**JSON, "Authorization": "Bearer tok"}, None),
    ({"Content-Type": "application/json; charset=utf-8", "Authorization": "Bearer tok",
      "Origin": "http://localhost:5080"}, None),
    (JSON, 401),
    ({**JSON, "Authorization": "Bearer wrong"}, 401),
    ({**JSON, "Authorization": "Basic dG9rOg=="}, 401),
    ({**JSON, "Authorization": "Bearer tok", "Origin": "http://evil.test"}, 403),
    ({**JSON, "Authorization": "Bearer tok", "Origin": "http://127.0.0.1:5081"}, 403),
    ({"Content-Type": "text/plain", "Authorization": "Bearer tok"}, 415),
    ({"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Bearer tok"}, 415),
    ({"Authorization": "Bearer tok"}, 415),
])
def test_each_request_needs_the_token_a_json_body_and_no_foreign_origin(headers, expected):
    refused = refusal(headers, "tok", OWN)
    assert (refused and refused[0]) == expected


def test_without_a_required_token_the_other_checks_still_hold():
    assert refusal(JSON, None, OWN) is None
    assert refusal({**JSON, "Origin": "null"}, None, OWN)[0] == 403
    assert refusal({"Content-Type": "text/plain"}, None, OWN) == (
        415, "Content-Type must be application/json, not text/plain")
