"""Where an identity lives: a stable hash onto fixed virtual slots, slots onto shards.

Python's ``hash()`` differs per process, so every transport would route differently; blake2b
does not. Jump consistent hashing maps slots onto shards so that adding shard N+1 moves only
about 1/(N+1) of the slots.
"""
from __future__ import annotations

import hashlib

SLOTS = 4096


def slot_of(identity: str) -> int:
    digest = hashlib.blake2b(identity.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % SLOTS


def jump_hash(key: int, buckets: int) -> int:
    """Lamping and Veach's jump consistent hash."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def shard_of(identity: str, shards: int) -> int:
    return jump_hash(slot_of(identity), shards)

