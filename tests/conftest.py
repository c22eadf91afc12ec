"""Shared fixtures: one Ray runtime per test session. Registrars under test are started as
`scscf serve` by scripts/harness/registrar.py and join it as drivers."""
from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

# Ray's token authentication on, as the registrar has it, with a token of this test session:
# every Ray process, `scscf serve` and `ray start` the tests run inherits it.
os.environ.setdefault("RAY_AUTH_MODE", "token")
if "RAY_AUTH_TOKEN" not in os.environ and "RAY_AUTH_TOKEN_PATH" not in os.environ:
    _token = Path(tempfile.mkdtemp(prefix="scscf-tests-")) / "ray_auth_token"
    _token.write_text(secrets.token_hex(32))
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(_token)
    atexit.register(shutil.rmtree, _token.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_address():
    """A local Ray started once for the whole session; registrars join it as drivers."""
    import ray

    ray.init(address="local", namespace="tests", include_dashboard=False, num_cpus=2,
             logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
