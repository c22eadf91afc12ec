from collections import Counter

from actors.rules.routing import SLOTS, jump_hash, shard_of, slot_of


def test_slot_is_stable_across_processes():
    # A fixed expectation: a process-salted hash would not reproduce it.
    assert slot_of("sip:alice@ims.test") == slot_of("sip:alice@ims.test")
    assert 0 <= slot_of("sip:alice@ims.test") < SLOTS
    import subprocess
    import sys
    out = subprocess.run(
        [sys.executable, "-c", "from actors.rules.routing import slot_of; print(slot_of('sip:alice@ims.test'))"],
        capture_output=True, text=True, check=True,
    )
    assert int(out.stdout) == slot_of("sip:alice@ims.test")


def test_identities_spread_evenly_over_shards():
    counts = Counter(shard_of(f"sip:user{i}@ims.test", 4) for i in range(20000))
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 4000


def test_adding_a_shard_moves_few_slots():
    moved = sum(jump_hash(s, 4) != jump_hash(s, 5) for s in range(SLOTS))
    assert moved < SLOTS * 0.3  # about 1/5 should move
    # and every moved slot moves to the new shard
    assert all(jump_hash(s, 5) == 4 for s in range(SLOTS) if jump_hash(s, 4) != jump_hash(s, 5))
