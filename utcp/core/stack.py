"""The stack: every TCP connection behind one datagram socket, free of I/O.

A :class:`Stack` stands where a host's TCP layer stands. It takes datagrams
with the address they came from (:meth:`~Stack.receive`), application calls
(:meth:`~Stack.connect`, :meth:`~Stack.listen`, :meth:`~Stack.send`, ...) and
timer expiries (:meth:`~Stack.handle_timer`), each with the current time. It
decides everything TCP decides above a single connection: which connection a
segment belongs to (by remote address, local port and remote port), what a
listener does with a SYN and how many half-open connections it keeps, the RST
for a segment with no connection, when a 4-tuple in TIME-WAIT may be opened
again, initial sequence numbers and local ports, and every connection's
deadline. In return it hands out the datagrams to send
(:meth:`~Stack.datagrams_to_send`), the events for the application
(:meth:`~Stack.take_events`) and the moment it next wants to be woken
(:meth:`~Stack.next_deadline`). It never reads a clock and never touches a
socket, so a simulated network of stacks on virtual time runs it unchanged.

Section numbers in comments refer to RFC 9293 unless another RFC is named.
"""

from __future__ import annotations

import errno
import random
import secrets
import struct
from collections import Counter
from collections.abc import Iterator
from typing import Any, Final

from .buffers import ReceiveMemory
from .config import Options
from .connection import Connection, Counters, reset_for, syn_options
from .events import Event
from .isn import IsnGenerator
from .observer import Observer
from .seq import MASK as _MASK
from .state import State
from .syncookies import PERIOD, CookieState, check_cookie, cookie_tsval, kept, make_cookie
from .timers import PER_SECOND, Timers
from .timewait import TimeWaitTable, iss_after, reopens
from .wire import (
    ACK,
    MSS,
    PSH,
    RST,
    SACK_PERMITTED,
    SYN,
    TIMESTAMPS,
    TS_HZ,
    WSCALE,
    BadChecksum,
    MalformedSegment,
    Segment,
    decode,
    encode,
    run_header,
    run_start,
)

#: A datagram address: (host, port), or (host, port, flowinfo, scope id) for IPv6.
Address = tuple[Any, ...]
#: What names a connection in the table: (remote address key, local port, remote port).
Key = tuple[Address, int, int]
#: A datagram to send: (data, peer address, local address to send from or None).
Datagram = tuple[bytes, Any, Any]

#: Linux's default ephemeral port range (net.ipv4.ip_local_port_range).
EPHEMERAL_PORTS: Final = range(32768, 61000)
#: How long after its last timestamp a 4-tuple in TIME-WAIT may be taken by an
#: active open (Linux's tcp_tw_reuse, with net.ipv4.tcp_tw_reuse_delay).
TW_REUSE_DELAY: Final = 1.0

# Peers whose timestamp offsets are remembered (see Stack._ts_offset), and whose
# addresses are shared by their connections (Stack._intern).
_TS_OFFSET_CACHE: Final = 4096
_INTERNED_ADDRESSES: Final = 4096
# Timers may be run this early: an event loop can wake a hair before the deadline
# it was asked for (uvloop keeps time in milliseconds).
_EARLY: Final = 0.0005

_CLOSED: Final = State.CLOSED
_ESTABLISHED: Final = State.ESTABLISHED
_SYN_RECEIVED: Final = State.SYN_RECEIVED
_SYN_SENT: Final = State.SYN_SENT
_TIME_WAIT: Final = State.TIME_WAIT
_LISTEN: Final = State.LISTEN
# The start of a TCP header, as an ICMP error quotes it: ports and sequence number.
#: Before its handshake completes, a passive connection sends its peer at most this
#: many times the bytes it received from it (RFC 9000 8.1).
AMPLIFICATION: Final = 3
#: RSTs for segments with no connection: at most this many a second, in bursts of
#: at most RST_BURST (Linux's icmp_msgs_per_sec and icmp_msgs_burst).
RST_RATE: Final = 1000.0
RST_BURST: Final = 50
#: Bytes all connections may hold in receive buffers (see ReceiveMemory).
MAX_RECEIVE_MEMORY: Final = 128 * 1024 * 1024
#: Under memory pressure, how long a connection may hold data its application does
#: not read, receiving nothing more, before it is reset.
ZERO_WINDOW_TIMEOUT: Final = 60.0
#: How often connections holding data are looked at while memory is short.
_SWEEP_INTERVAL: Final = 1.0
#: Most segments of one connection that receive_batch() takes as one (see there).
RUN_MAX: Final = 64
_ACK_PSH: Final = ACK | PSH
_PORTS_SEQ: Final = struct.Struct("!HHI")
# Drop counters of ICMP destination unreachable errors, by kind.
_UNREACHABLE_DROPS: Final = {"port": "icmp-port-unreachable", "host": "icmp-host-unreachable",
                      "network": "icmp-net-unreachable"}


def address_key(addr: Address) -> Address:
    """What names a peer's datagram address in a stack's table.

    IPv4 (host, port) as it is; IPv6 without flowinfo, and without the scope id
    unless it has one (link-local hosts on different interfaces are different).
    """
    if len(addr) == 2:
        return addr
    return (addr[0], addr[1]) if not addr[3] else (addr[0], addr[1], addr[3])


class Listener:
    """A passive open on one local port, and its queue of half-open connections."""

    __slots__ = ("port", "backlog", "options", "observer", "half_open", "max_connections",
                 "max_per_host", "count", "per_host", "cookies_until")

    def __init__(self, port: int, backlog: int, options: Options,
                 observer: Observer | None, max_connections: int | None = None,
                 max_per_host: int | None = None) -> None:
        self.port = port
        #: Most connections kept in SYN-RECEIVED; SYNs beyond are dropped and counted.
        self.backlog = backlog
        self.options = options
        self.observer = observer
        #: The connections in SYN-RECEIVED that this listener accepted.
        self.half_open: set[Connection] = set()
        #: Most connections this listener's may number at once (half-open and
        #: established, not those in TIME-WAIT), and most from one host (IP
        #: address); SYNs beyond are dropped and counted. None: no limit.
        self.max_connections = max_connections
        self.max_per_host = max_per_host
        #: Connections this listener accepted that the stack still holds whole.
        self.count = 0
        self.per_host: Counter[str] = Counter()
        #: Until when an ACK to this port may carry a SYN cookie we sent.
        self.cookies_until = -1.0

    def left_host(self, host: str) -> None:
        """One connection fewer from ``host``."""
        left = self.per_host[host] - 1
        if left:
            self.per_host[host] = left
        else:
            del self.per_host[host]

    def __repr__(self) -> str:
        return f"<Listener port {self.port}, {len(self.half_open)}/{self.backlog} half-open>"


