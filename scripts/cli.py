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
        from scripts.hss import main as hss_main

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
    from actors.deployment import init_ray, start_registrar

    import ray

    init_ray(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        deployment = await start_registrar(config)
    except Exception as exc:
        print(f"scscf: could not start: {exc}", file=sys.stderr)
        ray.shutdown()
        return 1
    hss = f"; hss emulator on {config.hss.listen}" if deployment.hss else ""
    rpc = f"; rpc {deployment.rpc.url}" if deployment.rpc else ""
    print(f"ready: sip {' '.join(deployment.listeners)}{hss}{rpc}", flush=True)
    await stop.wait()
    print("stopping", flush=True)
    await deployment.stop()
    ray.shutdown()
    return 0


def rpc_command(url: str, method: str, params: list[str]) -> int:
    """Prints the result as JSON; an error goes to stderr with exit status 1."""
    import json

    from actors.rpc import call

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
