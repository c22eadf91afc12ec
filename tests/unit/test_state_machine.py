"""The registration state machine: every transition of the table, and what it refuses."""
from __future__ import annotations

import pytest

from actors.rules.state import (
    TRANSITIONS,
    IllegalTransition,
    RegEvent,
    next_state,
    set_update_event,
)
from actors.vocabulary import RegState

NR, R, U = RegState.NOT_REGISTERED, RegState.REGISTERED, RegState.UNREGISTERED

# The table spelled out once more, by hand: a change to the machine shows up here as well.
EXPECTED = {
    (NR, RegEvent.REGISTER): R,
    (U, RegEvent.REGISTER): R,
    (R, RegEvent.REFRESH): R,
    (R, RegEvent.DEREGISTER): NR,
    (R, RegEvent.EXPIRE): NR,
    (R, RegEvent.NETWORK_DEREGISTER): NR,
    (R, RegEvent.HSS_DEREGISTER): NR,
    (U, RegEvent.HSS_DEREGISTER): NR,
    (NR, RegEvent.ASSIGN_UNREGISTERED): U,
    (U, RegEvent.UNREGISTERED_VALIDITY_LAPSED): NR,
    (NR, RegEvent.SET_REGISTERED): R,
    (R, RegEvent.SET_REGISTERED): R,
    (U, RegEvent.SET_REGISTERED): R,
    (NR, RegEvent.SET_DEREGISTERED): NR,
    (R, RegEvent.SET_DEREGISTERED): NR,
    (U, RegEvent.SET_DEREGISTERED): NR,
    (NR, RegEvent.SET_UNREGISTERED): U,
    (U, RegEvent.SET_UNREGISTERED): U,
}


def test_the_table_is_the_expected_one():
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize("state, event", sorted(EXPECTED, key=lambda k: (k[0], k[1].value)),
                         ids=lambda v: getattr(v, "name", None))
def test_every_transition_of_the_table(state, event):
    assert next_state(state, event) == EXPECTED[(state, event)]


ILLEGAL = sorted(((s, e) for s in RegState for e in RegEvent if (s, e) not in EXPECTED),
                 key=lambda k: (k[0], k[1].value))


@pytest.mark.parametrize("state, event", ILLEGAL, ids=lambda v: getattr(v, "name", None))
def test_every_other_pair_is_refused(state, event):
    with pytest.raises(IllegalTransition, match=f"{event.value} is not allowed in {state.name}"):
        next_state(state, event)


def test_the_refusals_include_the_ones_that_matter():
    assert (R, RegEvent.ASSIGN_UNREGISTERED) in ILLEGAL  # a registered user is served as such
    assert (NR, RegEvent.EXPIRE) in ILLEGAL  # nothing to expire
    assert (R, RegEvent.SET_UNREGISTERED) in ILLEGAL  # a member's registration stands
    assert (U, RegEvent.NETWORK_DEREGISTER) in ILLEGAL


def test_a_member_takes_the_state_its_set_took():
    for set_state in RegState:
        assert next_state(NR, set_update_event(set_state)) == set_state
