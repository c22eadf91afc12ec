"""The registrar's statistics in Prometheus' text exposition format (version 0.0.4).

Each Kamailio statistic ``group:name`` is the metric ``group_name``; counters end in ``_total``,
as Prometheus names them. Every statistic is written, a counter at 0 before anything happened,
so that a dashboard's queries find their series from the first scrape. The label set is fixed:
``namespace``, the registrar's Ray namespace (registrars sharing a Prometheus keep apart).
"""
from __future__ import annotations

from actors.hosts.metrics import COUNTERS, description

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metric_name(statistic: str) -> str:
    """``ims_registrar_scscf:accepted_regs`` -> ``ims_registrar_scscf_accepted_regs_total``."""
    name = statistic.replace(":", "_")
    return f"{name}_total" if statistic in COUNTERS else name


def exposition(statistics: dict[str, int], labels: dict[str, str]) -> str:
    """The text a Prometheus scrape reads: HELP, TYPE and one sample per statistic."""
    tags = ",".join(f'{key}="{_escaped(value)}"' for key, value in sorted(labels.items()))
    lines = []
    for statistic, value in sorted(statistics.items()):
        name = metric_name(statistic)
        lines += [f"# HELP {name} {description(statistic)}",
                  f"# TYPE {name} {'counter' if statistic in COUNTERS else 'gauge'}",
                  f"{name}{{{tags}}} {value}"]
    return "\n".join(lines) + "\n"


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
