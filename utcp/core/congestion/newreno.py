"""NewReno (RFC 5681, RFC 6582): slow start, congestion avoidance, fast
retransmit and fast recovery, counted in bytes."""

from __future__ import annotations

from typing import Final

from utcp.core.rate import DeliveryRate
from utcp.core.seq import MASK

# Linux's tcp_pacing_ss_ratio and tcp_pacing_ca_ratio (200 % and 120 %).
_PACING_SS_RATIO: Final = 2.0
_PACING_CA_RATIO: Final = 1.2


class NewReno:
    """Slow start, congestion avoidance, fast retransmit and fast recovery."""

    __slots__ = ("cwnd", "ssthresh", "mss", "_acc", "recover", "in_recovery", "_initial")

    #: Delivery rate estimation, for a controller that models the path from it
    #: (see rate.py); None: not needed, and the connection takes no samples.
    rate: DeliveryRate | None = None

    def __init__(self, mss: int, initial_segments: int, iss: int) -> None:
        self.mss = mss
        self._initial = initial_segments
        # RFC 6928: IW = initial_segments * MSS.
        self.cwnd = initial_segments * mss
        self.ssthresh = 1 << 30
        # Bytes acknowledged toward the next increase (NewReno's are whole; CUBIC
        # counts fractions of a segment).
        self._acc = 0.0
        # RFC 6582 3.2 (1): the highest sequence number sent when the last fast
        # recovery or timeout began; starts at the ISS.
        self.recover = iss
        self.in_recovery = False

    def mss_known(self, mss: int) -> None:
        """The handshake settled the MSS (before any data): the initial window follows."""
        self.mss = mss
        self.cwnd = self._initial * mss

    def on_ack(self, acked: int, now: float = 0.0, ack: int = 0, snd_max: int = 0) -> None:
        """New data was cumulatively acknowledged (outside fast recovery), up to
        ``ack``, at ``now``, with ``snd_max`` sent so far."""
        if self.cwnd < self.ssthresh:
            # RFC 5681 3.1 slow start, counting bytes acknowledged (RFC 3465) without
            # its per-ACK cap, as Linux does: one ACK may stand for a whole batch of
            # segments (see Connection.coalesce_acks), and capping it at one MSS
            # would stall the ramp-up. Never past ssthresh in one step.
            self.cwnd = min(self.cwnd + acked, max(self.ssthresh, self.cwnd + self.mss))
        else:
            # Congestion avoidance: about one MSS per RTT.
            self._acc += acked
            if self._acc >= self.cwnd:
                self._acc -= self.cwnd
                self.cwnd += self.mss

    def may_enter_recovery(self, snd_una: int, snd_max: int) -> bool:
        """RFC 6582 3.2 (2): whether three duplicate ACKs at ``snd_una`` may start a
        fast retransmit, that is whether ``snd_una`` is past ``recover``.

        Otherwise they may answer segments resent after the last recovery or timeout
        that the peer already held, and halving again would punish one loss twice.
        """
        # recover is one past the highest sequence number then sent, and SND.UNA must
        # exceed it, not just reach it: duplicate ACKs at exactly recover may still
        # answer go-back-N resends of data the peer had (FreeBSD's test is the same,
        # SEQ_LEQ(th_ack, snd_recover) blocks).
        # recover is a past SND.MAX, so SND.UNA =< recover means recover lies in
        # [SND.UNA, SND.MAX]. Tested as a range, the answer stays right however far
        # the stream has moved on since (a plain comparison would flip after 2**31
        # bytes without loss; the range can only misfire if recover, never renewed,
        # lands inside the flight again 2**32 bytes later, and then an RTO recovers).
        return (self.recover - snd_una) & MASK > (snd_max - snd_una) & MASK

    def undo_state(self) -> tuple:
        """What :meth:`undo` needs to take back the next reduction."""
        return (self.cwnd, self.ssthresh)

    def undo(self, state: tuple) -> None:
        """The last reduction was for nothing (the segments it was for arrived):
        go back to ``state`` (from :meth:`undo_state`), or stay, if higher now."""
        cwnd, ssthresh = state[0], state[1]
        self.cwnd = max(self.cwnd, cwnd)
        self.ssthresh = max(self.ssthresh, ssthresh)

    def leave_recovery(self, snd_una: int) -> None:
        """A recovery undone while under way ends at once, the window as
        :meth:`undo` left it (no deflation): a loss found after it starts another
        (Linux: tcp_try_undo_dsack, then tcp_try_to_open)."""
        self.in_recovery = False
        self.recover = (snd_una - 1) & MASK  # passed: may_enter_recovery() holds

    def _reduce(self, flight: int, now: float) -> int:
        """The ssthresh after a loss with ``flight`` bytes in flight: half (RFC 5681)."""
        return max(flight // 2, 2 * self.mss)

    def enter_recovery(self, flight: int, snd_max: int, now: float = 0.0,
                       sack: bool = False) -> None:
        """Three duplicate ACKs: reduce, and inflate by the three segments that left;
        with ``sack`` (RFC 6675), no inflation: the pipe counts what left."""
        self.ssthresh = self._reduce(flight, now)
        self.cwnd = self.ssthresh if sack else self.ssthresh + 3 * self.mss
        self.recover = snd_max
        self.in_recovery = True

    def on_dupack_in_recovery(self) -> None:
        """Another segment left the network during fast recovery."""
        self.cwnd += self.mss

    def on_partial_ack(self, acked: int) -> None:
        """RFC 6582: deflate by the amount acknowledged, add back one MSS."""
        self.cwnd = max(self.cwnd - acked + self.mss, self.mss)

    def exit_recovery(self, flight: int, now: float = 0.0) -> None:
        """Full acknowledgment of the recovery point."""
        self.cwnd = min(self.ssthresh, max(flight, self.mss) + self.mss)
        self.in_recovery = False

    def on_tail_loss(self, now: float = 0.0) -> None:
        """A tail loss probe repaired a loss, no recovery needed (RFC 8985 7.4.2):
        reduce once, as a recovery would have, from the window in use (as Linux's
        CWR state does), and go on from the reduced window."""
        self.ssthresh = self._reduce(self.cwnd, now)
        if self.cwnd > self.ssthresh:
            self.cwnd = self.ssthresh
        self._acc = 0.0

    def on_rate_sample(self, una: int, now: float) -> None:
        """An ACK was processed and gave :attr:`rate` a sample (a controller whose
        ``rate`` is None is not asked: it takes none)."""

    def on_send_after_idle(self, now: float) -> None:
        """Sending starts again with nothing in flight (asked only of a controller
        with a ``rate``)."""

    def pacing_rate(self, srtt: float, flight: int) -> float:
        """Bytes a second to pace at, as Linux paces a controller without a rate of
        its own (tcp_update_pacing_rate): the window (or the flight, if larger) over
        SRTT, times two in slow start (below half ssthresh), else times 1.2, so
        that the window can still grow. 0.0 (no pacing) without a usable SRTT."""
        if srtt <= 0:
            return 0.0
        w = self.cwnd if self.cwnd > flight else flight
        return w / srtt * (_PACING_SS_RATIO if self.cwnd < self.ssthresh // 2
                           else _PACING_CA_RATIO)

    def on_timeout(self, flight: int, snd_max: int, now: float = 0.0) -> None:
        """RFC 5681 (4): after an RTO, restart from one segment.

        RFC 6582 3.2 (6) and 4: ``recover`` becomes ``snd_max``, so that duplicate
        ACKs for data sent before the timeout start no fast retransmit.
        """
        self.ssthresh = self._reduce(flight, now)
        self.cwnd = self.mss
        self._acc = 0.0
        self.recover = snd_max
        self.in_recovery = False
