"""``stats.reset_statistics``: what a reset sets back to zero, as a baseline per shard.

The seed's "can be reset" statistics are the counters: expired contacts and the registrar's
REGISTER and SAR counts (the average follows its two sums). Current counts (identities,
contacts, subscriptions, queued NOTIFYs) cannot be reset. The shards keep counting up, and so
do the Prometheus counters (a Prometheus counter must only rise); what the RPC reads is each
shard's count less the baseline taken at the reset.
"""
from __future__ import annotations

from actors.hosts.metrics import REGISTRAR, SAR_AVERAGE, USRLOC

# Kamailio name -> the shard snapshot keys it is counted from.
RESETTABLE = {
    f"{USRLOC}:expired_contacts": ("expired_contacts",),
    f"{REGISTRAR}:accepted_regs": ("accepted_regs",),
    f"{REGISTRAR}:rejected_regs": ("rejected_regs",),
    f"{REGISTRAR}:sar_replies_received": ("sar_replies_received",),
    f"{REGISTRAR}:sar_replies_response_time": ("sar_replies_response_time",),
    f"{REGISTRAR}:sar_timeouts": ("sar_timeouts",),
    SAR_AVERAGE: ("sar_replies_received", "sar_replies_response_time"),
}


class Baselines:
    """Per shard, the counts at the last reset of each snapshot key."""

    def __init__(self) -> None:
        self._taken: dict[int, dict[str, int]] = {}

    def reset(self, snapshots: list[dict], names: list[str]) -> list[str]:
        """Takes the baseline of the resettable ones among ``names`` (Kamailio names); returns
        those, in order."""
        chosen = [name for name in names if name in RESETTABLE]
        keys = {key for name in chosen for key in RESETTABLE[name]}
        for index, snapshot in enumerate(snapshots):
            self._taken.setdefault(index, {}).update({k: snapshot.get(k, 0) for k in keys})
        return chosen

    def apply(self, snapshots: list[dict]) -> list[dict]:
        """Each shard's snapshot less its baseline. A shard counting less than its baseline was
        restarted and began again at zero: its baseline is dropped. (One restarted and already
        past its old baseline is not noticed: its counts read low until the next reset.)"""
        applied = []
        for index, snapshot in enumerate(snapshots):
            taken = self._taken.get(index, {})
            if any(snapshot.get(key, 0) < value for key, value in taken.items()):
                taken = self._taken[index] = {}
            applied.append({**snapshot, **{k: snapshot.get(k, 0) - v for k, v in taken.items()}})
        return applied
