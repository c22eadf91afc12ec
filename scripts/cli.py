"""The ``scscf`` command: ``serve`` runs the registrar, ``hss`` the HSS emulator alone, ``rpc``
calls a JSON-RPC method of a running registrar, ``status`` shows it on one screen."""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from actors.config import LOG_LEVELS, ConfigError, cx_origin_host, load_config, parse_host_port
from scripts import event_loop

# Seconds a stop may take (actors told to stop, stores flushed, DPR sent) before `serve`
# gives up on a Ray cluster that no longer answers; below scscf.service's TimeoutStopSec.
STOP_GRACE = 30.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scscf", description="IMS S-CSCF registrar on Ray")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the registrar in the foreground")
    serve.add_argument("--config", help="TOML configuration file (default: embedded defaults)")
    serve.add_argument("--address", help="Ray address to join (overrides [ray] address)")
    serve.add_argument("--log-level", choices=LOG_LEVELS, help="overrides [log] level")
    sub.add_parser("hss", help="run the HSS emulator alone", add_help=False)
    rpc = sub.add_parser("rpc", help="call a JSON-RPC method, e.g. ulscscf.status")
    rpc.add_argument("method")
    rpc.add_argument("params", nargs="*")
    status = sub.add_parser("status", help="nodes, shards, transports, HSS peers and counts")
    for client in (rpc, status):
        client.add_argument("--config", help="the registrar's TOML file; its [rpc] listen is "
                                             "called (default: the embedded defaults')")
        client.add_argument("--url", help="the RPC URL, instead of the one of the config "
                                          "(the token is still the config's)")
    args, rest = parser.parse_known_args(argv)
    if args.command == "hss":
        from scripts.hss_emulator.cli import main as hss_main

        return hss_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"scscf: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command in ("rpc", "status"):
        url = args.url or rpc_url(config.rpc.listen)
        if not url:
            print("scscf: rpc.listen is \"\" (RPC off) in the config; give --url", file=sys.stderr)
            return 2
        from actors.ops.rpc_access import client_token

        token = client_token(config.rpc)
        if args.command == "status":
            return status_command(url, token)
        return rpc_command(url, token, args.method, args.params)
    if args.address:
        config.ray.address = args.address
    if args.log_level:
        config.log.level = args.log_level
    from actors.ops.logs import configure, prepare_ray_driver
    from actors.ops.worker_setup import collect_less_often

    prepare_ray_driver(config.log)
    configure(config.log)
    collect_less_often(config.ray.gc_threshold)  # the embedded HSS emulator runs here
    return event_loop.run(serve_forever(config), config.ray.uvloop)


def rpc_url(listen: str) -> str:
    """The URL that reaches ``[rpc] listen`` from this host ("" when RPC is off)."""
    if not listen:
        return ""
    host, port = parse_host_port(listen, "rpc.listen")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # any address: this host
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/RPC"


async def serve_forever(config) -> int:
    """Every startup failure ends in one line on stderr, naming the key where one is to
    blame, and exit status 1."""
    from actors.ops.ray_environment import prepare_ray_environment

    prepare_ray_environment(config)  # before ray is imported: it reads the mode then
    import ray

    from actors.ops.deployment import start_registrar
    from actors.ops.ray_start import init_ray
    from actors.ops.startup_errors import StartupError, one_line
    from scripts import grafana

    hss = None
    try:
        if config.hss.emulator:
            hss = await start_embedded_hss(config)
        try:
            endpoints = init_ray(config)
        except Exception as exc:
            raise StartupError("ray.address", config.ray.address, one_line(exc)) from exc
        deployment = await start_registrar(config)
    except Exception as exc:
        problem = exc if isinstance(exc, StartupError) else f"could not start: {one_line(exc)}"
        print(f"scscf: {problem}", file=sys.stderr)
        if hss is not None:
            await hss.stop()
        ray.shutdown()
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Held here: the loop keeps only a weak reference to a task.
    installing = loop.create_task(grafana.install(endpoints.session_dir))
    print(ready_line(config, deployment, endpoints, hss is not None), flush=True)
    await stop.wait()
    installing.cancel()
    print("stopping", flush=True)
    try:
        await asyncio.wait_for(stop_all(deployment, hss), STOP_GRACE)
    except TimeoutError:
        print(f"scscf: the Ray cluster did not answer within {STOP_GRACE:.0f} s; exiting "
              "without stopping its actors", file=sys.stderr, flush=True)
        os._exit(1)  # Ray's own exit hook would wait for the GCS too
    return 0


