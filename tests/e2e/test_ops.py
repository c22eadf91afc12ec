"""Operating the registrar: actors Ray restarts come back working and say so; the [metrics]
server's Prometheus text, /health and /ready; a real Prometheus scraping it; and a registrar on
a local Ray of its own naming its dashboard and Ray's metrics in its ready line."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import ray

from actors.vocabulary import cx_pool_name, shard_name, transport_name
from scripts.harness.ports import free_port
from scripts.harness.processes import command_line, descendants, listening_sockets
from scripts.harness.registrar import registrar_config, start_registrar
from scripts.harness.sipp import SIPP, run_registers
from tests.e2e.ray_actors import pid_of
from tests.e2e.ue import Ue

pytestmark = pytest.mark.e2e

NAMESPACE = "e2e-ops"
PROMETHEUS = shutil.which("prometheus")
JSON = "application/json; charset=utf-8"
DEADLINE = 60.0  # seconds: generous, for a box shared by other work
UNDER_LOAD = 400  # users registered while actors are killed


@pytest.fixture(scope="module")
def registrar(ray_address, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ops")
    sip, metrics = free_port(), free_port()
    config = registrar_config(NAMESPACE, workdir, sip, metrics=f'listen = "127.0.0.1:{metrics}"')
    server = start_registrar(config, workdir, sip, ray_address)
    server.metrics = f"http://127.0.0.1:{metrics}"
    yield server
    assert server.stop() == 0, "".join(server.output[-40:])


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Status, Content-Type and body of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=30) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def samples(text: str) -> dict[str, str]:
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))


def register(port: int, transport: str, user: str, contacts: int = 1,
             domain: str = "ims.test") -> int:
    """Registers ``user`` with ``contacts`` bindings (one REGISTER each); the last status."""
    status = 0
    for n in range(contacts):
        ue = Ue(f"{user}@{domain}", f"sip:{user}@{domain}", port, transport,
                call_id=f"{user}-{n}")
        ue.sock.settimeout(3)
        try:
            status = ue.register(authorization="", expires=600).status
        finally:
            ue.close()
    return status


def register_within_deadline(port: int, transport: str, user: str) -> int:
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            status = register(port, transport, user)
            if status == 200 or time.monotonic() > deadline:
                return status
        except OSError:  # no answer yet, or the connection refused or cut
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def wait_for_line(server, text: str) -> str:
    deadline = time.monotonic() + DEADLINE
    while not any(text in line for line in server.output):
        assert time.monotonic() < deadline, f"no {text!r}:\n" + "".join(server.output[-40:])
        time.sleep(0.2)
    return next(line for line in server.output if text in line)


def test_counters_are_exported_from_zero(registrar):
    status, kind, text = get(f"{registrar.metrics}/metrics")
    assert (status, kind) == (200, "text/plain; version=0.0.4; charset=utf-8")
    got = samples(text)
    label = f'{{namespace="{NAMESPACE}"}}'
    for name in ("ims_registrar_scscf_accepted_regs_total",
                 "ims_registrar_scscf_rejected_regs_total",
                 "ims_registrar_scscf_sar_timeouts_total",
                 "ims_usrloc_scscf_expired_contacts_total",
                 "ims_usrloc_scscf_registered_contacts", "ims_usrloc_scscf_impus"):
        assert got[name + label] == "0", name
    assert "# TYPE ims_registrar_scscf_accepted_regs_total counter" in text


def test_metrics_count_what_was_registered(registrar):
    before = samples(get(f"{registrar.metrics}/metrics")[2])
    assert register(registrar.sip_port, "udp", "metrics-a", contacts=2) == 200
    assert register(registrar.sip_port, "tcp", "metrics-b") == 200
    assert register(registrar.sip_port, "udp", "nobody", domain="elsewhere.test") == 403
    got = samples(get(f"{registrar.metrics}/metrics")[2])
    label = f'{{namespace="{NAMESPACE}"}}'

    def delta(name: str) -> int:
        return int(got[name + label]) - int(before[name + label])
    assert delta("ims_usrloc_scscf_registered_contacts") == 3
    assert delta("ims_usrloc_scscf_impus") == 2
    assert delta("ims_registrar_scscf_accepted_regs_total") == 3
    assert delta("ims_registrar_scscf_rejected_regs_total") == 1
    rpc = registrar.rpc("ulscscf.status")["result"]
    assert got[f"ims_usrloc_scscf_registered_contacts{label}"] == str(rpc["contacts"])
    assert got[f"ims_usrloc_scscf_impus{label}"] == str(rpc["impus"])


def test_health_and_ready(registrar):
    assert get(f"{registrar.metrics}/health") == (200, JSON, '{"status": "up"}')
    assert get(f"{registrar.metrics}/ready") == (200, JSON, '{"ready": true}')
    assert get(f"{registrar.metrics}/nothing")[0] == 404


def test_not_ready_without_an_hss(ray_address, tmp_path):
    sip, metrics, dead = free_port(), free_port(), free_port()
    config = registrar_config("e2e-ops-nohss", tmp_path, sip, hss="emulator = false",
                              cx=f'peers = ["127.0.0.1:{dead}"]',
                              metrics=f'listen = "127.0.0.1:{metrics}"')
    server = start_registrar(config, tmp_path, sip, ray_address)
    try:
        assert get(f"http://127.0.0.1:{metrics}/ready") == (
            503, JSON, '{"ready": false, "not_ready": ["cx: no HSS peer open"]}')
        assert get(f"http://127.0.0.1:{metrics}/health")[0] == 200
    finally:
        assert server.stop() == 0


def test_actors_restarted_by_ray_come_back_working_and_say_so(registrar):
    node = next(n["NodeName"] for n in ray.nodes() if n["Alive"])
    name = transport_name(node, 0)
    assert register(registrar.sip_port, "udp", "restart-before") == 200
    ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=False)
    ray.kill(ray.get_actor(shard_name(0), namespace=NAMESPACE), no_restart=False)
    assert register_within_deadline(registrar.sip_port, "udp", "restart-udp") == 200
    assert register_within_deadline(registrar.sip_port, "tcp", "restart-tcp") == 200
    port = registrar.sip_port
    line = wait_for_line(registrar, f"{name} restarted by Ray")
    assert line.rstrip().endswith(
        f"WARNING actors.hosts.transport: {name} restarted by Ray (restart 1): SIP on "
        f"udp:127.0.0.1:{port} tcp:127.0.0.1:{port} again"), line
    line = wait_for_line(registrar, "impu-shard-0 restarted by Ray")
    assert line.rstrip().endswith(
        "WARNING actors.hosts.shard: impu-shard-0 restarted by Ray (restart 1): reloading its "
        "identities")
    deadline = time.monotonic() + DEADLINE
    while get(f"{registrar.metrics}/ready")[0] != 200:
        assert time.monotonic() < deadline, get(f"{registrar.metrics}/ready")
        time.sleep(0.5)


@pytest.mark.skipif(SIPP is None, reason="sipp is not installed")
def test_each_kind_of_actor_killed_under_load_loses_no_registration(registrar, tmp_path):
    """sipp registers distinct users while a transport, a shard and a Cx pool are killed one
    after the other: every registration answered 200 is kept, and registering everyone again
    afterwards is answered 200 throughout."""
    node = next(n["NodeName"] for n in ray.nodes() if n["Alive"])
    victims = [transport_name(node, 0), shard_name(1), cx_pool_name(0)]
    rows = [(f"load{n}", 600) for n in range(UNDER_LOAD)]
    before = registrar.rpc("ulscscf.status")["result"]["impus"]
    outcome: dict = {}
    load = threading.Thread(target=lambda: outcome.update(run_registers(
        "127.0.0.1", registrar.sip_port, "udp", rows, UNDER_LOAD // 8, tmp_path)))
    load.start()
    for name in victims:  # one second apart, while the REGISTERs flow
        time.sleep(1.0)
        ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=False)
    load.join()
    ok = outcome["responses"].get(200, 0)
    # 200, or 503 + Retry-After while an actor is away; never a 500 (a REGISTER in flight in
    # the killed transport may get no answer at all: the UE retransmits, or tries again)
    assert ok > 0 and set(outcome["responses"]) <= {200, 503}, outcome["responses"]
    print(f"\nunder load: {outcome['responses']}")
    deadline = time.monotonic() + DEADLINE  # back: shards loaded, SIP bound, an HSS peer open
    while get(f"{registrar.metrics}/ready")[0] != 200:
        assert time.monotonic() < deadline, get(f"{registrar.metrics}/ready")
        time.sleep(0.5)
    kept = registrar.rpc("ulscscf.status")["result"]["impus"] - before
    assert kept >= ok  # an answer may have been lost with its transport, never a binding
    again = run_registers("127.0.0.1", registrar.sip_port, "udp", rows, 100, tmp_path)
    assert again["responses"].get(200) == UNDER_LOAD and not again["responses"].get(503)
    assert registrar.rpc("ulscscf.status")["result"]["impus"] - before == UNDER_LOAD


@pytest.mark.skipif(PROMETHEUS is None, reason="Debian's prometheus is not installed "
                                               "(apt-get install prometheus)")
def test_prometheus_scrapes_the_registrar(registrar, tmp_path):
    assert register(registrar.sip_port, "udp", "scraped") == 200
    metrics = urllib.parse.urlsplit(registrar.metrics).netloc
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: scscf\n"
        f"    static_configs:\n      - targets: ['{metrics}']\n")
    web = f"127.0.0.1:{free_port()}"
    prometheus = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address={web}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        impus = samples(get(f"{registrar.metrics}/metrics")[2])[
            f'ims_usrloc_scscf_impus{{namespace="{NAMESPACE}"}}']
        query = urllib.parse.quote(f'ims_usrloc_scscf_impus{{namespace="{NAMESPACE}"}}')
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                answer = json.loads(get(f"http://{web}/api/v1/query?query={query}")[2])
            except (OSError, ValueError):
                answer = {}
            result = answer.get("data", {}).get("result", [])
            if result:
                break
            assert time.monotonic() < deadline, answer
            time.sleep(1)
        assert answer["status"] == "success"
        (series,) = result
        assert series["metric"] == {"__name__": "ims_usrloc_scscf_impus", "job": "scscf",
                                    "instance": metrics, "namespace": NAMESPACE}
        assert series["value"][1] == impus
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)


def test_a_local_ray_names_its_dashboard_and_metrics(tmp_path):
    """`scscf serve` starting its own Ray: dashboard and both metrics endpoints on the ports
    configured, named in the ready line, and our Grafana dashboard beside Ray's."""
    sip, dashboard, ray_metrics, metrics = free_port(), free_port(), free_port(), free_port()
    config = registrar_config(
        "e2e-ops-local", tmp_path, sip, metrics=f'listen = "127.0.0.1:{metrics}"',
        ray=f'namespace = "e2e-ops-local"\ndashboard_port = {dashboard}\n'
            f'metrics_export_port = {ray_metrics}')
    server = start_registrar(config, tmp_path, sip, address=None, timeout=180)
    try:
        ready = next(line for line in server.output if line.startswith("ready"))
        assert f"; metrics http://127.0.0.1:{metrics}/metrics" in ready
        assert f"; dashboard http://127.0.0.1:{dashboard};" in ready
        assert ready.rstrip().endswith(f":{ray_metrics}/metrics")
        ray_metrics_url = ready.rstrip().rsplit("; ray metrics ", 1)[1]
        version = f"http://127.0.0.1:{dashboard}/api/version"
        assert get(version)[0] == 401  # Ray's token authentication guards the dashboard too
        token = (os.environ.get("RAY_AUTH_TOKEN")
                 or Path(os.environ["RAY_AUTH_TOKEN_PATH"]).read_text().strip())
        assert get(version, {"Authorization": f"Bearer {token}"})[0] == 200
        assert get(ray_metrics_url)[0] == 200
        sessions = Path(os.environ.get("RAY_TMPDIR", "/tmp/ray"))
        (session,) = sessions.glob(f"session_*_{server.process.pid}")
        installed = session / "metrics/grafana/dashboards/scscf_grafana_dashboard.json"
        deadline = time.monotonic() + DEADLINE * 2
        while not installed.exists():
            assert time.monotonic() < deadline, sorted(installed.parent.glob("*"))
            time.sleep(0.5)
        shipped = Path(__file__).resolve().parents[2] / "scripts/grafana/scscf.json"
        assert installed.read_text() == shipped.read_text()
    finally:
        assert server.stop() == 0, "".join(server.output[-40:])


