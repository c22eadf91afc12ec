"""How many reg-event subscriptions one identity, and one watcher on it, may hold.

Kamailio's ims_registrar_scscf has no such bound: every SUBSCRIBE a UE or P-CSCF may send opens
a dialog, and each costs memory, store space and a NOTIFY on every registration change. Here
a new subscription beyond ``per_identity`` on the identity is answered 503 with Retry-After
(RFC 3261 21.5.4: the allowance frees as subscriptions end, so the watcher, perhaps the
P-CSCF, should come back: Retry-After is when the first of them expires); one beyond
``per_watcher`` of the same watcher URI is 403 (RFC 6665 4.2.1.1: a policy refusal of that
subscriber, who holds its share and should refresh the dialogs it has rather than open more).
The per-watcher bound keeps one watcher from taking the identity's whole allowance and
crowding out the others (its P-CSCF, its other devices). Refreshes are never refused.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from actors.reg_event.subscription import Subscription
from actors.vocabulary import Reply


@dataclass(frozen=True, slots=True)
class SubscriptionLimits:
    per_identity: int = 0  # 0: unbounded
    per_watcher: int = 0


def refuse_new(limits: SubscriptionLimits, held: Iterable[Subscription], watcher: str,
               now: float) -> Reply | None:
    """The answer to a new subscription by ``watcher`` on an identity holding ``held``, or
    None when it may be created."""
    held = list(held)
    if limits.per_watcher and sum(s.watcher == watcher for s in held) >= limits.per_watcher:
        return Reply(403, "Too many subscriptions from this watcher")
    if limits.per_identity and len(held) >= limits.per_identity:
        first_free = min(s.expires_at for s in held)
        retry = max(1, math.ceil(first_free - now))
        return Reply(503, "Too many subscriptions to this identity",
                     [("Retry-After", str(retry))])
    return None