async def stop_all(deployment, hss) -> None:
    import ray

    from actors.ops.off_loop import off_loop

    await deployment.stop()
    if hss is not None:
        await hss.stop()
    await off_loop(ray.shutdown)


def ready_line(config, deployment, endpoints, hss: bool) -> str:
    """Where everything listens, once SIP accepts traffic."""
    parts = [f"ready: sip {' '.join(deployment.listeners)}"]
    if hss:
        parts.append(f"hss emulator on {config.hss.listen}")
    if deployment.rpc:
        parts.append(f"rpc {deployment.rpc.url}")
    if deployment.status:
        parts.append(f"metrics {deployment.status.url}/metrics")
    if endpoints.dashboard:
        parts.append(f"dashboard {endpoints.dashboard}")
    parts.append(f"ray metrics {endpoints.metrics}")
    return "; ".join(parts)


async def start_embedded_hss(config):
    """The HSS emulator in this process, listening before the Cx pool connects to it."""
    from actors.ops.startup_errors import StartupError, one_line
    from scripts.hss_emulator.config import HssConfigError
    from scripts.hss_emulator.emulator import HssEmulator

    try:
        hss = HssEmulator(hss_config(config))
    except HssConfigError as exc:
        path = config.hss.subscribers
        raise StartupError("hss.subscribers", path, str(exc).removeprefix(f"{path}: ")) from exc
    try:
        await hss.start(*parse_host_port(config.hss.listen, "hss.listen"))
    except OSError as exc:
        raise StartupError("hss.listen", config.hss.listen, one_line(exc)) from exc
    return hss


def hss_config(config):
    """The emulator's own configuration from the registrar's ``[hss]`` section."""
    from scripts.hss_emulator.config import HssConfig

    section = config.hss
    raw: dict = {}
    if section.subscribers:
        raw = HssConfig.read_toml(section.subscribers)
    if section.auto_provision_domain:
        raw["auto_provision_domain"] = section.auto_provision_domain
    if section.admin_listen:
        raw["admin_listen"] = section.admin_listen
    raw.setdefault("allowed_peers",  # only this registrar's Cx pool actors
                   [cx_origin_host(config.cx, i) for i in range(config.ray.cx_pool)])
    raw.setdefault("origin_realm", config.sip.domain)
    raw.setdefault("origin_host", f"hss.{config.sip.domain}")
    return HssConfig.from_toml(raw)


def rpc_command(url: str, token: str | None, method: str, params: list[str]) -> int:
    """Prints the result as JSON; an error goes to stderr with exit status 1."""
    import json

    result = _call(url, token, method, params)
    if result is _FAILED:
        return 1
    print(json.dumps(result, indent=2))
    return 0


def status_command(url: str, token: str | None) -> int:
    from scripts.status_view import render_status

    status = _call(url, token, "ulscscf.status", [])
    if status is _FAILED:
        return 1
    print(render_status(status))
    return 0


_FAILED = object()


def _call(url: str, token: str | None, method: str, params: list[str]):
    """The result, or _FAILED once the reason is on stderr."""
    from urllib.error import HTTPError

    from actors.ops.rpc import call

    try:
        reply = call(url, method, params, token)
    except HTTPError as exc:  # refused: 401 no or wrong token, 403, 415
        reason = exc.read().decode(errors="replace").strip()
        print(f"scscf: {url} refused the call: {exc.code} {reason}", file=sys.stderr)
        return _FAILED
    except OSError as exc:
        print(f"scscf: cannot reach {url}: {exc}", file=sys.stderr)
        return _FAILED
    if "error" in reply:
        print(f"scscf: error {reply['error']['code']}: {reply['error']['message']}",
              file=sys.stderr)
        return _FAILED
    return reply["result"]


if __name__ == "__main__":
    sys.exit(main())
