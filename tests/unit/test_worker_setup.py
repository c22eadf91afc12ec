import gc
import logging

from actors.config import config_from_dict
from actors.ops.worker_setup import worker_setup


def test_a_registrar_worker_logs_as_configured_and_collects_less_often():
    root = logging.getLogger()
    before, level, handlers = gc.get_threshold(), root.level, root.handlers[:]
    try:
        worker_setup(config_from_dict({"ray": {"gc_threshold": 40000},
                                       "log": {"level": "error"}}))()
        assert gc.get_threshold() == (40000, *before[1:])
        assert root.level == logging.ERROR
        gc.set_threshold(*before)
        worker_setup(config_from_dict({"ray": {"gc_threshold": 0}}))()
        assert gc.get_threshold() == before  # 0: Python's own thresholds stay
    finally:
        gc.set_threshold(*before)
        root.setLevel(level)
        root.handlers[:] = handlers