def test_a_local_ray_listens_on_loopback_only(tmp_path):
    """Every socket that `scscf serve` and the Ray it starts listen on (GCS, raylet, workers,
    dashboard and its agent, runtime env agent, metrics endpoints; SIP, RPC, metrics and the
    HSS emulator as configured here) is bound to loopback, none to every interface."""
    sip, dashboard, ray_metrics = free_port(), free_port(), free_port()
    config = registrar_config(
        "e2e-ops-loopback", tmp_path, sip,
        ray=f'namespace = "e2e-ops-loopback"\ndashboard_port = {dashboard}\n'
            f'metrics_export_port = {ray_metrics}')
    server = start_registrar(config, tmp_path, sip, address=None, timeout=180)
    try:
        assert register(sip, "udp", "loopback") == 200
        pids = [server.process.pid, *descendants(server.process.pid)]
        sockets = [(command_line(pid), protocol, address, port)
                   for pid, protocol, address, port in listening_sockets(pids)]
        wildcard = [s for s in sockets if s[2] in ("0.0.0.0", "::")]
        assert wildcard == [], wildcard
        assert {s[2] for s in sockets} == {"127.0.0.1"}, sockets
        listeners = " ".join(s[0] for s in sockets)
        for process in ("gcs_server", "raylet", "dashboard.py", "DashboardAgent",
                        "RuntimeEnvAgent", "ray::SipTransport", "ray::ImpuShard"):
            assert process in listeners, sockets
        assert {("tcp", dashboard), ("tcp", ray_metrics), ("udp", sip), ("tcp", sip)} <= {
            (s[1], s[3]) for s in sockets}
    finally:
        assert server.stop() == 0, "".join(server.output[-40:])


