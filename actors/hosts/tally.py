"""The counts of what a shard holds (``ulscscf.status``, the usrloc statistics), kept as its
identities change rather than counted in a pass: the metrics export asks every 5 s, and a pass
costs about 1 us per identity in the shard's event loop (50 ms at 50,000 identities, every
time), which grows with the user base while the registrar does nothing else.

Each IMPU carries what it adds to the counts (``Impu.counted``); ``recount`` swaps that for
what it adds now. The shard recounts an IMPU whenever a request that held it lets go (every
change, stored or undone after a store failure, is made under one) and when it loads one.
"""
from __future__ import annotations

from actors.rules.impu import Impu, speaks_for_set
from actors.vocabulary import RegState

Shape = tuple[int, int, int]  # (registered identities, contacts, subscriptions) of one IMPU
NOTHING: Shape = (0, 0, 0)


def shape_of(impu: Impu, now: float) -> Shape:
    subscriptions = len(impu.subscriptions)
    if impu.state is not RegState.REGISTERED:
        return 0, 0, subscriptions
    profile = impu.profile
    # A barred member holds its set's bindings but no registered identity of its own.
    registered = 0 if profile and impu.identity in profile.barred else 1
    # One UE binding is one contact, however many members of its set hold a copy.
    contacts = 0
    if speaks_for_set(impu.identity, profile):
        contacts = sum(binding.expires_at > now for binding in impu.bindings.values())
    return registered, contacts, subscriptions


class Tally:
    __slots__ = ("impus", "contacts", "subscriptions", "_shapes")

    def __init__(self) -> None:
        self.impus = self.contacts = self.subscriptions = 0
        # One tuple per distinct shape, shared by every IMPU of that shape: a few dozen in
        # all, so an IMPU's count costs it a pointer, not a tuple of its own.
        self._shapes: dict[Shape, Shape] = {NOTHING: NOTHING}

    def recount(self, impu: Impu, now: float) -> None:
        shape, before = shape_of(impu, now), impu.counted
        if shape != before:
            self._add(before, -1)
            self._add(shape, 1)
            impu.counted = self._shapes.setdefault(shape, shape)

    def clear(self) -> None:
        self.impus = self.contacts = self.subscriptions = 0

    def _add(self, shape: Shape, sign: int) -> None:
        impus, contacts, subscriptions = shape
        self.impus += sign * impus
        self.contacts += sign * contacts
        self.subscriptions += sign * subscriptions
