"""How many times Ray restarted the actor this code runs in: a restarted actor says so at
WARNING as it comes back, since nothing else tells the operator that it died (Ray replays its
constructor and logs nothing at the registrar's level)."""
from __future__ import annotations

import ray
from ray._private.state import actors


def restarts() -> int:
    """0 in the constructor of an actor's first start, N when Ray restarts it the N-th time.
    (RuntimeContext.was_current_actor_reconstructed says the same through a deprecated
    attribute, with a warning in the log.)"""
    return int(actors(actor_id=ray.get_runtime_context().get_actor_id())["NumRestarts"])
