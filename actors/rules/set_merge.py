"""Bindings of an implicit registration set changed through several members at once (pure).

Every member of a set holds the set's bindings (TS 23.228 5.2.1a), and a REGISTER through one
member reaches the others as a SetUpdate, applied outside their mailboxes. Two devices
registering through two members at once would each send the set as they saw it, and the last
to arrive would erase the other's binding. So a REGISTER sends what it changed instead, the
bindings it wrote and the ones it ended, and every member (the registering one too, which may
have taken another member's update while it waited for the HSS) merges that into what it
holds. Changes to different bindings commute; for one binding, a later REGISTER of the same UA
(same Call-ID, higher CSeq, RFC 3261 10.3) wins whatever the order of arrival.
"""
from __future__ import annotations

from actors.vocabulary import Binding


def merged(held: dict[str, Binding], written: dict[str, Binding], ended: dict[str, Binding],
           now: float) -> dict[str, Binding]:
    """The live bindings of ``held`` with a change applied: ``written`` ones added or replaced,
    ``ended`` ones (as the change saw them) removed, unless what is held is a later write of
    that UA."""
    out = {key: b for key, b in held.items() if b.expires_at > now}
    for key, seen in ended.items():
        current = out.get(key)
        if current is not None and not later(current, seen):
            del out[key]
    for key, binding in written.items():
        current = out.get(key)
        if current is None or not later(current, binding):
            out[key] = binding
    return out


def written_by(plan: dict[str, Binding], before: dict[str, Binding]) -> dict[str, Binding]:
    """The bindings of ``plan`` a REGISTER wrote: new, or not the ones it found."""
    return {key: b for key, b in plan.items() if before.get(key) is not b}


def later(a: Binding, b: Binding) -> bool:
    """Whether ``a`` comes from a later REGISTER of the same UA than ``b``."""
    return a.call_id == b.call_id and a.cseq > b.cseq
