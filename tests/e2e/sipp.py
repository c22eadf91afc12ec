"""Drives the registrar with real sipp: a scenario of request/response steps, written per test.

sipp is the UE (or P-CSCF); its message trace is parsed back with our own parser so that tests
can assert the exact headers of every response sipp received.
"""
from __future__ import annotations

import re
import shutil
import socket
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

from transport.sip.message import Response
from transport.sip.parser import parse_message

SIPP = shutil.which("sipp")
SCENARIOS = Path(__file__).resolve().parents[2] / "scripts" / "sipp"


@dataclass
class Step:
    """One request sipp sends and the status it must receive (sipp fails on anything else).

    The request text may use sipp keywords: [local_ip], [local_port], [transport], [branch],
    [call_id], and [cseq] for CSeq numbers that count up within the scenario.
    """

    request: str
    expect: int


def free_port() -> int:
    """A port free for both UDP and TCP on loopback."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def scenario_xml(steps: list[Step]) -> str:
    parts = ['<?xml version="1.0" encoding="ISO-8859-1" ?>', '<scenario name="test">']
    for step in steps:
        body = textwrap.dedent(step.request).strip("\n") + "\n\n"
        parts.append(f'<send retrans="500"><![CDATA[\n\n{body}]]></send>')
        parts.append(f'<recv response="{step.expect}" timeout="8000"/>')
    parts.append("</scenario>")
    return "\n".join(parts)


def run_sipp(steps: list[Step], port: int, transport: str, workdir: Path, name: str = "flow") -> list[Response]:
    """Runs the steps once over 'udp' or 'tcp'; returns every response sipp received, parsed.

    Raises AssertionError with sipp's own error log when a step got the wrong answer.
    """
    scenario = workdir / f"{name}.xml"
    scenario.write_text(scenario_xml(steps))
    trace = workdir / f"{name}_{transport}_messages.log"
    errors = workdir / f"{name}_{transport}_errors.log"
    for stale in (trace, errors):
        stale.unlink(missing_ok=True)
    cmd = [
        SIPP, f"127.0.0.1:{port}", "-sf", str(scenario), "-m", "1", "-l", "1",
        "-t", "u1" if transport == "udp" else "t1", "-i", "127.0.0.1", "-p", str(free_port()),
        "-trace_msg", "-message_file", str(trace), "-trace_err", "-error_file", str(errors),
        "-timeout", "30", "-timeout_error", "-nostdin", "-max_recv_loops", "1000",
    ]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=60)
    responses = received_responses(trace)
    if proc.returncode != 0:
        log = errors.read_text() if errors.exists() else proc.stderr
        raise AssertionError(f"sipp failed ({proc.returncode}); received {[(r.status, r.reason) for r in responses]}\n{log[-3000:]}")
    return responses


_RECEIVED = re.compile(r"^(UDP|TCP) message received \[\d+\] bytes :\n\n", re.M)


def received_responses(trace: Path) -> list[Response]:
    if not trace.exists():
        return []
    text = trace.read_text()
    out = []
    for match in _RECEIVED.finditer(text):
        end = text.find("\n-----------", match.end())
        raw = text[match.end(): end if end >= 0 else len(text)]
        head, _, _ = raw.partition("\n\n")
        message = parse_message(head.replace("\n", "\r\n").encode() + b"\r\n\r\n")
        if isinstance(message, Response):
            out.append(message)
    return out


def register(user: str, *, contact: str | None = None, expires: str | None = "600",
             cseq: int = 1, extra: str = "", domain: str = "ims.test") -> str:
    """A REGISTER as a UE sends it through sipp; ``contact`` None means sipp's own socket,
    an empty string no Contact at all (a query of the bindings)."""
    if contact is None:
        contact = f"<sip:{user}@[local_ip]:[local_port];transport=[transport]>"
    lines = [
        f"REGISTER sip:{domain} SIP/2.0",
        "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{domain}>;tag=[pid]SIPpTag[call_number]",
        f"To: <sip:{user}@{domain}>",
        "Call-ID: [call_id]",
        f"CSeq: {cseq} REGISTER",
    ]
    if contact:
        lines.append(f"Contact: {contact}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    lines += [line for line in extra.splitlines() if line.strip()]
    lines += ["User-Agent: sipp-ue", "Content-Length: 0"]
    return "\n".join(lines)
