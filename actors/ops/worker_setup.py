"""What each Ray worker that runs a registrar actor does first (Ray's
worker_process_setup_hook): log as ``[log]`` says, as the driver does, and collect garbage as
``[ray] gc_threshold`` says."""
from __future__ import annotations

import gc
from collections.abc import Callable

from actors.config import Config
from actors.ops.logs import configure


def worker_setup(config: Config) -> Callable[[], None]:
    log, threshold = config.log, config.ray.gc_threshold

    def set_up_registrar_worker() -> None:  # a named function: Ray exports it by its name
        configure(log)
        collect_less_often(threshold)
    return set_up_registrar_worker


def collect_less_often(threshold: int) -> None:
    """Python collects its youngest generation every 700 allocations, and each collection of
    an older one walks every identity a shard holds. Most of what a REGISTER allocates is
    freed by reference counting anyway, so a larger threshold loses little memory."""
    if threshold:
        gc.set_threshold(threshold, *gc.get_threshold()[1:])
