"""What keeps the registrar from starting, as one line that names the config key:
``sip.listen: udp:127.0.0.1:5060: address already in use``."""
from __future__ import annotations

import os
import socket

from actors.config import parse_listen


class StartupError(Exception):
    def __init__(self, key: str, value: str, reason: str) -> None:
        super().__init__(f"{key}: {value}: {reason}")


def one_line(exc: BaseException) -> str:
    """An exception in one line; a Ray task error is reduced to the actor's exception."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    if isinstance(exc, OSError) and exc.errno:  # asyncio's strerror repeats the address
        text = os.strerror(exc.errno)
        return text[:1].lower() + text[1:]
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def listener_error(specs: list[str], exc: BaseException) -> StartupError:
    """The transports failed to start: names the first listener of ``specs`` that this host
    cannot bind as the transports bind (reuse-port, so our own sockets do not count), else
    all of them with the transports' reason."""
    for spec in specs:
        reason = _bind_refused(spec)
        if reason:
            return StartupError("sip.listen", spec, reason)
    return StartupError("sip.listen", " ".join(specs), one_line(exc))


def _bind_refused(spec: str) -> str:
    proto, host, port = parse_listen(spec)
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return one_line(exc)
    return ""
