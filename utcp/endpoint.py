"""The endpoint: one datagram socket carrying many TCP connections.

It decodes each datagram into a segment, finds the connection by
(remote address, local port, remote port), hands it the segment with the
loop's time, and sends what the connection queued. Listeners turn SYNs into new
connections. All connections' deadlines share one loop timer, re-armed to the
earliest. Nothing here implements TCP; that is :mod:`utcp.core`.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import itertools
import random
import socket
import struct
from collections import Counter
from collections.abc import Callable
from typing import Any

from .core.config import Options
from .core.connection import Connection, reset_for
from .core.isn import IsnGenerator
from .core.observer import Observer
from .core.state import State
from .core.wire import ACK, RST, SYN, BadChecksum, MalformedSegment, Segment, decode, encode
from .datagram import BatchedDatagramTransport, LocalAddress, address_key, open_datagram_socket
from .transport import ConnectionTransport

Address = tuple[Any, ...]
Key = tuple[Address, int, int]  # (remote UDP address, local port, remote port)

# Requested UDP socket buffer size (the kernel may cap it at net.core.rmem_max).
SOCKET_BUFFER = 4 * 1024 * 1024

# Linux's default ephemeral port range (net.ipv4.ip_local_port_range).
EPHEMERAL_PORTS = range(32768, 61000)

# Looking up a member on an Enum class (State.CLOSED) is slow in CPython 3.11;
# the per-segment path uses these instead.
_CLOSED = State.CLOSED
_TIME_WAIT = State.TIME_WAIT
_FIN_UNACKED = (State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK)
# The start of a TCP header: source port, destination port, sequence number.
_PORTS_SEQ = struct.Struct("!HHI")


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


class Listener:
    """A passive open on one local port."""

    __slots__ = ("port", "backlog", "options", "on_connection", "observer", "half_open",
                 "connections", "_emptied")

    def __init__(self, port: int, backlog: int, options: Options,
                 on_connection: Callable[[ConnectionTransport], None],
                 observer: Observer | None) -> None:
        self.port = port
        self.backlog = backlog
        self.options = options
        self.on_connection = on_connection
        self.observer = observer
        self.half_open = 0  # connections in SYN-RECEIVED
        # Established connections the application has not yet seen end.
        self.connections: set[ConnectionTransport] = set()
        self._emptied: list[asyncio.Future[None]] = []

    def connection_ended(self, tr: ConnectionTransport) -> None:
        """``tr`` was handed to the application and has ended for it."""
        self.connections.discard(tr)
        if not self.connections:
            for f in self._emptied:
                if not f.done():
                    f.set_result(None)
            self._emptied.clear()

    async def wait_connections_ended(self) -> None:
        """Wait until every connection this listener accepted has ended."""
        while self.connections:
            f = asyncio.get_running_loop().create_future()
            self._emptied.append(f)
            await f


class Endpoint(asyncio.DatagramProtocol):
    """TCP over one UDP socket. Create with :meth:`Endpoint.create`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *,
                 isn: IsnGenerator | None = None) -> None:
        self.loop = loop
        self.transport: asyncio.DatagramTransport | None = None
        self.family = socket.AF_INET
        self.local_address: Address = ("", 0)
        self._isn = isn if isn is not None else IsnGenerator()
        self.connections: dict[Key, ConnectionTransport] = {}
        self.listeners: dict[int, Listener] = {}
        self._heap: list[tuple[float, int, ConnectionTransport]] = []
        self._tiebreak = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = loop.create_future()
        self._close_when_idle = False
        self._time_wait_holds = True  # TIME-WAIT keeps a socket closing when idle open
        self._time_wait = 0  # connections in TIME-WAIT (each transport flags its own)
        self._keeper: asyncio.Task[None] | None = None
        self._coalesce = False
        self._batch: list[ConnectionTransport] = []  # owe an ACK at the batch's end
        # Statistics.
        self.segments_in = 0
        self.segments_out = 0
        self.drops: Counter[str] = Counter()
        self._finished = Counter()  # counters of connections already forgotten
        self.resets_sent = 0

    @classmethod
    async def create(cls, local_addr: tuple[str, int], *,
                     loop: asyncio.AbstractEventLoop | None = None,
                     family: int = 0, server: bool = False) -> Endpoint:
        """Bind a UDP socket at ``local_addr`` and return the endpoint on it.

        A ``server`` endpoint on a wildcard address answers each peer from the
        address the peer sent to, as TCP does.
        """
        loop = loop or asyncio.get_running_loop()
        ep = cls(loop)
        await open_datagram_socket(loop, ep, local_addr, family, pktinfo=server)
        return ep

    # ------------------------------------------------------- DatagramProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (asyncio's and uvloop's datagram transports do not all subclass
        # DatagramTransport, so no isinstance check here.)
        self.transport = transport  # type: ignore[assignment]
        # Reading in batches, the endpoint can ACK once per batch (batch_done).
        self._coalesce = isinstance(transport, BatchedDatagramTransport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.family = sock.family
            # A window's worth of segments can arrive in one burst: give the kernel
            # room for several windows, or it drops them before we read them.
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
                except OSError:
                    pass
        self.local_address = transport.get_extra_info("sockname")

    def datagram_received(self, data: bytes, addr: Address,
                          local: LocalAddress | None = None) -> None:
        """One datagram from ``addr``; ``local`` is the address it was sent to, when a
        socket bound to a wildcard address learns it (then replies leave from it)."""
        self.segments_in += 1
        try:
            seg = decode(data)
        except BadChecksum:
            self.drops["bad-checksum"] += 1
            return
        except MalformedSegment:
            self.drops["malformed"] += 1
            return
        # IPv6: (host, port, flowinfo, scope id). Connections are keyed by host and
        # port, and the scope id if any (link-local); replies go to the whole address.
        key = addr if len(addr) == 2 else address_key(addr)
        tr = self.connections.get((key, seg.dst_port, seg.src_port))
        now = self.loop.time()
        if tr is not None:
            conn = tr.conn
            if conn.state is _TIME_WAIT and seg.flags & (SYN | ACK | RST) == SYN:
                if self._reopen_from_time_wait(tr, seg, addr, local, now):
                    return
            conn.receive(seg, now)
            self.service(tr)
            if conn._ack_at_batch_end:
                self._batch.append(tr)
            return
        self._no_connection(seg, addr, local, now)

    def batch_done(self) -> None:
        """The datagram transport read a batch: send each connection's one ACK for it."""
        batch = self._batch
        if not batch:
            return
        self._batch = []
        now = self.loop.time()
        for tr in batch:
            conn = tr.conn
            if conn._ack_at_batch_end:
                conn.flush_acks(now)
                self.service(tr)

    def unreachable(self, quoted: bytes, addr: Address, err: int) -> None:
        """An ICMP error answered a datagram sent to ``addr``; ``quoted`` is its start."""
        if err != errno.ECONNREFUSED or len(quoted) < 8:
            self.drops["icmp-error"] += 1
            return
        self.drops["icmp-port-unreachable"] += 1
        src_port, dst_port, seq = _PORTS_SEQ.unpack_from(quoted)
        tr = self.connections.get((address_key(addr), src_port, dst_port))
        if tr is not None:
            tr.conn.port_unreachable(seq, self.loop.time())
            self.service(tr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors on an unconnected socket name no connection; count them.
        self.drops["icmp-error"] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for tr in list(self.connections.values()):
            tr._endpoint_lost()
        self.connections.clear()
        self._time_wait = 0
        if not self._closed.done():
            self._closed.set_result(None)

    # ------------------------------------------------------------ demultiplex

    def _no_connection(self, seg: Segment, addr: Address, local: LocalAddress | None,
                       now: float) -> None:
        listener = self.listeners.get(seg.dst_port)
        f = seg.flags
        if f & RST:
            self.drops["rst-for-no-connection"] += 1
            return
        if listener is not None and not f & ACK:
            # RFC 9293 3.10.7.2 (LISTEN): a SYN opens a connection; text or control
            # with neither SYN nor ACK is dropped.
            if not f & SYN:
                self.drops["listen-no-syn"] += 1
            elif listener.half_open >= listener.backlog:
                # Like a full SYN queue: drop silently, the peer will retry.
                self.drops["backlog-full"] += 1
            else:
                self._accept(listener, seg, addr, local, now)
            return
        # RFC 9293 3.10.7.1: answer with a RST (LISTEN answers an ACK the same way).
        self.drops["no-connection"] += 1
        rst = reset_for(seg)
        if rst is not None:
            self.resets_sent += 1
            self._send(rst, addr, local)

    def _accept(self, listener: Listener, seg: Segment, addr: Address,
                local: LocalAddress | None, now: float) -> None:
        iss = self._isn(self.local_address, listener.port, addr, seg.src_port, now)
        conn = Connection(listener.port, seg.src_port, iss=iss, options=listener.options,
                          observer=listener.observer)
        conn.coalesce_acks = self._coalesce
        tr = ConnectionTransport(self, conn, addr, listener=listener, local=local)
        self.connections[(tr.address_key, listener.port, seg.src_port)] = tr
        listener.half_open += 1
        conn.listen(now)
        conn.receive(seg, now)
        self.service(tr)

    def _reopen_from_time_wait(self, tr: ConnectionTransport, seg: Segment, addr: Address,
                               local: LocalAddress | None, now: float) -> bool:
        # RFC 9293 3.10.7.4 (RFC 1122 4.2.2.13): a new SYN whose sequence number is
        # beyond the old connection's may reopen a 4-tuple in TIME-WAIT.
        from .core import seq as sq

        listener = self.listeners.get(seg.dst_port)
        if listener is None or not sq.gt(seg.seq, tr.conn.rcv_nxt):
            return False
        if listener.half_open >= listener.backlog:
            self.drops["backlog-full"] += 1  # as for any SYN: the peer will retry
            return True
        self._forget(tr)
        self._accept(listener, seg, addr, local, now)
        return True

    # ----------------------------------------------------------------- output

    def _send(self, seg: Segment, addr: Address, local: LocalAddress | None = None) -> None:
        if self.transport is None:
            return
        self.segments_out += 1
        if local is not None:
            self.transport.sendto_from(encode(seg), addr, local)  # type: ignore[attr-defined]
        else:
            self.transport.sendto(encode(seg), addr)

    def service(self, tr: ConnectionTransport) -> None:
        """Send what ``tr``'s connection queued, deliver its events, re-arm its timer."""
        conn = tr.conn
        # (conn.take_segments() and conn.take_events(), without the calls when empty.)
        segs = conn._out
        if segs:
            conn._out = []
            transport = self.transport
            if transport is not None:
                addr = tr.remote_address
                local = tr.local
                if local is None:
                    sendto = transport.sendto
                    for s in segs:
                        sendto(encode(s), addr)
                else:
                    for s in segs:
                        transport.sendto_from(encode(s), addr, local)  # type: ignore
                self.segments_out += len(segs)
        events = conn._events
        if events:
            conn._events = []
            tr._deliver(events)
        if tr._writing_paused:
            tr._after_service()
        if tr._closing_wait and conn.state not in _FIN_UNACKED:
            tr._fin_acked()
        if conn.state is _CLOSED:
            self._forget(tr)
            return
        d = conn.next_deadline()
        if d != tr._deadline:
            tr._deadline = d
            if d is not None:
                heap = self._heap
                if len(heap) > 64 + 4 * len(self.connections):
                    # Superseded entries (deadlines moved, connections gone) pile up
                    # and keep dead connections alive: drop them now and then (in
                    # place: _on_timer may be walking this very list).
                    heap[:] = [e for e in heap if e[2]._deadline == e[0]]
                    heapq.heapify(heap)
                heapq.heappush(heap, (d, next(self._tiebreak), tr))
                if self._timer_at is None or d < self._timer_at:
                    self._arm(d)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        heap = self._heap
        now = self.loop.time()
        while heap and heap[0][0] <= now + 0.0005:
            when, _, tr = heapq.heappop(heap)
            if tr._deadline != when:
                continue  # superseded by a later deadline
            tr._deadline = None
            # asyncio may wake us a hair early; the connection must see its deadline.
            tr.conn.handle_timer(max(now, when))
            self.service(tr)
        while heap and heap[0][2]._deadline != heap[0][0]:
            heapq.heappop(heap)
        if heap:
            self._arm(heap[0][0])

    def _forget(self, tr: ConnectionTransport) -> None:
        key = (tr.address_key, tr.conn.local_port, tr.conn.remote_port)
        if self.connections.get(key) is tr:
            del self.connections[key]
            for name, value in tr.conn.counters.as_dict().items():
                self._finished[name] += value
        tr._deadline = None
        if tr._in_time_wait:
            tr._in_time_wait = False
            self._time_wait -= 1
        tr._forgotten()
        if self._close_when_idle:
            self._close_if_idle()

    def time_wait_entered(self, tr: ConnectionTransport) -> None:
        """``tr``'s connection entered TIME-WAIT."""
        if not tr._in_time_wait:
            tr._in_time_wait = True
            self._time_wait += 1
            if self._close_when_idle:
                self._close_if_idle()

    # ------------------------------------------------------ connections, ports

    def connect(self, remote: Address, remote_port: int, options: Options,
                observer: Observer | None = None) -> ConnectionTransport:
        """Start an active open to ``remote`` (a UDP address) and TCP ``remote_port``."""
        if self.transport is None:
            raise ConnectionError("the endpoint's socket is closed")
        key = address_key(remote)
        now = self.loop.time()
        local_port = self._free_port(key, remote_port)
        iss = self._isn(self.local_address, local_port, remote, remote_port, now)
        if observer is not None:
            observer = _GuardedObserver(observer, self.loop)
        conn = Connection(local_port, remote_port, iss=iss, options=options, observer=observer)
        conn.coalesce_acks = self._coalesce
        tr = ConnectionTransport(self, conn, remote)
        self.connections[(key, local_port, remote_port)] = tr
        conn.connect(now)
        self.service(tr)
        return tr

    def _free_port(self, remote: Address, remote_port: int) -> int:
        """A local port with no connection toward (remote, remote_port).

        A 4-tuple in TIME-WAIT is not reused while TIME-WAIT lasts: without
        timestamps (RFC 6191) a late segment of the old connection could not be
        told from the new one's.
        """
        ports = EPHEMERAL_PORTS
        n = len(ports)
        conns = self.connections
        listeners = self.listeners
        # Random probes find a free port at once unless the range is nearly full.
        for _ in range(16):
            p = ports[random.randrange(n)]
            if (remote, p, remote_port) not in conns and p not in listeners:
                return p
        start = random.randrange(n)
        for i in range(n):
            p = ports[(start + i) % n]
            if (remote, p, remote_port) not in conns and p not in listeners:
                return p
        raise OSError(errno.EADDRNOTAVAIL,
                      f"no free local port toward {remote[0]}:{remote_port}: "
                      f"all {n} are in use or in TIME-WAIT")

    def listen(self, port: int, backlog: int, options: Options,
               on_connection: Callable[[ConnectionTransport], None],
               observer: Observer | None = None) -> Listener:
        """Accept connections to TCP ``port``; ``on_connection`` gets each established one."""
        if port in self.listeners:
            raise OSError(errno.EADDRINUSE, f"port {port} is already listening")
        if observer is not None:
            observer = _GuardedObserver(observer, self.loop)
        listener = Listener(port, backlog, options, on_connection, observer)
        self.listeners[port] = listener
        return listener

    def stop_listening(self, listener: Listener) -> None:
        """Stop accepting; established connections go on, half-open ones are reset."""
        if self.listeners.get(listener.port) is listener:
            del self.listeners[listener.port]
        # Like closing a listening socket, which drops its SYN queue: a handshake that
        # completed later would hand a connection to a server that is closed.
        for tr in [t for t in self.connections.values()
                   if t._listener is listener and t._half_open]:
            tr.abort()

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
        if self.listeners:
            return
        if len(self.connections) == (0 if self._time_wait_holds else self._time_wait):
            self.close()

    def close(self) -> None:
        """Close the socket now; connections still open are lost."""
        if self.transport is not None:
            self.transport.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    # ------------------------------------------------------------- statistics

    def statistics(self) -> dict[str, Any]:
        """Segments in and out, retransmissions, drops by cause, connections by state."""
        totals = Counter(self._finished)
        for tr in self.connections.values():
            totals.update(tr.conn.counters.as_dict())
        states = Counter(str(tr.conn.state) for tr in self.connections.values())
        return {
            "segments_in": self.segments_in,
            "segments_out": self.segments_out,
            "retransmissions": totals["retransmissions"],
            "resets_sent": self.resets_sent,
            "drops": dict(self.drops),
            "connections": dict(states),
            "listeners": sorted(self.listeners),
            "connection_totals": dict(totals),
        }
