"""Expiry policy of ims_registrar_scscf, shared by registrations and reg-event subscriptions."""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class ExpiresPolicy:
    default: int
    range_percent: int  # default is drawn from [default - range%, default + range%]
    minimum: int  # 0 disables the lower bound
    maximum: int  # 0 disables the upper bound

    def choose(self, requested: int | None, rng: random.Random = random._inst) -> int:
        """Seconds granted for a requested value (None: the client asked for nothing).

        Zero is a removal and is never clamped; other values are raised to the minimum and
        lowered to the maximum, as Kamailio's module does (it answers no 423).
        """
        if requested is None:
            requested = self.default
            if self.range_percent:
                spread = self.default * self.range_percent // 100
                requested = rng.randint(self.default - spread, self.default + spread)
        if requested == 0:
            return 0
        if self.minimum and requested < self.minimum:
            requested = self.minimum
        if self.maximum and requested > self.maximum:
            requested = self.maximum
        return requested
