"""The registrar's Grafana dashboard (``scscf.json``), and its installation where the Grafana
provisioning that Ray writes for its own dashboards picks it up.

Ray's dashboard writes ``<session>/metrics/grafana/dashboards`` (or the directory of
RAY_METRICS_GRAFANA_DASHBOARD_OUTPUT_DIR) when it starts, deleting what was there before, and
its provisioning file lists that directory: ours is copied in once Ray's own files are there.
"""
from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

DASHBOARD = Path(__file__).with_name("scscf.json")
RAYS_OWN = "default_grafana_dashboard.json"  # written last by Ray, after it cleared the folder


def dashboards_dir(session_dir: str) -> Path:
    override = os.environ.get("RAY_METRICS_GRAFANA_DASHBOARD_OUTPUT_DIR")
    return Path(override) if override else Path(session_dir, "metrics", "grafana", "dashboards")


async def install(session_dir: str, timeout: float = 120.0, poll: float = 0.5) -> Path | None:
    """Copies the dashboard beside Ray's once Ray wrote its own; None if it never did."""
    folder = dashboards_dir(session_dir)
    for _ in range(int(timeout / poll)):
        if (folder / RAYS_OWN).exists():
            return Path(shutil.copy(DASHBOARD, folder / "scscf_grafana_dashboard.json"))
        await asyncio.sleep(poll)
    return None