def check_zero_window_timeout(value: object) -> None:
    """Raise ValueError unless ``value`` is a positive number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"zero_window_timeout must be > 0, not {value!r}")


class Stack:
    """TCP for every connection behind one datagram socket.

    ``local_address`` is the socket's own address (it keys initial sequence
    numbers). ``isn`` and ``rng`` make runs repeatable in tests; by default the
    ISN secret comes from the operating system's random source, and the port
    choice from a generator it seeds.
    With ``coalesce_acks``, in-order data is ACKed once per batch of datagrams
    (see :meth:`end_batch` and ``Connection.coalesce_acks``). With
    ``defer_fin_acks``, the ACK of a FIN that arrives while ESTABLISHED waits until
    the shell says the application has had its turn after the events (see
    :meth:`take_deferred_acks` and ``Connection.defer_fin_ack``). ``tw_reuse_delay``
    is how long after its last timestamp an active open may reuse a 4-tuple in
    TIME-WAIT (None: never). With ``syn_cookies`` (the default, as in Linux), a
    listener whose half-open queue is full answers further SYNs with cookies
    (see :mod:`utcp.core.syncookies`) instead of dropping them.
    ``max_receive_memory`` bounds the bytes all connections hold for applications
    that do not read and ahead of holes (:class:`~utcp.core.buffers.ReceiveMemory`;
    None: no bound); while three quarters of it are in use, a connection that has
    held unread data for ``zero_window_timeout`` seconds, receiving nothing more,
    is reset, and one holding only segments ahead of a hole its peer has not
    filled in that time has them dropped.
    """

    def __init__(self, local_address: Address = ("0.0.0.0", 0), *,
                 isn: IsnGenerator | None = None, rng: random.Random | None = None,
                 ephemeral_ports: range = EPHEMERAL_PORTS,
                 coalesce_acks: bool = False,
                 defer_fin_acks: bool = False,
                 tw_reuse_delay: float | None = TW_REUSE_DELAY,
                 syn_cookies: bool = True,
                 max_receive_memory: int | None = MAX_RECEIVE_MEMORY,
                 zero_window_timeout: float = ZERO_WINDOW_TIMEOUT) -> None:
        check_zero_window_timeout(zero_window_timeout)
        self.local_address = local_address
        #: Receive memory held by all connections, and its limit.
        self.memory = ReceiveMemory(max_receive_memory)
        self.zero_window_timeout = zero_window_timeout
        self._sweep_at: float | None = None
        # Connections holding data while memory is short: since when, at what RCV.NXT.
        self._stalled: dict[Connection, tuple[float, int]] = {}
        #: Answer SYNs with cookies when a listener's half-open queue is full.
        self.syn_cookies = syn_cookies
        self.coalesce_acks = coalesce_acks
        self.defer_fin_acks = defer_fin_acks
        #: The connections whose ACK of a FIN waits for the application's turn, not
        #: yet taken by take_deferred_acks(), as the keys of a dict (none twice, in
        #: order): an attribute, so that a driver's test after every input is no call.
        self.acks_deferred: dict[Connection, None] = {}
        self.tw_reuse_delay = tw_reuse_delay
        self._isn = isn if isn is not None else IsnGenerator()
        self._rng = rng if rng is not None else random.Random()
        self._seeded = rng is not None  # (else secrets draws what must not be guessed)
        if not len(ephemeral_ports):
            raise ValueError("ephemeral_ports must not be empty")
        # One int object per port, shared by every key that names it.
        self._ports = list(ephemeral_ports)
        self._conns: dict[Key, Connection] = {}
        # The same connections by (local port, remote port), for a peer that
        # comes back from a new address (see _moved).
        self._by_ports: dict[tuple[int, int], list[Connection]] = {}
        # Connections in TIME-WAIT, but for those traced or holding data for a
        # paused reader, which stay whole in _conns.
        self._tw = TimeWaitTable()
        self.listeners: dict[int, Listener] = {}
        self._timers = Timers()
        self._ts_offsets: dict[Address, int] = {}
        self._addresses: dict[Address, Address] = {}
        self._datagrams: list[tuple[bytes, Any, Any]] = []
        self._events: list[tuple[Connection, list[Event]]] = []
        self._batch: list[Connection] = []  # owe an ACK at the end of the batch
        # Half-open passive connections: what they may still send their peer before
        # the handshake completes, as [datagrams, bytes, the answer held back or
        # None] (see _send_within).
        self._credit: dict[Connection, list[Any]] = {}
        # RSTs for segments with no connection: a token bucket (see _no_connection).
        self._rst_tokens = float(RST_BURST)
        self._rst_refilled = 0.0
        # Statistics.
        self.segments_in = 0
        self.segments_out = 0
        self.resets_sent = 0
        self.accepted = 0  # passive opens that completed their handshake
        #: Connections whose peer proved itself from a new address, and moved there.
        self.rebinds = 0
        self.drops: Counter[str] = Counter()
        #: SYN cookies sent, and final ACKs that carried a good one or a bad one.
        self.syncookies: Counter[str] = Counter()
        self._finished = Counters()  # the counts of connections forgotten

    # ------------------------------------------------------------------ outputs

    def datagrams_to_send(self) -> list[Datagram]:
        """Return and forget the datagrams to send, oldest first, as
        ``(data, address, via)``: ``via`` is the local address to send from (what
        :meth:`receive` was given with the peer's datagrams), or None."""
        out = self._datagrams
        self._datagrams = []
        return out

    def take_events(self) -> list[tuple[Connection, list[Event]]]:
        """Return and forget the events for the application, as (connection, events)."""
        out = self._events
        self._events = []
        return out

    def take_output(self) -> tuple[list[Datagram], list[tuple[Connection, list[Event]]]]:
        """:meth:`datagrams_to_send` and :meth:`take_events` in one call: what an
        event loop's adapter asks for after every input."""
        datagrams = self._datagrams
        events = self._events
        self._datagrams = []
        self._events = []
        return datagrams, events

    def take_deferred_acks(self) -> list[Connection]:
        """Return and forget the connections whose ACK of a FIN waits for the
        application's turn (see ``defer_fin_acks``) and is still owed.

        Take them once their events are delivered, and give them to
        :meth:`send_deferred_acks` once the application has run after those
        events: what it sent by then (its FIN, an answer) carried the ACK.
        """
        taken = [conn for conn in self.acks_deferred if conn._ack_deferred]
        self.acks_deferred = {}
        return taken

    def send_deferred_acks(self, conns: list[Connection], now: float) -> bool:
        """Send the ACK each of ``conns`` (from :meth:`take_deferred_acks`) still
        owes: its application has had its turn and sent nothing that carried it.
        Return whether any was sent (else there is no output to take)."""
        sent = False
        for conn in conns:
            if self.holds(conn) and conn.send_deferred_ack(now):
                self._service(conn)
                sent = True
        return sent

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`handle_timer` must be called, or None."""
        timers = self._timers
        heap = timers._heap
        if heap and heap[0] in timers._buckets:  # (Timers.next_deadline's first test)
            t: float | None = heap[0] / PER_SECOND
        else:
            t = timers.next_deadline()
        tw = self._tw._deadline  # (TimeWait.next_deadline())
        if tw is not None and (t is None or tw < t):
            t = tw
        sw = self._sweep_at
        if sw is not None and (t is None or sw < t):
            return sw
        return t

    # ------------------------------------------------------------------- inputs

    def receive(self, data: bytes | bytearray | memoryview, addr: Address, now: float,
                via: Any = None) -> None:
        """One datagram from ``addr``; ``via`` is the local address it reached, where
        the socket learns it (replies then leave from there, and a connection made
        at one address takes no segments sent to another: its ``host`` is compared,
        or ``via`` itself if it has none). A passive open is made at the address
        its SYN reached; an active open learns its address from the first segment
        it accepts (the SYN-ACK), and from then on matches it the same way."""
        self.segments_in += 1
        try:
            seg = decode(data)
        except BadChecksum:
            self.drops["bad-checksum"] += 1
            return
        except MalformedSegment:
            self.drops["malformed"] += 1
            return
        self._receive_segment(seg, len(data), addr, now, via)

    def _receive_segment(self, seg: Segment, size: int, addr: Address, now: float, via: Any,
                 conn: Connection | None = None) -> None:
        """:meth:`receive` once ``seg`` (a datagram of ``size`` bytes) is decoded;
        ``conn``: its connection, when the caller looked it up."""
        key = (addr if len(addr) == 2 else address_key(addr), seg.dst_port, seg.src_port)
        if conn is None:
            conn = self._conns.get(key)
        if conn is None:
            if key in self._tw:
                self._time_wait_segment(seg, size, key, addr, via, now)
                return
            conn = self._moved(seg, size, key, addr, via, now)
            if conn is None:
                self._no_connection(seg, size, key, addr, via, now)
                return
        if via is not None and conn.via is not None and via is not conn.via \
                and getattr(via, "host", via) != getattr(conn.via, "host", conn.via):
            # The same ports and peer, but sent to another of our addresses: not
            # this connection, whose 4-tuple names the address it was made on.
            self.drops["wrong-local-address"] += 1
            return
        if conn.state is _TIME_WAIT and seg.flags & (SYN | ACK | RST) == SYN \
                and self._reopen(conn, seg, size, key, addr, via, now):
            return
        credit = self._credit.get(conn) if self._credit else None
        if credit is not None:
            credit[0] += AMPLIFICATION  # one more datagram from the peer: more answers,
            credit[1] += AMPLIFICATION * size  # of up to three times its size
        conn.receive(seg, now)
        if via is not None and conn.via is None and conn.state is not _SYN_SENT:
            # An active open's first accepted segment (SYN-ACK, or a SYN crossing
            # ours): the kernel's SYN left from the address the peer answered to,
            # and the 4-tuple names it from now on. (Before this, acceptance needs
            # the ISS guessed, sent to any of our addresses alike.)
            conn.via = via
        self._service(conn)
        if self.memory.held >= self.memory.pressure_at and self._sweep_at is None:
            self._sweep_at = now + min(_SWEEP_INTERVAL, self.zero_window_timeout / 4)
        if credit is not None and credit[2] is not None and conn in self._credit:
            # (Still half-open: a SYN-ACK held back is stale once the ACK has come.)
            self._pay_owed(credit, conn)
        if conn._ack_at_batch_end:
            self._batch.append(conn)

    def receive_batch(self, batch: list[tuple[Any, ...]], now: float) -> None:
        """Datagrams read together, as ``(data, addr)`` or ``(data, addr, via)``, all
        at ``now``; then :meth:`end_batch`.

        Consecutive segments that continue one another on one established
        connection, as a bulk sender sends them, are taken as one segment, as
        Linux's GRO merges them: each carries data and a bare ACK (PSH may end
        the run), and all have the same ACK, window and options (timestamps
        included: sent together), all full-sized but a shorter last one. The
        connection then does its per-segment work once for the run; its
        ``segments_in`` still counts each. A connection with an observer sees
        every segment as it came."""
        conns = self._conns
        run: list[Any] = []  # a run: its first segment, then the payloads that continue it
        open_ = False  # whether the run may go on: its last segment full-sized, no PSH
        run_conn: Any = None
        run_addr: Any = None
        run_via: Any = None
        run_size = 0  # the first one's datagram size
        full = 0  # the first one's payload size
        after = 0  # the sequence number after the run
        head: Any = None  # the first one's header fields (run_start), which the rest repeat
        hsize = 0  # its length: 20 or 32 bytes (0: not yet looked at)
        run_data: Any = None  # the first one's datagram
        last_flags = 0  # the flags of the run's last segment
        self.segments_in += len(batch)
        for item in batch:
            data = item[0]
            addr = item[1]
            via = item[2] if len(item) == 3 else None
            if run:
                if open_ and hsize == 0:
                    # A second datagram: now the first one's header is worth reading.
                    head = run_start(run_data)
                    if head is None:
                        open_ = False
                    else:
                        hsize = run_size - full
                if open_ and via is run_via and (addr is run_addr or addr == run_addr):
                    # A continuation is checked on its header, without a Segment made
                    # for it or its payload copied out (the run's are joined once).
                    h = run_header(data, hsize)
                    if h is not None and h[1] == after and h[2] == head[2] \
                            and h[0] == head[0] and h[4] == head[4] and h[5] == head[5]:
                        flags = h[3]
                        n = len(data) - hsize
                        if (flags == ACK or flags == _ACK_PSH) and n <= full:
                            run.append(memoryview(data)[hsize:])
                            after = (after + n) & 0xFFFFFFFF
                            last_flags = flags
                            open_ = n == full and flags == ACK and len(run) < RUN_MAX
                            continue
                self._receive_run(run, last_flags, run_size, run_addr, now, run_via, run_conn)
                run = []
            try:
                seg = decode(data)
            except BadChecksum:
                self.drops["bad-checksum"] += 1
                continue
            except MalformedSegment:
                self.drops["malformed"] += 1
                continue
            flags = seg.flags
            if (flags == ACK or flags == _ACK_PSH) and seg.payload and not seg.urgent \
                    and not seg.reserved:
                conn = conns.get((addr if len(addr) == 2 else address_key(addr),
                                  seg.dst_port, seg.src_port))
                if conn is not None and conn.state is _ESTABLISHED and conn.observer is None:
                    run = [seg]
                    run_data = data
                    hsize = 0
                    full = len(seg.payload)
                    after = (seg.seq + full) & 0xFFFFFFFF
                    last_flags = flags
                    open_ = flags == ACK
                    run_conn, run_addr, run_via, run_size = conn, addr, via, len(data)
                    continue
            self._receive_segment(seg, len(data), addr, now, via)
        if run:
            if len(run) == 1:
                self._receive_segment(run[0], run_size, run_addr, now, run_via, run_conn)
            else:
                self._receive_run(run, last_flags, run_size, run_addr, now, run_via, run_conn)
        if self._batch:
            self.end_batch(now)

    def _receive_run(self, run: list[Any], flags: int, size: int, addr: Address, now: float,
                     via: Any, conn: Connection) -> None:
        """A run (see :meth:`receive_batch`): its first segment, then the payloads of
        those that continue it, the last with ``flags``; taken as one segment."""
        first = run[0]
        if len(run) == 1:
            self._receive_segment(first, size, addr, now, via, conn)
            return
        run[0] = first.payload
        merged = Segment(first.src_port, first.dst_port, first.seq, first.ack, flags,
                         first.window, 0, first.options, b"".join(run))
        conn.counters.segments_in += len(run) - 1  # (the connection counts the one)
        self._receive_segment(merged, size, addr, now, via, conn)

    def end_batch(self, now: float) -> None:
        """The datagrams read together are all in: send each connection's one ACK."""
        batch = self._batch
        if not batch:
            return
        self._batch = []
        for conn in batch:
            if conn._ack_at_batch_end:
                conn.flush_acks(now)
                self._service(conn)

    def handle_timer(self, now: float) -> None:
        """Run every deadline due at ``now``."""
        arm = self._timers.arm
        for conn in self._timers.expired(now + _EARLY):
            if conn.state is _CLOSED:
                continue
            d = conn.next_deadline()
            if d is None:
                continue
            if d <= now + _EARLY:
                # An event loop may wake a hair early: the connection sees its deadline.
                conn.handle_timer(d if d > now else now)
                self._service(conn)
            else:
                arm(conn, d)
        tw = self._tw.next_deadline()
        if tw is not None and tw <= now + _EARLY:
            self._tw.expire(now + _EARLY)
        if self._sweep_at is not None and self._sweep_at <= now + _EARLY:
            self._sweep(now)

    def icmp_error(self, quoted: bytes, addr: Address, what: str | bool | None,
                   now: float) -> None:
        """An ICMP error answered a datagram sent to ``addr``; ``quoted`` is its start.

        ``what`` is "port", "host" or "network" for a destination unreachable of
        that kind (True means "port"), None for any other error, which is counted
        only. A connection in SYN-SENT whose SYN it quotes ends (see
        :meth:`Connection.unreachable`).
        """
        if what is True:
            what = "port"
        if what not in _UNREACHABLE_DROPS or len(quoted) < 8:
            self.drops["icmp-error"] += 1
            return
        self.drops[_UNREACHABLE_DROPS[what]] += 1
        src_port, dst_port, seq = _PORTS_SEQ.unpack_from(quoted)
        conn = self._conns.get((address_key(addr), src_port, dst_port))
        if conn is not None:
            conn.unreachable(seq, what, now)
            self._service(conn)

    def count_drop(self, cause: str) -> None:
        """Count a datagram dropped below the stack (an error the socket reported)."""
        self.drops[cause] += 1

    # -------------------------------------------------------- application calls

    def connect(self, remote: Address, remote_port: int, options: Options, now: float,
                observer: Observer | None = None) -> Connection:
        """Start an active open to ``remote`` (a datagram address) and TCP ``remote_port``.

        Raises ``OSError`` (``EADDRNOTAVAIL``) when no local port is free toward it.
        """
        remote = self._intern(remote)
        peer = address_key(remote)
        key, iss = self._free_port(peer, remote_port, now)
        if iss is None:
            iss = self._isn(self.local_address, key[1], remote, remote_port, now)
        conn = Connection(key[1], remote_port, iss=iss, options=options, observer=observer,
                          ts_offset=self._ts_offset(peer))
        conn.coalesce_acks = self.coalesce_acks
        conn.defer_fin_ack = self.defer_fin_acks
        conn.memory = self.memory
        conn.encode_runs = True
        conn.peer = remote
        conn.key = key
        self._conns[key] = conn
        self._index(conn)
        conn.connect(now)
        self._service(conn)
        return conn

    def listen(self, port: int, backlog: int, options: Options,
               observer: Observer | None = None, *, max_connections: int | None = None,
               max_per_host: int | None = None) -> Listener:
        """Accept connections to TCP ``port``: a :class:`~utcp.core.events.Connected`
        event introduces each one that completes its handshake. ``max_connections``
        and ``max_per_host`` bound how many it holds (see :class:`Listener`)."""
        if port in self.listeners:
            raise OSError(errno.EADDRINUSE, f"port {port} is already listening")
        listener = Listener(port, backlog, options, observer, max_connections, max_per_host)
        self.listeners[port] = listener
        return listener

    def stop_listening(self, listener: Listener, now: float) -> None:
        """Stop accepting. Established connections go on; half-open ones are reset,
        as closing a listening socket drops its SYN queue."""
        if self.listeners.get(listener.port) is listener:
            del self.listeners[listener.port]
        for conn in list(listener.half_open):
            self.abort(conn, now)

    def send(self, conn: Connection, data: bytes, now: float) -> None:
        """Queue ``data`` on ``conn`` (see :meth:`Connection.send`)."""
        conn.send(data, now)
        self._service(conn)

    def shutdown(self, conn: Connection, now: float) -> None:
        """Half-close ``conn``: FIN after its data."""
        conn.shutdown(now)
        self._service(conn)

    def close(self, conn: Connection, now: float) -> None:
        """Close ``conn`` (see :meth:`Connection.close`)."""
        conn.close(now)
        self._service(conn)

    def abort(self, conn: Connection, now: float) -> None:
        """Reset ``conn`` and forget it."""
        conn.abort(now)
        self._service(conn)

    def pause_reading(self, conn: Connection) -> None:
        """Hold ``conn``'s received data; its window closes as the buffer fills."""
        conn.pause_reading()

    def resume_reading(self, conn: Connection, now: float) -> None:
        """Deliver what ``conn`` held and reopen its window."""
        conn.resume_reading(now)
        self._service(conn)

    # ------------------------------------------------------------------ queries

    def connections(self) -> Iterator[Connection]:
        """Every connection the stack holds whole (not those kept as TIME-WAIT records)."""
        return iter(list(self._conns.values()))

    def holds(self, conn: Connection) -> bool:
        """Whether the stack still holds ``conn`` whole: it lets go of one that has
        CLOSED, or that goes on as a TIME-WAIT record."""
        return self._conns.get(conn.key) is conn

    def connection_table(self) -> list[dict[str, Any]]:
        """One row per connection held whole, as ``ss -ti`` shows one: its state,
        ports and peer, RTT, RTO, windows, bytes queued each way and counters."""
        rows = []
        for conn in self._conns.values():
            if conn.state is _LISTEN:
                continue
            peer = conn.peer
            row: dict[str, Any] = {"local_port": conn.local_port,
                                   "peer": peer[0] if peer else None,
                                   "peer_udp_port": peer[1] if peer else None,
                                   "remote_port": conn.remote_port}
            row.update(conn.info())
            rows.append(row)
        return rows

    def __len__(self) -> int:
        """Connections held, TIME-WAIT records included."""
        return len(self._conns) + len(self._tw)

    def time_wait_entries(self) -> int:
        """Entries the TIME-WAIT table holds, dormant ones (4-tuples reopened) included."""
        return self._tw.entries()

    def idle(self, *, count_time_wait: bool = True) -> bool:
        """Whether no listener and no connection is left (TIME-WAIT counting or not)."""
        if self.listeners:
            return False
        if count_time_wait:
            return not self._conns and not len(self._tw)
        return all(c.state is _TIME_WAIT for c in self._conns.values())

    def statistics(self) -> dict[str, Any]:
        """Segments in and out, retransmissions, drops by cause, connections by state."""
        totals = Counter(self._finished.as_dict())
        for conn in self._conns.values():
            totals.update(conn.counters.as_dict())
        states = Counter(str(conn.state) for conn in self._conns.values())
        mem = self.memory
        drops = dict(self.drops)
        if mem.dropped:
            drops["receive-memory"] = mem.dropped
        if len(self._tw):
            states[str(_TIME_WAIT)] += len(self._tw)
        return {
            "segments_in": self.segments_in,
            "segments_out": self.segments_out,
            "retransmissions": totals["retransmissions"],
            "resets_sent": self.resets_sent,
            "accepted": self.accepted,
            "rebinds": self.rebinds,
            "drops": drops,
            "receive_memory": {"held": mem.held, "limit": mem.limit,
                               "under_pressure": mem.under_pressure},
            "syncookies": dict(self.syncookies),
            "connections": dict(states),
            "listeners": sorted(self.listeners),
            "connection_totals": dict(totals),
        }

    # ----------------------------------------------------------------- internal

    def _service(self, conn: Connection) -> None:
        """Collect what ``conn`` queued and file its deadline; forget it once CLOSED."""
        segs = conn._out
        if segs:
            conn._out = []
            peer = conn.peer
            via = conn.via
            out = self._datagrams
            # (Only until the peer has proven its address: acknowledged our SYN-ACK,
            # or echoed a timestamp sent to its new one. What that lets go leaves
            # in full.)
            credit = self._credit.get(conn) if self._credit else None
            if credit is not None and not conn.unproven:
                del self._credit[conn]
                credit = None
            if credit is None:
                if len(segs) == 1:
                    s = segs[0]
                    out.append((s if isinstance(s, bytes) else encode(s), peer, via))
                else:
                    # (bytes: already encoded, see Connection.encode_runs)
                    out += [(s if isinstance(s, bytes) else encode(s), peer, via) for s in segs]
                self.segments_out += len(segs)
            else:
                self._send_within(credit, segs, peer, via)
        events = conn._events
        if events:
            conn._events = []
            self._events.append((conn, events))
        if conn._ack_deferred:
            self.acks_deferred[conn] = None
        state = conn.state
        if state is _CLOSED:
            self._forget(conn)
            return
        if state is _TIME_WAIT and conn.observer is None and not conn.holds_received:
            # Keep only a record. (A traced connection stays whole, for its observer
            # to see it end; one holding data for a paused reader until it is read.)
            # A call on one already kept as a record (close() after write_eof() and
            # the peer's FIN) leaves the record, or a new connection on its 4-tuple, be.
            if self.holds(conn):
                self._tw.enter(conn)
                self._forget(conn)
            return
        if state is not _SYN_RECEIVED:
            listener = conn.listener
            if listener is not None and conn in listener.half_open:
                listener.half_open.discard(conn)
                self._credit.pop(conn, None)
                self.accepted += 1
        d = conn.next_deadline()
        if d is not None:
            b = conn.timer_bucket
            # Filed already at or before d: nothing to do (see timers.py).
            if b is None or d * 1000 <= b - 1:
                self._timers.arm(conn, d)

    def _sweep(self, now: float) -> None:
        """While memory is short, end what holds it without progress: a connection
        whose application has not read for ``zero_window_timeout`` seconds, in which
        nothing more arrived, is reset; segments held that long ahead of a hole
        the peer does not fill are dropped (the peer retransmits them)."""
        self._sweep_at = None
        mem = self.memory
        stalled = self._stalled
        if not mem.under_pressure:
            stalled.clear()
            return
        timeout = self.zero_window_timeout
        for gone in [c for c in stalled if c not in mem.holders]:
            del stalled[gone]
        for conn in list(mem.holders):
            if not isinstance(conn, Connection) or conn.state is _CLOSED:
                continue
            seen = stalled.get(conn)
            if seen is None or seen[1] != conn.rcv_nxt:
                stalled[conn] = (now, conn.rcv_nxt)
                continue
            if now - seen[0] < timeout - _EARLY:
                continue
            del stalled[conn]
            if conn.reading_paused:
                self.drops["memory-reclaimed"] += 1
                conn.reclaim(now)
            else:
                conn.drop_out_of_order()
            self._service(conn)
        self._sweep_at = now + min(_SWEEP_INTERVAL, timeout / 4)

    def _send_within(self, credit: list[Any], segs: list[Segment | bytes], peer: Address,
                     via: Any) -> None:
        """Send what a half-open connection queued, within what its peer has earned:
        three times the bytes it sent, in at most three datagrams for each of its
        own (RFC 9000 8.1's limit, for a peer whose address is not yet proven).
        What a SYN leaves unspent pays for the SYN-ACK's first retransmissions,
        so that a lost SYN-ACK is sent again even when the SYN that asked for it
        is not. The rest is dropped and counted; the connection retransmits as
        though it were lost. A RST, which ends the connection, always goes."""
        out = self._datagrams
        for s in segs:
            if isinstance(s, bytes):
                data = s  # (a run's, see Connection.encode_runs: never a RST)
                rst = False
            else:
                data = encode(s)
                rst = bool(s.flags & RST)
            if rst:
                out.append((data, peer, via))  # the end of it (one, and small)
                self.segments_out += 1
            elif credit[0] >= 1 and credit[1] >= len(data):
                credit[0] -= 1
                credit[1] -= len(data)
                credit[2] = None
                out.append((data, peer, via))
                self.segments_out += 1
            else:
                credit[2] = data  # owed: sent when the peer earns it (see receive)
                self.drops["amplification-limit"] += 1

    def _pay_owed(self, credit: list[Any], conn: Connection) -> None:
        """Send the last answer the limit held back, now that the peer sent more (a
        retransmitted SYN whose SYN-ACK went out just before, held back)."""
        data = credit[2]
        if credit[0] >= 1 and credit[1] >= len(data):
            credit[0] -= 1
            credit[1] -= len(data)
            credit[2] = None
            self._datagrams.append((data, conn.peer, conn.via))
            self.segments_out += 1

    def _index(self, conn: Connection) -> None:
        """File ``conn`` under its ports, where a segment from a new address of its
        peer looks for it (see _moved)."""
        self._by_ports.setdefault((conn.key[1], conn.key[2]), []).append(conn)

    def _moved(self, seg: Segment, size: int, key: Key, addr: Address, via: Any,
               now: float) -> Connection | None:
        """The connection whose peer ``seg`` (a datagram of ``size`` bytes) proves
        to be, from a new address (a NAT rebound it: RFC 4787 mappings expire after
        minutes of silence), now filed under that address; None if no connection's
        checks pass. Until the peer proves the address its own (see
        Connection.moved), what is sent there is held to three times what came
        from it, as for a half-open connection (see _send_within)."""
        if seg.flags & (SYN | RST):
            return None
        candidates = self._by_ports.get((key[1], key[2]))
        if not candidates:
            return None
        for conn in candidates:
            if conn.may_move_to(seg, now):
                break
        else:
            return None
        old = conn.key
        addr = self._intern(addr)
        if self._conns.get(old) is conn:
            del self._conns[old]
        self._conns[key] = conn
        listener = conn.listener
        if listener is not None:
            listener.left_host(conn.peer[0])
            listener.per_host[addr[0]] += 1
        conn.key = key
        conn.peer = addr
        conn.via = via
        self.rebinds += 1
        # (The datagram that moved it earns its answers as it is taken.)
        self._credit[conn] = [0, 0, None]
        jump = (self._rng.getrandbits(28) if self._seeded else secrets.randbits(28)) + (1 << 20)
        conn.moved(now, jump)
        return conn

    def _forget(self, conn: Connection) -> None:
        key = conn.key
        peers = self._by_ports.get((key[1], key[2]))
        if peers is not None and conn in peers:
            peers.remove(conn)
            if not peers:
                del self._by_ports[(key[1], key[2])]
        if self._conns.get(key) is conn:
            del self._conns[key]
            conn.counters.add_to(self._finished)
            listener = conn.listener
            if listener is not None:
                listener.count -= 1
                listener.left_host(conn.peer[0])
        self._timers.cancel(conn)
        if self.acks_deferred:
            self.acks_deferred.pop(conn, None)
        if conn in self.memory.holders:
            self.memory.update(conn, 0)
            self._stalled.pop(conn, None)
        listener = conn.listener
        if listener is not None:
            listener.half_open.discard(conn)
        if self._credit:
            self._credit.pop(conn, None)

    def _no_connection(self, seg: Segment, size: int, key: Key, addr: Address, via: Any,
                       now: float) -> None:
        f = seg.flags
        if f & RST:
            self.drops["rst-for-no-connection"] += 1
            return
        listener = self.listeners.get(seg.dst_port)
        if listener is not None and not f & ACK:
            # 3.10.7.2 (LISTEN): a SYN opens a connection; text or control with
            # neither SYN nor ACK is dropped.
            if not f & SYN:
                self.drops["listen-no-syn"] += 1
            elif self._over_limits(listener, addr):
                pass
            elif len(listener.half_open) >= listener.backlog:
                # A full SYN queue: answer with a cookie and keep nothing (as Linux
                # does by default), or, with cookies off, drop: the peer will retry.
                if self.syn_cookies:
                    self._send_cookie(listener, seg, addr, via, now)
                else:
                    self.drops["backlog-full"] += 1
            else:
                self._accept(listener, seg, size, key, addr, via, now)
            return
        if listener is not None and f & (SYN | ACK) == ACK and now <= listener.cookies_until \
                and self._accept_cookie(listener, seg, key, addr, via, now):
            return
        # 3.10.7.1: answer with a RST (LISTEN answers an ACK the same way), within
        # a rate limit for the whole stack (Linux's defaults for ICMP errors, which
        # answer stray UDP the same way): a flood of segments to nothing draws at
        # most RST_RATE RSTs a second.
        self.drops["no-connection"] += 1
        tokens = self._rst_tokens
        if now > self._rst_refilled:  # (a clock that stepped back refills nothing)
            tokens += (now - self._rst_refilled) * RST_RATE
        self._rst_refilled = now
        if tokens > RST_BURST:
            tokens = float(RST_BURST)
        if tokens < 1.0:
            self._rst_tokens = tokens
            self.drops["rst-rate-limited"] += 1
            return
        self._rst_tokens = tokens - 1.0
        rst = reset_for(seg)
        if rst is not None:
            self.resets_sent += 1
            self.segments_out += 1
            self._datagrams.append((encode(rst), addr, via))

    def _over_limits(self, listener: Listener, addr: Address,
                     replacing: Connection | None = None) -> bool:
        """Whether ``listener`` holds as many connections as it may (counted if so);
        ``replacing`` is one of its connections, from ``addr``, about to go."""
        freed = 1 if replacing is not None and replacing.listener is listener else 0
        if listener.max_connections is not None \
                and listener.count - freed >= listener.max_connections:
            self.drops["connection-limit"] += 1
            return True
        if listener.max_per_host is not None \
                and listener.per_host[addr[0]] - freed >= listener.max_per_host:
            self.drops["host-limit"] += 1
            return True
        return False

    def _send_cookie(self, listener: Listener, seg: Segment, addr: Address, via: Any,
                     now: float) -> None:
        """Answer ``seg`` (a SYN) with a cookie SYN-ACK, keeping no state."""
        mss = seg.option(MSS)
        ws = seg.option(WSCALE)
        peer_ts: Any = seg.option(TIMESTAMPS)
        own = listener.options
        sack = own.sack and any(k == SACK_PERMITTED for k, _ in seg.options)
        state = kept(CookieState(mss if isinstance(mss, int) and mss > 0 else 536,
                                 ws if isinstance(ws, int) else None,
                                 own.timestamps and peer_ts is not None, sack))
        peer = address_key(addr)
        iss = make_cookie(self._isn, peer, listener.port, seg.src_port, seg.seq, now, state,
                          own.wscale)
        # The SYN-ACK a passive open would send (see Connection._send_syn), made
        # without one: but for its ISN, the cookie, and a TSval rounded down so that
        # its low bits carry the rest of the state. Without timestamps the cookie
        # cannot keep the peer's window scale or SACK-permitted: it answers as
        # though the SYN had offered neither, so that neither side scales or SACKs
        # (as Linux's cookies).
        ts: Any = None
        if state.timestamps:
            ts = (cookie_tsval((int(now * TS_HZ) + self._ts_offset(peer)) & _MASK, state),
                  peer_ts[0])
        answer = Segment(listener.port, seg.src_port, iss, (seg.seq + 1) & _MASK, SYN | ACK,
                         min(own.rcv_buf, 0xFFFF), 0,
                         syn_options(own.mss, state.sack, ts,
                                     own.wscale if state.wscale is not None else None))
        self._datagrams.append((encode(answer), addr, via))
        self.segments_out += 1
        listener.cookies_until = now + 2 * PERIOD
        self.syncookies["sent"] += 1

    def _accept_cookie(self, listener: Listener, seg: Segment, key: Key, addr: Address,
                       via: Any, now: float) -> bool:
        """Take ``seg`` (an ACK for no connection) as the end of a handshake begun with
        a cookie, if it carries a good one; False to answer it as any stray ACK."""
        irs = (seg.seq - 1) & 0xFFFFFFFF
        peer = address_key(addr)
        ts = seg.option(TIMESTAMPS) if seg.options else None
        state = None
        # (Timestamps on an ACK to a listener that uses none: a cookie of one that
        # did, replaced since; this one would not answer them.)
        if ts is None or listener.options.timestamps:
            state = check_cookie(self._isn, peer, listener.port, seg.src_port, irs,
                                 (seg.ack - 1) & 0xFFFFFFFF,
                                 None if ts is None else ts[1],  # type: ignore[index]
                                 listener.options.wscale, now)
        if state is None:
            self.syncookies["failed"] += 1
            return False
        if self._over_limits(listener, addr):
            return True  # dropped (and counted): the client's data will come again
        # The SYN as the cookie remembers it, replayed through a passive open; what
        # that answers is dropped (the cookie SYN-ACK went out long ago), and the
        # ACK then completes the handshake as any other would.
        opts: tuple = ((MSS, state.mss),)
        if state.wscale is not None:
            opts += ((WSCALE, state.wscale),)
        if state.sack:
            opts += ((SACK_PERMITTED, None),)
        if state.timestamps:
            opts += ((TIMESTAMPS, (ts[0], 0)),)  # type: ignore[index]
        syn = Segment(seg.src_port, listener.port, irs, 0, SYN, seg.window, 0, opts)
        # (Untraced until the replay is over: its observer sees the ACK complete it.)
        conn = self._passive_open(listener, seg.src_port, key, addr, via,
                                  (seg.ack - 1) & 0xFFFFFFFF, None)
        conn.listen(now)
        conn.receive(syn, now)
        conn.take_segments()
        # The replayed SYN-ACK was "sent" just now; the ACK answers one sent long
        # ago. Take no RTT sample from that (Linux takes none either). With
        # timestamps the ACK's TSecr still gives one, from the real SYN-ACK: up
        # to 63 ms long, for the TSval was rounded down (as Linux's is).
        conn._rtt_seq = None
        conn.observer = listener.observer
        conn.receive(seg, now)
        self._service(conn)
        self.syncookies["accepted"] += 1
        return True

    def _intern(self, addr: Address) -> Address:
        """One object for equal addresses: a connection keeps its peer's address (and
        its key holds it), and a peer's connections then share one."""
        addrs = self._addresses
        known = addrs.get(addr)
        if known is None:
            if len(addrs) >= _INTERNED_ADDRESSES:
                addrs.clear()
            known = addrs[addr] = addr
        return known

    def _passive_open(self, listener: Listener, remote_port: int, key: Key, addr: Address,
                      via: Any, iss: int, observer: Observer | None) -> Connection:
        """A connection of ``listener``'s toward ``addr``, filed under ``key`` and
        counted against the listener's limits (not yet listening)."""
        addr = self._intern(addr)
        key = (addr if len(addr) == 2 else address_key(addr), key[1], key[2])
        conn = Connection(listener.port, remote_port, iss=iss, options=listener.options,
                          observer=observer, ts_offset=self._ts_offset(key[0]))
        conn.coalesce_acks = self.coalesce_acks
        conn.defer_fin_ack = self.defer_fin_acks
        conn.memory = self.memory
        conn.encode_runs = True
        conn.peer = addr
        conn.via = via
        conn.key = key
        conn.listener = listener
        self._conns[key] = conn
        self._index(conn)
        listener.half_open.add(conn)
        listener.count += 1
        listener.per_host[addr[0]] += 1
        return conn

    def _accept(self, listener: Listener, seg: Segment, size: int, key: Key, addr: Address,
                via: Any, now: float, iss: int | None = None) -> None:
        """A passive open for ``seg``, a SYN that came in a datagram of ``size`` bytes."""
        if iss is None:
            iss = self._isn(self.local_address, listener.port, addr, seg.src_port, now)
        conn = self._passive_open(listener, seg.src_port, key, addr, via, iss,
                                  listener.observer)
        self._credit[conn] = [AMPLIFICATION, AMPLIFICATION * size, None]
        conn.listen(now)
        conn.receive(seg, now)
        self._service(conn)

    def _reopen(self, old: Connection, seg: Segment, size: int, key: Key, addr: Address,
                via: Any, now: float) -> bool:
        """A SYN for a connection kept whole in TIME-WAIT: True if it was taken as a
        new connection (or dropped as a listener's would be), False to let
        TIME-WAIT answer it."""
        listener = self.listeners.get(seg.dst_port)
        if listener is None or not reopens(seg, old.rcv_nxt, old._ts_ok, old._ts_recent):
            return False
        if self._over_limits(listener, addr, replacing=old):
            return True  # dropped and counted, as for any SYN: the peer will retry
        if len(listener.half_open) >= listener.backlog:
            self.drops["backlog-full"] += 1
            return True
        self._forget(old)
        # Linux's choice of ISS: beyond anything the old connection sent.
        self._accept(listener, seg, size, key, addr, via, now, iss_after(old.snd_max))
        return True

    def _time_wait_segment(self, seg: Segment, size: int, key: Key, addr: Address,
                           via: Any, now: float) -> None:
        """A segment (a datagram of ``size`` bytes) for a 4-tuple kept as a
        TIME-WAIT record."""
        tw = self._tw
        syn = seg.flags & (SYN | ACK | RST) == SYN
        if via is not None and not syn:
            made_at = tw.via(key)
            if made_at is not None \
                    and getattr(via, "host", via) != getattr(made_at, "host", made_at):
                # Not this record's 4-tuple, as for a connection held whole (see
                # receive). A SYN goes on: where it reopens the 4-tuple, the new
                # connection is made at the address it reached, as the kernel's is.
                self.drops["wrong-local-address"] += 1
                return
        if syn:
            listener = self.listeners.get(seg.dst_port)
            iss = tw.reopens(key, seg) if listener is not None else None
            if iss is not None:
                assert listener is not None
                if self._over_limits(listener, addr):
                    return
                if len(listener.half_open) >= listener.backlog:
                    self.drops["backlog-full"] += 1
                    return
                tw.release(key)
                self._accept(listener, seg, size, key, addr, via, now, iss)
                return
        reply = tw.receive(key, seg, now, self._finished)
        if reply is not None:
            self.segments_out += 1
            self._datagrams.append((encode(reply), addr, tw.via(key)))

    def _ts_offset(self, peer: Address) -> int:
        """The timestamp clock offset toward ``peer`` (see IsnGenerator.timestamp_offset),
        remembered for the peers seen last (a client mostly talks to a few)."""
        cache = self._ts_offsets
        offset = cache.get(peer)
        if offset is None:
            if len(cache) >= _TS_OFFSET_CACHE:
                cache.clear()
            offset = cache[peer] = self._isn.timestamp_offset(self.local_address, peer)
        return offset

    def _free_port(self, peer: Address, remote_port: int, now: float) -> tuple[Key, int | None]:
        """The key of a free 4-tuple toward (peer, remote_port), and the ISS it
        needs (None: any).

        A 4-tuple in TIME-WAIT is free only when the old connection used
        timestamps and its last one came more than ``tw_reuse_delay`` ago: without
        them (RFC 6191) a late segment of the old connection could not be told
        from the new one's, so the 4-tuple waits out 2 MSL.
        """
        ports = self._ports
        n = len(ports)
        conns = self._conns
        tw = self._tw
        listeners = self.listeners
        delay = self.tw_reuse_delay
        rng = self._rng

        def free(p: int) -> tuple[Key, int | None] | None:
            key = (peer, p, remote_port)
            if key in conns or p in listeners:
                return None
            if key not in tw:
                return key, None
            iss = tw.reusable(key, now, delay) if delay is not None else None
            if iss is None:
                return None
            tw.release(key)
            return key, iss

        # Random probes find a free port at once unless the range is nearly full.
        for _ in range(16):
            found = free(ports[int(rng.random() * n)])
            if found is not None:
                return found
        start = rng.randrange(n)
        for i in range(n):
            found = free(ports[(start + i) % n])
            if found is not None:
                return found
        raise OSError(errno.EADDRNOTAVAIL,
                      f"no free local port toward {peer[0]}:{remote_port}: "
                      f"all {n} are in use or in TIME-WAIT")
