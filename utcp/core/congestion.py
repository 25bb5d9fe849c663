"""Congestion control, counted in bytes: NewReno (RFC 5681, RFC 6582) and CUBIC
(RFC 9438) with HyStart++ (RFC 9406), the default, as in Linux.

A controller owns cwnd and ssthresh, and NewReno's fast-recovery bookkeeping
(the recovery point, inflation by duplicate ACKs) that loss recovery drives.
The connection calls it through this interface:

- ``mss_known(mss)``: the handshake settled the MSS;
- ``on_ack(acked, now, ack, snd_max)``: new data acknowledged outside recovery,
  while cwnd limits sending;
- ``may_enter_recovery``, ``enter_recovery(flight, snd_max, now)``,
  ``on_dupack_in_recovery``, ``on_partial_ack``, ``exit_recovery(flight, now)``:
  a loss found by duplicate ACKs, and its repair;
- ``on_tail_loss(now)``: a loss a tail loss probe repaired, outside recovery;
- ``on_timeout(flight, snd_max, now)``: a retransmission timeout.

A subclass chooses how much a loss takes off the window (:meth:`NewReno._reduce`)
and how the window grows (:meth:`NewReno.on_ack`).
"""

from __future__ import annotations

from .rtt import RttEstimator
from .seq import MASK


