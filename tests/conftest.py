"""Shared fixtures: one Ray runtime per test session. Registrars under test are started as
`scscf serve` by scripts/harness/registrar.py and join it as drivers."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def ray_address():
    """A local Ray started once for the whole session; registrars join it as drivers."""
    import ray

    ray.init(address="local", namespace="tests", include_dashboard=False, num_cpus=2,
             logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
