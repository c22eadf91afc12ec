"""The registration state machine of one public identity, as data (pure).

Every change of an IMPU's RegState goes through ``next_state``: the table below is the whole of
what may happen to a registration, and anything it does not list is refused.

- A REGISTER that leaves bindings registers (TS 24.229 5.4.1.2) or refreshes; one that removes
  the last binding de-registers (5.4.1.4). The last binding expiring de-registers too.
- The network de-registers a registered identity (``unregister``, TS 24.229 5.4.1.5); an
  RTR from the HSS also ends an UNREGISTERED one (TS 29.228 6.1.3, REMOVE_S-CSCF).
- A terminating request for an identity not registered assigns it UNREGISTERED (SAR
  UNREGISTERED_USER, TS 24.229 5.4.3.3), which lasts ``unreg_validity`` seconds.
- Members of an implicit registration set share one state (TS 23.228 5.2.1a): a member takes
  the state another member's change gave the set (``set_update_event``). A set turning
  UNREGISTERED does not take a member that is registered: that registration stands.
"""
from __future__ import annotations

from enum import Enum

from actors.vocabulary import RegState


class RegEvent(Enum):
    REGISTER = "register"  # a REGISTER leaves bindings on an identity not registered
    REFRESH = "refresh"  # a REGISTER leaves bindings on a registered identity
    DEREGISTER = "deregister"  # a REGISTER removes the last binding
    EXPIRE = "expire"  # the last binding expired
    NETWORK_DEREGISTER = "network_deregister"  # unregister(): the operator or the HSS asked
    HSS_DEREGISTER = "hss_deregister"  # an RTR: registered or UNREGISTERED, the HSS ends it
    ASSIGN_UNREGISTERED = "assign_unregistered"  # SAR UNREGISTERED_USER succeeded
    UNREGISTERED_VALIDITY_LAPSED = "unregistered_validity_lapsed"
    SET_REGISTERED = "set_registered"  # another member registered or refreshed the set
    SET_DEREGISTERED = "set_deregistered"  # another member's change ended the set's registration
    SET_UNREGISTERED = "set_unregistered"  # another member was assigned UNREGISTERED


_NR, _R, _U = RegState.NOT_REGISTERED, RegState.REGISTERED, RegState.UNREGISTERED

TRANSITIONS: dict[tuple[RegState, RegEvent], RegState] = {
    (_NR, RegEvent.REGISTER): _R,
    (_U, RegEvent.REGISTER): _R,
    (_R, RegEvent.REFRESH): _R,
    (_R, RegEvent.DEREGISTER): _NR,
    (_R, RegEvent.EXPIRE): _NR,
    (_R, RegEvent.NETWORK_DEREGISTER): _NR,
    (_R, RegEvent.HSS_DEREGISTER): _NR,
    (_U, RegEvent.HSS_DEREGISTER): _NR,
    (_NR, RegEvent.ASSIGN_UNREGISTERED): _U,
    (_U, RegEvent.UNREGISTERED_VALIDITY_LAPSED): _NR,
    (_NR, RegEvent.SET_REGISTERED): _R,
    (_R, RegEvent.SET_REGISTERED): _R,
    (_U, RegEvent.SET_REGISTERED): _R,
    (_NR, RegEvent.SET_DEREGISTERED): _NR,
    (_R, RegEvent.SET_DEREGISTERED): _NR,
    (_U, RegEvent.SET_DEREGISTERED): _NR,
    (_NR, RegEvent.SET_UNREGISTERED): _U,
    (_U, RegEvent.SET_UNREGISTERED): _U,
}

# The event a member sees when its set takes a state (what a SetUpdate carries).
_SET_EVENTS = {_R: RegEvent.SET_REGISTERED, _NR: RegEvent.SET_DEREGISTERED,
               _U: RegEvent.SET_UNREGISTERED}


class IllegalTransition(ValueError):
    """An event the state machine does not allow in the identity's current state."""


def next_state(state: RegState, event: RegEvent) -> RegState:
    """The state ``event`` leads to from ``state``; IllegalTransition when it may not happen."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(f"{event.value} is not allowed in {state.name}") from None


def set_update_event(set_state: RegState) -> RegEvent:
    """The event of a member whose implicit set took ``set_state``."""
    return _SET_EVENTS[set_state]
