"""The per-source request bound (actors/hosts/rate_limit.py) with a fake clock, and the
transport core answering 503 + Retry-After or nothing through it."""
from __future__ import annotations

import pytest

from actors.config import config_from_dict
from actors.hosts.rate_limit import ADMIT, DROP, REFUSE, SourceRateLimit


def verdicts(limit: SourceRateLimit, source: str, times: list[float]) -> list[str]:
    return [limit.check(source, now) for now in times]


def test_a_source_above_the_density_is_refused_and_others_are_not():
    limit = SourceRateLimit(density=5, window=2.0)
    burst = verdicts(limit, "192.0.2.1", [0.1 * n for n in range(12)])
    assert burst == [ADMIT] * 10 + [REFUSE] * 2  # 10 in a 2 s window is 5/s; the 11th is over
    assert limit.check("192.0.2.2", 1.2) == ADMIT


def test_the_window_slides_so_a_burst_at_a_window_edge_still_counts():
    limit = SourceRateLimit(density=5, window=2.0)
    verdicts(limit, "192.0.2.1", [1.9] * 10)  # at the very end of the first window
    assert limit.check("192.0.2.1", 2.1) == REFUSE  # 95% of those 10 still weigh
    assert limit.check("192.0.2.1", 5.0) == ADMIT  # a whole quiet window later


def test_refused_requests_count_so_a_flooder_stays_out_until_it_slows_down():
    limit = SourceRateLimit(density=5, window=2.0)
    flood = verdicts(limit, "192.0.2.1", [0.01 * n for n in range(400)])  # 100/s for 4 s
    assert flood[:10] == [ADMIT] * 10 and set(flood[10:]) == {REFUSE}
    assert limit.check("192.0.2.1", 4.5) == REFUSE  # the last window's 200 still weigh
    assert limit.check("192.0.2.1", 8.0) == ADMIT


def test_beyond_the_drop_density_requests_are_dropped():
    limit = SourceRateLimit(density=5, window=1.0, drop_density=10)
    seen = verdicts(limit, "192.0.2.1", [0.0] * 12)
    assert seen == [ADMIT] * 5 + [REFUSE] * 5 + [DROP] * 2


def test_trusted_addresses_and_networks_are_never_limited():
    limit = SourceRateLimit(density=1, window=1.0, trusted=["10.0.0.0/24", "2001:db8::1"])
    assert set(verdicts(limit, "10.0.0.7", [0.0] * 50)) == {ADMIT}
    assert set(verdicts(limit, "2001:db8::1", [0.0] * 50)) == {ADMIT}
    assert verdicts(limit, "10.0.1.7", [0.0] * 2) == [ADMIT, REFUSE]
    assert len(limit) == 1  # trusted sources are not even counted


def test_sources_silent_for_two_windows_are_forgotten():
    limit = SourceRateLimit(density=5, window=1.0)
    for n in range(100):
        limit.check(f"192.0.2.{n}", 0.5)
    assert len(limit) == 100
    limit.check("198.51.100.1", 3.0)
    assert len(limit) == 1


@pytest.mark.parametrize("sip, message", [
    ({"pike_reqs_density_per_sec": -1}, "sip.pike_reqs_density_per_sec must not be negative"),
    ({"pike_reqs_density_per_sec": 10, "pike_drop_density_per_sec": 5},
     "sip.pike_drop_density_per_sec must not be below sip.pike_reqs_density_per_sec"),
    ({"pike_sampling_time_unit": 0}, "sip.pike_sampling_time_unit must be a positive number"),
    ({"pike_trusted": ["pcscf.ims.test"]}, "sip.pike_trusted: 'pcscf.ims.test' is not an address"),
])
def test_bad_pike_keys_are_named(sip, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict({"sip": sip})
