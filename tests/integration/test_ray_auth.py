"""Ray's token authentication is on for the registrar's Ray: a driver without the token is
turned away, one with it joins (the suite's own Ray runs as the registrar's does)."""
import os
import subprocess
import sys

JOIN = "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); print('joined')"


def join(address: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", JOIN, address], env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_driver_without_the_token_is_refused_and_one_with_it_joins(ray_address):
    assert os.environ["RAY_AUTH_MODE"] == "token"
    stranger = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_TOKEN")}
    refused = join(ray_address, {**stranger, "RAY_AUTH_TOKEN": "0" * 64})
    assert refused.returncode != 0 and "joined" not in refused.stdout
    member = join(ray_address, dict(os.environ))
    assert member.returncode == 0 and member.stdout.strip() == "joined", member.stderr[-2000:]
