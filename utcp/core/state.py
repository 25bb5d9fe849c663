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


class ConnectionStateError(RuntimeError):
    """An application call that the connection's state does not allow.

    (Kept here, not beside Connection: connection.py may be compiled with mypyc,
    whose native classes cannot derive from RuntimeError.)"""
