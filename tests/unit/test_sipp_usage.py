"""The harness's sipp runs report sipp's own CPU: on a shared box the load generator's CPU is
not the registrar's, and a benchmark shows the two apart."""
import subprocess
import sys
import time

from scripts.harness.sipp import reaped


def test_reaped_gives_a_finished_child_its_own_cpu_and_exit_status():
    busy = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
    child = subprocess.Popen([sys.executable, "-c", busy + "raise SystemExit(3)"])
    while (usage := reaped(child)) is None:
        time.sleep(0.05)
    assert child.returncode == 3 and child.poll() == 3
    assert usage.ru_utime + usage.ru_stime >= 0.3


def test_a_child_still_running_is_not_reaped():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert reaped(child) is None and child.returncode is None
    finally:
        child.kill()
        child.wait()
