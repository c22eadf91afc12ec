"""The ``scscf`` command: ``serve`` runs the registrar, ``hss`` the HSS emulator alone, ``rpc``
calls a JSON-RPC method of a running registrar."""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from actors.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scscf", description="IMS S-CSCF registrar on Ray")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the registrar in the foreground")
    serve.add_argument("--config", help="TOML configuration file (default: embedded defaults)")
    serve.add_argument("--address", help="Ray address to join (overrides [ray] address)")
    sub.add_parser("hss", help="run the HSS emulator alone", add_help=False)
    rpc = sub.add_parser("rpc", help="call a JSON-RPC method, e.g. ulscscf.status")
    rpc.add_argument("method")
    rpc.add_argument("params", nargs="*")
    rpc.add_argument("--url", default="http://127.0.0.1:5080", help="the [rpc] listen address")
    args, rest = parser.parse_known_args(argv)
    if args.command == "hss":
        from scripts.hss_emulator.cli import main as hss_main

        return hss_main(rest)
    if args.command == "rpc" and not rest:
        return rpc_command(args.url, args.method, args.params)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        config = load_config(args.config)
        if args.address:
            config.ray.address = args.address
    except ConfigError as exc:
        print(f"scscf: configuration error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(serve_forever(config))


async def serve_forever(config) -> int:
    import ray

    from actors.ops.deployment import init_ray, start_registrar

    init_ray(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    hss = await start_embedded_hss(config) if config.hss.emulator else None
    try:
        deployment = await start_registrar(config)
    except Exception as exc:
        print(f"scscf: could not start: {exc}", file=sys.stderr)
        if hss is not None:
            await hss.stop()
        ray.shutdown()
        return 1
    hss_note = f"; hss emulator on {config.hss.listen}" if hss else ""
    rpc = f"; rpc {deployment.rpc.url}" if deployment.rpc else ""
    print(f"ready: sip {' '.join(deployment.listeners)}{hss_note}{rpc}", flush=True)
    await stop.wait()
    print("stopping", flush=True)
    await deployment.stop()
    if hss is not None:
        await hss.stop()
    ray.shutdown()
    return 0


async def start_embedded_hss(config):
    """The HSS emulator in this process, listening before the Cx pool connects to it."""
    from actors.config import parse_host_port
    from scripts.hss_emulator.emulator import HssEmulator

    hss = HssEmulator(hss_config(config))
    await hss.start(*parse_host_port(config.hss.listen, "hss.listen"))
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
    raw.setdefault("allowed_peers", [config.cx.origin_host])  # only this registrar's Cx pool
    raw.setdefault("origin_realm", config.sip.domain)
    raw.setdefault("origin_host", f"hss.{config.sip.domain}")
    return HssConfig.from_toml(raw)


def rpc_command(url: str, method: str, params: list[str]) -> int:
    """Prints the result as JSON; an error goes to stderr with exit status 1."""
    import json

    from actors.ops.rpc import call

    try:
        reply = call(url, method, params)
    except OSError as exc:
        print(f"scscf rpc: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    if "error" in reply:
        print(f"scscf rpc: error {reply['error']['code']}: {reply['error']['message']}",
              file=sys.stderr)
        return 1
    print(json.dumps(reply["result"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
