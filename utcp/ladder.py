"""Ladder diagrams: a connection pair's segments and states, drawn as textbooks do.

A :class:`Ladder` hands out one observer per side. Give them to the two ends of a
connection (or to just one end) and :meth:`Ladder.render` draws every segment as
an arrow from sender to receiver, labelled with its flags, sequence number,
acknowledgment number (when ACK is set) and payload length (when non-zero), and
writes the state each side enters beside its column::

    from utcp.ladder import Ladder

    ladder = Ladder("client", "server")
    client = Connection(..., observer=ladder.observer("client"))
    server = Connection(..., observer=ladder.observer("server"))
    ...  # run the pair
    print(ladder.render())

which prints (sequence numbers relative to each side's ISN)::

               client                                               server
               CLOSED                                               LISTEN
        SYN-SENT |--SYN seq=0---------------------------------------->| SYN-RECEIVED
     ESTABLISHED |<------------------------------SYN,ACK seq=0 ack=1--|
                 |--ACK seq=1 ack=1---------------------------------->| ESTABLISHED

The second line holds each side's state before its first transition; a side
whose first transition is CLOSED -> LISTEN (a server) starts there in LISTEN.

As in RFC 9293's figures, a side's new state stands on the row of the segment
that caused it (at the arrow's head) or that it sent on entering it (at the
arrow's tail); a state with no such segment gets a row of its own. A state
entered while a received segment is processed stands at that segment's arrow
even when later arrows (segments sent while it was in flight) are drawn below
it, unless that would put the side's states out of order top to bottom.
Transitions made by the application (connect, listen, close, abort) or by a
timer are never put at the head of an arrow. A segment that one side sent and
the other received is one arrow. A segment only seen arriving (its sender is
not observed) is drawn from the unobserved side. When both sides are observed,
a segment that was sent but not received by the time of :meth:`Ladder.render`
(lost, or still in flight) is drawn as an arrow that stops short with an ``X``.

Live mode, for a command-line trace: ``Ladder(..., live=print)`` calls
``live(line)`` with each line as soon as it can be drawn. Since a live line is
final once printed, live mode puts each event on a row of its own (an arrow is
drawn when its segment is sent, or when it arrives from an unobserved side),
prints no line of initial states (a server's LISTEN gets a row) and cannot mark
losses; :meth:`Ladder.render` still returns the compact picture.

Every line is at most ``width`` columns, with no trailing spaces. Each observer
is meant for one connection. The ladder keeps every event for :meth:`render`,
so it is for tracing exchanges a person will read, not bulk transfers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .core.observer import NullObserver
from .core.wire import ACK, SYN, flag_names

if TYPE_CHECKING:
    from .core.observer import Observer
    from .core.state import State
    from .core.wire import Segment

__all__ = ["Ladder"]

_MOD = 1 << 32
_STATE_WIDTH = len("SYN-RECEIVED")  # the longest RFC 9293 state name
_TIME_WIDTH = 9  # "%8.3f " margin when times are shown
_MIN_INNER = 16  # narrowest arrow we agree to draw

# Causes the core reports for transitions made by an application call. They
# follow no received segment, even when the side's last event was an arrival,
# and the core makes them before sending what they send.
_APP_CAUSES = frozenset({"connect", "listen", "close", "close before connected", "abort"})

# Ranks of the sources an ISN is learned from: a later source of equal or higher
# rank replaces an earlier one.
_FROM_SYN, _FROM_PEER_IRS, _FROM_OWN_ISS = 1, 2, 3


@dataclass(frozen=True, slots=True)
class _Seg:
    """What the ladder keeps of a segment (a copy: the core may reuse its objects)."""

    flags: int
    seq: int
    ack: int
    length: int
    window: int

    @property
    def key(self) -> tuple[int, int, int, int]:
        return (self.flags, self.seq, self.ack, self.length)


@dataclass(slots=True)
class _Arrow:
    sender: int  # 0 left, 1 right
    seg: _Seg
    sent_at: float
    received_at: float | None = None
    inferred: bool = False  # seen only arriving: the sender is not observed
    row: int = -1  # index of its row (in the builder that drew it)


@dataclass(slots=True)
class _Row:
    now: float
    states: list[str | None] = field(default_factory=lambda: [None, None])
    arrow: _Arrow | None = None
    timed: bool = False  # carries a timestamp (rows before the first segment do not)


@dataclass(frozen=True, slots=True)
class _Event:
    kind: str  # "state", "sent", "received"
    side: int
    now: float
    state: str | None = None
    seg: _Seg | None = None
    app: bool = False  # a state change made by an application call
    header: bool = False  # the initial CLOSED -> LISTEN, shown in the header by render()


class _Builder:
    """Turns events into rows; with ``merge``, packs a state onto its segment's row."""

    def __init__(
        self, merge: bool, observed: list[bool], on_row: Callable[[_Row], None] | None = None
    ) -> None:
        self.merge = merge
        self.observed = observed
        self.on_row = on_row
        self.rows: list[_Row] = []
        self.t0: float | None = None
        self._in_flight: tuple[list[_Arrow], list[_Arrow]] = ([], [])
        # Per side: the arrow of the segment it received last, while its state
        # changes may still be that segment's doing (until its next other event).
        self._cause: list[_Arrow | None] = [None, None]
        # Per side: the index of the last row holding one of its states.
        self._state_row = [-1, -1]

    def feed(self, ev: _Event) -> None:
        cause, self._cause[ev.side] = self._cause[ev.side], None
        if ev.kind == "state":
            assert ev.state is not None
            self._state(ev.side, ev.state, ev.now, None if ev.app else cause, ev.app)
        else:
            assert ev.seg is not None
            if self.t0 is None:
                self.t0 = ev.now
            if ev.kind == "sent":
                self._sent(ev.side, ev.seg, ev.now)
            else:
                self._received(ev.side, ev.seg, ev.now)

    def _add(self, row: _Row) -> None:
        row.timed = row.timed or self.t0 is not None
        if row.arrow is not None:
            row.arrow.row = len(self.rows)
        for side in (0, 1):
            if row.states[side] is not None:
                self._state_row[side] = len(self.rows)
        self.rows.append(row)
        if self.on_row is not None:
            self.on_row(row)

    def _last(self) -> _Row | None:
        return self.rows[-1] if self.merge and self.rows else None

    def _state(self, side: int, state: str, now: float, cause: _Arrow | None, app: bool) -> None:
        # An application call changes state before it sends, so its state takes
        # a row of its own, which a segment it then sends joins (see _sent).
        if self.merge and not app:
            if cause is not None:
                # At the head of the arrow of the segment being processed, if that
                # slot is free and no later row holds a state of this side yet.
                row = self.rows[cause.row]
                if (
                    cause.received_at == now
                    and cause.row > self._state_row[side]
                    and row.states[side] is None
                ):
                    row.states[side] = state
                    self._state_row[side] = cause.row
                    return
            elif (row := self.rows[-1] if self.rows else None) is not None:
                # At the tail of a segment it has just sent (reported before the state).
                a = row.arrow
                if (
                    a is not None
                    and row.states[side] is None
                    and a.sender == side
                    and a.received_at is None
                    and a.sent_at == now
                ):
                    row.states[side] = state
                    self._state_row[side] = len(self.rows) - 1
                    return
        row = _Row(now)
        row.states[side] = state
        self._add(row)

    def _sent(self, side: int, seg: _Seg, now: float) -> None:
        arrow = _Arrow(side, seg, now)
        if self.observed[1 - side]:
            self._in_flight[side].append(arrow)
        row = self._last()
        if (
            row is not None
            and row.arrow is None
            and row.now == now
            and row.states[side] is not None
            and row.states[1 - side] is None
        ):
            row.arrow = arrow
            row.timed = True
            arrow.row = len(self.rows) - 1
            return
        self._add(_Row(now, arrow=arrow))

    def _received(self, side: int, seg: _Seg, now: float) -> None:
        sender = 1 - side
        flight = self._in_flight[sender]
        # Newest first: when an original and its retransmission look alike, the
        # one that arrives is more likely the later (the original was lost).
        for i in range(len(flight) - 1, -1, -1):
            if flight[i].seg.key == seg.key:
                arrow = flight.pop(i)
                arrow.received_at = now
                self._cause[side] = arrow
                return
        arrow = _Arrow(sender, seg, now, now, inferred=True)
        self._add(_Row(now, arrow=arrow))
        self._cause[side] = arrow


