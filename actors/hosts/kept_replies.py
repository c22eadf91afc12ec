"""The last reply of each IMPU, kept for retransmissions only as long as RFC 3261 keeps a
server transaction (Timer J, 64*T1): a retransmission reaching another transport gets it
again; after that it is memory for nothing, and the IMPU lets it go."""
from __future__ import annotations

from collections import deque

from actors.rules.impu import Impu

# Replies go in groups a second apart at most: one timer wake per REGISTER would cost more
# than the memory it frees.
GROUPING = 1.0


class KeptReplies:
    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self._queue: deque[tuple[float, Impu, tuple]] = deque()  # deadlines in order

    def __len__(self) -> int:
        return len(self._queue)

    def keep(self, impu: Impu, now: float) -> bool:
        """Called after each REGISTER: its reply goes at now + lifetime, unless replaced.
        True when the queue was empty: the timer must learn of the new deadline."""
        if impu.last_reply is None:
            return False
        self._queue.append((now + self.lifetime, impu, impu.last_reply))
        return len(self._queue) == 1

    def drop_due(self, now: float) -> None:
        queue = self._queue
        while queue and queue[0][0] <= now:
            _, impu, kept = queue.popleft()
            if impu.last_reply is kept:  # a later REGISTER's reply stays for its own time
                impu.last_reply = None

    def next_deadline(self) -> float | None:
        return self._queue[0][0] + GROUPING if self._queue else None
