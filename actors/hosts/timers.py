"""One expiry timer structure per shard for all of its identities (pure: no clock, no asyncio).

Each identity has one deadline: the earliest of its bindings, its reg-event subscriptions and
the end of its UNREGISTERED state (Impu.deadlines); the shard's single timer serves them all.

A heap of ``(deadline, identity)`` tuples with lazy deletion: re-scheduling or cancelling only
updates ``_deadlines``, and a heap entry counts only while it matches its identity's current
deadline. Stale entries are dropped as they surface, and the heap is rebuilt when they outnumber
the live ones, so memory stays within a constant factor of the live timers.
"""
from __future__ import annotations

import heapq


class ExpiryHeap:
    __slots__ = ("_heap", "_deadlines")

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._deadlines: dict[str, float] = {}  # the one live deadline of each identity

    def __len__(self) -> int:
        return len(self._deadlines)

    def schedule(self, identity: str, at: float) -> None:
        """Sets the identity's deadline, replacing any earlier one."""
        if self._deadlines.get(identity) == at:
            return
        self._deadlines[identity] = at
        heapq.heappush(self._heap, (at, identity))
        self._compact_if_sparse()

    def cancel(self, identity: str) -> None:
        if self._deadlines.pop(identity, None) is not None:
            self._compact_if_sparse()

    def due(self, now: float) -> list[str]:
        """Removes and returns the identities due at ``now`` (deadline passed), earliest first."""
        heap, deadlines, expired = self._heap, self._deadlines, []
        while heap and heap[0][0] <= now:
            at, identity = heapq.heappop(heap)
            if deadlines.get(identity) == at:
                del deadlines[identity]
                expired.append(identity)
        return expired

    def next_deadline(self) -> float | None:
        heap, deadlines = self._heap, self._deadlines
        while heap and deadlines.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _compact_if_sparse(self) -> None:
        # Rebuilding costs O(n) and happens only after n stale entries piled up: amortised O(1).
        if len(self._heap) > 2 * len(self._deadlines) + 64:
            self._heap = [(at, identity) for identity, at in self._deadlines.items()]
            heapq.heapify(self._heap)