def test_a_restarted_transport_rejoins_its_reuseport_group(ray_address, tmp_path):
    """Two transports share the SIP port; the one killed comes back into the group, and
    datagrams spread at random over both are all answered."""
    sip = free_port()
    namespace = "e2e-ops-pair"
    config = registrar_config(namespace, tmp_path, sip, ray="transports_per_node = 2")
    server = start_registrar(config, tmp_path, sip, ray_address)
    try:
        node = next(n["NodeName"] for n in ray.nodes() if n["Alive"])
        name = transport_name(node, 1)
        ray.kill(ray.get_actor(name, namespace=namespace), no_restart=False)
        wait_for_line(server, f"{name} restarted by Ray (restart 1): SIP on")
        restarted = ray.get_actor(name, namespace=namespace)
        assert ray.get(restarted.listening.remote(), timeout=DEADLINE) == [
            f"udp:127.0.0.1:{sip}", f"tcp:127.0.0.1:{sip}"]
        statuses = [register(sip, "udp", f"pair-udp-{n}") for n in range(20)]
        statuses += [register(sip, "tcp", f"pair-tcp-{n}") for n in range(10)]
        assert statuses == [200] * 30
    finally:
        assert server.stop() == 0, "".join(server.output[-40:])


def test_taken_dashboard_and_metrics_ports_are_warned_about_and_done_without(tmp_path):
    sip, metrics = free_port(), free_port()
    holders = []
    for _ in range(2):
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        holders.append(holder)
    dashboard, ray_metrics = (h.getsockname()[1] for h in holders)
    config = registrar_config(
        "e2e-ops-taken", tmp_path, sip, metrics=f'listen = "127.0.0.1:{metrics}"',
        ray=f'dashboard_port = {dashboard}\nmetrics_export_port = {ray_metrics}')
    try:
        server = start_registrar(config, tmp_path, sip, address=None, timeout=180)
    finally:
        for holder in holders:
            holder.close()
    try:
        ready = next(line for line in server.output if line.startswith("ready"))
        assert "; dashboard " not in ready
        assert f"; metrics http://127.0.0.1:{metrics}/metrics; ray metrics http://" in ready
        assert not ready.rstrip().endswith(f":{ray_metrics}/metrics")
        text = "".join(server.output)
        assert (f"WARNING actors.ops.ray_start: ray.dashboard_port: 127.0.0.1:{dashboard} is in "
                "use; running without the Ray dashboard") in text
        assert (f"WARNING actors.ops.ray_start: ray.metrics_export_port: {ray_metrics} is in "
                "use: Ray's metrics go to a port of its choosing (see the ready line)") in text
        assert register(sip, "udp", "no-dashboard") == 200
    finally:
        assert server.stop() == 0, "".join(server.output[-40:])


