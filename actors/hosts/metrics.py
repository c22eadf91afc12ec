"""The registrar's statistics under Kamailio's names, counted per shard, exported to Prometheus.

A shard counts its REGISTER outcomes and SAR round trips as plain numbers (an addition per
request), and every few seconds publishes them with its counts() through ray.util.metrics;
Ray's metrics agent serves them on each node's Prometheus endpoint as ``ray_<group>_<name>``.
``stats.get_statistics`` sums the shards' snapshots instead, so it is exact at the instant.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import ray
from ray.util.metrics import Counter, Gauge

from actors.vocabulary import Reply
from transport.diameter.router import CxTimeout

log = logging.getLogger(__name__)

USRLOC = "ims_usrloc_scscf"
REGISTRAR = "ims_registrar_scscf"
GROUPS = (USRLOC, REGISTRAR)
EXPORT_INTERVAL = 5.0  # seconds; Ray's agent itself reports every few seconds

# Kamailio name -> (key of a shard snapshot, cumulative?, description)
_FROM_SNAPSHOT = {
    f"{USRLOC}:registered_contacts": ("contacts", False, "Contacts in registered state"),
    f"{USRLOC}:impus": ("impus", False, "Registered public identities"),
    f"{USRLOC}:expired_contacts": ("expired_contacts", True, "Contacts removed on expiry"),
    f"{USRLOC}:subscriptions": ("subscriptions", False, "Reg event subscriptions"),
    f"{REGISTRAR}:accepted_regs": ("accepted_regs", True, "REGISTERs answered 2xx"),
    f"{REGISTRAR}:rejected_regs": ("rejected_regs", True, "REGISTERs answered with an error"),
    f"{REGISTRAR}:sar_replies_received": ("sar_replies_received", True, "SAAs received"),
    f"{REGISTRAR}:sar_replies_response_time": (
        "sar_replies_response_time", True, "Sum of SAR round trips, ms"),
    f"{REGISTRAR}:sar_timeouts": ("sar_timeouts", True, "SARs the HSS did not answer in time"),
    f"{REGISTRAR}:notifies_in_q": ("notifies_in_q", False, "Reg event NOTIFYs waiting to go"),
}
SAR_AVERAGE = f"{REGISTRAR}:sar_avg_response_time"
# ims_usrloc_scscf's own counter names for the seed's statistics, read alike over RPC.
ALIASES = {f"{USRLOC}:active_impus": f"{USRLOC}:impus",
           f"{USRLOC}:active_contacts": f"{USRLOC}:registered_contacts",
           f"{USRLOC}:active_subscriptions": f"{USRLOC}:subscriptions"}
SNAPSHOT_KEYS = tuple(key for key, _, _ in _FROM_SNAPSHOT.values())
# The statistics that only rise (until their shard restarts); the others are current values.
COUNTERS = frozenset(name for name, (_, cumulative, _) in _FROM_SNAPSHOT.items() if cumulative)


def statistics(values: dict) -> dict[str, int]:
    """Kamailio-named statistics of a snapshot (one shard's, or the sum of all of them)."""
    out = {name: int(values.get(key, 0)) for name, (key, _, _) in _FROM_SNAPSHOT.items()}
    replies = out[f"{REGISTRAR}:sar_replies_received"]
    total = out[f"{REGISTRAR}:sar_replies_response_time"]
    out[SAR_AVERAGE] = total // replies if replies else 0
    return out


def with_aliases(stats: dict[str, int]) -> dict[str, int]:
    """``statistics`` and the usrloc counters again under their ALIASES."""
    return {**stats, **{alias: stats[name] for alias, name in ALIASES.items()}}


def summed(snapshots: list[dict]) -> dict:
    return {key: sum(s.get(key, 0) for s in snapshots) for key in SNAPSHOT_KEYS}


def select(stats: dict[str, int], wanted: list[str]) -> dict[str, int]:
    """``stats.get_statistics`` arguments: ``all``, a group (``ims_usrloc_scscf:``), or a name
    with or without its group. Raises KeyError naming what matched nothing."""
    chosen: dict[str, int] = {}
    for item in wanted or ["all"]:
        names = [n for n in stats if _matches(n, item)]
        if not names:
            raise KeyError(item)
        chosen.update((n, stats[n]) for n in names)
    return chosen


def _matches(name: str, item: str) -> bool:
    group, _, short = name.partition(":")
    return item in ("all", name, short, f"{group}:")


class ShardMetrics:
    """What one shard counts on its REGISTER path."""

    def __init__(self) -> None:
        self.accepted_regs = 0
        self.rejected_regs = 0
        self.sar_replies_received = 0
        self.sar_replies_response_time = 0.0  # ms
        self.sar_timeouts = 0

    def count_reply(self, reply: Reply) -> Reply:
        if reply.status < 300:
            self.accepted_regs += 1
        else:
            self.rejected_regs += 1
        return reply

    async def time_sar(self, answer: Awaitable[Any]) -> Any:
        started = time.perf_counter()
        try:
            result = await answer
        except CxTimeout:
            self.sar_timeouts += 1
            raise
        self.sar_replies_received += 1
        self.sar_replies_response_time += (time.perf_counter() - started) * 1000
        return result

    def snapshot(self) -> dict:
        return {
            "accepted_regs": self.accepted_regs,
            "rejected_regs": self.rejected_regs,
            "sar_replies_received": self.sar_replies_received,
            "sar_replies_response_time": int(self.sar_replies_response_time),
            "sar_timeouts": self.sar_timeouts,
        }


def node_names() -> dict[str, str]:
    """Node ID -> node name (`ray start --node-name`, by default the node's IP)."""
    return {n["NodeID"]: n["NodeName"] for n in ray.nodes()}


def shard_tags(index: int, namespace: str) -> dict[str, str]:
    """Tags of a shard's metrics; the namespace tells apart registrars sharing a cluster."""
    node = node_names().get(ray.get_runtime_context().get_node_id(), "")
    return {"shard": str(index), "node": node, "namespace": namespace}


async def export_forever(snapshot: Callable[[], Awaitable[dict]], tags: dict[str, str],
                         interval: float = EXPORT_INTERVAL) -> None:
    """Publishes a shard's statistics to Ray's metrics agent until cancelled."""
    keys = tuple(tags)
    metrics = {
        name: (Counter if name in COUNTERS else Gauge)(
            name.replace(":", "_"), description=description(name), tag_keys=keys)
        for name in (*_FROM_SNAPSHOT, SAR_AVERAGE)
    }
    published: dict[str, int] = {}
    while True:
        try:
            for name, value in statistics(await snapshot()).items():
                if name in COUNTERS:
                    delta = value - published.get(name, 0)
                    if delta > 0:
                        metrics[name].inc(delta, tags=tags)
                else:
                    metrics[name].set(value, tags=tags)
                published[name] = value
        except Exception:  # a failed round must not end the export
            log.exception("exporting statistics failed")
        await asyncio.sleep(interval)


def description(name: str) -> str:
    return _FROM_SNAPSHOT[name][2] if name in _FROM_SNAPSHOT else "Average SAR round trip, ms"
