import random

from actors.rules.expires import ExpiresPolicy


def test_requested_value_is_kept_inside_bounds():
    policy = ExpiresPolicy(default=3600, range_percent=0, minimum=60, maximum=7200)
    assert policy.choose(600) == 600


def test_below_minimum_is_raised_and_above_maximum_is_lowered():
    policy = ExpiresPolicy(default=3600, range_percent=0, minimum=60, maximum=7200)
    assert policy.choose(3) == 60
    assert policy.choose(100000) == 7200


def test_zero_means_remove_and_is_never_clamped():
    policy = ExpiresPolicy(default=3600, range_percent=0, minimum=60, maximum=7200)
    assert policy.choose(0) == 0


def test_zero_bounds_disable_clamping():
    policy = ExpiresPolicy(default=3600, range_percent=0, minimum=0, maximum=0)
    assert policy.choose(1) == 1
    assert policy.choose(10**7) == 10**7


def test_default_applies_when_nothing_requested():
    policy = ExpiresPolicy(default=1800, range_percent=0, minimum=60, maximum=0)
    assert policy.choose(None) == 1800


def test_default_below_minimum_is_raised():
    policy = ExpiresPolicy(default=30, range_percent=0, minimum=60, maximum=0)
    assert policy.choose(None) == 60


def test_default_range_spreads_within_percent():
    policy = ExpiresPolicy(default=1000, range_percent=30, minimum=0, maximum=0)
    rng = random.Random(7)
    values = {policy.choose(None, rng) for _ in range(500)}
    assert min(values) >= 700 and max(values) <= 1300
    assert len(values) > 50  # really spread, not a constant
