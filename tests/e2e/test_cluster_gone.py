"""`scscf serve` joined to a Ray cluster that goes away still stops on SIGTERM, as a service
manager expects, instead of waiting until Ray gives up on its GCS a minute later."""
import signal
import subprocess
import time

import pytest

from scripts.harness.cluster_control import start_cluster, stop_cluster
from scripts.harness.ports import free_port
from scripts.harness.registrar import registrar_config, start_registrar

pytestmark = pytest.mark.e2e

# Longer than Ray's own minute without its GCS: only a registrar that ignored SIGTERM until
# Ray ended it would take that long.
DEADLINE = 90.0
WATCH_EVERY = 0.5  # [ray] placement_interval: how often the driver asks Ray for the nodes


def test_sigterm_stops_serve_whose_cluster_is_gone(tmp_path):
    cluster, address = start_cluster(["gone-head"])
    try:
        sip = free_port()
        config = registrar_config("cluster-gone", tmp_path, sip,
                                  ray=f"shards = 1\nplacement_interval = {WATCH_EVERY}")
        server = start_registrar(config, tmp_path, sip, address)
    finally:
        stop_cluster(cluster)  # every node goes; the registrar's driver stays
    time.sleep(10 * WATCH_EVERY)  # the node watch is asking the GCS that is gone
    server.process.send_signal(signal.SIGTERM)
    try:
        status = server.process.wait(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        raise
    output = "".join(server.output)
    assert "stopping" in output
    assert "Failed to connect to GCS" not in output, output[-2000:]  # Ray's own end
    if status != 0:  # the actors' stop outlasted its grace: said so, then left
        assert status == 1, output[-2000:]
        assert "the Ray cluster did not answer within 30 s" in output
