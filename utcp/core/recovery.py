"""Loss recovery, for a :class:`~utcp.core.connection.Connection`: fast
retransmit and fast recovery (RFC 5681 3.2, NewReno's RFC 6582), SACK-based
recovery with its pipe (RFC 6675), RACK-TLP's loss detection and tail loss
probe (RFC 8985), and undoing a recovery that D-SACKs show was spurious
(RFC 2883, RFC 3708).

The state all this works on (the SACK scoreboard, RACK's records, the loss and
probe timer, the congestion controller) is the connection's; these are functions
of it, which the connection calls where an ACK, a timer or its output needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from . import seq as sq
from .rack import LOST, RETRANSMITTED
from .sack import DUP_THRESH
from .wire import ACK, FIN, PSH

if TYPE_CHECKING:
    from .connection import Connection

# For sequence arithmetic inlined on the per-ACK path, as in connection.py.
_MASK: Final = sq.MASK
_HALF: Final = sq.HALF
# Duplicate ACKs that trigger fast retransmit (RFC 5681 3.2).
_DUPACK_THRESHOLD: Final = 3
# RFC 8985 7.2: a probe waits 2 SRTT, and for a lone segment in flight the longest
# a receiver may delay its ACK (WCDelAckT) besides; else two timer ticks (Linux's
# TCP_TIMEOUT_MIN), so that timer slack alone does not set it off.
_WC_DEL_ACK: Final = 0.2
_PTO_SLACK: Final = 0.002


# ---------------------------------------- fast retransmit (RFC 5681, RFC 6582)

def on_dupack(conn: Connection, now: float) -> None:
    """A duplicate ACK (RFC 5681 2): the third in a row may begin fast retransmit
    and fast recovery."""
    conn._dupacks += 1
    cc = conn.cc
    if cc.in_recovery:
        if not conn._sack_ok:
            cc.on_dupack_in_recovery()  # (with SACK, the pipe counts what left)
    elif conn._dupacks == _DUPACK_THRESHOLD and (conn._rack is None or not conn._sb) \
            and cc.may_enter_recovery(conn.snd_una, conn.snd_max):
        # (With RACK and SACK blocks, RACK tells what is lost, and when: a
        # reordered segment is not resent for its dupacks.)
        enter_recovery(conn, now)


def enter_recovery(conn: Connection, now: float) -> None:
    """RFC 5681 3.2 / RFC 6582: fast retransmit, enter fast recovery; with SACK,
    RFC 6675's: cwnd = ssthresh, and the holes the scoreboard shows lost are
    resent as the pipe allows (see Connection._output)."""
    if conn._path_ts is not None:
        return  # toward a new address not yet proven, nothing is resent (see moved())
    conn.counters.recoveries += 1
    cc = conn.cc
    # What undoing it needs: the window before, and the ranges it resends that no
    # D-SACK has reported yet (see note_resent and rack_on_ack, which only RACK
    # runs).
    conn._undo = [cc.undo_state(), []] if conn._sack_ok and conn._rack is not None \
        else None
    # The reduction starts from FlightSize (RFC 5681), but never from more
    # than cwnd: what the peer SACKed left the network, and the pipe let as
    # much again be sent, so that SND.MAX - SND.UNA may be far above cwnd (just
    # after a recovery, most of all), and CUBIC's 0.7 of it above cwnd too.
    cc.enter_recovery(min(sq.sub(conn.snd_max, conn.snd_una), cc.cwnd), conn.snd_max, now,
                      sack=conn._sack_ok)
    conn._rtt_seq = None
    rack = conn._rack
    rate = conn._rate
    if rack is not None:
        if not rack.lost:
            # Three duplicate ACKs without the SACKs to show it (RFC 6675 5
            # step 4.3).
            rack.mark_first_lost()
            if rate is not None:
                rate.lost += rack.lost
        if conn._loss_probe:
            conn._loss_at = None  # no probe in recovery (RFC 8985 7.2)
        # This recovery answers for any loss a probe found (so Linux: one
        # reduction, not two).
        rack.tlp_end = None
        pipe = ((conn.snd_max - conn.snd_una) & _MASK) - conn._sb.sacked - rack.lost
        if rate is not None:
            # The first now; the rest once the ACK's sample has set the window
            # (BBR: as much as was delivered, in the first round).
            pipe = cc.cwnd
        rack_retransmit(conn, now, pipe, first=True)
    elif conn._sack_ok:
        if rate is not None:
            rate.lost += conn.send_mss  # (no records: one segment, at least)
        conn._high_rxt = conn.snd_una
        if not conn._sb.lost_edge(conn.snd_una, conn.send_mss):
            # Three duplicate ACKs without the SACKs to show it: the first
            # segment is lost all the same (RFC 6675 5 step 4.3).
            conn._high_rxt = sq.add(
                conn.snd_una, retransmit(conn, conn.snd_una, conn.send_mss, now))
    else:
        if rate is not None:
            rate.lost += conn.send_mss
        retransmit_first(conn, now)


def retransmit_first(conn: Connection, now: float) -> None:
    """Resend the segment at SND.UNA without moving SND.NXT."""
    retransmit(conn, conn.snd_una, conn.send_mss, now)


def retransmit(conn: Connection, seq: int, most: int, now: float, exact: bool = False) -> int:
    """Resend up to ``most`` bytes from ``seq`` (and the FIN, if they reach it),
    without moving SND.NXT; return the sequence space resent. ``exact``: the
    FIN too only if it lies within ``most`` (a segment resent as first cut: the
    FIN, if it came separately, is resent on its own)."""
    # Only what was sent (RFC 5681 3.2: "the missing segment"): bytes past SND.MAX
    # were never offered within the window, and an ACK of them would be an ACK of
    # data not yet sent, which is dropped (the window update it carries with it).
    sent = sq.sub(conn.snd_max, seq)
    fin_seq = conn._fin_seq
    if fin_seq is not None and sq.gt(conn.snd_max, fin_seq):
        sent -= 1  # the FIN's sequence number carries no byte
    buf = conn._sndbuf
    n = max(0, min(most, sent, sq.sub(sq.add(buf.start, buf.size), seq)))
    flags = ACK
    payload = buf.peek(seq, n) if n else b""
    if fin_seq is not None and sq.add(seq, n) == fin_seq and sq.gt(conn.snd_max, fin_seq) \
            and not (exact and n >= most):
        flags |= FIN
    if not payload and not flags & FIN:
        return 0
    if payload:
        flags |= PSH
    conn.counters.retransmissions += 1
    # (A FIN alone as the sequence number it takes, so that no block that merely
    # reaches it covers it.)
    note_resent(conn, seq, (seq + (n or 1)) & _MASK)
    conn._emit(conn._make(seq, flags, now, payload), now)
    return n + (1 if flags & FIN else 0)


# ----------------------------------------------- SACK loss recovery (RFC 6675)

def sack_pipe(conn: Connection, edge: int) -> int:
    """RFC 6675 pipe: bytes in flight, but for those SACKed and those lost (below
    the loss ``edge``) and not yet retransmitted."""
    una = conn.snd_una
    sb = conn._sb
    high = (conn._high_rxt - una) & _MASK
    if high >= _HALF:
        high = 0
    lost = sb.unsacked(una, high, edge) if edge > high else 0
    return ((conn.snd_max - una) & _MASK) - sb.sacked - lost


def bytes_in_flight(conn: Connection) -> int:
    """Bytes in the network: sent and not acknowledged, less what the peer has
    SACKed and what is deemed lost and not resent (Linux's
    tcp_packets_in_flight, RFC 6675's pipe)."""
    flight = (conn.snd_max - conn.snd_una) & _MASK
    rack = conn._rack
    if rack is not None:
        return flight - conn._sb.sacked - rack.lost
    if conn._sb.sacked:
        return sack_pipe(conn, conn._sb.lost_edge(conn.snd_una, conn.send_mss))
    return flight


def sack_retransmit(conn: Connection, now: float, pace: float = 0.0, batch: float = 0.0) -> int:
    """In SACK recovery, resend the lost holes, lowest first, while the pipe
    leaves room in cwnd (RFC 6675 NextSeg rule 1); return the pipe after.
    ``pace`` and ``batch``: as paced in :meth:`Connection._output`."""
    una = conn.snd_una
    sb = conn._sb
    mss = conn.send_mss
    edge = sb.lost_edge(una, mss)
    pipe = sack_pipe(conn, edge)
    cwnd = conn.cc.cwnd
    start = (conn._high_rxt - una) & _MASK
    if start >= _HALF:
        start = 0
    while cwnd - pipe >= mss:
        hole = sb.next_hole(una, start, edge)
        if hole is None:
            break
        off, length = hole
        if pace:
            t = conn._pace_next
            if t - now > batch:
                conn._pace_at = t
                break
            conn._pace_next = t + min(mss, length) * pace
        sent = retransmit(conn, sq.add(una, off), min(mss, length), now)
        if not sent:
            break
        start = off + sent
        conn._high_rxt = sq.add(una, start)
        pipe += sent
    return pipe


# --------------------------------------------------------- RACK-TLP (RFC 8985)

def recovering(conn: Connection) -> bool:
    """Whether a fast recovery or a timeout's is under way: SND.UNA has not yet
    passed what was sent when it began (RFC 6582's recover)."""
    cc = conn.cc
    if cc.in_recovery:
        return True
    una = conn.snd_una
    return 0 < (cc.recover - una) & _MASK <= (conn.snd_max - una) & _MASK


#: Most resends a recovery may make and still be undone: one that resent more was
#: no reordering's doing (and its D-SACKs are then not searched).
UNDO_MAX_RESENT = 64


def note_resent(conn: Connection, seq: int, end: int) -> None:
    """``seq`` to ``end`` was resent: while a recovery may be undone, its D-SACK
    is awaited (see rack_on_ack)."""
    undo = conn._undo
    if undo is not None:
        pending = undo[1]
        if len(pending) >= UNDO_MAX_RESENT:
            conn._undo = None
        else:
            pending.append((seq, end))


def _dsacked(pending: list[tuple[int, int]], left: int, right: int) -> bool:
    """Strike from ``pending`` (ranges resent) those the D-SACK block ``left`` to
    ``right`` covers, each range once (a range resent twice needs two copies
    reported, as Linux's undo_retrans counts them); whether that left none,
    having struck at least one."""
    span = (right - left) & _MASK
    if not 0 < span < _HALF:
        return False  # (no block: RFC 2018's blocks have left < right)
    kept: list[tuple[int, int]] = []
    struck: list[tuple[int, int]] = []
    for r in pending:
        if (r[0] - left) & _MASK <= span and (r[1] - left) & _MASK <= span \
                and r not in struck:
            struck.append(r)
        else:
            kept.append(r)
    if not struck:
        return False
    pending[:] = kept
    return not kept


def rack_on_ack(conn: Connection, old_una: int, newly: list[tuple[int, int]] | None,
                blocks: Any, tsecr: int, now: float) -> None:
    """RFC 8985 6.2 for an ACK that moved SND.UNA on from ``old_una`` or carried
    SACK ``blocks`` (``newly``: the ranges they SACKed first), and 7.4: what the
    ACK says of an outstanding tail loss probe. (Runs for every ACK: the common
    case, nothing SACKed or lost, is kept to a few tests inline.)"""
    rack = conn._rack
    assert rack is not None
    una = conn.snd_una
    if rack.dsack_round is not None:
        rack.new_round(una)
    dsack = None
    if blocks:
        # RFC 2883 4: a first block at or below the ACK, or within the second,
        # reports a duplicate.
        left, right = blocks[0]
        if (una - right) & _MASK < _HALF or len(blocks) > 1 and sq.le(
                blocks[1][0], left) and sq.le(right, blocks[1][1]):
            dsack = blocks[0]
            rack.on_dsack(conn.snd_max)
            undo = conn._undo
            if undo is not None and _dsacked(undo[1], left, right):
                # RFC 2883 / 3708: every segment the recovery resent reached the
                # peer twice, so none had been lost (reordering fooled us):
                # restore the window the recovery took away. Only a D-SACK of a
                # range it resent counts (as Linux checks the skb's RETRANS mark):
                # a copy of other data, which the network itself duplicated, says
                # nothing of the recovery, and would undo a cut a real loss called
                # for.
                cc = conn.cc
                cc.undo(undo[0])
                if cc.in_recovery:
                    cc.leave_recovery(una)
                conn.counters.undos += 1
                conn._undo = None
    # Our clock's tick the peer echoes (RFC 7323): whatever was last sent after
    # it, the ACK answers an earlier copy of (RFC 8985 6.2 step 2, RFC 3522).
    offset = conn._echo_offset(tsecr, now) if tsecr and conn._ts_jumps else conn.ts_offset
    echo = (tsecr - offset) & _MASK if tsecr and offset is not None else None
    advanced = rack.on_ack(old_una, una, newly, conn._sb.sacked_at, conn._fin_seq, now,
                           conn.rtt.min_rtt, echo)
    end = rack.tlp_end
    if end is not None and (una - end) & _MASK < _HALF:  # sq.ge(una, TLP.end_seq)
        # RFC 8985 7.4.2: a probe of new data has arrived: RACK sees to the rest.
        # A resent one the peer reports as a duplicate (its D-SACK ends where
        # the probe did, short of a FIN) found nothing lost. Once more than it is
        # acknowledged without that, it repaired a loss: reduce as for one.
        if not rack.tlp_retransmitted or dsack is not None and 0 <= (
                end - dsack[1]) & _MASK <= 1:
            rack.tlp_end = None
        elif una != end:
            rack.tlp_end = None
            if not recovering(conn):
                conn.cc.on_tail_loss(now)
    if una != old_una:
        recover = conn.cc.recover
        if 0 < (recover - old_una) & _MASK < _HALF and (una - recover) & _MASK < _HALF:
            rack.recovery_ended()  # SND.UNA passed recover
        if conn._loss_probe:
            conn._loss_at = None  # (conn._output arms it again, from now)
    if advanced or conn._loss_at is not None and not conn._loss_probe and (
            una != old_una or newly):
        # (Also when what a reorder wait was for may have arrived.)
        if conn._loss_at is not None and not conn._loss_probe:
            conn._loss_at = None  # (armed again if a wait is still due)
        recs = rack.recs
        h = rack.head
        if h < len(recs):
            r = recs[h]
            t = r[2]
            # Unless the first record in flight was sent once, after RACK's segment
            # (then so was every record after it: nothing can be lost).
            if r[3] or t < rack.xmit_ts or t == rack.xmit_ts and (
                    r[1] - rack.end_seq) & _MASK >= _HALF:
                rack_detect(conn, now)


def rack_detect(conn: Connection, now: float) -> None:
    """Mark what RACK finds lost; enter recovery for it; wait for the rest."""
    rack = conn._rack
    assert rack is not None
    marked, again, wait = rack.detect(now, rack.reo_wnd(
        recovering(conn), conn._sb.sacked > (DUP_THRESH - 1) * conn.send_mss,
        conn.rtt.min_rtt, conn.rtt.srtt))
    if again:
        conn.counters.lost_retransmissions += again
    if marked and conn._rate is not None:
        conn._rate.lost += marked
    cc = conn.cc
    if marked and not cc.in_recovery and cc.may_enter_recovery(conn.snd_una, conn.snd_max):
        enter_recovery(conn, now)
    if wait:
        conn._loss_at = now + wait
        conn._loss_probe = False


def on_reorder_timeout(conn: Connection, now: float) -> None:
    """The reordering window of a segment sent before RACK's has passed. (Called
    while the send side is open.)"""
    if conn._rack is not None:
        rack_detect(conn, now)
        conn._output(now)


def rack_retransmit(conn: Connection, now: float, pipe: int, first: bool = False, *,
                    pace: float = 0.0, batch: float = 0.0) -> int:
    """Resend the records marked lost, lowest first, while cwnd has room for
    them (RFC 6675 NextSeg rule 1, RFC 8985 6.2); return the pipe after.
    ``first``: the first of them whatever the room (RFC 6675 5 step 4.3, the
    fast retransmit that begins a recovery). ``pace`` and ``batch``: as paced
    in :meth:`Connection._output`.

    Room for the segment itself, not RFC 6675's full MSS; and one segment
    whenever less than a full one is in flight, so that a byte or two short
    (a FIN's sequence number is in flight but never SACKed) never holds the
    lone retransmission after a timeout back."""
    rack = conn._rack
    assert rack is not None
    cwnd = conn.cc.cwnd
    mss = conn.send_mss
    una = conn.snd_una
    wnd = conn.snd_wnd
    recs = rack.recs
    left = rack.lost
    j = rack.head
    n = len(recs)
    while left > 0 and j < n and (pipe < cwnd or first):
        r = recs[j]
        j += 1
        f = r[3]
        if not f & LOST:
            continue
        start = (r[0] - una) & _MASK
        if wnd == 0 or start and start >= wnd:
            break  # past the window the peer offers now (its first byte excepted)
        length = (r[1] - r[0]) & _MASK
        if cwnd - pipe < length and pipe >= mss and not first:
            break
        if pace:
            t = conn._pace_next
            if t - now > batch:
                conn._pace_at = t
                break
            conn._pace_next = t + length * pace
        first = False
        left -= length
        rack.lost -= length
        r[2] = now
        r[3] = (f & ~LOST) | RETRANSMITTED
        rack.resent_to = conn.snd_max
        if conn._rate is not None:
            conn._rate.stamp(r, now, False)
        pipe += retransmit(conn, r[0], length, now, exact=True)
    return pipe


def arm_probe(conn: Connection, now: float) -> None:
    """RFC 8985 7.2: with data in flight and no recovery, no probe outstanding
    and no reorder wait, a tail loss probe is due in 2 SRTT (more for a lone
    segment, whose ACK the peer may delay), and never after the RTO."""
    if conn._loss_at is not None and not conn._loss_probe:
        return
    rack = conn._rack
    assert rack is not None
    una = conn.snd_una
    flight = (conn.snd_max - una) & _MASK
    cc = conn.cc
    if not flight or rack.tlp_end is not None or rack.lost or not conn.snd_wnd \
            or cc.in_recovery or 0 < (cc.recover - una) & _MASK <= flight:
        # (The last test: a recovery after a timeout, see recovering.)
        conn._loss_at = None
        return
    srtt = conn.rtt.srtt
    if srtt is None:
        at = now + 1.0
    else:
        at = now + 2 * srtt + (_WC_DEL_ACK if flight <= conn.send_mss + 1 else _PTO_SLACK)
    rto = conn._rtx_at
    if rto is not None and rto < at:
        at = rto
    conn._loss_at = at
    conn._loss_probe = True


def on_probe_timeout(conn: Connection, now: float) -> None:
    """RFC 8985 7.3: send a probe, so that an ACK tells RACK what the tail of
    the flight lost: the next new segment if the peer's window takes it (the
    congestion window may not: one segment past it), else the last one sent
    again. One probe per episode, then the RTO, restarted now. (Called while the
    send side is open.)"""
    rack = conn._rack
    if rack is None or conn.snd_una == conn.snd_max or rack.tlp_end is not None \
            or rack.lost or recovering(conn):
        return
    before = conn.snd_max
    rack.tlp_end = before  # (so that conn._output arms no probe meanwhile)
    mss = conn.send_mss
    in_flight = (before - conn.snd_una) & _MASK
    unsent = conn.unsent
    fin_unsent = conn._fin_seq is not None and before == conn._fin_seq
    if (unsent or fin_unsent) and conn.snd_wnd - in_flight >= min(unsent, mss):
        cc = conn.cc
        cwnd = cc.cwnd
        cc.cwnd = in_flight - conn._sb.sacked + mss  # room for exactly one segment
        conn._output(now)
        cc.cwnd = cwnd
    if conn.snd_max != before:
        rack.tlp_retransmitted = False
    else:
        if not len(rack):
            rack.tlp_end = None
            return
        r = rack.recs[-1]
        retransmit(conn, r[0], (r[1] - r[0]) & _MASK, now, exact=True)
        r[2] = now
        r[3] |= RETRANSMITTED
        rack.resent_to = conn.snd_max
        if conn._rate is not None:
            conn._rate.stamp(r, now, False)
        rack.tlp_retransmitted = True
    rack.tlp_end = conn.snd_max
    conn.counters.tlp_probes += 1
    conn._rtx_at = now + conn.rtt.rto
