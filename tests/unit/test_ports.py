"""The test harness's free ports: one process never gets the same port twice."""
import random

import pytest

from scripts.harness import ports


def test_a_port_handed_out_once_is_not_handed_out_again(monkeypatch):
    monkeypatch.setattr(ports, "_handed_out", set())
    first, second = ports.free_port(), ports.free_port()
    monkeypatch.setattr(ports, "_handed_out", set())
    # The random pick lands on one port three times before another: the second and third
    # picks of it are skipped although nothing binds it in between.
    picks = iter([first, first, first, second])
    monkeypatch.setattr(random, "randint", lambda low, high: next(picks))
    assert [ports.free_port(), ports.free_port()] == [first, second]


def test_every_port_handed_out_is_an_error_not_a_hang(monkeypatch):
    monkeypatch.setattr(ports, "_handed_out", set(range(ports.LOWEST, ports.HIGHEST + 1)))
    with pytest.raises(RuntimeError, match="every port from 20000 to 32767 was handed out"):
        ports.free_port()
