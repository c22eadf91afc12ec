"""Free loopback ports for registrars, emulators and load generators under test."""
from __future__ import annotations

import random
import socket

# Below Linux's ephemeral range (32768-60999) and above Ray's worker ports (10002-19999): a
# port the kernel handed out for bind(0) and we let go of could go to the next bind(0) (a
# Ray worker's, an actor's channel) before the registrar under test binds it.
LOWEST, HIGHEST = 20000, 32767

# Ports already handed out by this process. A port is free when it is picked but is only
# bound later, by the process under test: two picks for one configuration (its dashboard
# and its metrics endpoint) could otherwise both get it.
_handed_out: set[int] = set()


def free_port() -> int:
    """A port free for both UDP and TCP on loopback (a registrar listens on both), never one
    this process handed out before."""
    while len(_handed_out) <= HIGHEST - LOWEST:
        port = random.randint(LOWEST, HIGHEST)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                tcp.bind(("127.0.0.1", port))
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"every port from {LOWEST} to {HIGHEST} was handed out already")