class NewReno:
    """Slow start, congestion avoidance, fast retransmit and fast recovery."""

    __slots__ = ("cwnd", "ssthresh", "mss", "_acc", "recover", "in_recovery", "_initial")

    def __init__(self, mss: int, initial_segments: int, iss: int) -> None:
        self.mss = mss
        self._initial = initial_segments
        # RFC 6928: IW = initial_segments * MSS.
        self.cwnd = initial_segments * mss
        self.ssthresh = 1 << 30
        self._acc = 0
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

    def _reduce(self, flight: int, now: float) -> int:
        """The ssthresh after a loss with ``flight`` bytes in flight: half (RFC 5681)."""
        return max(flight // 2, 2 * self.mss)

    def enter_recovery(self, flight: int, snd_max: int, now: float = 0.0) -> None:
        """Three duplicate ACKs: reduce, and inflate by the three segments that left."""
        self.ssthresh = self._reduce(flight, now)
        self.cwnd = self.ssthresh + 3 * self.mss
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
        self._acc = 0

    def on_timeout(self, flight: int, snd_max: int, now: float = 0.0) -> None:
        """RFC 5681 (4): after an RTO, restart from one segment.

        RFC 6582 3.2 (6) and 4: ``recover`` becomes ``snd_max``, so that duplicate
        ACKs for data sent before the timeout start no fast retransmit.
        """
        self.ssthresh = self._reduce(flight, now)
        self.cwnd = self.mss
        self._acc = 0
        self.recover = snd_max
        self.in_recovery = False


# RFC 9438 4.1 / 4.6 / 4.3: CUBIC's constants.
_C = 0.4  # segments / s**3
_BETA = 0.7
_ALPHA = 3 * (1 - _BETA) / (1 + _BETA)  # Reno-friendly growth with beta 0.7
# RFC 9406 4.3: HyStart++'s constants.
_MIN_RTT_THRESH = 0.004
_MAX_RTT_THRESH = 0.016
_MIN_RTT_DIVISOR = 8
_N_RTT_SAMPLE = 8
_CSS_GROWTH_DIVISOR = 4
_CSS_ROUNDS = 5
_INF = float("inf")
_HALF = (MASK >> 1) + 1


class Cubic(NewReno):
    """CUBIC (RFC 9438): after a loss the window grows along a cubic curve of the
    time since, quickly back toward where the loss happened (W_max), slowly
    around it, then faster beyond; never slower than Reno would (the
    Reno-friendly region). A loss takes 30 % off, not half.

    Slow start runs HyStart++ (RFC 9406): once the RTT of a round grows by a
    threshold over the last round's, slow start turns conservative (a quarter of
    the growth) for up to five rounds, then ends, before the queue it is filling
    overflows; a false alarm (the RTT falls back) resumes slow start. Growth per
    ACK is not capped at L segments: an ACK may stand for a batch of segments (see
    NewReno.on_ack).
    """

    __slots__ = ("rtt", "_w_max", "_k", "_epoch", "_w_est", "_cwnd_epoch",
                 "_round_end", "_last_round_min", "_round_min", "_round_samples",
                 "_seen_samples", "_css_baseline", "_css_rounds")

    def __init__(self, mss: int, initial_segments: int, iss: int, rtt: RttEstimator) -> None:
        super().__init__(mss, initial_segments, iss)
        self.rtt = rtt
        self._w_max = 0.0  # bytes: the window when the last loss happened
        self._k = 0.0  # seconds from the epoch until the curve is back at _w_max
        self._epoch: float | None = None  # when growth after the last loss began
        self._w_est = 0.0  # what Reno would have grown to since the epoch (bytes)
        self._cwnd_epoch = 0
        # HyStart++ (RFC 9406 4.2).
        self._round_end = iss
        self._last_round_min = _INF
        self._round_min = _INF
        self._round_samples = 0
        self._seen_samples = 0
        self._css_baseline: float | None = None  # set while in conservative slow start
        self._css_rounds = 0

    @property
    def in_css(self) -> bool:
        """Whether slow start is in HyStart++'s conservative phase."""
        return self._css_baseline is not None

    def on_ack(self, acked: int, now: float = 0.0, ack: int = 0, snd_max: int = 0) -> None:
        if self.cwnd < self.ssthresh:
            self._slow_start(acked, ack, snd_max)
            return
        mss = self.mss
        cwnd = self.cwnd
        if self._epoch is None:
            # RFC 9438 4.2: the first ACK of congestion avoidance starts the epoch.
            self._epoch = now
            self._cwnd_epoch = cwnd
            self._w_est = float(cwnd)
            if self._w_max > cwnd:
                self._k = ((self._w_max - cwnd) / mss / _C) ** (1 / 3)
            else:
                self._k = 0.0
                self._w_max = float(cwnd)
        rtt = self.rtt.min_rtt
        if rtt == _INF:
            rtt = self.rtt.srtt or 0.1
        t = now - self._epoch + rtt
        target = self._w_max + _C * (t - self._k) ** 3 * mss  # W_cubic(t + RTT), 4.2
        # 4.3: Reno-friendly estimate, growing by alpha segments per window acked
        # (by one once past W_max: RFC 9438 4.3's switch to Reno's own rate).
        alpha = _ALPHA if self._w_est < self._w_max else 1.0
        self._w_est += alpha * mss * acked / cwnd
        if target < self._w_est:
            target = self._w_est
        elif target > 1.5 * cwnd:
            target = 1.5 * cwnd  # 4.4: no more than 50 % growth per RTT
        if target > cwnd:
            # 4.4: cwnd grows by (target - cwnd) / cwnd segments per segment acked.
            self._acc += (target - cwnd) * acked / cwnd
            if self._acc >= 1:
                grow = int(self._acc)
                self._acc -= grow
                self.cwnd = cwnd + grow

    def _slow_start(self, acked: int, ack: int, snd_max: int) -> None:
        rtt = self.rtt
        if (ack - self._round_end) & MASK < _HALF:  # sq.ge(ack, round_end)
            # RFC 9406 4.2: a round ends when the data sent at its start is acknowledged.
            self._last_round_min = self._round_min
            self._round_min = _INF
            self._round_samples = 0
            self._round_end = snd_max
            if self._css_baseline is not None:
                self._css_rounds += 1
                if self._css_rounds >= _CSS_ROUNDS:
                    # Enough rounds of rising delay: slow start ends here.
                    self.ssthresh = self.cwnd
                    self._css_baseline = None
                    return
        if rtt.samples != self._seen_samples:
            self._seen_samples = rtt.samples
            self._round_samples += 1
            if rtt.latest < self._round_min:
                self._round_min = rtt.latest
        if self._round_samples >= _N_RTT_SAMPLE and self._last_round_min < _INF:
            if self._css_baseline is None:
                thresh = min(max(self._last_round_min / _MIN_RTT_DIVISOR, _MIN_RTT_THRESH),
                             _MAX_RTT_THRESH)
                if self._round_min >= self._last_round_min + thresh:
                    self._css_baseline = self._round_min  # the queue is filling
                    self._css_rounds = 0
            elif self._round_min < self._css_baseline:
                self._css_baseline = None  # a false alarm: back to slow start
        if self._css_baseline is not None:
            self._acc += acked / _CSS_GROWTH_DIVISOR
            grow = int(self._acc)
            self._acc -= grow
            self.cwnd += grow
        else:
            self.cwnd = min(self.cwnd + acked, max(self.ssthresh, self.cwnd + self.mss))

    def undo_state(self) -> tuple:
        return (self.cwnd, self.ssthresh, self._w_max, self._k, self._epoch, self._w_est,
                self._cwnd_epoch)

    def undo(self, state: tuple) -> None:
        super().undo(state)
        # The curve from before the reduction, as Linux's cubictcp_undo_cwnd.
        self._w_max, self._k, self._epoch, self._w_est, self._cwnd_epoch = state[2:]

    def _reduce(self, flight: int, now: float) -> int:
        cwnd = self.cwnd
        # RFC 9438 4.7, fast convergence: a loss below the last W_max means another
        # flow took bandwidth; let it have more by aiming lower.
        if cwnd < self._w_max:
            self._w_max = cwnd * (1 + _BETA) / 2
        else:
            self._w_max = float(cwnd)
        self._epoch = None
        self._acc = 0
        self._css_baseline = None
        # 4.6: ssthresh = flight size * beta (RFC 9438 allows the flight, as RFC 5681).
        return max(int(flight * _BETA), 2 * self.mss)

    def on_timeout(self, flight: int, snd_max: int, now: float = 0.0) -> None:
        super().on_timeout(flight, snd_max, now)
        self._round_end = snd_max
        self._round_min = self._last_round_min = _INF
        self._round_samples = 0


#: The congestion controls a connection may use (``Options.congestion_control``).
CONTROLLERS = ("cubic", "newreno")


def make_controller(name: str, mss: int, initial_segments: int, iss: int,
                    rtt: RttEstimator) -> NewReno:
    """The controller called ``name`` (one of :data:`CONTROLLERS`)."""
    if name == "cubic":
        return Cubic(mss, initial_segments, iss, rtt)
    if name == "newreno":
        return NewReno(mss, initial_segments, iss)
    raise ValueError(f"unknown congestion control {name!r}; choose from {', '.join(CONTROLLERS)}")
