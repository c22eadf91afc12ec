"""The Grafana dashboard shipped in scripts/grafana: valid JSON whose every panel queries
metrics the registrar's /metrics endpoint exports."""
from __future__ import annotations

import json
import re

from actors.hosts.metrics import statistics, summed
from actors.ops.prometheus import metric_name
from scripts.grafana import DASHBOARD

EXPORTED = {metric_name(name) for name in statistics(summed([]))}
METRIC = re.compile(r"\b(ims_[a-z_]+)\b")


def test_every_panel_queries_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len(panels) >= 8
    assert len({p["id"] for p in panels}) == len(panels)
    queried = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(METRIC.findall(target["expr"]))
            assert names, f"{panel['title']}: {target['expr']} names no metric"
            assert names <= EXPORTED, f"{panel['title']}: {names - EXPORTED} are not exported"
            assert '{namespace="$namespace"}' in target["expr"]
            queried |= names
    assert {"ims_usrloc_scscf_registered_contacts", "ims_usrloc_scscf_impus",
            "ims_registrar_scscf_accepted_regs_total"} <= queried


def test_the_namespace_variable_reads_an_exported_metric():
    variables = {v["name"]: v for v in json.loads(DASHBOARD.read_text())["templating"]["list"]}
    query = variables["namespace"]["query"]["query"]
    assert set(METRIC.findall(query)) <= EXPORTED and "namespace" in query
    assert variables["datasource"]["query"] == "prometheus"
