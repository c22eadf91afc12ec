"""Micro-benchmark of the registrar's SIP hot path on one core: parse a ~1 KB IMS REGISTER,
read what the registrar reads, build and serialize the 200 OK.

    python3 scripts/bench_sip_parse.py [--rounds 5] [--messages 20000]

The last line times plain Python (sum(range(1000))) the same way, as a yardstick of the
machine: compare rates across machines in units of it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.harness.samples import DOMAIN, IMS_REGISTER  # noqa: E402
from transport.sip import STAR, make_response, parse_message  # noqa: E402

SERVICE_ROUTE = f"<sip:orig@scscf.{DOMAIN}:6060;lr>"
ASSOCIATED = (f"<sip:001010000000001@{DOMAIN}>", "<tel:+15551234567>")


def handle(data: bytes) -> bytes:
    """What the registrar does with one REGISTER, minus the registration state itself."""
    request = parse_message(data)
    aor = request.to.uri.aor()
    call_id = request.call_id
    cseq, _ = request.cseq
    contacts = request.contacts
    default_expires = request.expires
    path = request.headers.get_all("Path")
    path_supported = "path" in request.supported
    response = make_response(request, 200, "OK", to_tag="a1b2c3")
    if contacts is not STAR:
        for contact in contacts:
            expires = contact.expires
            if expires is None:
                expires = default_expires
            contact.params["expires"] = str(expires)
            response.headers.add("Contact", str(contact))
    if path_supported:
        for hop in path:
            response.headers.add("Path", hop)
    response.headers.add("Service-Route", SERVICE_ROUTE)
    response.headers.add("P-Associated-URI", ", ".join(ASSOCIATED))
    assert aor and call_id and cseq
    return response.to_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds; the best is kept")
    parser.add_argument("--messages", type=int, default=20000, help="messages per round")
    args = parser.parse_args()
    for label, work in (("parse_message only", parse_message), ("REGISTER -> 200 OK", handle)):
        rate = best_rate(work, args.rounds, args.messages)
        print(f"{label:>20}: {rate:9,.0f} messages/s ({1e6 / rate:5.1f} us each, one core, "
              f"{len(IMS_REGISTER)}-byte REGISTER, best of {args.rounds} rounds)")
    rate = best_rate(lambda _: sum(range(1000)), args.rounds, args.messages)
    print(f"{'sum(range(1000))':>20}: {rate:9,.0f} calls/s    ({1e6 / rate:5.1f} us each, "
          "plain Python on this machine)")


def best_rate(work, rounds: int, messages: int) -> float:
    work(IMS_REGISTER)  # warm up
    best = float("inf")
    for _ in range(rounds):  # the best round is the one least disturbed by other processes
        start = time.perf_counter()
        for _ in range(messages):
            work(IMS_REGISTER)
        best = min(best, time.perf_counter() - start)
    return messages / best


if __name__ == "__main__":
    main()
