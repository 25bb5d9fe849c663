"""The hook through which a connection reports what it does (tracing, ladders)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .connection import Connection
    from .state import State
    from .wire import Segment


class Observer(Protocol):
    """Receives every state transition and every segment of a connection.

    Any method may be left out of an implementation by subclassing
    :class:`NullObserver`. Calls happen synchronously inside the core, in the
    middle of its work: an observer looks, and changes nothing of the
    connection or its stack (what it sees would then not be what was done).
    """

    def state_changed(
        self, conn: Connection, old: State, new: State, cause: str, now: float
    ) -> None: ...

    def segment_sent(self, conn: Connection, seg: Segment, now: float) -> None: ...

    def segment_received(self, conn: Connection, seg: Segment, now: float) -> None: ...


class NullObserver:
    """An observer that ignores everything; subclass it and override what you need."""

    def state_changed(
        self, conn: Connection, old: State, new: State, cause: str, now: float
    ) -> None:
        pass

    def segment_sent(self, conn: Connection, seg: Segment, now: float) -> None:
        pass

    def segment_received(self, conn: Connection, seg: Segment, now: float) -> None:
        pass
