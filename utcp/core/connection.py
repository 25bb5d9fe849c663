"""The TCP connection: RFC 9293's state machine, free of I/O.

A :class:`Connection` is fed received segments (:meth:`~Connection.receive`),
application calls (:meth:`~Connection.connect`, :meth:`~Connection.listen`,
:meth:`~Connection.send`, :meth:`~Connection.shutdown`, :meth:`~Connection.close`,
:meth:`~Connection.abort`) and timer expiries (:meth:`~Connection.handle_timer`),
each with the current time. In return it queues segments to send
(:meth:`~Connection.take_segments`), events for the application
(:meth:`~Connection.take_events`) and names the next moment it wants to be woken
(:meth:`~Connection.next_deadline`). It never reads a clock and never touches a socket.

Section numbers in comments refer to RFC 9293 unless another RFC is named.
"""

from __future__ import annotations

from typing import Any, Final

from . import seq as sq
from .autotune import INITIAL_SEGMENTS, ReceiveAutotune, grown_buffer
from .buffers import RANGE_OVERHEAD, ReassemblyQueue, ReceiveMemory, SendBuffer
from .config import OOW_ACK_INTERVAL, PAWS_IDLE, Options
from .congestion import PACED, make_controller
from .events import (
    Closed,
    Connected,
    DataReceived,
    EndOfStream,
    Event,
    FinAcked,
    Reset,
    TimedOut,
    TimeoutReason,
    Unreachable,
    Writable,
)
from .observer import Observer
from .rack import Rack
from .rate import DeliveryRate
from .recovery import (
    arm_probe,
    bytes_in_flight,
    enter_recovery,
    on_dupack,
    on_probe_timeout,
    on_reorder_timeout,
    rack_on_ack,
    rack_retransmit,
    retransmit_first,
    sack_retransmit,
)
from .rtt import RttEstimator
from .sack import Scoreboard
from .state import TRANSITIONS, ConnectionStateError, IllegalTransition, State
from .wire import (
    ACK,
    FIN,
    MSS,
    NOP_OPTION,
    PSH,
    RST,
    SACK,
    SACK_PERMITTED,
    SYN,
    TIMESTAMPS,
    TS_HZ,
    WSCALE,
    Segment,
    encode_run,
    encodes_as_run,
)

# For sequence arithmetic inlined on the per-segment path: each such expression is
# the body of the seq function named in its comment, spelled out to save the call.
_MOD: Final = sq.MOD
_MASK: Final = sq.MASK
#: Under memory pressure, the most window a connection holding nothing offers anew,
#: in segments (Linux: rcv_ssthresh clamped to 4 * advmss).
_PRESSURE_SEGMENTS: Final = 4
#: The fewest out-of-order ranges a connection may hold (see ReassemblyQueue).
_MIN_OOO_RANGES: Final = 512
_SACK_PERMITTED_OPTION: Final[tuple] = (SACK_PERMITTED, None)
_HALF: Final = sq.HALF
#: Echoes of timestamps not sent to a new address that a connection takes
#: before it takes none as proof of it (see Connection.moved).
PATH_GUESSES: Final = 8
#: Seconds over which those are counted (the misses of every move together).
PATH_GUESS_MEMORY: Final = 600.0
# The jumps of our timestamps remembered, and how long (seconds) a jump is
# remembered to age echoes by: more than any segment lives (max RTO plus 2 MSL,
# and then some).
_JUMPS_KEPT: Final = 4
_JUMP_MEMORY: Final = 600.0

CLOSED: Final = State.CLOSED
LISTEN: Final = State.LISTEN
SYN_SENT: Final = State.SYN_SENT
SYN_RECEIVED: Final = State.SYN_RECEIVED
ESTABLISHED: Final = State.ESTABLISHED
FIN_WAIT_1: Final = State.FIN_WAIT_1
FIN_WAIT_2: Final = State.FIN_WAIT_2
CLOSE_WAIT: Final = State.CLOSE_WAIT
CLOSING: Final = State.CLOSING
LAST_ACK: Final = State.LAST_ACK
TIME_WAIT: Final = State.TIME_WAIT

# State sets are short tuples, most common state first: ``in`` compares by identity
# first, which for a few members costs no more than a set's hash and lookup (and
# State hashes as an object does: see state.py). These tests run for every segment.
# States in which received text is delivered (3.10.7.4, seventh step).
_RECEIVE_TEXT: Final = (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2)
# States in which our send side may still carry data or a FIN.
_SEND_OPEN: Final = (ESTABLISHED, CLOSE_WAIT)
_SENDING: Final = (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK)
#: States whose FIN is sent and not yet acknowledged.
_FIN_UNACKED: Final = (FIN_WAIT_1, CLOSING, LAST_ACK)
_PACED: Final = PACED
# 3.10.5: the states in which ABORT sends a RST. Not CLOSING, LAST-ACK or TIME-WAIT:
# both FINs have been sent there, and the connection is deleted silently.
#: A duplicate SYN in SYN-RECEIVED is answered at most this often, in seconds.
DUP_SYN_INTERVAL: Final = 0.5
_ABORT_SENDS_RST: Final = (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, FIN_WAIT_2, SYN_RECEIVED)
# RFC 1122 4.2.2.6: without an MSS option, assume 536.
_DEFAULT_PEER_MSS: Final = 536
# Least send MSS whatever the peer's option says, so that a tiny one cannot make us
# cut the stream into runts (CVE-2019-11479; Linux: net.ipv4.tcp_min_snd_mss, 48).
# 88, not 48: it is the least MSS Options accepts for our own side (Linux's
# TCP_MIN_MSS), so both directions share one floor. Not 536: that is the default
# when the option is absent, not a floor, and a peer on a small-MTU path may
# legitimately ask for less; 88 already bounds the per-byte header overhead.
_MIN_PEER_MSS: Final = 88
# RFC 7323 2.3: the largest shift a window-scale option may carry.
_MAX_WSCALE: Final = 14
# RFC 6298 5.7: the RTO for data when the handshake gave no RTT sample.
_SYN_FALLBACK_RTO: Final = 3.0
# With coalesce_acks, the most full-sized segments left unacknowledged in a batch.
_COALESCE_MAX_SEGMENTS: Final = 16
# NOP, NOP, then the 10-byte option: what timestamps take from every segment.
_TS_OPTION_SPACE: Final = 12
# Pacing: what may leave at once, as Linux sizes a TSO/GSO burst for its pacing
# rate (tcp_tso_autosize): a millisecond's worth (sk_pacing_shift 10), and at
# least two segments. The stack's timers run in millisecond buckets (timers.py),
# so a batch per wake-up, not a segment per wake-up.
_PACING_BATCH_TIME: Final = 0.001
_PACING_BATCH_SEGMENTS: Final = 2


def _ooo_ranges(rcv_buf: int, mss: int) -> int:
    """The most out-of-order ranges a receive buffer of ``rcv_buf`` may hold: a
    whole window of full segments behind a hole, twice over (a retransmission
    that overlaps what is held leaves smaller pieces); at least 512. The bytes
    are bounded by the window either way."""
    ranges = 2 * rcv_buf // mss
    return ranges if ranges > _MIN_OOO_RANGES else _MIN_OOO_RANGES


def syn_options(mss: int, sack: bool, ts: tuple[int, int] | None,
                wscale: int | None) -> tuple:
    """The options of a SYN or SYN-ACK, in Linux's order: MSS, then SACK-permitted
    and timestamps (or NOP, NOP and timestamps; or NOP, NOP and SACK-permitted),
    then NOP and the window scale; ``ts`` is (TSval, TSecr), None for none."""
    opts: tuple = ((MSS, mss),)
    if ts is not None:
        opts += (_SACK_PERMITTED_OPTION,) if sack else (NOP_OPTION, NOP_OPTION)
        opts += ((TIMESTAMPS, ts),)
    elif sack:
        opts += (NOP_OPTION, NOP_OPTION, _SACK_PERMITTED_OPTION)
    if wscale is not None:
        if len(opts) > 1:
            opts += (NOP_OPTION,)
        opts += ((WSCALE, wscale),)
    return opts


def reset_for(seg: Segment) -> Segment | None:
    """The RST answering ``seg`` when no connection exists for it (3.10.7.1).

    Returns None for a RST: a RST is never answered.
    """
    if seg.flags & RST:
        return None
    if seg.flags & ACK:
        return Segment(seg.dst_port, seg.src_port, seg.ack, 0, RST)
    return Segment(seg.dst_port, seg.src_port, 0, sq.add(seg.seq, seg.seg_len), RST | ACK)


# Counters' slots, named first: compiled code cannot read a class's __slots__ back.
_COUNTER_NAMES: Final = ("segments_in", "segments_out", "bytes_in", "bytes_out", "retransmissions",
                  "duplicates", "out_of_order", "unacceptable", "challenge_acks",
                  "paws_rejected", "ooo_dropped", "timeouts", "tlp_probes",
                  "lost_retransmissions", "undos", "recoveries")


class Counters:
    """Per-connection statistics."""

    __slots__ = _COUNTER_NAMES

    def __init__(self) -> None:
        self.segments_in = 0
        self.segments_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.retransmissions = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.unacceptable = 0
        self.challenge_acks = 0
        self.paws_rejected = 0
        #: Out-of-order bytes dropped to keep the reassembly queue within its limits.
        self.ooo_dropped = 0
        #: Retransmission timeouts (Linux's TcpTimeouts): SYN, data and FIN alike.
        self.timeouts = 0
        #: Tail loss probes sent (RFC 8985 7; Linux's TCPLossProbes).
        self.tlp_probes = 0
        #: Retransmissions RACK found lost again, to be resent once more (Linux's
        #: TCPLostRetransmit).
        self.lost_retransmissions = 0
        #: Window reductions undone: every retransmission of a recovery came back
        #: as a D-SACK, so nothing had been lost (Linux's TCPDSACKUndo).
        self.undos = 0
        #: Fast recoveries entered, found by duplicate ACKs, SACK or RACK (Linux's
        #: TCPSackRecovery and TCPRenoRecovery).
        self.recoveries = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _COUNTER_NAMES}

    def add_to(self, total: Counters) -> None:
        """Add these counts to ``total`` (a stack's, of the connections it forgot)."""
        total.segments_in += self.segments_in
        total.segments_out += self.segments_out
        total.bytes_in += self.bytes_in
        total.bytes_out += self.bytes_out
        total.retransmissions += self.retransmissions
        total.duplicates += self.duplicates
        total.out_of_order += self.out_of_order
        total.unacceptable += self.unacceptable
        total.challenge_acks += self.challenge_acks
        total.paws_rejected += self.paws_rejected
        total.ooo_dropped += self.ooo_dropped
        total.timeouts += self.timeouts
        total.undos += self.undos
        total.tlp_probes += self.tlp_probes
        total.lost_retransmissions += self.lost_retransmissions
        total.recoveries += self.recoveries


