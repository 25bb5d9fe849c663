"""Events the connection hands to the application.

Each is a small immutable value; the shell (endpoint and streams) turns them
into asyncio callbacks and exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Event:
    """Base class of everything :meth:`Connection.events` returns."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """The three-way handshake completed; the connection is ESTABLISHED."""


@dataclass(frozen=True, slots=True)
class DataReceived(Event):
    """In-order bytes from the peer."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfStream(Event):
    """The peer sent FIN: no more data will arrive."""


@dataclass(frozen=True, slots=True)
class FinAcked(Event):
    """The peer acknowledged our FIN: everything we sent has arrived.

    Emitted once, whether or not the peer's own FIN has come.
    """


@dataclass(frozen=True, slots=True)
class Writable(Event):
    """What was written but not yet sent fell to ``Connection.send_low_water``.

    Emitted once each time the application sets that mark (asyncio's
    ``resume_writing``); the mark is then cleared.
    """


@dataclass(frozen=True, slots=True)
class Closed(Event):
    """Both directions finished and our FIN was acknowledged.

    Emitted once, on entering TIME-WAIT or CLOSED by the orderly close; what
    follows (TIME-WAIT) is the connection's business, not the application's.
    """


@dataclass(frozen=True, slots=True)
class Unreachable(Event):
    """An ICMP error says our SYN cannot reach the peer: ``what`` is "host" or
    "network" (destination host or network unreachable). The connection is over,
    as Linux ends a connect() on these hard errors."""

    what: str


@dataclass(frozen=True, slots=True)
class Reset(Event):
    """The peer reset the connection.

    ``refused`` is True when the RST answered our SYN (nobody listening).
    ``after_fin`` is True when the peer's FIN had arrived before the RST: all it
    sent is here, data held while reading was paused included (still delivered
    by ``resume_reading``, then :class:`EndOfStream`); only our sending failed.
    A RST in CLOSING or LAST-ACK is reported this way too: our FIN was never
    acknowledged, and data of ours may not have arrived.
    """

    refused: bool = False
    after_fin: bool = False


class TimeoutReason(str, Enum):
    """Which retries ran out. A ``str``: each compares equal to its value."""

    SYN = "syn"  #: the SYN's (active open)
    SYNACK = "synack"  #: the SYN-ACK's (passive open)
    DATA = "data"  #: data not acknowledged
    FIN = "fin"  #: our FIN not acknowledged
    KEEPALIVE = "keepalive"  #: keepalive probes unanswered
    PERSIST = "persist"  #: zero-window probes unanswered (or the window stayed shut)
    FIN_WAIT_2 = "fin-wait-2"  #: the peer's FIN never came after close()
    MEMORY = "memory"  #: the stack, short of memory, reset a connection left unread

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class TimedOut(Event):
    """Retries ran out; ``reason`` says which."""

    reason: TimeoutReason
