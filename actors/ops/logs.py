"""Logging of every registrar process, from ``[log]``: the ``scscf serve`` driver configures
itself with ``configure``, and each Ray worker running an actor with the same call through
actors/ops/worker_setup.py. Text, or one JSON object per line."""
from __future__ import annotations

import json
import logging
import os
import sys

from actors.config import LogConfig

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                 "level": record.levelname, "logger": record.name, "pid": record.process,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(log: LogConfig) -> None:
    """The root logger writes to stderr at ``log.level``; ``log.modules`` set levels of their
    own (a logger and everything under it: "actors.hosts" covers actors.hosts.shard_core)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if log.format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log.level.upper())
    for name, level in log.modules.items():
        logging.getLogger(name).setLevel(level.upper())


def prepare_ray_driver(log: LogConfig) -> None:
    """Before Ray is imported: for JSON lines, the lines actors log reach the driver's stderr
    as they are, without Ray's "(ImpuShard pid=N)" prefix or its "[repeated 3x]" folding."""
    if log.format == "json":
        os.environ.setdefault("RAY_DISABLE_WORKER_LOG_PREFIX", "1")
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
