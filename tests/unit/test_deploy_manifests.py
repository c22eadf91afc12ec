"""cluster.yaml (Ray's cluster launcher) and scripts/deploy/kuberay.yaml (KubeRay) kept in step
with the configuration: the site config each carries validates, the ports they open and probe
are the configuration's defaults, Ray's token is wired into every Ray process, and the image
has the Python and Ray the project requires."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from actors.config import RayConfig, config_from_dict, parse_host_port, parse_listen

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RAY_VERSION = next(d.split("==")[1] for d in PYPROJECT["project"]["dependencies"]
                   if d.startswith("ray[default]=="))
MIN_PYTHON = tuple(int(n) for n in PYPROJECT["project"]["requires-python"].lstrip(">=").split("."))
DEFAULTS = RayConfig()


def launcher() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def kuberay() -> dict[str, dict]:
    docs = yaml.safe_load_all((ROOT / "scripts/deploy/kuberay.yaml").read_text())
    return {doc["kind"]: doc for doc in docs}


def test_launcher_site_example_is_a_valid_config():
    """The site.toml the comment at the top of cluster.yaml shows."""
    header = (ROOT / "cluster.yaml").read_text().split("reach it, e.g.\n")[1]
    block = header.split("# Every node runs transports")[0]
    example = "\n".join(line.removeprefix("#     ") for line in block.splitlines())
    config = config_from_dict(tomllib.loads(example))
    assert config.store.backend == "redis" and not config.hss.emulator
    assert parse_host_port(config.metrics.listen, "metrics.listen") == ("0.0.0.0", 5081)


def test_launcher_image_has_the_pinned_ray_and_python():
    image = launcher()["docker"]["image"]
    name, tag = image.split(":")
    assert name == "rayproject/ray"
    version, python, _ = re.fullmatch(r"([\d.]+)-py(\d+)-(\w+)", tag).groups()
    assert version == RAY_VERSION
    assert (int(python[0]), int(python[1:])) >= MIN_PYTHON


def test_launcher_starts_ray_with_token_and_the_default_ports():
    cluster = launcher()
    head, workers = cluster["head_start_ray_commands"], cluster["worker_start_ray_commands"]
    assert cluster["file_mounts"]["~/.ray/auth_token"] == "./ray_auth_token"
    for command in head + workers:  # ray stop, ray start, scscf serve: each proves the token
        assert "RAY_AUTH_MODE=token" in command, command
    starts = [c for c in head + workers if "ray start" in c]
    assert len(starts) == 2
    for start in starts:
        assert "RAY_worker_niceness=0" in start
        assert f"--metrics-export-port={DEFAULTS.metrics_export_port}" in start
    assert f"--dashboard-port={DEFAULTS.dashboard_port}" in starts[0]
    (serve,) = [c for c in head if "scscf serve" in c]
    assert "--address auto" in serve and "--config ~/site.toml" in serve
    assert cluster["file_mounts"]["~/site.toml"] == "./site.toml"
    assert any("pip install" in c and "~/ray-scscf" in c for c in cluster["setup_commands"])


def test_kuberay_site_config_is_valid_and_matches_probes_and_ports():
    docs = kuberay()
    config = config_from_dict(tomllib.loads(docs["ConfigMap"]["data"]["scscf.toml"]))
    _, metrics_port = parse_host_port(config.metrics.listen, "metrics.listen")
    sip_ports = {parse_listen(spec)[2] for spec in config.sip.listen}
    head = docs["RayCluster"]["spec"]["headGroupSpec"]
    container = head["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": metrics_port}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": metrics_port}
    assert head["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(metrics_port)
    ports = {(p["containerPort"], p.get("protocol", "TCP")) for p in container["ports"]}
    assert {(port, proto) for port in sip_ports for proto in ("UDP", "TCP")} <= ports
    assert {(metrics_port, "TCP"), (DEFAULTS.metrics_export_port, "TCP"),
            (DEFAULTS.dashboard_port, "TCP")} <= ports
    assert head["rayStartParams"]["metrics-export-port"] == str(DEFAULTS.metrics_export_port)
    assert head["rayStartParams"]["dashboard-port"] == str(DEFAULTS.dashboard_port)
    service = docs["Service"]["spec"]
    assert {(p["port"], p["protocol"]) for p in service["ports"]} == {
        (port, proto) for port in sip_ports for proto in ("UDP", "TCP")}


def test_kuberay_runs_the_registrar_on_the_head_from_the_config_map():
    docs = kuberay()
    head = docs["RayCluster"]["spec"]["headGroupSpec"]["template"]
    assert head["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"
    container = head["spec"]["containers"][0]
    script = " ".join(container["args"])
    assert "$KUBERAY_GEN_RAY_START_CMD" in script
    assert "exec scscf serve --address auto --config /etc/scscf/scscf.toml" in script
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in head["spec"]["volumes"]}
    assert mounts["config"] == "/etc/scscf"
    assert volumes["config"]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]


def test_kuberay_wires_the_token_secret_into_every_pod():
    text = (ROOT / "scripts/deploy/kuberay.yaml").read_text()
    spec = kuberay()["RayCluster"]["spec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        for container in group["template"]["spec"]["containers"]:
            env = {e["name"]: e for e in container["env"]}
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            secret = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
            assert f"kubectl create secret generic {secret['name']}" in text
            assert f"--from-literal={secret['key']}=" in text
            assert env["RAY_worker_niceness"]["value"] == "0"


def test_kuberay_image_is_the_projects_with_its_python():
    spec = kuberay()["RayCluster"]["spec"]
    assert spec["rayVersion"] == RAY_VERSION
    dockerfile = (ROOT / "scripts/container/Dockerfile").read_text()
    (python,) = set(re.findall(r"^FROM python:(\d+)\.(\d+)", dockerfile, re.M))
    assert tuple(int(n) for n in python) >= MIN_PYTHON
    tag = f"ray-scscf:{PYPROJECT['project']['version']}"
    assert f"-t {tag}" in (ROOT / "scripts/deploy/kuberay.yaml").read_text()
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        assert {c["image"] for c in group["template"]["spec"]["containers"]} == {tag}
