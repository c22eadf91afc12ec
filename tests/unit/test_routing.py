"""Routing: identity -> slot -> shard. The values are pinned: every transport, every restart and
every stored record (SQLite keeps one file per shard) relies on them never changing."""
from __future__ import annotations

from collections import Counter

import pytest

from actors.rules.routing import SLOTS, jump_hash, shard_of, slot_of


@pytest.mark.parametrize(("identity", "slot"), [
    ("sip:alice@ims.test", 1243),
    ("sip:bob@ims.test", 1953),
    ("tel:+15550001", 3861),
    ("sip:user0@ims.test", 2731),
    ("sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org", 2532),
])
def test_slot_of_is_pinned(identity, slot):
    # A literal: a process-salted hash (Python's hash()) could not reproduce it.
    assert slot_of(identity) == slot


@pytest.mark.parametrize(("key", "buckets", "bucket"), [
    (0, 1, 0), (0, 10, 0), (1, 10, 6), (4095, 2, 1), (4095, 16, 1), (123456789, 1000, 294),
    (2**63, 7, 5),
])
def test_jump_hash_is_pinned(key, buckets, bucket):
    assert jump_hash(key, buckets) == bucket


@pytest.mark.parametrize(("identity", "shards"), [
    ("sip:alice@ims.test", [0, 1, 2, 3, 3]),
    ("sip:bob@ims.test", [0, 0, 0, 0, 0]),
    ("tel:+15550001", [0, 0, 0, 0, 5]),
    ("sip:user0@ims.test", [0, 1, 2, 2, 4]),
    ("sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org", [0, 1, 1, 1, 4]),
])
def test_shard_of_is_pinned(identity, shards):
    assert [shard_of(identity, n) for n in (1, 2, 3, 4, 8)] == shards


def test_identities_spread_evenly_over_shards():
    counts = Counter(shard_of(f"sip:user{i}@ims.test", 4) for i in range(20000))
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 4000


def test_adding_a_shard_moves_few_slots():
    moved = sum(jump_hash(s, 4) != jump_hash(s, 5) for s in range(SLOTS))
    assert moved < SLOTS * 0.3  # about 1/5 should move
    # and every moved slot moves to the new shard
    assert all(jump_hash(s, 5) == 4 for s in range(SLOTS) if jump_hash(s, 4) != jump_hash(s, 5))