def test_a_backlog_older_than_the_overload_delay_is_answered_503_at_once(registrar):
    """REGISTERs that waited in the kernel's queue past `[sip] overload_delay` (0.2 s) are
    answered 503 with Retry-After by the transport, without reaching a shard: the UE hears
    before it retransmits, and the shards spend nothing on them. The transport is held with
    SIGSTOP so that they wait (less than T1, 0.5 s: older ones are dropped unread, see
    test_sip_endpoints); the next REGISTER is served as usual."""
    node = next(n["NodeName"] for n in ray.nodes() if n["Alive"])
    transport = ray.get_actor(transport_name(node, 0), namespace=NAMESPACE)
    pid = pid_of(transport)
    assert pid is not None
    assert register(registrar.sip_port, "udp", "backlog-before") == 200
    impus = registrar.rpc("ulscscf.status")["result"]["impus"]
    ues = [Ue(f"backlog{n}@ims.test", f"sip:backlog{n}@ims.test", registrar.sip_port)
           for n in range(5)]
    try:
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_until_stopped(pid)  # a running process stops a moment after the signal
            for ue in ues:
                ue.send(ue.register_request(authorization=""))
            time.sleep(0.25)  # the datagrams wait in the kernel, stamped on arrival
        finally:
            os.kill(pid, signal.SIGCONT)
        answers = [ue.receive() for ue in ues]
    finally:
        for ue in ues:
            ue.close()
    assert [(a.status, a.reason, a.headers.get("Retry-After")) for a in answers] == [
        (503, "Registrar overloaded", "5")] * 5
    assert registrar.rpc("ulscscf.status")["result"]["impus"] == impus  # no shard saw them
    assert register(registrar.sip_port, "udp", "backlog0") == 200


def wait_until_stopped(pid: int) -> None:
    deadline = time.monotonic() + DEADLINE
    # Every thread's /proc/PID/task/TID/stat: "TID (comm) STATE ..."; the state follows ")"
    while any(stat.read_text().rsplit(")", 1)[1].split()[0] != "T"
              for stat in Path(f"/proc/{pid}/task").glob("*/stat")):
        assert time.monotonic() < deadline, f"process {pid} did not stop"
        time.sleep(0.01)
