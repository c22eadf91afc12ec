"""The environment Ray reads when it is imported and when it starts: set before `import ray`.

Ray's token authentication is on unless the environment says otherwise: its processes listen
on every interface, and whoever reaches them unauthenticated can run code in the cluster. A
local Ray takes the token of RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token,
made here when missing (drivers and `ray` commands on this machine read it too). The driver
reads RAY_AUTH_MODE when ray is imported, so this must run first.

A local Ray is a cluster of one node that nothing outside this host has to reach, so every
one of its listeners stays on loopback. Ray 2.60 binds its gRPC servers (GCS, raylet, workers,
the dashboard agent), its metrics endpoints and its agents to loopback only when the node's
address is loopback, and ray.init replaces a loopback `_node_ip_address` by the host's address
unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER is off (then the node's address is 127.0.0.1). It is
read when ray is imported, by this driver and by every Ray process it starts.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from actors.config import Config


def prepare_ray_environment(config: Config) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    local = config.ray.address == "local"
    if local and os.environ["RAY_AUTH_MODE"] == "token":
        _ensure_token()
    if local:  # read by the raylet it starts; a cluster's nodes set their own
        os.environ["RAY_worker_niceness"] = str(config.ray.worker_niceness)
        os.environ["RAY_USE_UVLOOP"] = "1" if config.ray.uvloop else "0"
        os.environ[LOOPBACK_ONLY] = "0"


# Off: ray.init keeps the node on 127.0.0.1 (Ray names it for Windows and macOS, where a
# one-node cluster is its default; on Linux it is the only switch that does this).
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _ensure_token() -> None:
    """A local Ray in token mode refuses to start without a token: make the default one
    (readable by this user only) unless the environment names one."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    token = Path.home() / ".ray" / "auth_token"
    if not token.exists():
        token.parent.mkdir(parents=True, exist_ok=True)
        token.touch(mode=0o600)
        token.write_text(secrets.token_hex(32))
