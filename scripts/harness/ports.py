"""Free loopback ports for registrars, emulators and load generators under test."""
from __future__ import annotations

import socket


def free_port() -> int:
    """A port free for both UDP and TCP on loopback (a registrar listens on both)."""
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