class Connection:
    """One TCP connection between ``local_port`` and ``remote_port``.

    ``iss`` is our initial sequence number (the endpoint draws it from an
    :class:`~utcp.core.isn.IsnGenerator`; tests fix it).
    """

    # Slots: a server holds thousands of these (TIME-WAIT among them), and slot
    # access is quicker on the per-segment path.
    __slots__ = (
        "cc", "coalesce_acks", "counters", "defer_fin_ack", "encode_runs", "irs", "iss",
        "local_port",
        "max_snd_wnd",
        "observer", "options", "rcv_buf", "rcv_nxt", "remote_port", "rtt", "send_low_water",
        "send_mss",
        "snd_max", "snd_nxt", "snd_una", "snd_wl1", "snd_wl2", "snd_wnd", "state",
        # Kept by the stack that carries the connection (see utcp.core.stack).
        "key", "listener", "memory", "owner", "peer", "timer_bucket", "via",
        "_ack_at", "_ack_at_batch_end", "_ack_deferred", "_ack_now", "_ack_pending",
        "_close_at",
        "_closed_reported", "_drs", "_dupacks", "_eof_held", "_events", "_fin_queued",
        "_fin_received", "_fin_seq", "_heard_at", "_ka_at", "_last_oow_ack", "_ooo", "_ooo_fin",
        "_orphan_probes", "_orphaned", "_out", "_peer_offered_wscale", "_persist_at",
        "_probes", "_rcv_adv",
        "_rcv_wscale", "_rcvbuf", "_reading_paused", "_retries", "_rtt_sent", "_rtt_seq",
        "_rtx_at", "_snd_wscale", "_sndbuf", "_synack_at", "_was_listening",
        "ts_offset", "_last_ack_sent", "_ts_ok", "_ts_recent", "_ts_recent_at", "_rto_ts",
        "_sack_ok", "_sb", "_high_rxt", "_dsack", "_ooo_recent", "_undo", "_rack_ok", "_rack",
        "_loss_at",
        "_loss_probe", "_pace_at", "_pace_next", "_pacing", "_rate",
        "_path_ts", "_path_probed", "_path_sent", "_path_misses", "_path_misses_at",
        "_ts_jumps", "_ts_jumps_cut",
    )

    def __init__(
        self,
        local_port: int,
        remote_port: int,
        *,
        iss: int,
        options: Options | None = None,
        observer: Observer | None = None,
        ts_offset: int = 0,
    ) -> None:
        opts = options if options is not None else Options()
        self.options = opts
        self.local_port = local_port
        self.remote_port = remote_port
        self.observer = observer
        self.state = CLOSED
        self.counters = Counters()

        # Send sequence space (3.3.1).
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_max = iss  # highest sequence number sent so far (go-back-N after RTO)
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self._sndbuf = SendBuffer((iss + 1) & _MASK)
        self._fin_queued = False  # the application has shut down its write side
        self._fin_seq: int | None = None  # sequence number of our FIN once queued
        self.send_mss = _DEFAULT_PEER_MSS
        self._snd_wscale = 0  # shift the peer applies to the windows it advertises
        self._rcv_wscale = 0  # shift we apply to ours
        self._peer_offered_wscale = False

        # Receive sequence space.
        self.irs: int | None = None
        self.rcv_nxt = 0
        self._rcv_adv = 0  # right edge of the window last advertised
        self._last_ack_sent = 0  # RFC 7323 4.3: Last.ACK.sent

        # Timestamps (RFC 7323): our clock is the time in ms plus this offset (the
        # stack keeps it the same toward one peer, so that the clock a peer sees
        # only moves forward from one connection to the next, as Linux does).
        self.ts_offset = ts_offset
        self._ts_ok = False  # both SYNs carried the option
        self._ts_recent = 0  # TS.Recent: the peer's timestamp we echo
        self._ts_recent_at = 0.0  # when TS.Recent was last set
        self._rto_ts: int | None = None  # our timestamp clock at the last RTO (see below)
        # Path validation after a move (see moved()): the first TSval sent to the
        # new address, until the peer echoes one sent there (None: proven); the
        # TSvals sent there; echoes that were none of them; and the recent jumps
        # of our timestamps, as (first TSval after, jump, when), oldest first.
        self._path_ts: int | None = None
        self._path_probed = False
        self._path_sent: list[int] = []
        self._path_misses = 0
        self._path_misses_at = 0.0  # when the count of misses began
        self._ts_jumps: list[tuple[int, int, float]] = []
        self._ts_jumps_cut = False  # a jump was forgotten early: older echoes unknown
        # SACK (RFC 2018): whether both SYNs offered it; the blocks the peer SACKed;
        # how far loss recovery has retransmitted (RFC 6675 HighRxt); a duplicate to
        # report in our next ACK (D-SACK, RFC 2883); the last segment held early.
        self._sack_ok = False
        self._sb = Scoreboard()
        self._high_rxt = iss
        self._dsack: tuple[int, int] | None = None
        # What the last recovery reduced, kept until D-SACKs show that each of its
        # retransmissions was needless (then it is undone) or a new loss comes:
        # [the controller's state before, retransmissions so far then, D-SACKs].
        self._undo: list[Any] | None = None
        self._ooo_recent = 0
        # RACK-TLP (RFC 8985): whether SACK is in use and Options.rack allows it;
        # its state, from the first segment sent (an idle connection holds none).
        self._rack_ok = False
        self._rack: Rack | None = None
        #: The receive buffer's size: Options.rcv_buf, grown by autotuning while
        #: the application reads fast enough to need more (up to rcv_buf_max).
        self.rcv_buf = opts.rcv_buf
        # Autotuning's measures, from the first data received while the buffer may
        # still grow (an idle connection holds none).
        self._drs: ReceiveAutotune | None = None
        self._ooo = ReassemblyQueue(_ooo_ranges(opts.rcv_buf, opts.mss))
        self._ooo_fin: int | None = None  # sequence number of a FIN that arrived early
        self._rcvbuf = bytearray()  # in order, held back while reading is paused
        self._reading_paused = False
        #: What the stack's connections hold in all (None: no shared limit).
        self.memory: ReceiveMemory | None = None
        self._fin_received = False
        self._eof_held = False  # EndOfStream waits behind data held while paused
        self._was_listening = False

        # Retransmission, RTT and congestion.
        self.rtt = RttEstimator(opts.initial_rto, opts.min_rto, opts.max_rto)
        self.cc = make_controller(opts.congestion_control, self.send_mss, opts.initial_cwnd,
                                  iss, self.rtt)
        # Delivery rate estimation, if the controller models the path from it (BBR).
        self._rate: DeliveryRate | None = self.cc.rate
        self._retries = 0
        self._rtt_seq: int | None = None  # Karn: one timed segment at a time
        self._rtt_sent = 0.0
        self._synack_at = -1.0  # when our last SYN-ACK left (a duplicate SYN's limit)
        self._dupacks = 0

        # Delayed ACK (RFC 1122 4.2.3.2, RFC 5681 4.2).
        self._ack_pending = 0  # bytes received and not yet acknowledged
        self._ack_now = False
        #: Set by a shell that reads datagrams in batches and calls flush_acks() after
        #: each: in-order data is then ACKed once per batch rather than every second
        #: segment, as Linux does for segments merged by GRO. A long batch still
        #: draws an ACK as soon as 16 full-sized segments are unacknowledged, so the
        #: sender's ACK clock keeps ticking within it and no single ACK releases
        #: more than 16 segments' worth of window at once. Duplicate ACKs (for data
        #: out of order) still leave at once, so fast retransmit is unaffected.
        self.coalesce_acks = False
        self._ack_at_batch_end = False
        #: Set by a shell that calls send_deferred_ack() once the application has had
        #: its turn after the events: the ACK of a FIN that arrives while ESTABLISHED
        #: then waits for that turn, so that the FIN (or data) an application sends
        #: at once in answer carries it, as Linux's does: the peer's FIN puts Linux in
        #: delayed-ACK ("pingpong") mode, and a close is FIN, FIN-ACK, ACK. The
        #: delayed-ACK timer sends it if the shell never does.
        self.defer_fin_ack = False
        self._ack_deferred = False
        #: Set by a shell that encodes what take_segments() gives: a run of full-sized
        #: segments of new data, as a bulk sender sends, then goes into it already
        #: encoded (as :func:`~utcp.core.wire.encode_run` makes them), as ``bytes``,
        #: not as one Segment each. Never while an observer watches.
        self.encode_runs = False

        # Timers: each None or an absolute time (smoltcp keeps them in one field;
        # here the few that may run together are kept side by side).
        self._rtx_at: float | None = None  # SYN, SYN-ACK, data and FIN retransmission
        self._persist_at: float | None = None  # zero-window probe
        self._ack_at: float | None = None  # delayed ACK
        self._close_at: float | None = None  # TIME-WAIT or FIN-WAIT-2
        self._ka_at: float | None = None  # keepalive, and NAT keepalive
        self._heard_at = 0.0  # when the peer was last heard (keepalive's idle time)
        # RACK's reorder timer or TLP's probe timeout (RFC 8985 8: never both), as
        # _loss_probe says; the RTO runs beside it, and a PTO never outlasts it.
        self._loss_at: float | None = None
        self._loss_probe = False
        # Pacing (Options.pacing): whether it is on, when the next paced segment is
        # due (Linux's earliest departure time, tcp_wstamp_ns), and the timer that
        # sends it.
        self._pacing = opts.pacing if opts.pacing is not None \
            else opts.congestion_control in _PACED
        self._pace_next = 0.0
        self._pace_at: float | None = None
        self._probes = 0  # unanswered keepalive or zero-window probes
        self._last_oow_ack = float("-inf")
        self._orphaned = False  # close() called: nobody will read any more
        self._orphan_probes = 0  # zero-window probes since orphaned, answered or not

        #: Set by the application to be told (:class:`Writable`) once no more than
        #: this many written bytes are left unsent; cleared when that is reported.
        self.send_low_water: int | None = None

        self._out: list[Segment | bytes] = []  # (bytes: see encode_runs)
        self._events: list[Event] = []
        self._closed_reported = False

        # The stack's bookkeeping; a connection on its own leaves them as they are.
        #: The peer's datagram address, and the local address it reached (or None).
        self.peer: Any = None
        self.via: Any = None
        #: The connection's entry in its stack's table, and the listener that
        #: accepted it (None for an active open).
        self.key: Any = None
        self.listener: Any = None
        #: Whatever the application side keeps for this connection (the asyncio
        #: shell's transport); the core never looks at it.
        self.owner: Any = None
        self.timer_bucket: int | None = None

    # ------------------------------------------------------------------ outputs

    def take_segments(self) -> list[Segment | bytes]:
        """Return and forget the segments queued for sending, oldest first (some
        already encoded, as ``bytes``, if :attr:`encode_runs` is set)."""
        out = self._out
        self._out = []
        return out

    def take_events(self) -> list[Event]:
        """Return and forget the events queued for the application, oldest first."""
        ev = self._events
        self._events = []
        return ev

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`handle_timer` must be called, or None."""
        # Unrolled: the endpoint asks after every event on the connection.
        best = self._rtx_at
        t = self._persist_at
        if t is not None and (best is None or t < best):
            best = t
        t = self._ack_at
        if t is not None and (best is None or t < best):
            best = t
        t = self._close_at
        if t is not None and (best is None or t < best):
            best = t
        t = self._ka_at
        if t is not None and (best is None or t < best):
            best = t
        t = self._loss_at
        if t is not None and (best is None or t < best):
            best = t
        t = self._pace_at
        if t is not None and (best is None or t < best):
            best = t
        return best

    # ----------------------------------------------------------------- queries

    @property
    def rcv_wnd(self) -> int:
        """Free receive-buffer space: what the window may offer."""
        free = self.rcv_buf - len(self._rcvbuf) - self._ooo.memory
        return free if free > 0 else 0

    @property
    def unsent(self) -> int:
        """Bytes written by the application and not yet sent once."""
        buf = self._sndbuf
        sent = (self.snd_max - buf.start) & _MASK  # sq.sub(SND.MAX, start), clamped below
        if sent >= _HALF:
            return buf.size
        return buf.size - sent if sent < buf.size else 0

    @property
    def unacked_data(self) -> int:
        """Bytes sent and not yet acknowledged."""
        return self._sndbuf.size - self.unsent

    @property
    def send_buffered(self) -> int:
        """Bytes written by the application and not yet acknowledged."""
        return self._sndbuf.size

    @property
    def reading_paused(self) -> bool:
        """Whether received data is held back (:meth:`pause_reading`)."""
        return self._reading_paused

    @property
    def receive_memory(self) -> int:
        """Bytes this connection holds for its application and ahead of holes, as
        charged against the stack's limit (:class:`ReceiveMemory`)."""
        return len(self._rcvbuf) + self._ooo.memory

    @property
    def holds_received(self) -> bool:
        """Whether received data or its end is held back for a paused reader."""
        return bool(self._rcvbuf) or self._eof_held

    @property
    def pacing_rate(self) -> float | None:
        """The rate the connection paces its sending at now, in bytes a second; None
        while it does not pace (pacing is off, or no RTT is known yet)."""
        srtt = self.rtt.srtt
        if not self._pacing or srtt is None:
            return None
        return self.cc.pacing_rate(srtt, (self.snd_max - self.snd_una) & _MASK) or None

    def info(self) -> dict[str, object]:
        """State, RTT, windows and counters, for ``get_extra_info('utcp')``."""
        return {
            "state": str(self.state),
            "srtt": self.rtt.srtt,
            "rttvar": self.rtt.rttvar,
            "rto": self.rtt.rto,
            "snd_wnd": self.snd_wnd,
            "rcv_wnd": self.rcv_wnd,
            "rcv_buf": self.rcv_buf,
            "cwnd": self.cc.cwnd,
            "ssthresh": self.cc.ssthresh,
            "send_mss": self.send_mss,
            "timestamps": self._ts_ok,
            "sack": self._sack_ok,
            "rack": self._rack_ok,
            "pacing_rate": self.pacing_rate,
            "unacked": self.unacked_data,
            "unsent": self.unsent,
            "unread": len(self._rcvbuf) + self._ooo.size,
            **self.counters.as_dict(),
        }

    def __repr__(self) -> str:
        return f"<Connection {self.local_port}>{self.remote_port} {self.state}>"

    # ------------------------------------------------------- application calls

    def connect(self, now: float) -> None:
        """Active open: send SYN and enter SYN-SENT."""
        if self.state is not CLOSED or self.snd_max != self.iss:
            raise ConnectionStateError(f"cannot connect in state {self.state}")
        self._set_state(SYN_SENT, "connect", now)
        self._send_syn(now, ack=False)

    def listen(self, now: float = 0.0) -> None:
        """Passive open: wait in LISTEN for a SYN."""
        if self.state is not CLOSED or self.snd_max != self.iss:
            raise ConnectionStateError(f"cannot listen in state {self.state}")
        self._set_state(LISTEN, "listen", now)

    def send(self, data: bytes, now: float) -> None:
        """Queue ``data`` for reliable, ordered delivery."""
        st = self.state
        if self._fin_queued or st not in _SEND_OPEN and st not in (SYN_SENT, SYN_RECEIVED):
            why = "the write side is shut down" if self._fin_queued else "not connected"
            raise ConnectionStateError(f"cannot send in state {st} ({why})")
        if not data:
            return
        if self._rate is not None and st in _SEND_OPEN:
            # Whether the application kept the sender busy (see rate.py).
            rack = self._rack
            self._rate.check_app_limited(self.unsent, self.send_mss, bytes_in_flight(self),
                                         self.cc.cwnd, rack.lost if rack is not None else 0)
        self._sndbuf.append(data)
        if st in _SEND_OPEN:
            self._output(now)

    def shutdown(self, now: float) -> None:
        """Half-close: send FIN after the queued data; keep receiving."""
        st = self.state
        if self._fin_queued:
            return
        if st in (CLOSED, LISTEN, SYN_SENT):
            if st is not CLOSED:
                self._terminate("close before connected", now)
            return
        self._fin_queued = True
        self._fin_seq = (self._sndbuf.start + self._sndbuf.size) & _MASK
        if st is CLOSE_WAIT:
            self._set_state(LAST_ACK, "close", now)
        elif st in (ESTABLISHED, SYN_RECEIVED):
            # 3.10.4: in SYN-RECEIVED the FIN waits for the handshake to finish.
            if st is ESTABLISHED:
                self._set_state(FIN_WAIT_1, "close", now)
        self._output(now)

    def close(self, now: float) -> None:
        """Close: shut down writing and stop reading (the connection is orphaned).

        Received data that was never read resets the connection, as in Linux
        (RFC 2525 2.17): the peer learns its data was not consumed.
        """
        if self.state is CLOSED:
            return
        if self._rcvbuf or self._ooo.size:
            self.abort(now)
            return
        self._orphaned = True
        self.shutdown(now)
        if self.state is FIN_WAIT_2 and self._close_at is None:
            self._close_at = now + self.options.fin_wait_2_timeout

    def unreachable(self, seq: int, what: str, now: float) -> None:
        """An ICMP destination unreachable arrived, quoting our segment numbered ``seq``;
        ``what`` is "port", "host" or "network".

        Quoting our SYN in SYN-SENT, it ends the connection, as Linux does with
        these hard errors: "port" refuses it as a RST would (no endpoint is bound
        there), "host" and "network" report :class:`Unreachable`. Quoting our
        SYN-ACK in a passive open's SYN-RECEIVED, it ends that half-open
        connection silently. Elsewhere it is a soft error (RFC 1122 4.2.3.9) and
        changes nothing.
        """
        if self.state is SYN_SENT and seq == self.iss:
            if what == "port":
                self._events.append(Reset(refused=True))
                self._terminate("ICMP port unreachable (refused)", now)
            else:
                self._events.append(Unreachable(what))
                self._terminate(f"ICMP {what} unreachable", now)
        elif self.state is SYN_RECEIVED and seq == self.iss and self._was_listening:
            # Quoting our SYN-ACK: the SYN came from an address where nobody waits
            # for it (a spoofed one, most likely). Linux drops such a request at
            # once; so do we, quietly: no application has seen it.
            self._terminate(f"ICMP {what} unreachable in SYN-RECEIVED", now)

    def port_unreachable(self, seq: int, now: float) -> None:
        """:meth:`unreachable` for an ICMP port unreachable."""
        self.unreachable(seq, "port", now)

    def abort(self, now: float) -> None:
        """Abort: drop everything and enter CLOSED, with no event (3.10.5).

        A RST tells the peer in SYN-RECEIVED, ESTABLISHED, FIN-WAIT-1, FIN-WAIT-2 and
        CLOSE-WAIT; in CLOSING, LAST-ACK and TIME-WAIT the connection is just deleted.
        """
        if self.state in _ABORT_SENDS_RST:
            self._emit(Segment(self.local_port, self.remote_port, self.snd_max, 0, RST), now)
        self._drop_received()
        self._terminate("abort", now)

    def reclaim(self, now: float) -> None:
        """Reset the connection to free what it holds for an application that does
        not read (the stack's memory is short): :class:`TimedOut` ("memory")."""
        if self.state in _ABORT_SENDS_RST:
            self._emit(Segment(self.local_port, self.remote_port, self.snd_max, 0, RST), now)
        self._events.append(TimedOut(TimeoutReason.MEMORY))
        self._drop_received()
        self._terminate("receive buffer unread while memory is short", now)

    def drop_out_of_order(self) -> None:
        """Forget the segments held ahead of a hole (the peer sends them again)."""
        ooo = self._ooo
        if ooo.size:
            self.counters.ooo_dropped += ooo.size
            ooo.clear()
            self._account()

    def _drop_received(self) -> None:
        """Forget received data the application has not been given."""
        self._rcvbuf.clear()
        self._ooo.clear()
        self._ooo_fin = None
        self._eof_held = False
        if self.memory is not None:
            self.memory.update(self, 0)

    def _account(self) -> None:
        """Tell the stack's :class:`ReceiveMemory` what this connection now holds."""
        mem = self.memory
        if mem is not None:
            mem.update(self, self.receive_memory)

    def pause_reading(self) -> None:
        """Hold received data in the receive buffer; the window closes as it fills."""
        self._reading_paused = True

    def resume_reading(self, now: float) -> None:
        """Deliver held data and reopen the window."""
        if not self._reading_paused:
            return
        self._reading_paused = False
        before = self.rcv_wnd
        if self._rcvbuf:
            data = bytes(self._rcvbuf)
            self._rcvbuf.clear()
            self._events.append(DataReceived(data))
            self._account()
        drs = self._drs
        if drs is not None:
            # Data waited for this reader: the reader held the sender back, not the
            # window (Linux subtracts what waits unread from what was taken). What
            # it takes now proves no need for more room; the measure starts again.
            drs.restart(self.rcv_nxt, now)
        if self._eof_held:
            self._eof_held = False
            self._events.append(EndOfStream())
        # RFC 1122 4.2.3.3 (receiver SWS avoidance): announce a reopened window
        # once it grew by min(buffer / 2, MSS).
        if self.state.synchronized and self.rcv_wnd - before >= min(
            self.rcv_buf // 2, self.options.mss
        ):
            self._send_ack(now)

    # ------------------------------------------------------------------ timers

    def handle_timer(self, now: float) -> None:
        """Run every timer due at or before ``now``."""
        if self._ack_at is not None and now >= self._ack_at:
            self._ack_at = None
            if self._ack_pending or self._ack_now or self._ack_deferred:
                self._send_ack(now)
        t = self._pace_at
        if t is not None and now >= t:
            self._pace_at = None
            self._output(now)  # the next paced batch is due
        t = self._loss_at
        if t is not None and now >= t:
            # Before the RTO: a probe timeout capped at the RTO's time fires as a
            # probe, and the probe restarts the RTO (RFC 8985 7.2, 7.3).
            self._loss_at = None
            # (RACK-TLP acts only while data may be in flight, and not toward an
            # address not yet proven: there the RTO sends its probe, see moved().)
            if self.state in _SENDING and self._path_ts is None:
                if self._loss_probe:
                    on_probe_timeout(self, now)
                else:
                    on_reorder_timeout(self, now)
        if self._rtx_at is not None and now >= self._rtx_at:
            self._rtx_at = None
            self._on_retransmit_timeout(now)
        if self._persist_at is not None and now >= self._persist_at:
            self._persist_at = None
            self._on_persist_timeout(now)
        if self._close_at is not None and now >= self._close_at:
            self._close_at = None
            if self.state is TIME_WAIT:
                self._set_state(CLOSED, "2MSL timeout", now)
                self._clear_timers()
            elif self.state is FIN_WAIT_2:
                self._emit(Segment(self.local_port, self.remote_port, self.snd_max, 0, RST), now)
                self._events.append(TimedOut(TimeoutReason.FIN_WAIT_2))
                self._terminate("FIN-WAIT-2 timeout", now)
        if self._ka_at is not None and now >= self._ka_at:
            self._on_keepalive_timeout(now)

    def _on_retransmit_timeout(self, now: float) -> None:
        st = self.state
        if self._path_ts is not None and st in _SENDING:
            # A new address not yet proven: its probe again, not the data (moved()),
            # shut window or not; as many times as data would be.
            if self._retries >= self.options.data_retries:
                self._events.append(TimedOut(TimeoutReason.DATA))
                self._terminate("data retransmissions exhausted", now)
                return
            self._retries += 1
            self.rtt.back_off()
            self._send_path_probe(now)
            if sq.lt(self.snd_una, self.snd_max):
                self._rtx_at = now + self.rtt.rto
            return
        if self.snd_wnd == 0 and st.synchronized:
            # 3.8.6.2.2: the peer shrank its window to zero under our data. Probe it
            # (MUST) instead of spending retries on data it cannot take (and SHOULD
            # NOT time out for); resend from SND.UNA once it opens.
            if self._rack is not None:
                self._rack.mark_all_lost()
                self._loss_at = None
            else:
                self.snd_nxt = self.snd_una
            self._rtt_seq = None
            self._on_persist_timeout(now)
            return
        limit = {SYN_SENT: self.options.syn_retries,
                 SYN_RECEIVED: self.options.synack_retries}.get(st, self.options.data_retries)
        if self._retries >= limit:
            if st is SYN_SENT:
                reason = TimeoutReason.SYN
            elif st is SYN_RECEIVED:
                reason = TimeoutReason.SYNACK
            elif self._fin_seq is not None and self.snd_una == self._fin_seq:
                reason = TimeoutReason.FIN
            else:
                reason = TimeoutReason.DATA
            self._events.append(TimedOut(reason))
            self._terminate(f"{reason.value} retransmissions exhausted", now)
            return
        self._retries += 1
        self.counters.timeouts += 1
        self._undo = None  # (a timeout is no reordering: nothing to undo)
        self.rtt.back_off()
        self._rtt_seq = None  # Karn: never time a retransmitted segment
        if self._ts_ok or st is SYN_SENT and self.options.timestamps:
            self._rto_ts = (int(now * TS_HZ) + self.ts_offset) & _MASK
        if st is SYN_SENT:
            self._send_syn(now, ack=False, retransmit=True)
            return
        if st is SYN_RECEIVED and sq.le(self.snd_una, self.iss):
            self._send_syn(now, ack=True, retransmit=True)
            return
        sb = self._sb
        if sb.sacked and sb.sacked_at(self.snd_una, 0):
            # The segment at SND.UNA was SACKed and, a timeout later, is still not
            # acknowledged: the peer reneged (dropped what it SACKed, as a receiver
            # short of memory may). RFC 2018 8 and Linux: forget every SACK, and
            # resend it all.
            sb.clear()
            if self._rack is not None:
                self._rack.forget_sacks()
        self._go_back(now)
        self._output(now)
        if self._rtx_at is None and sq.lt(self.snd_una, self.snd_max):
            self._rtx_at = now + self.rtt.rto

    def _go_back(self, now: float) -> None:
        """RFC 5681 (4) / RFC 6298 5.4: collapse the window, go back to SND.UNA (after
        a timeout, or once a new address is proven, see moved())."""
        self.cc.on_timeout(sq.sub(self.snd_max, self.snd_una), self.snd_max, now)
        self._dupacks = 0
        rate = self._rate
        if self._rack is not None:
            # Everything the peer has not SACKed is lost, and is resent as the
            # window allows (see _output), lowest first; RACK finds any of it lost
            # again without another timeout.
            lost = self._rack.lost
            self._rack.mark_all_lost()
            self._loss_at = None
            if rate is not None:
                rate.lost += self._rack.lost - lost
        else:
            self.snd_nxt = self.snd_una
            if rate is not None:
                rate.point = None  # (Karn: what is resent times nothing)

    def _on_persist_timeout(self, now: float) -> None:
        retries = self.options.data_retries
        if self._probes >= retries:
            self._events.append(TimedOut(TimeoutReason.PERSIST))
            self._terminate("zero-window probes unanswered", now)
            return
        if self._orphaned:
            # A peer may keep its window shut for ever, answering every probe
            # (RFC 9293 3.8.6.1 lets it); nobody waits on a closed connection's
            # data, so it gets data_retries probes in all (Linux: tcp_orphan_retries).
            if self._orphan_probes >= retries:
                self._events.append(TimedOut(TimeoutReason.PERSIST))
                self._terminate("window stayed shut after close", now)
                return
            self._orphan_probes += 1
        self._probes += 1
        # Zero-window probe as Linux sends it: an old sequence number draws an ACK
        # that carries the current window (3.8.6.1 allows probing with no data).
        self._emit(self._make(sq.add(self.snd_una, -1), ACK, now), now)
        self.rtt.back_off()
        self._persist_at = now + self.rtt.rto

    def _keepalive_idle(self) -> float:
        """How long a quiet connection waits before it probes: keepalive's idle
        time, or the NAT keepalive's interval if shorter."""
        opts = self.options
        nat = opts.nat_keepalive
        if not opts.keepalive:
            return nat  # type: ignore[return-value]
        return nat if nat is not None and nat < opts.keepalive_idle else opts.keepalive_idle

    def _on_keepalive_timeout(self, now: float) -> None:
        opts = self.options
        nat = opts.nat_keepalive
        if nat is not None and (not opts.keepalive
                                or now - self._heard_at < opts.keepalive_idle - 1e-9):
            # A NAT keepalive: a probe (its answer refreshes the peer's side too)
            # to keep a router's mapping alive, counted toward no abort.
            if self._rtx_at is None and self._persist_at is None:
                self._emit(self._make(sq.add(self.snd_una, -1), ACK, now), now)
            idle = self._heard_at + opts.keepalive_idle if opts.keepalive else None
            self._ka_at = now + nat if idle is None or now + nat < idle else idle
            return
        if self._probes >= opts.keepalive_count:
            # Like Linux, tell the peer (if it is there after all) with a RST.
            self._emit(Segment(self.local_port, self.remote_port, self.snd_max, 0, RST), now)
            self._events.append(TimedOut(TimeoutReason.KEEPALIVE))
            self._terminate("keepalive probes unanswered", now)
            return
        if self._rtx_at is not None or self._persist_at is not None:
            # Something is in flight: its own timer watches the peer.
            self._ka_at = now + opts.keepalive_interval
            return
        self._probes += 1
        self._emit(self._make(sq.add(self.snd_una, -1), ACK, now), now)
        self._ka_at = now + opts.keepalive_interval

    # -------------------------------------------------------- segment arrival

    @property
    def unproven(self) -> bool:
        """Whether the peer's address is not yet proven: a passive open before the
        ACK of its SYN-ACK, or a connection that moved (see :meth:`moved`) before
        the peer echoed a timestamp sent to its new address."""
        return self._path_ts is not None or self.snd_una == self.iss

    def moved(self, now: float, jump: int) -> None:
        """The peer came back from a new address (a segment that passed
        :meth:`may_move_to`): until it proves the address its own, by echoing a
        timestamp sent there, send it no data but one byte, which draws that echo.

        Anyone who knows the connection's numbers, the peer itself included, can
        send a segment that passes the checks from an address not its own: the
        data then sent there would flood whoever has it. So our timestamps jump
        ahead by ``jump`` ticks (a random number, at least 2**20, drawn anew for
        every move: what a probe told one address proves no other), and only an
        echo of a TSval sent to the new address proves it, as QUIC validates a
        new path with a random challenge (RFC 9000 8.2). After PATH_GUESSES
        echoes that are none of those within PATH_GUESS_MEMORY seconds, no echo
        does until that time is out. Meanwhile a bare segment sent there repeats
        the last TSval sent (see _path_tsval). The probe goes at the end of the next
        :meth:`receive`: that of the segment that moved us."""
        if not self._ts_ok:
            raise ConnectionStateError("a connection without timestamps cannot prove "
                                       "a new address")
        if not 1 << 20 <= jump < 1 << 30:
            raise ValueError("the jump must be at least 2**20 and below 2**30 ticks")
        self.ts_offset = (self.ts_offset + jump) & _MASK
        first = (int(now * TS_HZ) + self.ts_offset) & _MASK
        jumps = self._ts_jumps
        while jumps and now - jumps[0][2] > _JUMP_MEMORY:
            del jumps[0]
        if not jumps:
            self._ts_jumps_cut = False
        while len(jumps) >= _JUMPS_KEPT:
            del jumps[0]
            self._ts_jumps_cut = True
        jumps.append((first, jump, now))
        self._path_ts = first
        self._path_sent = []
        # (The count of misses is not reset by a move, nor by a proof: the peer
        # could move us to its own address and back for a fresh count. It starts
        # again PATH_GUESS_MEMORY seconds after it began.)
        # (Once the segment that moved us has been taken: its ACK may move SND.UNA,
        # and a probe below it would be a byte the peer has, whose answer echoes
        # an older TSval; see receive().)
        self._path_probed = False

    def _send_path_probe(self, now: float) -> None:
        """Resend the first byte in flight, if any: a segment the peer accepts, so
        that it takes our TSval and echoes it (RFC 7323 4.3; a byte it has, or
        none, would draw an ACK echoing the TSval it had before)."""
        una = self.snd_una
        if una == self.snd_max or self.state not in _SENDING:
            return
        if self.snd_wnd == 0:
            # A shut window takes no byte, but a bare segment at its edge sets the
            # peer's TS.Recent (a TSval of its own), and one just below it, which
            # it does not take, draws an ACK at once that echoes it.
            self._path_tsval((int(now * TS_HZ) + self.ts_offset) & _MASK, True)
            self._emit(self._make(una, ACK, now), now)
            seg = self._make(sq.add(una, -1), ACK, now)
        elif self._fin_seq is not None and una == self._fin_seq:
            seg = self._make(una, ACK | FIN, now)
        else:
            seg = self._make(una, ACK, now, self._sndbuf.peek(una, 1))
            self.counters.retransmissions += 1
        self._emit(seg, now)

    def _path_tsval(self, tsval: int, own: bool) -> int:
        """The TSval for a segment toward a new address not yet proven: a bare one
        repeats the last sent there (PAWS takes an equal one), so that the echo
        that proves it is of one of a few values; one with data or a FIN, whose
        echo times it (``own``), has its own, remembered for the proof."""
        sent = self._path_sent
        if sent and not own:
            return sent[-1]
        if not sent or sent[-1] != tsval:
            if len(sent) > self.options.data_retries + 1:
                del sent[0]
            sent.append(tsval)
        return tsval

    def _check_path(self, seg: Segment, now: float) -> None:
        """Whether ``seg`` echoes a timestamp sent to the peer's new address (and
        if it is in the windows, a guess at one counts against the proof)."""
        tsecr = self._tsecr_of(seg)
        first = self._path_ts
        if not tsecr or first is None or (tsecr - first) & _MASK >= _HALF:
            return  # (an echo from before the move: the peer has not heard the probe)
        if not self._in_windows(seg):
            return
        if now - self._path_misses_at > PATH_GUESS_MEMORY:
            self._path_misses = 0
            self._path_misses_at = now
        if self._path_misses >= PATH_GUESSES:
            return
        if tsecr not in self._path_sent:
            self._path_misses += 1
            return
        self._path_ts = None
        self._path_sent = []
        self._retries = 0  # (its probes answered)
        # What was in flight went, most of it, to the old address, which leads
        # nowhere now: resend it, as after a timeout, from a collapsed window (a
        # new path, as RFC 9000 9.4 has it; kept, a whole window resent at once
        # overflowed a queue against Linux and lost most of it again). What
        # arrived, the ACK this comes with, and its SACKs, take off.
        if self.snd_una != self.snd_max:
            self._go_back(now)

    def _echo_offset(self, tsecr: int, now: float) -> int | None:
        """The offset our timestamps had when we sent the TSval ``tsecr`` echoes:
        another before each recent jump (see :meth:`moved`); None if it is from
        before a jump forgotten early (many moves at once), which cannot tell."""
        offset = self.ts_offset
        jumps = self._ts_jumps
        for i in range(len(jumps) - 1, -1, -1):
            first, jump, at = jumps[i]
            if now - at > _JUMP_MEMORY:
                del jumps[:i + 1]  # (long past: no echo from before it lives)
                if not jumps:
                    self._ts_jumps_cut = False
                return offset
            if (tsecr - first) & _MASK < _HALF:
                return offset  # sent since this jump
            offset -= jump
        return None if self._ts_jumps_cut else offset

    def _in_windows(self, seg: Segment) -> bool:
        """Whether ``seg`` acknowledges data within SND.UNA..SND.MAX and starts in
        the receive window or at most a receive buffer behind RCV.NXT."""
        una = self.snd_una
        if (seg.ack - una) & _MASK > (self.snd_max - una) & _MASK:
            return False
        rcv_nxt = self.rcv_nxt
        wnd = (self._rcv_adv - rcv_nxt) & _MASK
        if wnd >= _HALF:
            wnd = 0
        return (seg.seq - rcv_nxt) & _MASK <= wnd \
            or (rcv_nxt - seg.seq) & _MASK <= self.rcv_buf + 1

    def may_move_to(self, seg: Segment, now: float) -> bool:
        """Whether ``seg``, from an address the connection has not used, proves to
        be from its peer (a NAT gave the peer a new address or port): it must
        pass every check an off-path sender cannot, without changing anything.

        The connection uses timestamps (without them nothing could prove the new
        address the peer's, see :meth:`moved`). The segment carries no SYN or
        RST, acknowledges data within SND.UNA..SND.MAX, starts in the receive
        window or at most a receive buffer behind RCV.NXT, its TSval is not older
        than TS.Recent (PAWS) and its TSecr echoes one of ours. (Behind RCV.NXT:
        after a rebinding the peer may resend what we have, its ACKs having gone
        to the old address, or probe with a keepalive at SND.UNA - 1. From the
        peer, such a segment draws an ACK; answered as a stranger's, with a RST,
        it would reset the peer.)
        """
        if not self.state.synchronized or self.state is TIME_WAIT or not self._ts_ok:
            return False
        f = seg.flags
        if f & (SYN | RST) or not f & ACK or not self._in_windows(seg):
            return False
        ts: Any = seg.option(TIMESTAMPS) if seg.options else None
        if ts is None or (ts[0] - self._ts_recent) & _MASK >= _HALF:
            return False
        # The echo is of our clock: not ahead of it, and from this connection's life
        # (at most RTO-max plus 2 MSL behind).
        echo_offset = self._echo_offset(ts[1], now)
        if echo_offset is None:
            return False
        clock = (int(now * TS_HZ) + echo_offset) & _MASK
        behind = (clock - ts[1]) & _MASK
        return behind < _HALF and behind <= TS_HZ * (self.options.max_rto
                                                     + 4 * self.options.msl + 60)

    def receive(self, seg: Segment, now: float) -> None:
        """Process one segment addressed to this connection (3.10.7)."""
        self.counters.segments_in += 1
        if self.observer is not None:
            self.observer.segment_received(self, seg, now)
        if self._path_ts is not None:
            self._check_path(seg, now)
        st = self.state
        if st is CLOSED:
            rst = reset_for(seg)
            if rst is not None:
                self._emit(rst, now)
            return
        if st is LISTEN:
            self._receive_listen(seg, now)
        elif st is SYN_SENT:
            self._receive_syn_sent(seg, now)
        else:
            self._receive_other(seg, now)
        if self._ack_now:
            self._send_ack(now)
        if self._path_ts is not None and not self._path_probed:
            self._path_probed = True
            if self.snd_una != self.snd_max:
                self._send_path_probe(now)
            else:
                self._output(now)  # one byte of new data, if any waits (see _output)

    def _receive_listen(self, seg: Segment, now: float) -> None:
        f = seg.flags
        if f & RST:
            return
        if f & ACK:
            self._emit(Segment(self.local_port, self.remote_port, seg.ack, 0, RST), now)
            return
        if not f & SYN:
            return
        self._accept_syn(seg, now)
        self._set_state(SYN_RECEIVED, "SYN received", now)
        self._send_syn(now, ack=True)

    def _accept_syn(self, seg: Segment, now: float) -> None:
        """Take the peer's ISN, MSS, window scale and timestamp from its SYN."""
        self.irs = seg.seq
        self.rcv_nxt = (seg.seq + 1) & _MASK
        self._rcv_adv = self.rcv_nxt
        ts: Any = None
        mss: Any = None
        ws: Any = None
        sack_permitted = False
        for kind, value in seg.options:  # (the first of each kind counts, as option())
            if kind == TIMESTAMPS:
                if ts is None:
                    ts = value
            elif kind == MSS:
                if mss is None:
                    mss = value
            elif kind == WSCALE:
                if ws is None:
                    ws = value
            elif kind == SACK_PERMITTED:
                sack_permitted = True
        # RFC 7323 3.2: timestamps are used only if both SYNs carry them; a SYN-ACK's
        # option is ignored if our SYN had none.
        self._ts_ok = ts is not None and self.options.timestamps
        # RFC 2018: SACK is used when both SYNs carry SACK-permitted (a SYN-ACK's
        # counts only if our SYN offered it).
        self._sack_ok = self.options.sack and sack_permitted
        # RFC 8985 needs SACK (as Linux's RACK and TLP do).
        self._rack_ok = self._sack_ok and self.options.rack
        if self._ts_ok:
            self._ts_recent = ts[0]  # type: ignore[index]
            self._ts_recent_at = now
        # An option of 0 is ignored, as Linux does (the default applies).
        if not isinstance(mss, int) or mss <= 0:
            mss = _DEFAULT_PEER_MSS
        self.send_mss = min(max(mss, _MIN_PEER_MSS), self.options.mss)
        if self._ts_ok:
            # RFC 6691: the MSS counts no options; each segment's carry 12 bytes.
            self.send_mss -= _TS_OPTION_SPACE
        self.cc.mss_known(self.send_mss)
        # RFC 7323 1.3: scaling applies only when both SYNs carry the option;
        # 2.3: a shift above 14 is taken as 14.
        if isinstance(ws, int):
            self._peer_offered_wscale = True
            self._snd_wscale = min(ws, _MAX_WSCALE)
            self._rcv_wscale = self.options.wscale
        else:
            self._peer_offered_wscale = False
        # The window in a SYN is never scaled (RFC 7323 2.2).
        self.snd_wnd = seg.window
        self.max_snd_wnd = seg.window
        self.snd_wl1 = seg.seq
        self.snd_wl2 = seg.ack

    def _receive_syn_sent(self, seg: Segment, now: float) -> None:
        f = seg.flags
        # 3.10.7.3, first: check the ACK.
        if f & ACK and (sq.le(seg.ack, self.iss) or sq.gt(seg.ack, self.snd_max)):
            # A stale or forged SYN-ACK: reset it, stay in SYN-SENT.
            if not f & RST:
                self._emit(Segment(self.local_port, self.remote_port, seg.ack, 0, RST), now)
            self.counters.unacceptable += 1
            return
        if f & RST:
            if f & ACK:
                self._events.append(Reset(refused=True))
                self._terminate("RST received (refused)", now)
            return
        if not f & SYN:
            return
        self._accept_syn(seg, now)
        if f & ACK:
            self.snd_wl2 = seg.ack
            self._ack_of_syn(seg.ack, now, self._tsecr_of(seg))
            self._set_state(ESTABLISHED, "SYN,ACK received", now)
            self._events.append(Connected())
            self._ack_now = True
            self._output(now)
        else:
            # Simultaneous open (3.5, figure 8).
            self._set_state(SYN_RECEIVED, "SYN received (simultaneous open)", now)
            self._send_syn(now, ack=True, retransmit=True)

    def _tsecr_of(self, seg: Segment) -> int:
        """The TSecr of a segment when timestamps are in use, else 0 (none)."""
        if not self._ts_ok or not seg.options:
            return 0
        ts: Any = seg.option(TIMESTAMPS)
        return ts[1] if ts is not None else 0

    def _ts_rtt(self, tsecr: int, now: float) -> float | None:
        """The RTT a TSecr echo measures (RFC 7323 4.1), or None if it cannot."""
        if not tsecr:
            return None  # 0 is what a TSecr says when it echoes nothing
        offset = self.ts_offset if not self._ts_jumps else self._echo_offset(tsecr, now)
        if offset is None:
            return None
        delta = (int(now * TS_HZ) + offset - tsecr) & _MASK
        if delta >= _HALF:
            return None  # from the future: not an echo of ours
        # A clock tick is the resolution: less than one counts as one (as Linux).
        return (delta if delta else 1) / TS_HZ

    def _ack_of_syn(self, ack: int, now: float, tsecr: int = 0) -> None:
        self.snd_una = ack
        self._retries = 0
        self._rtx_at = None
        # The echo tells which copy of a retransmitted SYN is answered: with
        # timestamps, a retransmitted handshake still gives an RTT sample; but not
        # an echo from before the last retransmission, which may be the peer's
        # own retransmission answering an earlier copy (see _on_new_ack).
        r = self._ts_rtt(tsecr, now)
        if r is not None and self._rto_ts is not None and (tsecr - self._rto_ts) & _MASK >= _HALF:
            r = None
        if r is not None:
            self.rtt.sample(r)
            self._rtt_seq = None
        elif self._rtt_seq is not None:
            self.rtt.sample(now - self._rtt_sent)
            self._rtt_seq = None
        else:
            # RFC 6298 5.7: the SYN (or SYN-ACK) was retransmitted, so the handshake
            # gave no sample; data starts from a 3 s RTO rather than the 1 s initial one.
            self.rtt.fall_back(_SYN_FALLBACK_RTO)

    def _challenge_ack(self, now: float) -> None:
        # RFC 5961 3.2 / 4.2 / 5.2: answer a suspicious RST, SYN or ACK with an ACK
        # that only the true peer can act on; 7: at most one per interval, so that a
        # blind attacker's burst cannot turn us into a flood.
        if self._oow_ack_limited(now):
            return
        self.counters.challenge_acks += 1
        self._send_ack(now)

    def _oow_ack_limited(self, now: float) -> bool:
        """Whether an ACK answering an unacceptable or suspicious segment must be
        skipped now; if not, the interval starts again from ``now``."""
        if now - self._last_oow_ack < OOW_ACK_INTERVAL:
            return True
        self._last_oow_ack = now
        return False

    def _receive_other(self, seg: Segment, now: float) -> None:
        st = self.state
        f = seg.flags
        seg_seq = seg.seq
        payload = seg.payload
        rcv_nxt = self.rcv_nxt
        # RFC 7323 2.2: the window of a segment carrying SYN is never scaled.
        wshift = 0 if f & SYN else self._snd_wscale

        if st is SYN_RECEIVED and f & SYN and seg_seq == self.irs:
            if not f & (ACK | RST):
                # The peer retransmitted its SYN: our SYN-ACK was lost. Resend it, at
                # most once per DUP_SYN_INTERVAL (a replayed SYN draws no stream of
                # SYN-ACKs), and without moving the retransmission timer (nor does it
                # keep a half-open connection alive past its SYN-ACK retries).
                if now - self._synack_at >= DUP_SYN_INTERVAL:
                    self._send_syn(now, ack=True, retransmit=True, rearm=False)
                return
            if f & ACK:
                # Simultaneous open (3.5, figure 8): the peer's SYN-ACK repeats the SYN
                # we already have; drop that bit, as BSD does, and take its ACK.
                f &= ~SYN
                seg_seq = sq.add(seg_seq, 1)

        ts: Any = None
        seg_opts = seg.options
        if self._ts_ok and seg_opts:
            last = seg_opts[-1]  # (where our layout and Linux's put it, on all but SYNs)
            ts = last[1] if last[0] == TIMESTAMPS else seg.option(TIMESTAMPS)
            # RFC 7323 5.3 R1 (PAWS): a timestamp older than TS.Recent marks an old
            # duplicate from an earlier pass through the sequence space. Dropped and
            # answered like any unacceptable segment, within the same rate limit (as
            # Linux does); a RST is judged by its sequence number alone (5.2).
            if ts is not None and not f & RST \
                    and (ts[0] - self._ts_recent) & _MASK >= _HALF \
                    and now - self._ts_recent_at < PAWS_IDLE:
                self._paws_rejected(f, now)
                return

        # First: sequence number acceptable? (3.10.7.4, table 6)
        rcv_wnd = (self._rcv_adv - rcv_nxt) & _MASK  # max(sq.sub(RCV.ADV, RCV.NXT), 0)
        if rcv_wnd >= _HALF:
            rcv_wnd = 0
        seg_len = len(payload) + (f & SYN and 1) + (f & FIN and 1)
        if seg_len == 0:
            # RCV.NXT =< SEG.SEQ =< RCV.NXT + RCV.WND: the right edge included, as Linux
            # and BSD accept it (table 6 stops one short). A peer that filled our
            # window sends its bare ACKs at SND.MAX, which is that edge: were they
            # refused, a lost segment would hide every ACK of our data behind the
            # hole. A RST must lie strictly inside, or at RCV.NXT itself (RFC 5961
            # 3.2), which a zero window does not change.
            off = (seg_seq - rcv_nxt) & _MASK
            ok = (off < rcv_wnd or off == 0) if f & RST else off <= rcv_wnd
        elif rcv_wnd == 0:
            # Table 6: no text is acceptable into a zero window, but "special
            # allowance" is made for its ACK and RST: at RCV.NXT those are processed
            # (as Linux does), the text and FIN dropped and the shut window re-ACKed.
            # Else a peer sending data both ways would have its ACKs of our data
            # ignored for as long as our reader is paused.
            ok = seg_seq == rcv_nxt and not f & SYN
            if ok:
                self.counters.unacceptable += 1
                payload = b""
                f &= ~FIN
                self._ack_now = True
        else:
            # sq.in_window() of the first or the last byte
            ok = ((seg_seq - rcv_nxt) & _MASK < rcv_wnd
                  or (seg_seq + seg_len - 1 - rcv_nxt) & _MASK < rcv_wnd)
        if not ok:
            self._unacceptable(f, seg_seq, seg_len, len(payload), now)
            return

        # Second: RST (RFC 5961 3.2: only an exact match resets).
        if f & RST:
            self._on_rst(seg_seq, now)
            return

        # Fourth: SYN in a synchronized state (RFC 5961 4.2).
        if f & SYN:
            self._challenge_ack(now)
            return

        tsecr = 0
        if ts is not None:
            tsval, tsecr = ts
            # RFC 7323 4.3 (R3): remember the timestamp to echo, from a segment that
            # is not older and starts at or before what we last acknowledged.
            if (tsval - self._ts_recent) & _MASK < _HALF \
                    and (self._last_ack_sent - seg_seq) & _MASK < _HALF:
                self._ts_recent = tsval
                self._ts_recent_at = now

        opts = self.options
        if (opts.keepalive or opts.nat_keepalive) and st is not TIME_WAIT:
            # Anything acceptable heard resets idle (not a RST or SYN that merely
            # drew a challenge ACK: anyone could have sent it). TIME-WAIT has no
            # keepalive: it only waits out 2 MSL.
            self._heard_at = now
            self._ka_at = now + self._keepalive_idle()
            self._probes = 0

        # Fifth: ACK.
        if not f & ACK:
            return
        ack = seg.ack
        if st is SYN_RECEIVED and not self._handshake_acked(ack, tsecr, now):
            return

        snd_una = self.snd_una
        snd_max = self.snd_max
        if (snd_max - ack) & _MASK >= _HALF:  # sq.gt(ack, snd_max)
            # 3.10.7.4: acknowledges something not yet sent: drop it and ACK, at
            # most once per interval (RFC 5961 5.2 and 7), like any challenge ACK.
            self._challenge_ack(now)
            return
        # sq.lt(ack, sq.add(snd_una, -max(max_snd_wnd, 1)))
        if (ack - snd_una + (self.max_snd_wnd or 1)) & _MASK >= _HALF:
            # RFC 5961 5.2: far too old to be genuine.
            self._challenge_ack(now)
            return

        self._probes = 0
        window = seg.window << wshift
        sacked = False
        rack = self._rack
        # With something in flight (as Linux, not for a receiver's every segment):
        # what this ACK's delivery rate sample is taken against (_take_rate_sample).
        rate = self._rate if snd_una != snd_max else None
        if rate is not None:
            before = (bytes_in_flight(self), rate.delivered, rate.lost, self.rtt.samples)
        blocks: Any = None
        newly: list[tuple[int, int]] | None = None
        if self._sack_ok and seg_opts:
            if len(seg_opts) == 3 and seg_opts[0] is NOP_OPTION and seg_opts[1] is NOP_OPTION:
                # NOP, NOP and one option (the decoder's own entries): timestamps,
                # on all but a few ACKs, or SACK blocks alone.
                last = seg_opts[2]
                blocks = last[1] if last[0] == SACK else None
            else:
                blocks = seg.option(SACK)
            if blocks:
                if rack is not None:
                    newly = []
                newly_sacked = self._sb.update(blocks, snd_una, snd_max, newly)
                sacked = newly_sacked > 0
                if newly_sacked and self._rate is not None:
                    self._rate.delivered += newly_sacked
        new_ack = (snd_una - ack) & _MASK >= _HALF  # sq.gt(ack, snd_una)
        if new_ack:
            self._on_new_ack(ack, now, tsecr)
        elif ack == snd_una and not seg.payload and not seg.flags & FIN \
                and window == self.snd_wnd \
                and (snd_una - snd_max) & _MASK >= _HALF:  # sq.lt(snd_una, snd_max)
            on_dupack(self, now)
        if rack is not None:
            if new_ack or blocks:
                rack_on_ack(self, snd_una, newly, blocks, tsecr, now)
        elif sacked and not self.cc.in_recovery and self._sb.lost_edge(
                self.snd_una, self.send_mss) and self.cc.may_enter_recovery(
                self.snd_una, self.snd_max):
            # RFC 6675 5 (IsLost(HighACK + 1)): more than two segments' worth SACKed
            # above the first hole, however few duplicate ACKs told of it.
            enter_recovery(self, now)
        if rate is not None:
            self._take_rate_sample(before, now)

        # Window update (3.10.7.4, fifth step): only if SND.UNA =< SEG.ACK, and then
        # also from any segment whose ACK is new (Linux's tcp_may_update_window). A
        # peer that sends pure ACKs at SND.MAX (BSD does, and so do we) and then
        # retransmits older data would otherwise have that data's windows ignored,
        # and SND.UNA + SND.WND would run past the edge it offered.
        # (SND.UNA here is its value before this ACK; sq.ge(ack, snd_una) is
        # ack == snd_una or new_ack.)
        if new_ack or (ack == snd_una and (
            (self.snd_wl1 - seg_seq) & _MASK >= _HALF  # sq.lt(SND.WL1, seg_seq)
            or (self.snd_wl1 == seg_seq and sq.le(self.snd_wl2, ack))
        )):
            self.snd_wnd = window
            self.snd_wl1 = seg_seq
            self.snd_wl2 = ack
            if window > self.max_snd_wnd:
                self.max_snd_wnd = window
            if window and self._persist_at is not None:
                self._persist_at = None
                self._orphan_probes = 0
                self.rtt.reset_backoff()

        fin_seq = self._fin_seq
        # sq.gt(SND.UNA, fin_seq)
        if fin_seq is not None and (fin_seq - self.snd_una) & _MASK >= _HALF \
                and self.state in _FIN_UNACKED and self._fin_acked(now):
            return
        st = self.state

        # Seventh: segment text.
        if payload and st in _RECEIVE_TEXT:
            if self._orphaned:
                # Nobody will read it: tell the peer (as Linux does after close()).
                self.abort(now)
                return
            self._receive_text(seg_seq, payload, tsecr, now)

        # Eighth: FIN.
        if f & FIN:
            self._fin_arrived((seg_seq + len(payload)) & _MASK, st, now)  # sq.add()

        self._output(now)

    # The pieces of _receive_other that few segments take, in its order.

    def _paws_rejected(self, f: int, now: float) -> None:
        """RFC 7323 5.3 R1: an old duplicate, by its timestamp."""
        self.counters.unacceptable += 1
        self.counters.paws_rejected += 1
        if f & SYN:
            self._challenge_ack(now)
        elif not self._oow_ack_limited(now):
            self._ack_now = True

    def _unacceptable(self, f: int, seg_seq: int, seg_len: int, n: int, now: float) -> None:
        """First step: a segment outside the window (3.10.7.4, table 6), of
        ``seg_len`` in sequence space and ``n`` bytes of text."""
        if f & RST:
            return
        if f & SYN:
            # RFC 5961 4.2: a SYN draws a challenge ACK wherever its sequence
            # number lies, within the one rate limit (7), as in the window.
            self.counters.unacceptable += 1
            self._challenge_ack(now)
            return
        rcv_nxt = self.rcv_nxt
        if self.state is TIME_WAIT and f & FIN and sq.add(seg_seq, seg_len) == rcv_nxt:
            # A retransmitted FIN: our last ACK was lost. Re-ACK, restart 2 MSL.
            self._close_at = now + 2 * self.options.msl
        self.counters.unacceptable += 1
        if seg_len and sq.lt(seg_seq, rcv_nxt):
            self.counters.duplicates += 1
            if self._sack_ok and n:
                # RFC 2883: tell the sender it sent this twice (a spurious
                # retransmission, or a duplicate the path made).
                end = sq.add(seg_seq, n)
                self._dsack = (seg_seq, end if sq.le(end, rcv_nxt) else rcv_nxt)
        if seg_len == 0 and seg_seq != sq.add(rcv_nxt, -1):
            # An unacceptable bare ACK is answered at most once per interval, so
            # two ends that disagree cannot ping-pong ACKs forever (Linux's
            # tcp_invalid_ratelimit; RFC 5961 section 7 asks for such a limit).
            # Keepalive and zero-window probes (SEQ = RCV.NXT - 1) are exempt:
            # their whole point is the answer, and they may come faster.
            if self._oow_ack_limited(now):
                return
        self._ack_now = True

    def _on_rst(self, seg_seq: int, now: float) -> None:
        """Second step: a RST within the window (RFC 5961 3.2: only an exact match resets)."""
        st = self.state
        if seg_seq != self.rcv_nxt:
            self._challenge_ack(now)
            return
        if st is SYN_RECEIVED and self._was_listening:
            # 3.10.7.4: a passive open returns to LISTEN; our listener forgets it.
            self._terminate("RST received", now)
            return
        if st is TIME_WAIT:
            self._terminate("RST received", now)
            return
        if st is CLOSING or st is LAST_ACK:
            # 3.10.7.4 asks for nothing more than CLOSED here, but our FIN was
            # never acknowledged: the application, waiting for that, learns why.
            self._events.append(Reset(after_fin=True))
            self._terminate("RST received", now)
            return
        self._events.append(Reset(refused=st is SYN_RECEIVED, after_fin=self._fin_received))
        if not self._fin_received:
            # A reset before the peer's FIN ends reading at once: held data goes
            # too. After its FIN, all it sent stays readable (as with Linux).
            self._drop_received()
        self._terminate("RST received", now)

    def _handshake_acked(self, ack: int, tsecr: int, now: float) -> bool:
        """Fifth step in SYN-RECEIVED: whether ``ack`` completes the handshake (if
        not, a RST answers it and the segment goes no further)."""
        if sq.lt(self.snd_una, ack) and sq.le(ack, self.snd_max):
            self._ack_of_syn((self.iss + 1) & _MASK, now, tsecr)
            self._set_state(ESTABLISHED, "ACK of SYN", now)
            self._events.append(Connected())
            if self._fin_queued:
                self._set_state(FIN_WAIT_1, "close", now)
            return True
        self._emit(Segment(self.local_port, self.remote_port, ack, 0, RST), now)
        return False

    def _fin_acked(self, now: float) -> bool:
        """Fifth step, its end: our FIN is acknowledged. True if that ended the
        connection's part in the exchange (TIME-WAIT or CLOSED)."""
        st = self.state
        if st is FIN_WAIT_1:
            self._events.append(FinAcked())
            self._set_state(FIN_WAIT_2, "ACK of FIN", now)
            if self._orphaned:
                self._close_at = now + self.options.fin_wait_2_timeout
        elif st is CLOSING:
            self._events.append(FinAcked())
            self._enter_time_wait("ACK of FIN", now)
            return True
        elif st is LAST_ACK:
            self._events.append(FinAcked())
            self._report_closed()
            self._terminate("ACK of FIN", now)
            return True
        return False

    def _fin_arrived(self, fin_at: int, st: State, now: float) -> None:
        """Eighth step: the peer's FIN, at sequence number ``fin_at``."""
        if fin_at == self.rcv_nxt:
            self._on_fin(now)
        elif st in _RECEIVE_TEXT and sq.in_window(
                fin_at, self.rcv_nxt, sq.sub(self._rcv_adv, self.rcv_nxt)):
            # Arrived ahead of a hole: processed once the hole is filled.
            self._ooo_fin = fin_at
            self._ack_now = True

    def _on_new_ack(self, ack: int, now: float, tsecr: int = 0) -> None:
        snd_una = self.snd_una
        snd_max = self.snd_max
        # The caller checked SND.UNA < ACK =< SND.MAX, and SND.MAX - SND.UNA (at most
        # a window) is far below 2**31: these masked differences equal sq.sub()'s.
        acked = (ack - snd_una) & _MASK
        flight = (snd_max - snd_una) & _MASK  # before this ACK
        self.snd_una = ack
        if (self.snd_nxt - ack) & _MASK >= _HALF:  # sq.lt(snd_nxt, ack)
            self.snd_nxt = ack
        buf = self._sndbuf
        data_acked = acked if acked < buf.size else buf.size
        if data_acked > 0:
            buf.ack(data_acked)
        self._retries = 0
        rtt_seq = self._rtt_seq
        r = self._ts_rtt(tsecr, now) if tsecr else None
        if r is not None and self._rto_ts is not None:
            if (tsecr - self._rto_ts) & _MASK >= _HALF:
                # The echo predates our last timeout: the peer had the original and
                # answers its retransmission with the original's timestamp (RFC 7323
                # 4.3 keeps TS.Recent from a duplicate), so this "RTT" includes the
                # RTO and a lost ACK. Taken, it would inflate the RTO to its maximum,
                # and every later timeout would feed it again (Eifel's test, RFC 3522).
                r = None
            else:
                self._rto_ts = None
        if r is not None:
            # RFC 7323 4.1: with timestamps every ACK of new data is a sample, and
            # the echo tells which transmission it answers (no Karn's rule needed).
            self.rtt.sample(r)
            self._rtt_seq = None
        # RFC 6298 (2.x) with Karn's rule: sample only a segment sent once.
        elif rtt_seq is not None and (rtt_seq - ack) & _MASK >= _HALF:  # sq.gt(ack, rtt_seq)
            self.rtt.sample(now - self._rtt_sent)
            self._rtt_seq = None
        # Otherwise no sample, and the backoff stays until one comes (Karn's algorithm;
        # RFC 6298 section 5: the RTO collapses "once a new RTT measurement is
        # obtained"; Linux resets icsk_backoff only then too). An ACK that may answer
        # a retransmission says nothing of the RTT: dropping the backoff on it would
        # keep an RTO that fell below a grown RTT there for ever, every segment sent
        # twice.
        delivered = acked
        sb = self._sb
        if sb.sacked:  # (an attribute, not a call: this is every ACK)
            # Bytes SACKed before were counted as delivered then (see _receive_other):
            # cwnd grows by what this ACK newly delivered, not by a burst of old news.
            held = sb.sacked
            sb.ack(ack)
            delivered -= held - sb.sacked
        if self._rate is not None:
            self._rate.delivered += delivered
        cc = self.cc
        if cc.in_recovery:
            if sq.ge(ack, cc.recover):
                cc.exit_recovery(sq.sub(self.snd_max, ack), now)
                self._dupacks = 0
            elif not self._sack_ok:
                # RFC 6582: a partial ACK retransmits the next hole at once. (With
                # SACK the scoreboard says which holes are lost: see _output.)
                cc.on_partial_ack(acked)
                retransmit_first(self, now)
        else:
            self._dupacks = 0
            # RFC 7661: grow the window only while it is what limits sending; a
            # sender held back by the peer's window or the application would
            # otherwise inflate cwnd without bound and burst when that lifts.
            # Held back by pacing counts as by the window: its rate is the window's
            # (over SRTT), and a paced window is seldom full when an ACK comes.
            if delivered > 0 and (flight + self.send_mss >= cc.cwnd or (
                    cc.cwnd < cc.ssthresh and 2 * flight >= cc.cwnd)
                    or self._pace_at is not None):
                cc.on_ack(delivered, now, ack, snd_max)
        # RFC 6298 5.2/5.3: stop the timer when all is acknowledged, else restart it.
        if ack == snd_max:
            self._rtx_at = None
            self._loss_at = None
        else:
            self._rtx_at = now + self.rtt.rto

    def _receive_text(self, seg_seq: int, payload: bytes, tsecr: int, now: float) -> None:
        rcv_nxt = self.rcv_nxt
        if seg_seq != rcv_nxt:
            off = sq.sub(rcv_nxt, seg_seq)
            if off > 0:
                # Trim what we already have (a partial retransmission).
                if self._sack_ok:
                    self._dsack = (seg_seq, rcv_nxt)  # RFC 2883: report the duplicate
                payload = payload[off:]
                seg_seq = rcv_nxt
        # Never hold more than the window we offered.
        n = len(payload)
        room = (self._rcv_adv - seg_seq) & _MASK  # sq.sub(RCV.ADV, seg_seq)
        if room >= _HALF:
            room -= _MOD
        fin = self._ooo_fin
        if fin is not None:
            # Nothing past a FIN already received is data: a peer that sends some
            # anyway does not have it delivered, and the stream still ends there.
            room = min(room, sq.sub(fin, seg_seq))
        if n > room:
            payload = payload[:max(room, 0)]
            n = len(payload)
        if not n:
            return
        counters = self.counters
        counters.bytes_in += n
        if seg_seq != rcv_nxt:
            counters.out_of_order += 1
            ooo = self._ooo
            dropped = ooo.dropped
            # Within the receive buffer, each range charged what it really costs,
            # with room for the overhead of as many ranges as the queue may hold:
            # data inside a window already offered is never pruned for it (the
            # window shrinks instead); a peer making hundreds of holes is.
            budget = self.rcv_buf - len(self._rcvbuf) + ooo.max_ranges * RANGE_OVERHEAD
            mem = self.memory
            if mem is not None and mem.limit is not None:
                # And within what the stack may still hold, in all its connections.
                budget = min(budget, ooo.memory + mem.room())
            if not ooo.add(seg_seq, payload, rcv_nxt, budget) and self._sack_ok:
                # RFC 2883 4.1.3, as Linux's tcp_data_queue_ofo: a copy of data held
                # out of order is reported too, before the block that holds it, so
                # that a sender may undo a recovery that resent it needlessly.
                self._dsack = (seg_seq, (seg_seq + n) & _MASK)
            self._ooo_recent = seg_seq
            if ooo.dropped != dropped:
                counters.ooo_dropped += ooo.dropped - dropped
            if mem is not None:
                mem.update(self, len(self._rcvbuf) + ooo.memory)
            # RFC 5681 4.2: an out-of-order segment is ACKed at once (a duplicate ACK).
            self._ack_now = True
            return
        if self._reading_paused:
            mem = self.memory
            if mem is not None and mem.limit is not None and mem.held + n > mem.limit:
                # Held for a reader that is not reading, it would take the stack past
                # its memory limit: not accepted (nor acknowledged) for now.
                mem.dropped += 1
                counters.bytes_in -= n
                self._ack_now = True
                return
        rcv_nxt = (rcv_nxt + n) & _MASK  # sq.add()
        changed = self._ooo.size  # (what is held changes)
        if changed:
            # RFC 5681 4.2: a segment that fills all or part of a gap is ACKed at
            # once, so that a sender in recovery learns of each hole without delay.
            self._ack_now = True
            more = self._ooo.pop_ready(rcv_nxt)
            if more:
                if fin is not None:
                    more = more[:(fin - rcv_nxt) & _MASK]
                payload += more
                n += len(more)
                rcv_nxt = sq.add(rcv_nxt, len(more))
        self.rcv_nxt = rcv_nxt
        # Autotuning: the receiver's round trip, a comparison or two per segment.
        drs = self._drs
        if drs is not None:
            if self._ts_ok:
                if tsecr != drs.tsecr:
                    self._rcv_rtt_from_ts(drs, tsecr, n, now)
            elif (rcv_nxt - drs.rtt_seq) & _MASK < _HALF:  # sq.ge(rcv_nxt, rtt_seq)
                drs.window_sample(self._rcv_adv, now)
        elif n >= self.send_mss or not self._ts_ok:
            # (With timestamps only full segments time the round trip, and without
            # a round trip nothing grows: a connection of small messages, most
            # connections, never pays for the measures.)
            # (_rcv_buf_top() written out, without a call: a connection at its
            # largest buffer, or one the socket's cap keeps at rcv_buf, comes here
            # with every full segment. Unscaled, no window could offer more: RFC
            # 7323 1.3.)
            top = self.options.rcv_buf_max
            if top is not None and top > self.rcv_buf and self._peer_offered_wscale:
                mem = self.memory
                cap = mem.rcv_buf_cap if mem is not None else None
                if cap is None or cap > self.rcv_buf:
                    drs = self._drs = self._start_autotune(n, tsecr, now)
        if self._reading_paused:
            self._rcvbuf += payload
            changed = True
        else:
            self._events.append(DataReceived(payload))
            if drs is not None and now >= drs.due:
                self._rcv_space_adjust(drs, now)
        if changed and self.memory is not None:
            self._account()
        pending = self._ack_pending + n
        self._ack_pending = pending
        # RFC 5681 4.2: ACK at least every second full-sized segment, "full-sized"
        # being what the peer sends: no more than either side's MSS (send_mss is
        # already the lesser of the two, see _accept_syn).
        full = self.send_mss
        if pending >= 2 * full:
            if not self.coalesce_acks or pending >= _COALESCE_MAX_SEGMENTS * full:
                self._ack_now = True
            else:
                self._ack_at_batch_end = True  # one ACK for the whole batch (see flush_acks)
        elif self._ack_at is None:
            self._ack_at = now + self.options.delayed_ack
        if self._ooo_fin is not None and self._ooo_fin == rcv_nxt:
            self._ooo_fin = None
            self._ack_now = True  # the segment filled the hole before the FIN (RFC 5681 4.2)
            self._on_fin(now)

    # ------------------------------------------------- receive-buffer autotuning

    def _start_autotune(self, n: int, tsecr: int, now: float) -> ReceiveAutotune:
        """Autotuning's measures, begun with the first ``n`` bytes received in
        order (which count in the first round trip's)."""
        space = INITIAL_SEGMENTS * self.options.mss
        drs = ReceiveAutotune((self.rcv_nxt - n - len(self._rcvbuf)) & _MASK,
                              min(space, self.rcv_buf), self._rcv_adv, now)
        if self._ts_ok:
            self._rcv_rtt_from_ts(drs, tsecr, n, now)
        return drs

    def _rcv_rtt_from_ts(self, drs: ReceiveAutotune, tsecr: int, n: int, now: float) -> None:
        """A round-trip sample from the TSecr of a data segment of ``n`` bytes: the
        time since we sent the timestamp it echoes (tcp_rcv_rtt_measure_ts)."""
        drs.tsecr = tsecr
        # Only a full segment's: a short one may have waited for the application
        # to write it, not for our ACK. 0 echoes nothing; a TSecr ahead of our
        # clock (or of the same tick: no resolution) none of ours.
        if tsecr and n >= self.send_mss:
            offset = self.ts_offset if not self._ts_jumps else self._echo_offset(tsecr, now)
            delta = (int(now * TS_HZ) + offset - tsecr) & _MASK if offset is not None else 0
            if 0 < delta < _HALF:
                drs.sample(delta / TS_HZ, not self._rcvbuf)

    def _rcv_space_adjust(self, drs: ReceiveAutotune, now: float) -> None:
        """A round trip has passed since the measure began: grow the receive buffer
        if the application took more in it than in any before (tcp_rcv_space_adjust)."""
        # (Only while reading, when all received in order has been taken: a
        # reader that fell behind restarts the measure, see resume_reading.)
        copied_seq = self.rcv_nxt
        copied = (copied_seq - drs.seq) & _MASK
        if copied > drs.space:
            space = drs.space
            drs.space = copied
            mem = self.memory
            # (Under memory pressure windows shrink: none grows.)
            if mem is None or mem.held < mem.pressure_at:
                self._grow_rcv_buf(grown_buffer(copied, space, self.options.mss))
        drs.restart(copied_seq, now)

    def _rcv_buf_top(self) -> int | None:
        """The most the receive buffer may grow to (None: it may not): rcv_buf_max,
        within what the socket beneath can queue (ReceiveMemory.rcv_buf_cap)."""
        top = self.options.rcv_buf_max
        mem = self.memory
        if top is not None and mem is not None and mem.rcv_buf_cap is not None \
                and mem.rcv_buf_cap < top:
            return mem.rcv_buf_cap
        return top

    def _grow_rcv_buf(self, size: int) -> None:
        """Make the receive buffer ``size`` bytes, if that is more, within rcv_buf_max
        (and within what the socket beneath can queue, see ReceiveMemory.rcv_buf_cap)."""
        top = self._rcv_buf_top()
        if top is None:
            return
        if size >= top:
            size = top
            self._drs = None  # at its largest: nothing more to measure
        if size <= self.rcv_buf:
            return
        self.rcv_buf = size
        ranges = _ooo_ranges(size, self.options.mss)
        if ranges > self._ooo.max_ranges:
            self._ooo.max_ranges = ranges
        # A window at least twice what the peer was offered is announced at once,
        # not with the next ACK due (Linux's tcp_cleanup_rbuf): a sender held by
        # the window may be waiting for it.
        offered = (self._rcv_adv - self.rcv_nxt) & _MASK
        if offered >= _HALF:
            offered = 0
        if self.rcv_wnd >= 2 * offered and self.state.synchronized:
            self._ack_now = True

    # ---------------------------------------------- the peer's FIN, TIME-WAIT, closed

    def _on_fin(self, now: float) -> None:
        if self._fin_received:
            self._ack_now = True
            return
        self._fin_received = True
        if self._ooo.size:
            self._ooo.clear()  # anything held is past the FIN: no data (see _receive_text)
            self._account()
        self.rcv_nxt = (self.rcv_nxt + 1) & _MASK
        if self._reading_paused and self._rcvbuf:
            self._eof_held = True
        else:
            self._events.append(EndOfStream())
        st = self.state
        if st in (SYN_RECEIVED, ESTABLISHED):
            if self.defer_fin_ack:
                self._ack_deferred = True
                if self._ack_at is None:
                    self._ack_at = now + self.options.delayed_ack
            else:
                self._ack_now = True
            self._set_state(CLOSE_WAIT, "FIN received", now)
            return
        self._ack_now = True
        if st is FIN_WAIT_1:
            if self._fin_seq is not None and sq.gt(self.snd_una, self._fin_seq):
                self._events.append(FinAcked())
                self._enter_time_wait("FIN received", now)
            else:
                self._set_state(CLOSING, "FIN received", now)
        elif st is FIN_WAIT_2:
            self._enter_time_wait("FIN received", now)

    def _enter_time_wait(self, cause: str, now: float) -> None:
        self._set_state(TIME_WAIT, cause, now)
        self._report_closed()
        self._rtx_at = None
        self._loss_at = None
        self._pace_at = None
        self._persist_at = None
        self._ka_at = None
        self._close_at = now + 2 * self.options.msl

    def _report_closed(self) -> None:
        if not self._closed_reported:
            self._closed_reported = True
            self._events.append(Closed())

    # ------------------------------------------------ delivery rate (BBR)

    def _rate_sent(self, rec: list | None, start: int, end: int, now: float) -> None:
        """A segment of new data, ``rec`` (RACK's record of it, or None), left at
        ``now``: stamp it for delivery rate estimation; without RACK's records,
        time one segment at a time."""
        rate = self._rate
        assert rate is not None
        idle = self.snd_una == self.snd_max
        if idle:
            self.cc.on_send_after_idle(now)
        if rec is None:
            if rate.point is not None or (start - self.snd_max) & _MASK >= _HALF:
                return  # one at a time, and never a segment sent again (Karn)
            rec = rate.point = [start, end, now, 0]
        rate.stamp(rec, now, idle)

    def _take_rate_sample(self, before: tuple[int, int, int, int], now: float) -> None:
        """This ACK's delivery rate sample, for the controller: ``before`` holds the
        bytes in flight, delivered and lost, and the RTT samples taken, as they
        stood before it."""
        rate = self._rate
        assert rate is not None
        rack = self._rack
        rtt = -1.0
        if rack is not None:
            rec = rack.newest
            rack.newest = None
            if rec is not None:
                rtt = rack.newest_rtt
        else:
            rec = rate.point
            if rec is not None and (self.snd_una - rec[1]) & _MASK < _HALF:
                rate.point = None  # delivered: the next segment sent is timed
                if not rec[3]:
                    rtt = now - rec[2]
            else:
                rec = None
        if rtt < 0 and self.rtt.samples != before[3]:
            rtt = self.rtt.latest  # (a timestamp's echo)
        rs = rate.generate(rec, rate.delivered - before[1], rate.lost - before[2], now,
                           rtt, self.rtt.min_rtt)
        rs.prior_in_flight = before[0]
        rs.in_flight = bytes_in_flight(self)
        rs.next_send = self._pace_next
        self.cc.on_rate_sample(self.snd_una, now)

    # ----------------------------------------------------------------- output

    def _make(self, seq: int, flags: int, now: float, payload: bytes = b"") -> Segment:
        """A segment from us carrying the current ACK, window and timestamps.

        The window field is scaled and never shrinks the right edge (3.8.6.2.2).
        """
        rcv_nxt = self.rcv_nxt
        self._last_ack_sent = rcv_nxt
        # self.rcv_wnd; a paused reader's data is all the receive buffer ever holds.
        wnd = self.rcv_buf
        if self._ooo.size:
            wnd -= self._ooo.memory
        if self._rcvbuf:
            wnd -= len(self._rcvbuf)
        if wnd < 0:
            wnd = 0
        mem = self.memory
        if mem is not None and mem.held >= mem.pressure_at:
            # Memory is short: a connection holding data offers no new window (the
            # edge offered stands, below); others at most four segments, as Linux
            # clamps its windows under memory pressure.
            wnd = 0 if self in mem.holders else min(wnd, _PRESSURE_SEGMENTS * self.options.mss)
        edge = (self._rcv_adv - rcv_nxt) & _MASK  # sq.sub(RCV.ADV, rcv_nxt)
        if edge >= _HALF:
            edge -= _MOD
        shift = self._rcv_wscale
        field = wnd >> shift
        if field << shift < edge:
            # Less room than the edge already offered: offer that edge again
            # (3.8.6.2.2), to within the scale's unit. Rounded up (as Linux does),
            # the edge moves on by up to a unit with every ACK; so only while that
            # leaves less than a unit offered beyond the free space. Past that it is
            # rounded down, and the edge the peer sees retracts by less than a unit
            # (RFC 7323 2.4) while data up to the old edge is still accepted: RCV.ADV
            # keeps it. Without this a paused reader's buffer would grow unbounded.
            up = (edge + (1 << shift) - 1) >> shift
            field = up if (up << shift) - wnd < 1 << shift else edge >> shift
        if field > 0xFFFF:
            field = 0xFFFF
        if self.state is SYN_RECEIVED and field << shift > edge:
            # Until the handshake completes, no more than the SYN-ACK offered (as
            # Linux's request sockets): its retransmission cannot be scaled, and it
            # would pull a larger edge back.
            field = edge >> shift
        adv = (rcv_nxt + (field << shift)) & _MASK  # sq.add()
        if (adv - self._rcv_adv) & _MASK < _HALF:  # sq.ge(adv, RCV.ADV)
            self._rcv_adv = adv
        if self._ts_ok:
            # RFC 7323 3.2: once negotiated, in every segment but a RST; laid out
            # as Linux and BSD do, NOP NOP first, so that the values are aligned.
            tsval = (int(now * TS_HZ) + self.ts_offset) & _MASK
            if self._path_ts is not None:
                tsval = self._path_tsval(tsval, bool(payload) or bool(flags & FIN))
            opts: tuple = (NOP_OPTION, NOP_OPTION, (TIMESTAMPS, (tsval, self._ts_recent)))
        else:
            opts = ()
        # (_output() shares no header while this holds: keep the two tests alike.)
        if self._sack_ok and (self._ooo.size or self._dsack is not None):
            opts = self._with_sack(opts, len(payload))
        return Segment(self.local_port, self.remote_port, seq, rcv_nxt, flags,
                       field, 0, opts, payload)

    def _with_sack(self, opts: tuple, payload: int) -> tuple:
        """``opts`` with a SACK option (RFC 2018 4): a D-SACK block first (RFC 2883),
        then the block holding the segment that arrived last, then the others,
        highest first; as many as the 40 bytes of options and the segment hold."""
        room = 40 - (12 if opts else 0)
        if payload:
            # A full data segment has no room left under the MSS (RFC 6691).
            room = min(room, self.send_mss + (12 if opts else 0) - payload - (12 if opts else 0))
        most = (room - 4) // 8
        if most < 1:
            return opts
        blocks: list[tuple[int, int]] = []
        if self._dsack is not None:
            blocks.append(self._dsack)
            self._dsack = None
        if self._ooo.size:
            held = self._ooo.blocks()
            recent = self._ooo_recent
            rcv_nxt = self.rcv_nxt
            at = (recent - rcv_nxt) & _MASK
            first = [b for b in held if (b[0] - rcv_nxt) & _MASK <= at < (b[1] - rcv_nxt) & _MASK]
            blocks += first
            blocks += [b for b in reversed(held) if b not in first]
        return opts + (NOP_OPTION, NOP_OPTION, (SACK, tuple(blocks[:most])))

    def _send_syn(self, now: float, *, ack: bool, retransmit: bool = False,
                  rearm: bool = True) -> None:
        own = self.options
        # RFC 7323 3.2: a SYN offers timestamps; a SYN-ACK answers a SYN that did.
        # 2.2: a SYN-ACK carries the window scale only if the SYN did.
        ts = ((int(now * TS_HZ) + self.ts_offset) & _MASK, self._ts_recent if ack else 0) \
            if (self._ts_ok if ack else own.timestamps) else None
        opts = syn_options(own.mss, self._sack_ok if ack else own.sack, ts,
                           own.wscale if not ack or self._peer_offered_wscale else None)
        self._last_ack_sent = self.rcv_nxt
        window = min(self.rcv_wnd, 0xFFFF)  # a SYN's window is never scaled
        mem = self.memory
        if mem is not None and mem.held >= mem.pressure_at:
            window = min(window, _PRESSURE_SEGMENTS * self.options.mss)  # (see _make)
        if self.irs is not None:
            adv = (self.rcv_nxt + window) & _MASK
            if sq.gt(adv, self._rcv_adv):
                self._rcv_adv = adv  # never pull back an edge already offered
        seg = Segment(self.local_port, self.remote_port, self.iss,
                      self.rcv_nxt if ack else 0, SYN | ACK if ack else SYN, window, 0, opts)
        if retransmit:
            # Every caller passing retransmit has sent our SYN (ISS) before.
            self.counters.retransmissions += 1
            self._rtt_seq = None  # Karn: the ACK may answer either copy
        else:
            self._rtt_seq = self.iss
            self._rtt_sent = now
        self.snd_nxt = (self.iss + 1) & _MASK
        self.snd_max = self.snd_nxt
        if rearm or self._rtx_at is None:
            self._rtx_at = now + self.rtt.rto
        if ack:
            self._synack_at = now
        self._emit(seg, now)

    def _send_ack(self, now: float) -> None:
        # SND.MAX, not SND.NXT: after a go-back-N timeout SND.NXT points into data the
        # peer may already hold, and an ACK with that sequence number would be
        # unacceptable to it (BSD's tcp_output does the same).
        self._emit(self._make(self.snd_max, ACK, now), now)

    def flush_acks(self, now: float) -> None:
        """End of a batch of received segments: send the ACK the batch is owed."""
        if self._ack_at_batch_end:
            self._ack_at_batch_end = False
            if self._ack_pending:
                self._send_ack(now)

    @property
    def ack_deferred(self) -> bool:
        """Whether the ACK of the peer's FIN waits for the application's turn (see
        ``defer_fin_ack``)."""
        return self._ack_deferred

    def send_deferred_ack(self, now: float) -> bool:
        """The application has had its turn: send the ACK of the peer's FIN if what
        it did sent none; return whether it did."""
        if not self._ack_deferred:
            return False
        self._send_ack(now)
        return True

    def _emit(self, seg: Segment, now: float) -> None:
        if seg.flags & ACK:
            # Every segment carrying our ACK satisfies any pending or delayed ACK.
            self._ack_pending = 0
            self._ack_now = False
            self._ack_at_batch_end = False
            self._ack_deferred = False
            self._ack_at = None
        self.counters.segments_out += 1
        self._out.append(seg)
        if self.observer is not None:
            self.observer.segment_sent(self, seg, now)

    def _output(self, now: float) -> None:
        """Send whatever data and FIN the windows allow (3.8.6, RFC 5681, RFC 896)."""
        st = self.state
        if st not in _SENDING:
            if self._ack_now:
                self._send_ack(now)
            return
        buf = self._sndbuf
        # Neither the buffer's start nor its length changes while sending.
        start = buf.start
        buffered = buf.size
        mss = self.send_mss
        fin_seq = self._fin_seq
        sent_any = False
        pace = 0.0  # seconds a byte takes at the pacing rate; 0.0: not paced
        batch = 0.0  # how far ahead of the pacing rate a batch may run, in seconds
        unpaced = 0  # new data still to go unpaced: what is left of the initial window
        if self._pacing and self.rtt.srtt is not None:
            # Paced once an RTT is known, but for the initial window: that goes at
            # once, as Linux's (and fq's) does.
            rate = self.cc.pacing_rate(self.rtt.srtt, (self.snd_max - self.snd_una) & _MASK)
            if rate:
                pace = 1.0 / rate
                batch = _PACING_BATCH_SEGMENTS * mss * pace
                if batch < _PACING_BATCH_TIME:
                    batch = _PACING_BATCH_TIME
                unpaced = self.options.initial_cwnd * mss - self.counters.bytes_out
                # A wake-up that comes late (timers tick in milliseconds) has that
                # much more to send, up to a batch's worth more: the rate holds, and
                # an idle spell leaves no backlog to burst.
                if self._pace_next < now - batch:
                    self._pace_next = now - batch
                self._pace_at = None  # (armed again below if a segment must wait)
        unproven = self._path_ts is not None
        if unproven and self.snd_una != self.snd_max:
            # Toward a new address not yet proven (see moved()), nothing but its
            # probe; the timeout resends that (armed, even if a shut window's
            # persist timer was all there was).
            if self._rtx_at is None:
                self._rtx_at = now + self.rtt.rto
            if self._ack_now:
                self._send_ack(now)
            return
        pipe = -1  # RFC 6675's pipe stands for what is in flight, in SACK recovery
        rack = self._rack
        recs = None
        if rack is not None:
            # With RACK, whenever something is SACKed or lost, in recovery or not:
            # that has left the network. Lost segments go first, then new data
            # (SND.NXT is always SND.MAX). (Nothing is in flight while unproven.)
            recs = rack.recs
            if rack.lost or self._sb.sacked:
                pipe = ((self.snd_max - self.snd_una) & _MASK) - self._sb.sacked - rack.lost
                if rack.lost:
                    pipe = rack_retransmit(self, now, pipe, pace=pace if unpaced <= 0 else 0.0,
                                           batch=batch)
        elif self._sack_ok and self.cc.in_recovery:
            pipe = sack_retransmit(self, now, pace if unpaced <= 0 else 0.0, batch)
            if self.snd_nxt != self.snd_max:
                self.snd_nxt = self.snd_max  # (new data only, past the holes)
        snd_nxt = self.snd_nxt
        sb = self._sb if self._sb.sacked else None
        # The segment whose ACK, window and options the rest of this pass copy, if
        # any: the first. _make() would give each the same, as nothing it reads
        # changes while sending but RCV.ADV, and made again at the edge just
        # offered, the window comes out the same. Not while SACK blocks are due (the
        # test _make() makes): they are fitted to each segment's room, and a D-SACK
        # goes in one segment only.
        first: Segment | None = None
        same_header = not (self._sack_ok and (self._ooo.size or self._dsack is not None))
        # Whether full-sized segments after the first may go in runs (see encode_runs),
        # once ``first`` is known to have a header encode_run() makes.
        runs = self.encode_runs and same_header and not pace and sb is None and pipe < 0 \
            and self._rate is None and self.observer is None
        while True:
            if sb and (snd_nxt - self.snd_max) & _MASK >= _HALF:
                # Going back after a timeout: skip what the peer SACKed.
                una = self.snd_una
                top = (self.snd_max - una) & _MASK
                hole = sb.next_hole(una, (snd_nxt - una) & _MASK, top)
                snd_nxt = self.snd_nxt = sq.add(una, hole[0]) if hole else self.snd_max
            off = (snd_nxt - start) & _MASK  # sq.sub(snd_nxt, start)
            if off >= _HALF:
                off -= _MOD
            avail = buffered - off
            if avail < 0:
                avail = 0
            # sq.le(snd_nxt, fin_seq)
            fin_due = fin_seq is not None and (
                snd_nxt == fin_seq or (snd_nxt - fin_seq) & _MASK >= _HALF)
            if avail == 0 and not fin_due:
                break
            snd_wnd = self.snd_wnd
            cwnd = self.cc.cwnd
            snd_una = self.snd_una
            snd_max = self.snd_max
            in_flight = (snd_nxt - snd_una) & _MASK  # sq.sub(snd_nxt, snd_una)
            if in_flight >= _HALF:
                in_flight -= _MOD
            if pipe < 0:
                usable = (snd_wnd if snd_wnd < cwnd else cwnd) - in_flight
            else:
                usable = snd_wnd - in_flight
                if cwnd - pipe < usable:
                    usable = cwnd - pipe
            if unproven and usable > 1 - in_flight:
                usable = 1 - in_flight  # one byte, to draw the echo (see moved())
            n = avail if avail < mss else mss
            if sb and (snd_nxt - self.snd_max) & _MASK >= _HALF:
                # (Resending: up to the next SACKed block at most.)
                una = self.snd_una
                hole = sb.next_hole(una, (snd_nxt - una) & _MASK, (self.snd_max - una) & _MASK)
                if hole is not None and hole[1] < n:
                    n = hole[1]
            if n > usable:
                n = max(usable, 0)
                if n == 0 and avail:
                    if snd_wnd == 0 and snd_una == snd_max and self._persist_at is None:
                        # 3.8.6.1: zero window, nothing in flight: probe it.
                        self._persist_at = now + self.rtt.rto
                    break
                # Sender SWS avoidance (RFC 1122 4.2.3.4): no runt into a partial window
                # unless it is at least half the largest window the peer offered.
                if n < avail and n < mss and in_flight and n < self.max_snd_wnd // 2:
                    break
            if (not self.options.nodelay and n < mss and in_flight > 0
                    and sq.ge(snd_nxt, snd_max)
                    and not (fin_due and n == avail)):
                break  # Nagle: one small segment in flight at a time
            if pace:
                if unpaced > 0:
                    unpaced -= n
                else:
                    # Paced: a batch may run ahead of the rate by ``batch`` seconds,
                    # then waits until the rate has caught up with what was sent.
                    t = self._pace_next
                    if t - now > batch:
                        self._pace_at = t
                        break
                    self._pace_next = t + n * pace
            if runs and first is not None and n == mss and snd_nxt == snd_max \
                    and (recs is not None or not self._rack_ok):
                # A run of full-sized segments of new data, none the last of the
                # buffer: made as the passes below would make them one by one.
                k = (usable if usable < avail - 1 else avail - 1) // mss
                if k > 1:
                    self._out += encode_run(first, snd_nxt, buf.peek_run(snd_nxt, mss, k))
                    total = k * mss
                    self.counters.segments_out += k
                    self.counters.bytes_out += total
                    if self._rtt_seq is None:
                        self._rtt_seq = snd_nxt
                        self._rtt_sent = now
                    if recs is not None:
                        recs += [[s & _MASK, (s + mss) & _MASK, now, 0]
                                 for s in range(snd_nxt, snd_nxt + total, mss)]
                    snd_nxt = self.snd_nxt = self.snd_max = (snd_nxt + total) & _MASK
                    continue
            flags = ACK
            payload = buf.peek(snd_nxt, n) if n else b""
            if n and n == avail:
                flags |= PSH
            if fin_due and n == avail:
                flags |= FIN
            if first is None:
                seg = self._make(snd_nxt, flags, now, payload)
                if same_header:
                    first = seg
                    if runs and not encodes_as_run(seg):
                        runs = False
            else:
                seg = Segment(first.src_port, first.dst_port, snd_nxt, first.ack, flags,
                              first.window, 0, first.options, payload)
            if (snd_nxt - snd_max) & _MASK >= _HALF:  # sq.lt(snd_nxt, snd_max): resent
                self.counters.retransmissions += 1
            else:
                self.counters.bytes_out += n
                if self._rtt_seq is None:
                    self._rtt_seq = snd_nxt
                    self._rtt_sent = now
            self._emit(seg, now)
            sent_any = True
            end = (snd_nxt + n + (1 if flags & FIN else 0)) & _MASK
            if recs is not None:
                recs.append([snd_nxt, end, now, 0])  # (RACK: always new data here)
            elif self._rack_ok:
                rack = self._rack = Rack(snd_nxt)  # the first segment sent
                recs = rack.recs
                recs.append([snd_nxt, end, now, 0])
            if self._rate is not None:
                self._rate_sent(recs[-1] if recs is not None else None, snd_nxt, end, now)
            snd_nxt = self.snd_nxt = end
            if (snd_max - snd_nxt) & _MASK >= _HALF:  # sq.gt(snd_nxt, snd_max)
                self.snd_max = snd_nxt
            if pipe >= 0:
                pipe += n
            if flags & FIN:
                break
        if sent_any:
            self._persist_at = None
            if self._rtx_at is None:
                self._rtx_at = now + self.rtt.rto
            if unproven:
                self._path_probed = True  # (its one byte was the probe, see moved())
            low = self.send_low_water
            if low is not None and self.unsent <= low:
                self.send_low_water = None
                self._events.append(Writable())
        if rack is not None and (sent_any or self._loss_at is None
                                 and self.snd_una != self.snd_max):
            # RFC 8985 7.2: (re)start the probe timeout once new data is sent, or an
            # ACK of new data cleared it.
            arm_probe(self, now)
        if self._ack_now:
            self._send_ack(now)

    # ------------------------------------------------------------- transitions

    def _set_state(self, new: State, cause: str, now: float | None) -> None:
        old = self.state
        if old is new:
            return
        if new not in TRANSITIONS[old]:
            raise IllegalTransition(f"{old} -> {new} ({cause}): not a transition "
                                    f"RFC 9293 allows")
        self.state = new
        if new is SYN_RECEIVED and old is LISTEN:
            self._was_listening = True
        if new is ESTABLISHED and now is not None and (
                self.options.keepalive or self.options.nat_keepalive):
            self._heard_at = now
            self._ka_at = now + self._keepalive_idle()
        if self.observer is not None:
            self.observer.state_changed(self, old, new, cause, now if now is not None else 0.0)

    def _clear_timers(self) -> None:
        self._rtx_at = self._persist_at = self._ack_at = self._close_at = self._ka_at = None
        self._loss_at = self._pace_at = None

    def _terminate(self, cause: str, now: float) -> None:
        self._clear_timers()
        self._ack_now = False
        self._ack_deferred = False
        self._set_state(CLOSED, cause, now)
