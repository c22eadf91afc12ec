"""Drives the registrar with real sipp: a scenario of request/response steps, written per test.

sipp is the UE (or P-CSCF); its message trace is parsed back with our own parser so that tests
can assert the exact headers of every response sipp received.
"""
from __future__ import annotations

import re
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

from scripts.harness.sipp import sipp_command
from transport.sip.message import Response
from transport.sip.parser import parse_message


@dataclass
class Step:
    """One request sipp sends and the status it must receive (sipp fails on anything else).

    The request text may use sipp keywords: [local_ip], [local_port], [transport], [branch],
    [call_id], and [cseq] for CSeq numbers that count up within the scenario. With
    ``challenge`` the expected 401 is kept, so the next request can answer it with sipp's
    [authentication ...] keyword.
    """

    request: str
    expect: int
    challenge: bool = False


def scenario_xml(steps: list[Step]) -> str:
    parts = ['<?xml version="1.0" encoding="ISO-8859-1" ?>', '<scenario name="test">']
    for step in steps:
        body = textwrap.dedent(step.request).strip("\n") + "\n\n"
        parts.append(f'<send retrans="500"><![CDATA[\n\n{body}]]></send>')
        auth = ' auth="true"' if step.challenge else ""
        parts.append(f'<recv response="{step.expect}"{auth} timeout="8000"/>')
    parts.append("</scenario>")
    return "\n".join(parts)


def run_sipp(steps: list[Step], port: int, transport: str, workdir: Path, name: str = "flow",
             local_port: int | None = None) -> list[Response]:
    """Runs the steps once over 'udp' or 'tcp'; returns every response sipp received, parsed.
    ``local_port``: sipp's own (default: a free one), for a UE that keeps its address.

    Raises AssertionError with sipp's own error log when a step got the wrong answer.
    """
    run = SippRun(scenario_xml(steps), port, transport, workdir, name, local_port)
    return [m for m in run.wait() if isinstance(m, Response)]


class SippRun:
    """One sipp process running a scenario once, in the background until wait()."""

    def __init__(self, xml: str, port: int, transport: str, workdir: Path, name: str,
                 local_port: int | None = None) -> None:
        scenario = workdir / f"{name}.xml"
        scenario.write_text(xml)
        self.trace = workdir / f"{name}_{transport}_messages.log"
        self.errors = workdir / f"{name}_{transport}_errors.log"
        for stale in (self.trace, self.errors):
            stale.unlink(missing_ok=True)
        cmd = sipp_command(
            scenario, port, transport, "-m", "1", "-l", "1", "-trace_msg", "-message_file",
            str(self.trace), "-trace_err", "-error_file", str(self.errors), "-timeout", "40",
            "-timeout_error", "-max_recv_loops", "1000", local_port=local_port,
        )
        self.process = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)

    def messages(self) -> list:
        return received_messages(self.trace)

    def wait(self, timeout: float = 60) -> list:
        """Every message sipp received; AssertionError with sipp's errors when it failed."""
        try:
            output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        messages = self.messages()
        if self.process.returncode != 0:
            log = self.errors.read_text() if self.errors.exists() else output
            seen = [getattr(m, "status", None) or m.method for m in messages]
            raise AssertionError(f"sipp failed ({self.process.returncode}); received {seen}\n{log[-3000:]}")
        return messages


_RECEIVED = re.compile(r"^(UDP|TCP) message received \[\d+\] bytes :\n\n", re.M)


def received_messages(trace: Path) -> list:
    """Requests and responses sipp received, parsed with our parser, bodies included."""
    if not trace.exists():
        return []
    text = trace.read_text()
    out = []
    for match in _RECEIVED.finditer(text):
        end = text.find("\n-----------", match.end())
        raw = text[match.end(): end if end >= 0 else len(text)]
        head, _, body = raw.partition("\n\n")
        # sipp's trace rewrites line ends: frame the head ourselves and attach the body as is
        lines = [line for line in head.split("\n") if not line.lower().startswith(("content-length:", "l:"))]
        message = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
        message.body = body.strip("\n").encode()
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
