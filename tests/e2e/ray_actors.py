"""Looking into the registrar's Ray actors from a test."""
from __future__ import annotations

import os

import ray


def pid_of(actor) -> int | None:
    """The actor's process id, or None while Ray restarts it."""
    try:
        return ray.get(actor.__ray_call__.remote(lambda instance: os.getpid()), timeout=10)
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return None
