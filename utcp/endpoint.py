"""The endpoint: a :class:`~utcp.core.stack.Stack` on one asyncio datagram socket.

It moves datagrams and time, nothing else: what arrives goes into the stack with
the loop's time, what the stack wants sent goes out, the stack's events go to
each connection's owner (its transport), and one loop timer wakes the stack at
its next deadline. Every TCP decision is the stack's.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from asyncio import selector_events
from collections.abc import Callable
from typing import Any, Protocol

from .core.config import Options
from .core.connection import Connection
from .core.events import Connected, Event
from .core.observer import Observer
from .core.stack import Address, Listener, Stack
from .core.state import State
from .core.wire import Segment
from .datagram import BatchedDatagramTransport, enlarge_buffers, open_datagram_socket


class ConnectionOwner(Protocol):
    """What the endpoint tells the application side of a connection."""

    def handle_events(self, events: list[Event]) -> None:
        """Events of the connection, in order."""

    def endpoint_closed(self) -> None:
        """The socket closed under a connection that was still open."""


_CLOSED = State.CLOSED  # (an Enum class lookup is slow in CPython 3.11)
_TIME_WAIT = State.TIME_WAIT

# The errno of a failed send, or of an ICMP error, by kind of destination unreachable.
_UNREACHABLE = {errno.ECONNREFUSED: "port", errno.EHOSTUNREACH: "host",
                errno.ENETUNREACH: "network"}

# Application calls whose segments wait for the end of the application's turn
# (see Endpoint.flush): the call that makes this many sends them all, and the
# count starts again. Sent in batches, segments cost fewer system calls on both
# sides; sent only at the turn's end, the peer would idle until then (64
# connections in flight, compiled core, uvloop, 5 s runs: 16 gave 12,700-12,900
# connections a second, a whole turn at once 10,400-11,200, and each call
# sending at once, as before, 10,500-10,600).
TURN_BATCH = 16


def check_observer(observer: object) -> None:
    """Raise TypeError unless ``observer`` is None or has the observer methods."""
    if observer is None:
        return
    missing = [name for name in ("state_changed", "segment_sent", "segment_received")
               if not callable(getattr(observer, name, None))]
    if missing:
        raise TypeError(f"observer must have state_changed, segment_sent and segment_received "
                        f"methods (subclass utcp.NullObserver); {observer!r} lacks "
                        f"{', '.join(missing)}")


class _GuardedObserver:
    """Passes every call on to the application's observer.

    The observer runs inside the state machine: were its exception to propagate,
    the connection would stop halfway through a transition. One that raises is
    reported through the loop's exception handler instead and is no longer called
    for that connection, which goes on untraced.
    """

    __slots__ = ("inner", "_loop")

    def __init__(self, inner: Observer, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = inner
        self._loop = loop

    def state_changed(self, conn: Connection, old: State, new: State, cause: str,
                      now: float) -> None:
        try:
            self.inner.state_changed(conn, old, new, cause, now)
        except Exception as exc:
            self._failed(conn, exc)

    def segment_sent(self, conn: Connection, seg: Segment, now: float) -> None:
        try:
            self.inner.segment_sent(conn, seg, now)
        except Exception as exc:
            self._failed(conn, exc)

    def segment_received(self, conn: Connection, seg: Segment, now: float) -> None:
        try:
            self.inner.segment_received(conn, seg, now)
        except Exception as exc:
            self._failed(conn, exc)

    def _failed(self, conn: Connection, exc: Exception) -> None:
        conn.observer = None
        self._loop.call_exception_handler({
            "message": f"utcp observer {self.inner!r} raised; it is no longer called "
                       f"for {conn!r}",
            "exception": exc,
        })


def _guarded(observer: Observer | None, loop: asyncio.AbstractEventLoop) -> Observer | None:
    return None if observer is None else _GuardedObserver(observer, loop)


class Endpoint(asyncio.DatagramProtocol):
    """TCP over one UDP socket. Create with :meth:`Endpoint.create`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stack: Stack | None = None) -> None:
        self.loop = loop
        # The loop's clock; asyncio's own is time.monotonic, called without the
        # Python frame of BaseEventLoop.time (it is read for every datagram).
        self._now: Callable[[], float] = (
            time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time)
        #: The sans-I/O stack that makes every TCP decision for this socket.
        self.stack = stack if stack is not None else Stack()
        self.transport: asyncio.DatagramTransport | None = None
        self.family = socket.AF_INET
        self.local_address: Address = ("", 0)
        self._batched = False  # the transport reads in batches (datagrams_received)
        self._flushing = False
        self._send_failed = False  # a send within flush() failed and queued events
        self._ended: list[Connection] = []  # CLOSED or TIME-WAIT: see _release_ended()
        self._batch_end_due = False
        # While the application's turn is open (see flush), its calls leave their
        # segments queued, and the turn's end sends them all at once.
        self._turn = False
        self._held = 0  # calls whose segments wait for the turn's end
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._accept: dict[Listener, Callable[[Connection], ConnectionOwner]] = {}
        self._closed = loop.create_future()
        self._close_when_idle = False
        self._time_wait_holds = True

    @classmethod
    async def create(cls, local_addr: tuple[str, int], *,
                     loop: asyncio.AbstractEventLoop | None = None,
                     family: int = 0, server: bool = False,
                     stack: Stack | None = None) -> Endpoint:
        """Bind a UDP socket at ``local_addr`` and return the endpoint on it.

        An endpoint on a wildcard address learns the address each datagram
        reached: a server answers each peer from the address the peer sent to, as
        TCP does, and each connection, a client's too, takes segments only at the
        address it was made at. A client endpoint does so only on asyncio's
        selector loops, where its socket is read in Python anyway; elsewhere
        (uvloop) it keeps the loop's own transport or, where the kernel offers
        UDP GSO or GRO, reads and sends in Python with them (see
        :mod:`utcp.datagram`), still without learning local addresses.
        ``stack`` sets its TCP policy (ephemeral ports, TIME-WAIT reuse); by
        default a new :class:`Stack`.
        """
        loop = loop or asyncio.get_running_loop()
        ep = cls(loop, stack)
        await open_datagram_socket(
            loop, ep, local_addr, family,
            pktinfo=server or isinstance(loop, selector_events.BaseSelectorEventLoop))
        return ep

    # ------------------------------------------------------- DatagramProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (asyncio's and uvloop's datagram transports do not all subclass
        # DatagramTransport, so no isinstance check here.)
        self.transport = transport  # type: ignore[assignment]
        self._batched = isinstance(transport, BatchedDatagramTransport)
        # The stack ACKs once per batch of datagrams: what one wake-up read (see
        # datagrams_received), or what a loop's own transport delivered in one turn.
        self.stack.coalesce_acks = True
        # The ACK of a peer's FIN waits for the application's turn (_send_deferred_acks):
        # an application that closes, or answers, at once sends it with its FIN or data.
        self.stack.defer_fin_acks = True
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.family = sock.family
            # A window's worth of segments can arrive in one burst: give the kernel
            # room for several windows, or it drops them before we read them. And
            # no connection's window grows past what the socket can queue (half of
            # what was granted: the kernel's overhead takes the rest).
            granted = enlarge_buffers(sock)
            if granted:
                self.stack.memory.rcv_buf_cap = granted // 2
        self.local_address = transport.get_extra_info("sockname")
        self.stack.local_address = self.local_address

    def datagram_received(self, data: bytes, addr: Address) -> None:
        """One datagram from ``addr``, from a loop's own datagram transport.

        The datagrams of one turn of the loop make a batch: it ends (one ACK per
        connection, what is queued sent) in a callback the first of them schedules.
        """
        self.stack.receive(data, addr, self._now())
        if not self._batch_end_due:
            self._batch_end_due = True
            self.loop.call_soon(self._batch_end)

    def _batch_end(self) -> None:
        self._batch_end_due = False
        if self.transport is None:
            return  # (the socket closed meanwhile)
        self.stack.end_batch(self._now())
        self.flush()

    def datagrams_received(self, batch: list[tuple[Any, ...]]) -> None:
        """Datagrams the transport read in one go, as ``(data, addr)`` or, from a
        socket that learns where each arrived, ``(data, addr, via)``."""
        self.stack.receive_batch(batch, self._now())
        self.flush()

    def unreachable(self, quoted: bytes, addr: Address, err: int) -> None:
        """A datagram sent to ``addr`` failed with ``err``: an ICMP error that quotes
        ``quoted``, or a send the kernel refused at once (no route: then ``quoted``
        is the datagram itself)."""
        self.stack.icmp_error(quoted, addr, _UNREACHABLE.get(err), self._now())
        if self._flushing:
            self._send_failed = True
        self.flush()

    def error_received(self, exc: Exception) -> None:
        # ICMP errors on an unconnected socket name no connection; count them.
        self.stack.count_drop("icmp-error")

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for conn in self.stack.connections():
            owner = conn.owner
            if owner is not None:
                owner.endpoint_closed()  # type: ignore[attr-defined]
        if not self._closed.done():
            self._closed.set_result(None)

    # ------------------------------------------------------------------ output

    def _send(self, datagrams: list[tuple[bytes, Any, Any]]) -> None:
        transport = self.transport
        if transport is None:
            return
        if self._batched:
            transport.sendmany(datagrams)  # type: ignore[attr-defined]
            return
        for data, addr, via in datagrams:
            if via is None:
                transport.sendto(data, addr)
            else:
                transport.sendto_from(data, addr, via)  # type: ignore[attr-defined]

    def flush(self) -> None:
        """Send what the stack queued, deliver its events, re-arm the timer.

        Called again from within (an owner's callback that writes, say), it does
        nothing: the outer call sends what the callbacks queued, with the rest,
        and delivers the events, so that each connection's arrive in order.

        Once it has delivered events to more than one connection, the
        application's turn is open: the tasks those events woke run next, and what
        they send waits for the turn's end (a callback scheduled after theirs), to
        leave with everything the others sent, in as few system calls as the
        transport can (with UDP GSO, one per run of equal-sized datagrams to one
        peer). For one connection (request and response) that would only add the
        callback: what its application sends goes at once.
        """
        if self._flushing:
            return
        stack = self.stack
        self._flushing = True
        first: Connection | None = None  # the first connection given events
        several = False  # and another one since
        try:
            while True:
                datagrams, delivery = stack.take_output()
                if datagrams:
                    self._send(datagrams)
                if not delivery:
                    if self._send_failed:
                        # A send failed at once (unreachable() below): the events it
                        # queued are delivered now, not at the next input.
                        self._send_failed = False
                        continue
                    break
                for conn, events in delivery:
                    owner = conn.owner
                    if owner is None:
                        # A passive open goes to its listener's owner when it completes
                        # its handshake; what a half-open connection reports goes nowhere.
                        accept = self._accept.get(conn.listener)
                        if accept is None or not any(type(e) is Connected for e in events):
                            continue
                        owner = conn.owner = accept(conn)
                    owner.handle_events(events)
                    if first is None:
                        first = conn
                    elif conn is not first:
                        several = True
                    state = conn.state
                    if state is _CLOSED or state is _TIME_WAIT:
                        self._ended.append(conn)
        finally:
            self._flushing = False
        if self._ended:
            self._release_ended()
        if stack.acks_deferred:
            # Their events are delivered: after the callbacks those scheduled (a
            # reader's task woken by its end of stream runs first), send the ACKs
            # of FINs that what the application did sent none with. Each flush
            # schedules its own: a connection whose events come later waits for
            # its own application's turn.
            taken = stack.take_deferred_acks()
            if taken:
                self.loop.call_soon(self._send_deferred_acks, taken)
        if several and not self._turn:
            self._turn = True
            self.loop.call_soon(self._turn_end)
        when = stack.next_deadline()
        if when is not None and (self._timer_at is None or when < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = when
            self._timer = self.loop.call_at(when, self._on_timer)
        if self._close_when_idle:
            self._close_if_idle()

    def _send_deferred_acks(self, conns: list[Connection]) -> None:
        if self.transport is None:
            return  # (the socket closed meanwhile)
        if self.stack.send_deferred_acks(conns, self._now()):
            self._called()

    def _turn_end(self) -> None:
        self._turn = False
        self._held = 0
        if self.transport is not None:
            self.flush()

    def _called(self) -> None:
        """After an application's call: what it queued goes now, or with the turn's
        (at its end, or with the TURN_BATCH-th call). Not while the loop is stopped:
        the turn's end would wait for it to run again."""
        if self._turn and self.loop.is_running():
            held = self._held + 1
            if held < TURN_BATCH:
                self._held = held
                return
            self._held = 0
        self.flush()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.stack.handle_timer(self._now())
        self.flush()

    # ----------------------------------------------------- connection calls

    def connect(self, remote: Address, remote_port: int, options: Options,
                make_owner: Callable[[Connection], ConnectionOwner],
                observer: Observer | None = None) -> ConnectionOwner:
        """Start an active open to ``remote`` (a UDP address) and TCP ``remote_port``;
        ``make_owner(conn)`` makes the object its events go to, and is returned."""
        if self.transport is None:
            raise ConnectionError("the endpoint's socket is closed")
        conn = self.stack.connect(remote, remote_port, options, self._now(),
                                  _guarded(observer, self.loop))
        owner = make_owner(conn)
        conn.owner = owner
        self._called()
        return owner

    def listen(self, port: int, backlog: int, options: Options,
               accept: Callable[[Connection], ConnectionOwner],
               observer: Observer | None = None, *, max_connections: int | None = None,
               max_per_host: int | None = None) -> Listener:
        """Accept connections to TCP ``port``; ``accept(conn)`` makes the owner of each
        one that completes its handshake (see :meth:`Stack.listen` for the limits)."""
        listener = self.stack.listen(port, backlog, options, _guarded(observer, self.loop),
                                     max_connections=max_connections,
                                     max_per_host=max_per_host)
        self._accept[listener] = accept
        return listener

    def stop_listening(self, listener: Listener) -> None:
        """Stop accepting; established connections go on, half-open ones are reset."""
        self.stack.stop_listening(listener, self._now())
        self._accept.pop(listener, None)
        self._called()

    def send(self, conn: Connection, data: bytes) -> None:
        self.stack.send(conn, data, self._now())
        if self._turn:
            self._called()
        else:
            self.flush()  # (_called() written out: a request's one call to the stack)

    def shutdown(self, conn: Connection) -> None:
        self.stack.shutdown(conn, self._now())
        self._called()

    def close_connection(self, conn: Connection) -> None:
        self.stack.close(conn, self._now())
        self._called()

    def abort(self, conn: Connection) -> None:
        self.stack.abort(conn, self._now())
        self._ended.append(conn)  # (an abort has no event)
        self._called()

    def _release_ended(self) -> None:
        """Unlink each connection the stack has let go of from its owner.

        The owner (a transport) keeps its connection, to answer for it; the
        connection no longer keeps its owner. The pair is then no cycle, and
        reference counting frees both once the application drops the owner, not
        the cyclic garbage collector (whose passes took a tenth of the CPU of a
        client setting up thousands of connections a second while it did).

        A connection the stack has let go of has no event to come, but for what
        it still holds for a paused reader (data that arrived before a reset):
        that waits for the reader, and so does the unlinking. Done once a flush
        has delivered everything, as an owner's callback may have queued more
        (the end of stream, when it resumed reading).
        """
        ended, self._ended = self._ended, []
        holds = self.stack.holds
        for conn in ended:
            if not holds(conn) and not conn.holds_received:
                conn.owner = None

    def pause_reading(self, conn: Connection) -> None:
        self.stack.pause_reading(conn)

    def resume_reading(self, conn: Connection) -> None:
        self.stack.resume_reading(conn, self._now())
        self._called()

    # -------------------------------------------------------------- lifecycle

    def close_when_idle(self, *, time_wait_holds: bool = True) -> None:
        """Close the socket once no connection and no listener is left.

        With ``time_wait_holds=False`` connections in TIME-WAIT do not count: like
        a kernel socket with SO_REUSEADDR, a closed server's port is free again
        once only they are left (a late FIN from their peers then finds the port
        closed, and those connections end there).
        """
        self._close_when_idle = True
        self._time_wait_holds = time_wait_holds
        self._close_if_idle()

    def _close_if_idle(self) -> None:
        if self.stack.idle(count_time_wait=self._time_wait_holds):
            self.close()

    def close(self) -> None:
        """Close the socket now, once what is queued has been sent; connections
        still open are lost."""
        if self.transport is not None:
            datagrams = self.stack.datagrams_to_send()
            if datagrams:
                self._send(datagrams)
            self.transport.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    # ------------------------------------------------------------- statistics

    def statistics(self) -> dict[str, Any]:
        """Segments in and out, retransmissions, drops by cause, connections by state."""
        return self.stack.statistics()