class _SideObserver(NullObserver):
    """The observer of one side of a :class:`Ladder`."""

    def __init__(self, ladder: Ladder, side: int) -> None:
        self._ladder = ladder
        self._side = side

    def state_changed(self, conn: Any, old: State, new: State, cause: str, now: float) -> None:
        ev = _Event("state", self._side, now, str(new), app=cause in _APP_CAUSES)
        self._ladder._record(self._side, conn, ev, old)

    def segment_sent(self, conn: Any, seg: Segment, now: float) -> None:
        self._ladder._record(self._side, conn, _Event("sent", self._side, now, seg=_copy(seg)))

    def segment_received(self, conn: Any, seg: Segment, now: float) -> None:
        ev = _Event("received", self._side, now, seg=_copy(seg))
        self._ladder._record(self._side, conn, ev)


def _copy(seg: Segment) -> _Seg:
    return _Seg(seg.flags, seg.seq, seg.ack, len(seg.payload), seg.window)


class Ladder:
    """A ladder diagram of one connection pair.

    ``left`` and ``right`` name the two columns. With ``relative`` (the default),
    seq is shown relative to the sender's ISN and ack relative to the receiver's
    (each side's ISN comes from its connection's ``iss``, or for a side that is
    not observed, from its peer's ``irs`` or the SYN it sends); numbers whose ISN
    is not known yet are shown absolute. ``window`` adds ``win=`` to labels,
    ``times`` adds a left margin of seconds since the first segment. ``live``,
    if given, is called with each line as soon as it can be drawn.

    With ``settle`` (for a ladder whose two sides are both observed, as in a
    demo of both ends in one process), live lines are those :meth:`render`
    draws, each passed to ``live`` once nothing still to come can change it: no
    segment drawn on it or above it is in flight between the sides (for more
    than ``settle_after`` seconds), and no state it may hold is still to be
    reported. Call :meth:`flush_live` at the end for the last lines. The live
    output is then the compact picture, states on the rows of their causes.
    """

    def __init__(
        self,
        left: str = "client",
        right: str = "server",
        *,
        relative: bool = True,
        width: int = 80,
        window: bool = False,
        times: bool = False,
        live: Callable[[str], object] | None = None,
        settle: bool = False,
        settle_after: float = 1.0,
    ) -> None:
        self.names = (left, right)
        self.relative = relative
        self.width = width
        self.window = window
        self.times = times
        self._margin = _TIME_WIDTH if times else 0
        self._lcol = self._margin + _STATE_WIDTH + 1
        self._rcol = width - 2 - _STATE_WIDTH
        self._inner = self._rcol - self._lcol - 1
        if self._inner < _MIN_INNER:
            raise ValueError(f"width {width} leaves no room for arrows")
        self._events: list[_Event] = []
        self._observed = [False, False]
        self._initial: list[str | None] = [None, None]
        self._seen = [False, False]
        self._isn: list[int | None] = [None, None]
        self._isn_rank = [0, 0]
        self._live = live
        self._live_builder: _Builder | None = None
        self._settle = settle and live is not None
        self._settle_after = settle_after
        self._settled = 0  # rows of the settling builder passed to live so far
        if self._settle:
            self._live_builder = _Builder(True, self._observed)
        elif live is not None:
            self._live_builder = _Builder(False, self._observed, self._emit)

    # ------------------------------------------------------------------ public

    def observer(self, side: str) -> Observer:
        """The observer for ``side``: "left", "right", or one of the two names."""
        if side in ("left", self.names[0]):
            i = 0
        elif side in ("right", self.names[1]):
            i = 1
        else:
            raise ValueError(f"side must be 'left', 'right' or one of {self.names}, not {side!r}")
        self._observed[i] = True
        return _SideObserver(self, i)

    def render(self) -> str:
        """The whole diagram so far, one string of lines joined by newlines."""
        builder = _Builder(True, self._observed)
        for ev in self._events:
            if not ev.header:
                builder.feed(ev)
        lines = [self._pair(*self.names)]
        if self._initial != [None, None]:
            lines.append(self._pair(self._initial[0] or "", self._initial[1] or ""))
        lines += [self._line(row, builder.t0, final=True) for row in builder.rows]
        return "\n".join(lines)

    # ---------------------------------------------------------------- recording

    def _record(self, side: int, conn: Any, ev: _Event, old: State | None = None) -> None:
        if not self._seen[side]:
            self._seen[side] = True
            first = old if old is not None else getattr(conn, "state", None)
            self._initial[side] = None if first is None else str(first)
            if self._initial[side] == "CLOSED" and ev.state == "LISTEN":
                # A server's connection is made listening: start it there. (Live
                # mode keeps the row: it does not print the initial states.)
                self._initial[side] = "LISTEN"
                ev = replace(ev, header=True)
        self._learn(side, getattr(conn, "iss", None), _FROM_OWN_ISS)
        self._learn(1 - side, getattr(conn, "irs", None), _FROM_PEER_IRS)
        if ev.seg is not None and ev.seg.flags & SYN:
            sender = side if ev.kind == "sent" else 1 - side
            self._learn(sender, ev.seg.seq, _FROM_SYN)
        self._events.append(ev)
        if self._settle:
            if not ev.header:
                assert self._live_builder is not None
                self._live_builder.feed(ev)
                self._emit_settled(ev.now)
        elif self._live_builder is not None:
            if len(self._events) == 1:
                self._emit_line(self._pair(*self.names))
            self._live_builder.feed(ev)

    def flush_live(self) -> None:
        """With ``settle``: pass ``live`` every line not yet given, settled or not."""
        if self._settle:
            self._emit_settled(None)

    def _emit_settled(self, now: float | None) -> None:
        b = self._live_builder
        assert b is not None
        end = len(b.rows)
        if now is not None:
            # The last row may still take a state (at the tail of its arrow); the
            # row of a segment still in flight may take its receiver's state, and
            # so may that of a segment whose receiver is still processing it.
            end -= 1
            for flight in b._in_flight:
                for arrow in flight:
                    if now - arrow.sent_at <= self._settle_after:
                        end = min(end, arrow.row)
            for cause in b._cause:
                if cause is not None:
                    end = min(end, cause.row)
        if end <= self._settled:
            return
        if self._settled == 0:
            self._emit_line(self._pair(*self.names))
            if self._initial != [None, None]:
                self._emit_line(self._pair(self._initial[0] or "", self._initial[1] or ""))
        for row in b.rows[self._settled:end]:
            self._emit_line(self._line(row, b.t0, final=True))
        self._settled = end

    def _learn(self, side: int, isn: object, rank: int) -> None:
        if isinstance(isn, int) and not isinstance(isn, bool) and rank >= self._isn_rank[side]:
            self._isn[side] = isn
            self._isn_rank[side] = rank

    def _emit(self, row: _Row) -> None:
        assert self._live_builder is not None
        self._emit_line(self._line(row, self._live_builder.t0, final=False))

    def _emit_line(self, line: str) -> None:
        assert self._live is not None
        self._live(line)

    # ------------------------------------------------------------------ drawing

    def _pair(self, left: str, right: str) -> str:
        """``left`` centred on the left column and ``right`` on the right one."""
        w, lcol, rcol = self.width, self._lcol, self._rcol
        left = left[: max(0, rcol - lcol)]
        lstart = max(0, lcol - (len(left) - 1) // 2)
        lend = lstart + len(left)
        right = right[: max(0, w - lend - 1)]
        rstart = max(lend + 1, min(rcol - (len(right) - 1) // 2, w - len(right)))
        line = (" " * lstart + left).ljust(rstart) + right
        return line[:w].rstrip()

    def _line(self, row: _Row, t0: float | None, final: bool) -> str:
        margin = ""
        if self.times:
            if row.timed and t0 is not None:
                t = row.now - t0
                margin = f"{t:8.3f} " if abs(t) < 1e4 else f"{t:8.0f} "
            margin = margin[-_TIME_WIDTH:].rjust(_TIME_WIDTH)
        lstate = (row.states[0] or "")[:_STATE_WIDTH]
        rstate = (row.states[1] or "")[:_STATE_WIDTH]
        inner = " " * self._inner if row.arrow is None else self._arrow(row.arrow, final)
        line = f"{margin}{lstate:>{_STATE_WIDTH}} |{inner}|"
        if rstate:
            line += " " + rstate
        return line.rstrip()

    def _arrow(self, a: _Arrow, final: bool) -> str:
        n = self._inner
        label = self._label(a, n - 5)
        lost = final and a.received_at is None and not a.inferred and self._observed[1 - a.sender]
        if lost:
            head, length = "X", max(len(label) + 4, n * 2 // 3)
        else:
            head, length = (">" if a.sender == 0 else "<"), n
        dashes = "-" * (length - len(label) - 3)
        if a.sender == 0:
            return ("--" + label + dashes + head).ljust(n)
        return (head + dashes + label + "--").rjust(n)

    def _label(self, a: _Arrow, room: int) -> str:
        """The arrow's label in at most ``room`` characters, dropping whole fields
        from the end (win, len, ack) and marking the cut with ".." if it is long."""
        seg = a.seg
        receiver = 1 - a.sender
        parts = [flag_names(seg.flags) or "none", f"seq={self._rel(seg.seq, a.sender)}"]
        if seg.flags & ACK:
            parts.append(f"ack={self._rel(seg.ack, receiver)}")
        if seg.length:
            parts.append(f"len={seg.length}")
        if self.window:
            parts.append(f"win={seg.window}")
        label = " ".join(parts)
        while len(label) > room and len(parts) > 1:
            parts.pop()
            label = " ".join(parts) + " .."
        return label[:room]

    def _rel(self, n: int, side: int) -> int:
        isn = self._isn[side]
        if not self.relative or isn is None:
            return n
        return (n - isn) % _MOD
