"""Starts or joins Ray for ``scscf serve``, and says where its dashboard and metrics are.

A local Ray gets its dashboard (``[ray] dashboard``, on loopback by default) and its metrics
agent on a fixed port (``[ray] metrics_export_port``), so that Prometheus can be pointed at it
once. Neither may keep the registrar from starting: a dashboard that cannot start (its packages
missing, its port taken) and a metrics port already in use are warned about and done without.
Every listener of a local Ray is on loopback (the dashboard on `[ray] dashboard_host`):
ray_environment.prepare_ray_environment must have run before ray was imported.
"""
from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

import ray
from ray._common.network_utils import is_localhost
from ray._private.utils import get_dashboard_dependency_error

from actors.config import Config
from actors.ops.worker_setup import worker_setup

log = logging.getLogger(__name__)


@dataclass
class RayEndpoints:
    dashboard: str  # URL of the cluster's dashboard; "" without one
    metrics: str  # URL of this node's Ray metrics (Prometheus text)
    session_dir: str  # where this node's Ray keeps its session (Grafana provisioning under it)


def init_ray(config: Config) -> RayEndpoints:
    section = config.ray
    options: dict = {
        "address": section.address, "namespace": section.namespace,
        "logging_level": logging.WARNING,
        # Every worker that runs an actor logs as [log] says, as this driver does.
        "runtime_env": {"worker_process_setup_hook": worker_setup(config)},
    }
    if section.address == "local":
        options["include_dashboard"] = section.dashboard and _dashboard_can_start(config)
        if options["include_dashboard"]:
            options.update(dashboard_host=section.dashboard_host,
                           dashboard_port=section.dashboard_port)
        if _port_free("127.0.0.1", section.metrics_export_port):
            options["_metrics_export_port"] = section.metrics_export_port
        else:
            log.warning("ray.metrics_export_port: %d is in use: Ray's metrics go to a port "
                        "of its choosing (see the ready line)", section.metrics_export_port)
    context = ray.init(**options)
    if section.address == "local" and not is_localhost(context.address_info["node_ip_address"]):
        log.warning("ray: the local Ray runs on %s, not loopback: its processes listen on every "
                    "interface (ray was imported before the environment was prepared)",
                    context.address_info["node_ip_address"])
    if options.get("include_dashboard") and not context.dashboard_url:
        log.warning("ray.dashboard: the Ray dashboard did not start; running without it")
    return RayEndpoints(dashboard=f"http://{context.dashboard_url}" if context.dashboard_url
                        else "", metrics=_metrics_url(), session_dir=_session_dir())


def _dashboard_can_start(config: Config) -> bool:
    section = config.ray
    missing = get_dashboard_dependency_error()
    if missing is not None:
        log.warning("ray.dashboard: the Ray dashboard needs ray[default] (%s); running "
                    "without it", missing)
        return False
    if not _port_free(section.dashboard_host, section.dashboard_port):
        log.warning("ray.dashboard_port: %s:%d is in use; running without the Ray dashboard",
                    section.dashboard_host, section.dashboard_port)
        return False
    return True


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _metrics_url() -> str:
    here = ray.get_runtime_context().get_node_id()
    node = next(n for n in ray.nodes() if n["NodeID"] == here)
    return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"


def _session_dir() -> str:
    return ray._private.worker._global_node.get_session_dir_path()
