"""The eleven connection states of RFC 9293 section 3.3.2."""

from __future__ import annotations

from enum import Enum


class State(Enum):
    """A connection state; its value and ``str()`` are the RFC's name."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"

    def __str__(self) -> str:
        return self.value

    # Members are singletons compared by identity: hash them so too, in C. (Enum's
    # own __hash__, by name, is a Python call at every dict or set lookup, and
    # _set_state looks one up at every transition.)
    __hash__ = object.__hash__

    @property
    def synchronized(self) -> bool:
        """True once the handshake has completed (RFC 9293's synchronized states)."""
        return self in _SYNCHRONIZED


_SYNCHRONIZED = frozenset(
    {
        State.ESTABLISHED,
        State.FIN_WAIT_1,
        State.FIN_WAIT_2,
        State.CLOSE_WAIT,
        State.CLOSING,
        State.LAST_ACK,
        State.TIME_WAIT,
    }
)


#: The transitions RFC 9293 allows, from each state to the next, that utcp's
#: connections take: figure 5's arcs, plus the text's own (section 3.10):
#: CLOSED from any state on a reset, an abort or a timeout; SYN-RECEIVED to
#: CLOSE-WAIT on a FIN (3.10.7.4, eighth); FIN-WAIT-1 straight to TIME-WAIT
#: when its FIN's ACK comes with the peer's FIN. Two arcs are left out, as no
#: connection takes them: a reset passive open "returns to LISTEN" in the RFC,
#: but here its listener lives on and the connection itself goes to CLOSED; and
#: figure 5's SEND on a passive open (LISTEN to SYN-SENT) is no call utcp offers.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.CLOSED: frozenset({State.LISTEN, State.SYN_SENT}),
    State.LISTEN: frozenset({State.SYN_RECEIVED, State.CLOSED}),
    State.SYN_SENT: frozenset({State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSED}),
    State.SYN_RECEIVED: frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.CLOSE_WAIT,
                                   State.CLOSED}),
    State.ESTABLISHED: frozenset({State.FIN_WAIT_1, State.CLOSE_WAIT, State.CLOSED}),
    State.FIN_WAIT_1: frozenset({State.FIN_WAIT_2, State.CLOSING, State.TIME_WAIT,
                                 State.CLOSED}),
    State.FIN_WAIT_2: frozenset({State.TIME_WAIT, State.CLOSED}),
    State.CLOSE_WAIT: frozenset({State.LAST_ACK, State.CLOSED}),
    State.CLOSING: frozenset({State.TIME_WAIT, State.CLOSED}),
    State.LAST_ACK: frozenset({State.CLOSED}),
    State.TIME_WAIT: frozenset({State.CLOSED}),
}


class IllegalTransition(AssertionError):
    """A connection was about to move between two states RFC 9293 does not join:
    a bug in utcp, raised at once rather than carried on in a state that makes
    no sense."""


class ConnectionStateError(RuntimeError):
    """An application call that the connection's state does not allow.

    (Kept here, not beside Connection: connection.py may be compiled with mypyc,
    whose native classes cannot derive from RuntimeError.)"""
