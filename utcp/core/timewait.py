"""TIME-WAIT, kept small: what is left of closed connections while 2 MSL runs.

A connection that reaches TIME-WAIT needs nothing more of its buffers, its
congestion state or the application's objects. Like Linux's timewait sockets,
the stack then keeps only a record of it: the sequence numbers to acknowledge a
repeated FIN with, the window to advertise, the last timestamp and the expiry.
A record is some 60 bytes packed into one ``bytes`` object, filed under the
connection's key, so a client that opens thousands of connections a second
holds tens of thousands of them in a few megabytes.

Expiry needs no timer: 2 MSL is the same for every connection with the same
``msl``, so records expire in the order they were made, from one FIFO per
``msl``. A record whose 4-tuple is opened again (TIME-WAIT reuse, or a new SYN
on the passive side) stays in its table and its FIFO as a dormant entry; if the
new connection reaches TIME-WAIT too, it takes that entry over. So each 4-tuple
has at most one entry and one place in a FIFO, and nothing piles up however
often it is reused; an entry taken over waits for its turn in the FIFO and
is then filed again at its own expiry.

The behaviour is the connection's in TIME-WAIT (tests run the same scripts on
both): RFC 9293 3.10.7.4, RFC 5961 and RFC 7323's PAWS.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any, Final

from .config import OOW_ACK_INTERVAL, PAWS_IDLE
from .wire import ACK, FIN, NOP_OPTION, RST, SYN, TIMESTAMPS, TS_HZ, Segment

_MASK: Final = 0xFFFFFFFF
_HALF: Final = 1 << 31
_MOD: Final = 1 << 32

# expires, 2 MSL, last out-of-window ACK, TS.Recent's time, SND.NXT, RCV.NXT,
# RCV.WND, the largest window the peer offered, TS.Recent, our timestamp offset,
# the window field to advertise, whether timestamps are in use; then when its
# turn in the FIFO comes (its expiry when it was queued).
_RECORD: Final = struct.Struct("=ddddIIIIIIHB")
_DOUBLE: Final = struct.Struct("=d")  # the expiry leads the record; its turn follows it
_DUE_AT: Final = _RECORD.size



def reopens(seg: Segment, rcv_nxt: int, ts_ok: bool, ts_recent: int) -> bool:
    """Whether a SYN may open a new connection on a 4-tuple in TIME-WAIT.

    RFC 9293 3.10.7.4 (RFC 1122 4.2.2.13): its sequence number is beyond the
    old connection's; or RFC 6191: both used timestamps and the SYN's is newer.
    Linux accepts either (tcp_timewait_state_process); a SYN whose timestamp
    PAWS rejects reopens nothing.
    """
    if seg.flags & (SYN | ACK | RST) != SYN:
        return False
    ts: Any = seg.option(TIMESTAMPS) if ts_ok else None
    if ts is not None and (ts[0] - ts_recent) & _MASK >= _HALF:
        return False  # older than TS.Recent: an old duplicate
    if (rcv_nxt - seg.seq) & _MASK >= _HALF:  # seq after RCV.NXT
        return True
    return ts is not None and ts[0] != ts_recent


def iss_after(snd_nxt: int) -> int:
    """The ISS for a new connection on a 4-tuple whose old one sent up to ``snd_nxt``:
    beyond its whole sequence space, as Linux chooses it (never 0)."""
    return (snd_nxt + 65535 + 2) & _MASK or 1


class TimeWaitTable:
    """The records of every connection of a stack that is in TIME-WAIT."""

    __slots__ = ("_records", "_queues", "_tails", "_via", "_usual_via", "_count",
                 "_deadline")

    def __init__(self) -> None:
        # key -> packed record, or None for a dormant entry (see the module doc).
        self._records: dict[Any, bytes | None] = {}
        # 2 MSL -> keys in the order their turns come, and the last turn queued.
        self._queues: dict[float, deque[Any]] = {}
        self._tails: dict[float, float] = {}
        # The local address each record's connection was made at (None: the
        # kernel's choice), kept once for all that share the usual one: a client's
        # records, or most of a wildcard server's, all have the same.
        self._via: dict[Any, Any] = {}
        self._usual_via: Any = None
        self._count = 0
        self._deadline: float | None = None

    def __len__(self) -> int:
        """Records in TIME-WAIT (dormant entries not counted)."""
        return self._count

    def __contains__(self, key: object) -> bool:
        return self._records.get(key) is not None

    def entries(self) -> int:
        """Entries held, dormant ones included (what memory the table costs)."""
        return len(self._records)

    # ------------------------------------------------------------- making them

    def enter(self, conn: Any) -> None:
        """Keep what ``conn`` (in TIME-WAIT, nothing held for a reader) still needs."""
        key = conn.key
        ack = conn._make(conn.snd_max, ACK, 0.0)  # what it would advertise now
        edge = (conn._rcv_adv - conn.rcv_nxt) & _MASK
        expires = conn._close_at
        record = _RECORD.pack(
            expires, 2 * conn.options.msl, conn._last_oow_ack, conn._ts_recent_at,
            conn.snd_max, conn.rcv_nxt, edge if edge < _HALF else 0,
            conn.max_snd_wnd & _MASK, conn._ts_recent, conn.ts_offset & _MASK,
            ack.window, conn._ts_ok)
        via = conn.via
        if via is self._usual_via:
            self._via.pop(key, None)
        elif self._usual_via is None:
            # The first address: it becomes the usual one; the records held so far
            # had none, and now say so.
            for other in self._records:
                self._via.setdefault(other, None)
            self._via.pop(key, None)
            self._usual_via = via
        else:
            self._via[key] = via
        records = self._records
        if key in records:
            # An entry of this 4-tuple's last connection (dormant, or one that a
            # traced connection left): take over its place in the FIFO.
            old = records[key]
            if old is not None:
                self._count -= 1
            records[key] = record + (old[_DUE_AT:] if old is not None else _DOUBLE.pack(0.0))
        else:
            two_msl = 2 * conn.options.msl
            due = max(expires, self._tails.get(two_msl, expires))
            records[key] = record + _DOUBLE.pack(due)
            queue = self._queues.get(two_msl)
            if queue is None:
                queue = self._queues[two_msl] = deque()
            queue.append(key)
            self._tails[two_msl] = due
            if len(queue) == 1:
                self._update_deadline()
        self._count += 1

    def via(self, key: Any) -> Any:
        """The local address replies for ``key`` leave from (None: the kernel chooses)."""
        return self._via.get(key, self._usual_via)

    # --------------------------------------------------------- ending them

    def release(self, key: Any) -> None:
        """``key``'s record ends now (RST, or a new connection takes the 4-tuple)."""
        records = self._records
        record = records.get(key)
        if record is None:
            return
        records[key] = None  # dormant until its turn in the FIFO (see the module doc)
        self._count -= 1
        two_msl = _RECORD.unpack_from(record)[1]
        queue = self._queues[two_msl]
        if queue[0] == key:
            # At the front of its FIFO: clear it, and any dormant entries behind it,
            # now rather than at its turn.
            while queue and records[queue[0]] is None:
                gone = queue.popleft()
                del records[gone]
                self._via.pop(gone, None)
            if not queue:
                del self._queues[two_msl]
                del self._tails[two_msl]
            self._update_deadline()

    def reusable(self, key: Any, now: float, delay: float) -> int | None:
        """The ISS for an active open on ``key`` if its TIME-WAIT may be cut short.

        Linux's ``tcp_tw_reuse``: only when the old connection used timestamps
        (the new SYN's is then newer than anything the old one sent, and PAWS at
        the peer tells old duplicates apart) and its last timestamp came more than
        ``delay`` seconds ago. The ISS lies beyond the old sequence space, as
        Linux's does. None if not.
        """
        record = self._records.get(key)
        if record is None:
            return None
        f = _RECORD.unpack_from(record)
        if not f[11] or not now - f[3] > delay:
            return None
        return iss_after(f[4])

    def reopens(self, key: Any, seg: Segment) -> int | None:
        """The ISS for a new connection if the SYN ``seg`` may reopen ``key``, else None."""
        record = self._records.get(key)
        if record is None:
            return None
        f = _RECORD.unpack_from(record)
        if not reopens(seg, f[5], bool(f[11]), f[8]):
            return None
        return iss_after(f[4])

    # ------------------------------------------------------------ segments

    def receive(self, key: Any, seg: Segment, now: float,
                counters: Any) -> Segment | None:
        """A segment for ``key``'s record: the ACK to answer with, or None. An acceptable
        RST releases the record. ``counters`` (a Counters) gets what the connection would
        have counted."""
        record = self._records[key]
        assert record is not None
        (expires, two_msl, last_oow, ts_recent_at, snd_nxt, rcv_nxt, rcv_wnd, max_wnd,
         ts_recent, ts_offset, window, ts_ok) = _RECORD.unpack_from(record)
        counters.segments_in += 1
        f = seg.flags
        seq = seg.seq
        changed = False

        def oow_limited() -> bool:
            nonlocal last_oow, changed
            if now - last_oow < OOW_ACK_INTERVAL:
                return True
            last_oow = now
            changed = True
            return False

        def challenge() -> bool:
            if oow_limited():
                return False
            counters.challenge_acks += 1
            return True

        reply = False
        ts: Any = seg.option(TIMESTAMPS) if ts_ok and seg.options else None
        if ts is not None and not f & RST and (ts[0] - ts_recent) & _MASK >= _HALF \
                and now - ts_recent_at < PAWS_IDLE:
            # RFC 7323 5.3 R1 (PAWS).
            counters.unacceptable += 1
            counters.paws_rejected += 1
            reply = challenge() if f & SYN else not oow_limited()
        else:
            seg_len = len(seg.payload) + (f & SYN and 1) + (f & FIN and 1)
            off = (seq - rcv_nxt) & _MASK
            if seg_len == 0:
                ok = (off < rcv_wnd or off == 0) if f & RST else off <= rcv_wnd
            elif rcv_wnd == 0:
                ok = seq == rcv_nxt and not f & SYN
                if ok:
                    counters.unacceptable += 1
                    reply = True
            else:
                ok = off < rcv_wnd or (seq + seg_len - 1 - rcv_nxt) & _MASK < rcv_wnd
            if not ok:
                if f & RST:
                    pass
                elif f & SYN:
                    counters.unacceptable += 1
                    reply = challenge()
                else:
                    if f & FIN and (seq + seg_len) & _MASK == rcv_nxt:
                        # A repeated FIN: our last ACK was lost. Re-ACK, restart 2 MSL.
                        expires = now + two_msl
                        changed = True
                    counters.unacceptable += 1
                    if seg_len and (seq - rcv_nxt) & _MASK >= _HALF:
                        counters.duplicates += 1
                    # Unacceptable bare ACKs are answered within the rate limit,
                    # keepalive probes (SEQ = RCV.NXT - 1) always.
                    reply = not (seg_len == 0 and seq != (rcv_nxt - 1) & _MASK
                                 and oow_limited())
            elif f & RST:
                if seq != rcv_nxt:
                    reply = challenge()
                else:
                    self.release(key)
                    return None
            elif f & SYN:
                reply = challenge()
            else:
                if ts is not None and (ts[0] - ts_recent) & _MASK < _HALF \
                        and (rcv_nxt - seq) & _MASK < _HALF:
                    # RFC 7323 R3 (Last.ACK.sent is RCV.NXT here).
                    ts_recent, ts_recent_at = ts[0], now
                    changed = True
                if f & ACK:
                    ack = seg.ack
                    if (snd_nxt - ack) & _MASK >= _HALF or \
                            (ack - snd_nxt + max(max_wnd, 1)) & _MASK >= _HALF:
                        # Acknowledges what was never sent, or far too old (RFC 5961 5.2).
                        reply = challenge()
        if changed:
            self._records[key] = _RECORD.pack(
                expires, two_msl, last_oow, ts_recent_at, snd_nxt, rcv_nxt, rcv_wnd, max_wnd,
                ts_recent, ts_offset, window, ts_ok) + record[_DUE_AT:]
        if not reply:
            return None
        counters.segments_out += 1
        options: tuple = ((NOP_OPTION, NOP_OPTION, (TIMESTAMPS, (
            (int(now * TS_HZ) + ts_offset) & _MASK, ts_recent))) if ts_ok else ())
        return Segment(key[1], key[2], snd_nxt, rcv_nxt, ACK, window, 0, options)

    # -------------------------------------------------------------- expiry

    def next_deadline(self) -> float | None:
        """When the oldest entry's turn comes, or None."""
        return self._deadline

    def expire(self, now: float) -> int:
        """Forget the records whose 2 MSL is over at ``now``; how many ended."""
        ended = 0
        records = self._records
        via = self._via
        for two_msl, queue in list(self._queues.items()):
            while queue:
                key = queue[0]
                record = records[key]
                if record is not None and _DOUBLE.unpack_from(record, _DUE_AT)[0] > now:
                    break  # the queue is in order of turn: nothing behind is due
                queue.popleft()
                if record is None:
                    # Dormant: the 4-tuple's new connection never reached TIME-WAIT.
                    del records[key]
                    via.pop(key, None)
                elif _DOUBLE.unpack_from(record)[0] <= now:
                    del records[key]
                    via.pop(key, None)
                    self._count -= 1
                    ended += 1
                else:
                    # Restarted by a repeated FIN, or taken over by a later connection:
                    # its turn comes again at its expiry, or after the last turn
                    # queued if that is later, which keeps the queue in order (so a
                    # record may outlast its 2 MSL a little, never fall short of it).
                    due = max(_DOUBLE.unpack_from(record)[0], self._tails[two_msl])
                    records[key] = record[:_DUE_AT] + _DOUBLE.pack(due)
                    queue.append(key)
                    self._tails[two_msl] = due
            if not queue:
                del self._queues[two_msl]
                del self._tails[two_msl]
        self._update_deadline()
        return ended

    def _update_deadline(self) -> None:
        best = None
        records = self._records
        for queue in self._queues.values():
            if queue:
                record = records[queue[0]]
                # A dormant entry at the front is due at once: it only needs clearing.
                t = _DOUBLE.unpack_from(record, _DUE_AT)[0] if record is not None else 0.0
                if best is None or t < best:
                    best = t
        self._deadline = best
