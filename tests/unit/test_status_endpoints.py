"""What the [metrics] HTTP server answers, without Ray: the Prometheus text of the statistics
(prometheus.py) and the readiness verdict (http_status.not_ready)."""
from __future__ import annotations

import asyncio

from actors.hosts.metrics import statistics, summed
from actors.ops.http_status import not_ready
from actors.ops.prometheus import exposition, metric_name

ZERO = statistics(summed([]))


def test_every_statistic_is_written_from_zero_with_its_type():
    text = exposition(ZERO, {"namespace": "scscf"})
    assert text.splitlines()[:3] == [
        "# HELP ims_registrar_scscf_accepted_regs_total REGISTERs answered 2xx",
        "# TYPE ims_registrar_scscf_accepted_regs_total counter",
        'ims_registrar_scscf_accepted_regs_total{namespace="scscf"} 0',
    ]
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert len(samples) == len(ZERO) == 11
    assert 'ims_usrloc_scscf_registered_contacts{namespace="scscf"} 0' in samples
    assert "# TYPE ims_usrloc_scscf_impus gauge" in text
    assert "# TYPE ims_usrloc_scscf_expired_contacts_total counter" in text
    assert "# TYPE ims_registrar_scscf_sar_avg_response_time gauge" in text
    assert text.endswith("\n")


def test_values_and_names_follow_kamailio_statistics():
    stats = statistics({"contacts": 3, "impus": 2, "sar_replies_received": 4,
                        "sar_replies_response_time": 10})
    text = exposition(stats, {"namespace": "a"})
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert samples['ims_usrloc_scscf_registered_contacts{namespace="a"}'] == "3"
    assert samples['ims_usrloc_scscf_impus{namespace="a"}'] == "2"
    assert samples['ims_registrar_scscf_sar_replies_received_total{namespace="a"}'] == "4"
    assert samples['ims_registrar_scscf_sar_avg_response_time{namespace="a"}'] == "2"
    assert metric_name("ims_registrar_scscf:sar_timeouts") == (
        "ims_registrar_scscf_sar_timeouts_total")


def test_label_values_are_escaped():
    text = exposition({"ims_usrloc_scscf:impus": 1}, {"namespace": 'a"b\\c\nd'})
    assert 'ims_usrloc_scscf_impus{namespace="a\\"b\\\\c\\nd"} 1' in text


def status(transports=(("t0", True),), load_errors=(None,), peers=("I_Open",)) -> dict:
    return {"transports": [{"name": n, "running": r} for n, r in transports],
            "shards": [{"name": f"impu-shard-{i}", "load_error": error}
                       for i, error in enumerate(load_errors)],
            "peers": [{"state": s} for s in peers]}


def verdict(state: dict, bound: dict[str, list[str]] | None = None) -> list[str]:
    async def listening(name: str) -> list[str]:
        return (bound or {}).get(name, ["udp:127.0.0.1:5060"])
    return asyncio.run(not_ready(state, listening))


def test_ready_when_sip_is_bound_shards_loaded_and_a_peer_open():
    assert verdict(status(peers=("Closed", "I_Open"))) == []


def test_not_ready_names_what_is_missing():
    state = status(transports=(("t0", False), ("t1", True), ("t2", True)),
                   load_errors=(None, "cannot load from the store: locked"), peers=("Closed",))
    assert verdict(state, {"t2": []}) == [
        "t0: SIP not bound", "t2: SIP not bound",
        "impu-shard-1: cannot load from the store: locked", "cx: no HSS peer open"]
    assert verdict(status(peers=())) == ["cx: no HSS peer open"]
