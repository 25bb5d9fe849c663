"""CUBIC (RFC 9438) with HyStart++ (RFC 9406) in slow start: Linux's default."""

from __future__ import annotations

from typing import Final

from utcp.core.rtt import RttEstimator
from utcp.core.seq import MASK

from .newreno import NewReno

# RFC 9438 4.1 / 4.6 / 4.3: CUBIC's constants.
_C: Final = 0.4  # segments / s**3
_BETA: Final = 0.7
_ALPHA: Final = 3 * (1 - _BETA) / (1 + _BETA)  # Reno-friendly growth with beta 0.7
# RFC 9406 4.3: HyStart++'s constants.
_MIN_RTT_THRESH: Final = 0.004
_MAX_RTT_THRESH: Final = 0.016
_MIN_RTT_DIVISOR: Final = 8
_N_RTT_SAMPLE: Final = 8
_CSS_GROWTH_DIVISOR: Final = 4
_CSS_ROUNDS: Final = 5
_INF: Final = float("inf")
_HALF: Final = (MASK >> 1) + 1


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
        self._acc = 0.0
        self._css_baseline = None
        # 4.6: ssthresh = flight size * beta (RFC 9438 allows the flight, as RFC 5681).
        return max(int(flight * _BETA), 2 * self.mss)

    def on_timeout(self, flight: int, snd_max: int, now: float = 0.0) -> None:
        super().on_timeout(flight, snd_max, now)
        self._round_end = snd_max
        self._round_min = self._last_round_min = _INF
        self._round_samples = 0
