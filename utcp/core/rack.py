"""RACK (RFC 8985): loss detection by the time segments were sent, for a sender
with SACK; and the bookkeeping of TLP, its tail loss probe.

RACK ("recent acknowledgment") remembers when each segment in flight was last
sent. Once the peer has received (acknowledged or SACKed) a segment, any segment
sent before it that has not arrived is lost as soon as it has been out for
RACK.rtt (the round trip of that received segment) plus a reordering window;
until then a timer waits. Because it compares send times, not sequence numbers,
a retransmission lost again is found like any other loss, and one segment
received after a burst of losses is enough to find them all.

A :class:`Rack` keeps one record per segment in flight, in sequence order, as
``[start, end, sent, flags]``: ``end`` counts a FIN, ``sent`` is the time of the
latest transmission, ``flags`` are :data:`RETRANSMITTED`, :data:`SACKED` and
:data:`LOST`. A segment is always resent whole, as first cut (its record stamped
anew), so among the records never resent, sequence order is time order; that is
what lets a search stop early (see :meth:`Rack.detect`).

The connection owns the timers, congestion control and sending; it feeds this
class what each ACK delivered and asks it what is lost.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Final

from .seq import HALF, MASK
from .wire import TS_HZ

#: Record flags: sent more than once; the peer SACKed all of it; deemed lost and
#: not sent again since.
RETRANSMITTED: Final = 1
SACKED: Final = 2
LOST: Final = 4

#: RFC 8985 6.2 step 4: the reordering window widened by D-SACKs stays wide for
#: this many recoveries without one.
REO_WND_PERSIST: Final = 16
# A record whose wait is over to within this (float rounding) is expired.
_EPSILON: Final = 1e-9
# Records before the head are dropped from the list once this many have gathered
# and they are half of it (dropping the front of a list moves the rest), or once
# they are all of it.
_COMPACT: Final = 256


class Rack:
    """RACK's state for one connection, and the records of what is in flight."""

    __slots__ = ("recs", "head", "xmit_ts", "end_seq", "rtt", "fack", "reordering_seen",
                 "reo_wnd_mult", "dsack_round", "reo_wnd_persist", "lost",
                 "tlp_end", "tlp_retransmitted", "newest", "newest_rtt", "resent_to")

    def __init__(self, una: int) -> None:
        #: The records, in sequence order; those before ``head`` are acknowledged.
        self.recs: list[list] = []
        self.head = 0
        # RFC 8985 6.1: the most recently sent segment delivered (RACK.xmit_ts and
        # RACK.end_seq), its round trip (RACK.rtt), and the highest sequence number
        # delivered (RACK.fack).
        self.xmit_ts = float("-inf")
        self.end_seq = una
        self.rtt = 0.0
        self.fack = una
        #: Whether a segment sent once arrived after one sent later (RACK.reordering_seen).
        self.reordering_seen = False
        # The reordering window's multiplier, grown by D-SACKs once per round trip
        # (until SND.UNA passes dsack_round), and how many recoveries it lasts.
        self.reo_wnd_mult = 1
        self.dsack_round: int | None = None
        self.reo_wnd_persist = 0
        #: Bytes in records marked lost and not yet resent (RFC 6675's pipe leaves
        #: them out).
        self.lost = 0
        #: TLP (RFC 8985 7): SND.NXT when a probe was sent, while its episode lasts
        #: (TLP.end_seq), and whether the probe was a retransmission (TLP.is_retrans).
        self.tlp_end: int | None = None
        self.tlp_retransmitted = False
        #: SND.MAX when a record was last flagged RETRANSMITTED (None once SND.UNA
        #: has passed it): below it, records may be flagged.
        self.resent_to: int | None = None
        #: Of the records the last ACK delivered: the one sent last, resent or not
        #: (delivery rate estimation samples it, see rate.py), and the round trip
        #: of the one sent last of those sent once, or that no ACK can be for an
        #: earlier copy of (-1.0 if none).
        self.newest: list | None = None
        self.newest_rtt = -1.0

    def __len__(self) -> int:
        return len(self.recs) - self.head

    def on_ack(self, old_una: int, una: int, newly: list[tuple[int, int]] | None,
               sacked_at, fin: int | None, now: float, min_rtt: float,
               echo: int | None) -> bool:
        """Take what one ACK delivered: the records SND.UNA passed (it moved from
        ``old_una`` to ``una``), and those in the ``newly`` SACKed ranges that are
        now SACKed whole (``sacked_at`` is the scoreboard's method of that name).
        Return whether RACK's segment moved on (RFC 8985 6.2 steps 2 and 3).

        ``fin`` is the sequence number of our FIN, if sent: a SACK never covers it,
        so a record ending with it counts as SACKed with its data. A retransmitted
        record counts only if it was resent at least ``min_rtt`` ago (else the ACK
        may answer an earlier copy, RFC 8985 6.2 step 2), and not if the ACK echoes
        ``echo``, a tick of our millisecond timestamp clock (its offset taken off)
        before it was resent: then an earlier copy arrived, and if it arrived below
        RACK.fack, that is reordering.
        """
        recs = self.recs
        i = self.head
        n = len(recs)
        prior_fack = self.fack
        best = None
        resent = None  # the newest of the resent records passed over for RACK
        reordered = False
        if una != old_una:
            acked = (una - old_una) & MASK
            check = prior_fack != old_una  # (else no record can end below it)
            resent_to = self.resent_to
            if resent_to is not None and (old_una - resent_to) & MASK < HALF:
                resent_to = self.resent_to = None  # sq.ge(): every resent record is gone
            if not check and not self.lost and resent_to is None and (
                    fin is None or (old_una - fin) & MASK >= HALF):  # sq.lt(old_una, fin)
                # No record from here is flagged: none resent, none lost, none SACKed
                # (a SACKed one ends at or below RACK.fack, here SND.UNA, but for one
                # SACKed up to our FIN, which only SND.UNA at the FIN leaves). So these
                # were sent once each, in sequence order, which is time order: the
                # last one SND.UNA passes is RACK's. (The loop below, in short.)
                while i < n and (recs[i][1] - old_una) & MASK <= acked:
                    i += 1
                if i > self.head:
                    best = recs[i - 1]
                if i < n and (recs[i][0] - old_una) & MASK < acked:
                    recs[i][0] = una  # SND.UNA inside a record: the rest stays in flight
            else:
                while i < n:
                    r = recs[i]
                    end = r[1]
                    if (end - old_una) & MASK > acked:
                        start = (r[0] - old_una) & MASK
                        if start < acked:
                            # SND.UNA inside a record (a peer acknowledging part of a
                            # segment): the rest stays in flight.
                            if r[3] & LOST:
                                self.lost -= acked - start
                            r[0] = una
                        break
                    i += 1
                    f = r[3]
                    if f:
                        if f & LOST:
                            self.lost -= (end - r[0]) & MASK
                        if f & SACKED:
                            continue  # (delivered when SACKed)
                        if f & RETRANSMITTED:
                            if echo is not None and 0 < (int(r[2] * TS_HZ) - echo) & MASK < HALF:
                                if check and (end - prior_fack) & MASK >= HALF:
                                    reordered = True  # the original, late (sq.lt(end, fack))
                                if resent is None or r[2] >= resent[2]:
                                    resent = r
                                continue
                            if now - r[2] < min_rtt:
                                if resent is None or r[2] >= resent[2]:
                                    resent = r
                                continue
                        elif check and (end - prior_fack) & MASK >= HALF:
                            reordered = True
                    elif check and (end - prior_fack) & MASK >= HALF:  # sq.lt(end, fack)
                        reordered = True
                    # In sequence order, a later record with the same time is sent after.
                    if best is None or r[2] >= best[2]:
                        best = r
            self.head = i
        if newly:
            top = 0
            for left, right in newly:
                lo = (left - una) & MASK
                hi = (right - una) & MASK
                if hi >= HALF or hi == 0:
                    continue  # all below SND.UNA: acknowledged (above)
                if lo >= HALF:
                    lo = 0
                if hi > top:
                    top = hi
                # The first record ending past lo (the records from i end in order).
                j = bisect_right(recs, lo, i, n, key=lambda r: (r[1] - una) & MASK)
                while j < n:
                    r = recs[j]
                    j += 1
                    start = (r[0] - una) & MASK
                    if start >= hi:
                        break
                    f = r[3]
                    if f & SACKED:
                        continue
                    end = (r[1] - una) & MASK
                    held = sacked_at(una, start)
                    if held < end and not (held == end - 1 and fin is not None
                                           and (r[1] - 1) & MASK == fin):
                        continue  # not whole yet
                    if f & LOST:
                        self.lost -= (r[1] - r[0]) & MASK
                        f &= ~LOST
                    r[3] = f | SACKED
                    if f & RETRANSMITTED:
                        if now - r[2] < min_rtt:
                            if resent is None or r[2] > resent[2]:
                                resent = r
                            continue
                    elif (r[1] - prior_fack) & MASK >= HALF:
                        reordered = True
                    if best is None or r[2] > best[2] or (
                            r[2] == best[2] and 0 < (r[1] - best[1]) & MASK < HALF):
                        best = r
            if top and 0 < (una + top - prior_fack) & MASK < HALF:
                self.fack = (una + top) & MASK
        if 0 < (una - self.fack) & MASK < HALF:  # sq.gt(una, fack)
            self.fack = una
        if reordered:
            self.reordering_seen = True
        if i >= _COMPACT and 2 * i >= n or i == n and i:
            del recs[:i]  # (and whenever all is acknowledged: an idle flight holds none)
            i = 0
        self.head = i
        if best is None:
            self.newest = resent
            self.newest_rtt = -1.0
            return False
        t = best[2]
        self.newest = resent if resent is not None and resent[2] > t else best
        self.newest_rtt = now - t
        if t > self.xmit_ts or (t == self.xmit_ts and 0 < (best[1] - self.end_seq) & MASK < HALF):
            self.xmit_ts = t
            self.end_seq = best[1]
            self.rtt = now - t
            return True
        return False

    def detect(self, now: float, reo_wnd: float) -> tuple[int, int, float]:
        """RFC 8985 6.2 step 5: mark lost every record sent before RACK's segment
        that has been out for RACK.rtt + ``reo_wnd``. Return the bytes marked, how
        many of the records marked were retransmissions, and the longest any of the
        others still has to wait (0 if none waits): as in the RFC and Linux, one
        timer for all of them, so that one wakeup marks them together."""
        recs = self.recs
        xmit_ts = self.xmit_ts
        end_seq = self.end_seq
        limit = self.rtt + reo_wnd
        wait = 0.0
        marked = 0
        again = 0
        for j in range(self.head, len(recs)):
            r = recs[j]
            f = r[3]
            if f & (SACKED | LOST):
                continue
            t = r[2]
            if t > xmit_ts or (t == xmit_ts and (r[1] - end_seq) & MASK < HALF):
                # Sent after RACK's segment (or it is that one). Past the first such
                # record sent only once, every record was sent later still.
                if not f & RETRANSMITTED:
                    break
                continue
            remaining = t + limit - now
            if remaining <= _EPSILON:
                r[3] = f | LOST
                marked += (r[1] - r[0]) & MASK
                if f & RETRANSMITTED:
                    again += 1
            elif remaining > wait:
                wait = remaining
        self.lost += marked
        return marked, again, wait

    def reo_wnd(self, recovering: bool, dupthresh_sacked: bool, min_rtt: float,
                srtt: float | None) -> float:
        """RFC 8985 6.2 step 4: how long a segment may be outstanding past RACK.rtt
        before it is lost. While no reordering has been seen, none in recovery
        (``recovering``) nor once DupThresh segments are SACKed (``dupthresh_sacked``:
        RFC 6675's rule, then); else a quarter of the least RTT, times the D-SACK
        multiplier, at most SRTT."""
        if not self.reordering_seen and (recovering or dupthresh_sacked):
            return 0.0
        if srtt is None:
            return 0.0
        w = self.reo_wnd_mult * min_rtt / 4
        return w if w < srtt else srtt

    def on_dsack(self, snd_nxt: int) -> None:
        """RFC 8985 6.2 step 4: a D-SACK arrived; widen the reordering window by a
        quarter of the least RTT, at most once per round trip."""
        if self.dsack_round is None:
            self.dsack_round = snd_nxt
            self.reo_wnd_mult += 1
            self.reo_wnd_persist = REO_WND_PERSIST

    def new_round(self, una: int) -> None:
        """SND.UNA moved to ``una``: a D-SACK round ends once it passes its mark."""
        d = self.dsack_round
        if d is not None and (una - d) & MASK < HALF:  # sq.ge(una, dsack_round)
            self.dsack_round = None

    def recovery_ended(self) -> None:
        """A fast or RTO recovery ended: after 16 without a D-SACK, the reordering
        window returns to its base."""
        self.reo_wnd_persist -= 1
        if self.reo_wnd_persist <= 0:
            self.reo_wnd_mult = 1

    def forget_sacks(self) -> None:
        """The peer reneged on what it SACKed: no record counts as SACKed now."""
        recs = self.recs
        for j in range(self.head, len(recs)):
            recs[j][3] &= ~SACKED

    def mark_all_lost(self) -> None:
        """A retransmission timeout: everything not SACKed is lost (RFC 5681 and
        RFC 6675: all of it is resent, as the window allows)."""
        recs = self.recs
        marked = 0
        for j in range(self.head, len(recs)):
            r = recs[j]
            if not r[3] & (SACKED | LOST):
                r[3] |= LOST
                marked += (r[1] - r[0]) & MASK
        self.lost += marked
        self.tlp_end = None

    def mark_first_lost(self) -> None:
        """The first record not SACKed is lost (RFC 6675 5 step 4.3: three duplicate
        ACKs without the SACK blocks to say what is missing)."""
        recs = self.recs
        for j in range(self.head, len(recs)):
            r = recs[j]
            if not r[3] & (SACKED | LOST):
                r[3] |= LOST
                self.lost += (r[1] - r[0]) & MASK
                return
