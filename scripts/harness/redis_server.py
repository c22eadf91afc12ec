"""A throwaway redis-server: a free loopback port, its own temporary directory, AOF on."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from scripts.harness.ports import free_port

BINARY = "redis-server"


def available() -> bool:
    return shutil.which(BINARY) is not None


@contextmanager
def store_section(backend: str) -> Iterator[str]:
    """The [store] lines of a registrar under test: 'sqlite', or 'redis' on a throwaway
    redis-server that stops on leaving."""
    if backend != "redis":
        yield f'backend = "{backend}"'
        return
    server = RedisServer().start()
    try:
        yield f'backend = "redis"\nurl = "{server.url}"'
    finally:
        server.stop()


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="redis-test-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.process = subprocess.Popen(
            [BINARY, "--save", "", "--appendonly", "yes", "--port", str(self.port),
             "--bind", "127.0.0.1", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while not self._answers_ping():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING on port {self.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False
