"""What `scscf serve` puts in the environment before Ray is imported: a local Ray on loopback
with token authentication; a cluster joined as it is."""
import os

import pytest

from actors.config import config_from_dict
from actors.ops.ray_environment import LOOPBACK_ONLY, prepare_ray_environment


@pytest.fixture
def environment(monkeypatch):
    for name in ("RAY_AUTH_MODE", LOOPBACK_ONLY, "RAY_worker_niceness", "RAY_USE_UVLOOP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "0" * 64)
    return os.environ


def test_a_local_ray_stays_on_loopback(environment):
    prepare_ray_environment(config_from_dict({}))
    assert (environment["RAY_AUTH_MODE"], environment[LOOPBACK_ONLY]) == ("token", "0")


def test_a_cluster_joined_keeps_its_addresses(environment):
    prepare_ray_environment(config_from_dict({"ray": {"address": "auto"}}))
    assert LOOPBACK_ONLY not in environment and environment["RAY_AUTH_MODE"] == "token"
    assert "RAY_USE_UVLOOP" not in environment  # the nodes' own setting


@pytest.mark.parametrize("uvloop, variable", [(True, "1"), (False, "0")])
def test_a_local_ray_runs_its_actors_on_the_loop_configured(environment, uvloop, variable):
    prepare_ray_environment(config_from_dict({"ray": {"uvloop": uvloop}}))
    assert environment["RAY_USE_UVLOOP"] == variable
