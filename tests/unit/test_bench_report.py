"""The REGISTER benchmark's report: the registrar's CPU per 200 never counts sipp's, and the
cores sipp kept busy on the shared box are shown beside the registrar's."""
import subprocess
import sys
import time
from types import SimpleNamespace

from scripts.bench_register import summary
from scripts.harness.sipp import reaped


def result() -> dict:
    return {
        "responses": {200: 1000, 503: 10}, "calls": 1020,
        "rtts": [float(ms) for ms in range(1, 1001)], "span": 2.0, "elapsed": 4.0,
        "stats": {"Retransmissions(C)": "7"},
        "cpu": {11: 2.0, 12: 1.0, 13: 0.004}, "sipp_cpu_seconds": 1.0,
        "names": {11: "ray::ImpuShard", 12: "scscf hss", 13: "ray::ImpuShard"},
        "memory": 3_000_000, "identities": 1000, "offered": 500,
    }


def test_the_registrar_cpu_is_per_200_and_sipp_is_apart():
    s = summary(SimpleNamespace(profile="initial"), "ours", result())
    assert s["cpu_seconds"] == {"ray::ImpuShard": 2.004, "scscf hss": 1.0}
    assert s["cpu_ms_per_register"] == 3.004  # 3.004 s over 1,000 200s; sipp's 1 s is not in it
    assert (s["registrar_cores"], s["sipp_cores"]) == (0.75, 0.25)  # over the 4 s sipp ran
    assert (s["ok"], s["refused_503"], s["failed"], s["failed_pct"]) == (1000, 10, 10, 0.98)
    assert (s["achieved_per_s"], s["retransmissions"]) == (500.0, 7)
    assert (s["p50_ms"], s["p99_ms"]) == (501.0, 991.0)
    assert s["bytes_per_identity"] == 3000


def test_reaped_gives_a_finished_child_its_own_cpu_and_exit_status():
    busy = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
    child = subprocess.Popen([sys.executable, "-c", busy + "raise SystemExit(3)"])
    while (usage := reaped(child)) is None:
        time.sleep(0.05)
    assert child.returncode == 3 and child.poll() == 3
    assert usage.ru_utime + usage.ru_stime >= 0.3
