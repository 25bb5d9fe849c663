"""BBR ("bottleneck bandwidth and round-trip propagation time"), version 1, as
Linux ships it (net/ipv4/tcp_bbr.c; Cardwell et al., "BBR: Congestion-Based
Congestion Control", ACM Queue 14(5), 2016).

BBR paces at the rate it believes the path delivers and keeps about twice the
path's bandwidth-delay product in flight, from a model it updates on every ACK:

- the bottleneck bandwidth: the largest delivery rate sampled (see rate.py)
  over the last 10 round trips;
- the round-trip propagation time: the least RTT over the last 10 seconds.

Loss is not a signal of congestion: random loss does not cut the rate. A
connection moves through four modes: STARTUP doubles the rate every round
trip (a gain of 2/ln 2) until three rounds in a row bring less than 25 % more
bandwidth; DRAIN then paces below it until what is in flight is down to one
bandwidth-delay product (the queue STARTUP built is gone); PROBE_BW cycles the
pacing gain through 1.25, 0.75 and six rounds of 1.0, probing for more
bandwidth and draining what the probe queued; PROBE_RTT, when no RTT sample
has matched the least one for 10 seconds, holds 4 segments in flight for 200
ms and a round trip, so that queues drain and the propagation time is
measured afresh.

Around that core, as in Linux: a loss recovery conserves packets for its
first round (send as much as was delivered) and restores the window after;
a token-bucket policer, found by two intervals of steady rate and high loss,
is paced at its rate for 48 round trips; and the window keeps room for the
data that ACKs, coming in bunches, deliver at once (ACK aggregation).

Counted in bytes, as the rest of utcp (Linux counts segments); the gains are
Linux's fixed-point values.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from utcp.core.rate import DeliveryRate, RateSample
from utcp.core.rtt import RttEstimator
from utcp.core.seq import MASK

from .newreno import NewReno

#: STARTUP's pacing and window gain, 2/ln 2: the least that doubles the rate every
#: round trip, as slow start does (Linux: BBR_UNIT * 2885 / 1000 + 1, of 256).
HIGH_GAIN: Final = 739 / 256
#: DRAIN's pacing gain, its inverse: the queue STARTUP built drains in one round.
DRAIN_GAIN: Final = 88 / 256
#: PROBE_BW's window gain: room for delayed and stretched ACKs.
CWND_GAIN: Final = 2.0
#: PROBE_BW's pacing gains, one per phase of the cycle: probe for more, drain
#: what the probe queued, then cruise at the estimate. (Not Final: compiled, a
#: Final tuple is not yet set where BW_WINDOW_ROUNDS reads it.)
PACING_GAINS = (1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
#: The bandwidth filter's window, in round trips, and the min RTT filter's, in
#: seconds.
BW_WINDOW_ROUNDS: Final = len(PACING_GAINS) + 2
MIN_RTT_WINDOW: Final = 10.0
#: PROBE_RTT: how long, and how many segments in flight at most.
PROBE_RTT_TIME: Final = 0.2
MIN_CWND_SEGMENTS: Final = 4
#: STARTUP ends after FULL_BW_ROUNDS rounds without FULL_BW_GROWTH more bandwidth.
FULL_BW_GROWTH: Final = 1.25
FULL_BW_ROUNDS: Final = 3
# PROBE_BW starts in one of the cycle's phases but the drain, at random.
_CYCLE_RAND: Final = 7
# Pace about 1 % below the estimate, to keep the bottleneck's queue down.
_PACING_MARGIN: Final = 0.99
# Below this rate (1.2 Mbit/s), a send carries one segment, not two.
_MIN_TSO_RATE: Final = 1_200_000 / 8
# The long-term (policer) estimate: an interval of at least 4 round trips (and
# at most 16), lossy when more than 50/256 (20 %) of what it delivered was lost;
# two intervals' rates within 1/8 or 4 kbit/s of each other mean a policer,
# whose rate is then used for 48 round trips.
_LT_MIN_ROUNDS: Final = 4
_LT_LOSS_THRESH: Final = 50 / 256
_LT_BW_RATIO: Final = 1 / 8
_LT_BW_DIFF: Final = 4000 / 8
_LT_BW_MAX_ROUNDS: Final = 48
# ACK aggregation: the most data delivered beyond what the bandwidth explains,
# over 5-10 round trips, is added to the window, up to 100 ms at that bandwidth.
_EXTRA_ACKED_ROUNDS: Final = 5
_EXTRA_ACKED_MAX_TIME: Final = 0.1
_ACK_EPOCH_RESET_SEGMENTS: Final = 1 << 20
# Linux's congestion-avoidance states, as far as BBR tells them apart.
_OPEN, _RECOVERY, _LOSS = 0, 3, 4
_INF: Final = float("inf")
_HALF: Final = (MASK >> 1) + 1


class Mode(Enum):
    """What BBR is doing."""

    STARTUP = "STARTUP"
    DRAIN = "DRAIN"
    PROBE_BW = "PROBE_BW"
    PROBE_RTT = "PROBE_RTT"


STARTUP, DRAIN, PROBE_BW, PROBE_RTT = Mode.STARTUP, Mode.DRAIN, Mode.PROBE_BW, Mode.PROBE_RTT


class WindowedMax:
    """The largest value seen within the last ``window`` units of time (Kathleen
    Nichols' algorithm, Linux's lib/win_minmax.c): the best, second and third
    best candidates, each younger than the one before."""

    __slots__ = ("s",)

    def __init__(self) -> None:
        self.s = [(0, 0.0), (0, 0.0), (0, 0.0)]  # (time, value)

    def get(self) -> float:
        """The windowed maximum."""
        return self.s[0][1]

    def reset(self, t: int, value: float) -> None:
        """Forget every earlier value: ``value``, at ``t``, is the maximum."""
        self.s = [(t, value), (t, value), (t, value)]

    def update(self, window: int, t: int, value: float) -> float:
        """Take ``value`` at time ``t``; return the maximum within ``window``."""
        s = self.s
        sample = (t, value)
        if value >= s[0][1] or t - s[2][0] > window:
            self.reset(t, value)  # a new maximum, or nothing left in the window
            return value
        if value >= s[1][1]:
            s[1] = s[2] = sample
        elif value >= s[2][1]:
            s[2] = sample
        dt = t - s[0][0]
        if dt > window:
            # The maximum has left the window: the next candidates move up (twice,
            # if the second has left it too).
            s[0], s[1], s[2] = s[1], s[2], sample
            if t - s[0][0] > window:
                s[0], s[1], s[2] = s[1], s[2], sample
        elif s[1][0] == s[0][0] and dt > window // 4:
            s[1] = s[2] = sample  # a quarter of the window without a second best
        elif s[2][0] == s[1][0] and dt > window // 2:
            s[2] = sample  # half of it without a third
        return s[0][1]


class Bbr(NewReno):
    """BBR congestion control (version 1, as in Linux): pace at the bottleneck
    bandwidth, keep about twice its bandwidth-delay product in flight."""

    __slots__ = (
        "rtt", "rate", "_rate", "mode", "pacing_gain", "cwnd_gain", "full_bw_reached", "min_rtt",
        "_bw", "_rtt_count", "_next_round_delivered", "_round_start", "_min_rtt_stamp",
        "_probe_rtt_done", "_probe_rtt_round_done", "_prior_cwnd", "_conserving",
        "_state", "_prev_state", "_idle_restart", "_full_bw", "_full_bw_count",
        "_cycle_index", "_cycle_stamp", "_has_seen_rtt", "_pacing_rate", "_random",
        "_lt_bw", "_lt_use_bw", "_lt_sampling", "_lt_rounds", "_lt_last_delivered",
        "_lt_last_stamp", "_lt_last_lost", "_ack_epoch_stamp", "_ack_epoch_acked",
        "_extra_acked", "_extra_acked_rounds", "_extra_acked_index",
    )

    def __init__(self, mss: int, initial_segments: int, iss: int, rtt: RttEstimator) -> None:
        super().__init__(mss, initial_segments, iss)
        self.rtt = rtt
        #: The connection's delivery state, and the sample of its latest ACK
        #: (``_rate``: the same, typed as never None, for the compiled build).
        self.rate = self._rate = DeliveryRate()
        self.mode = STARTUP
        self.pacing_gain = HIGH_GAIN
        self.cwnd_gain = HIGH_GAIN
        #: Whether STARTUP found the bandwidth (three rounds without growth).
        self.full_bw_reached = False
        #: The least RTT of the last 10 seconds (inf until the first sample).
        self.min_rtt = _INF
        self._bw = WindowedMax()  # bytes a second, over rounds
        self._rtt_count = 0  # round trips so far
        self._next_round_delivered = 0  # a round ends once a segment sent past this arrives
        self._round_start = False  # this ACK began a round
        self._min_rtt_stamp: float | None = None  # None: the model starts on the first ACK
        self._probe_rtt_done: float | None = None
        self._probe_rtt_round_done = False
        self._prior_cwnd = 0  # the window before a recovery or PROBE_RTT
        self._conserving = False  # the first round of a recovery
        self._state = self._prev_state = _OPEN
        self._idle_restart = False
        self._full_bw = 0.0
        self._full_bw_count = 0
        self._cycle_index = 0
        self._cycle_stamp = 0.0
        self._has_seen_rtt = False
        self._pacing_rate = 0.0
        # The phase PROBE_BW starts in is drawn from the ISS (secret, and in tests
        # fixed), so that the core stays deterministic.
        self._random = iss
        self._lt_bw = 0.0
        self._lt_use_bw = False
        self._lt_sampling = False
        self._lt_rounds = 0
        self._lt_last_delivered = 0
        self._lt_last_stamp = 0.0
        self._lt_last_lost = 0
        self._ack_epoch_stamp = 0.0
        self._ack_epoch_acked = 0
        self._extra_acked = [0, 0]
        self._extra_acked_rounds = 0
        self._extra_acked_index = 0

    # ------------------------------------------------------------- the model

    @property
    def bw(self) -> float:
        """The bottleneck bandwidth BBR believes in, bytes a second: the policer's
        rate if it found one, else the windowed maximum of the delivery rate."""
        return self._lt_bw if self._lt_use_bw else self._bw.get()

    @property
    def cycle_index(self) -> int:
        """The phase of PROBE_BW's gain cycle (an index into PACING_GAINS)."""
        return self._cycle_index

    def pacing_rate(self, srtt: float, flight: int) -> float:
        """Bytes a second: the bandwidth times the pacing gain, less 1 %; before a
        bandwidth sample, STARTUP's gain times the window over SRTT."""
        if not self._has_seen_rtt:
            self._init_pacing_rate(srtt)
        return self._pacing_rate

    def _init_pacing_rate(self, srtt: float) -> None:
        self._has_seen_rtt = True
        self._pacing_rate = HIGH_GAIN * _PACING_MARGIN * self.cwnd / max(srtt, 1e-6)

    def on_rate_sample(self, una: int, now: float) -> None:
        """An ACK was processed (``una``: SND.UNA after it): update the model from
        its sample (``self.rate.sample``), then the pacing rate and cwnd (Linux's
        bbr_main)."""
        rate = self._rate
        rs = rate.sample
        if self._min_rtt_stamp is None:
            # The first ACK of data: the handshake's RTT is the least so far.
            self.min_rtt = self.rtt.min_rtt
            self._min_rtt_stamp = now
            self._ack_epoch_stamp = now
        if self._state == _LOSS and (una - self.recover) & MASK < _HALF:
            self._state = _OPEN  # what the timeout sent again is all acknowledged
        self._update_bw(rs)
        self._update_ack_aggregation(rs)
        if self.mode is PROBE_BW and self._is_next_cycle_phase(rs, now):
            self._advance_cycle_phase()
        self._check_full_bw_reached(rs)
        self._check_drain(rs, now)
        self._update_min_rtt(rs, now)
        self._update_gains()
        bw = self.bw
        self._set_pacing_rate(bw, self.pacing_gain)
        self._set_cwnd(rs, bw)

    def on_send_after_idle(self, now: float) -> None:
        """Sending starts again with nothing in flight (Linux's CA_EVENT_TX_START):
        after an application-limited pause, restart without a burst of speed."""
        if not self._rate.app_limited:
            return
        self._idle_restart = True
        self._ack_epoch_stamp = now
        self._ack_epoch_acked = 0
        if self.mode is PROBE_BW:
            self._set_pacing_rate(self.bw, 1.0)
        elif self.mode is PROBE_RTT:
            self._check_probe_rtt_done(now)

    def _update_bw(self, rs: RateSample) -> None:
        self._round_start = False
        if rs.delivered < 0 or rs.interval <= 0:
            return  # no measure
        if rs.prior_delivered >= self._next_round_delivered:
            # Data sent after the round began has arrived: the next round begins.
            self._next_round_delivered = self._rate.delivered
            self._rtt_count += 1
            self._round_start = True
            self._conserving = False
        self._lt_bw_sampling(rs.losses, rs.app_limited)
        bw = rs.delivered / rs.interval
        # An application-limited sample says what the application sent, not what
        # the path carries: taken only if it shows more than the model.
        if not rs.app_limited or bw >= self._bw.get():
            self._bw.update(BW_WINDOW_ROUNDS, self._rtt_count, bw)

    def _update_ack_aggregation(self, rs: RateSample) -> None:
        if rs.acked_sacked <= 0 or rs.delivered < 0 or rs.interval <= 0:
            return
        if self._round_start:
            self._extra_acked_rounds = min(0x1F, self._extra_acked_rounds + 1)
            if self._extra_acked_rounds >= _EXTRA_ACKED_ROUNDS:
                self._extra_acked_rounds = 0
                self._extra_acked_index ^= 1
                self._extra_acked[self._extra_acked_index] = 0
        delivered_at = self._rate.delivered_at
        expected = self.bw * (delivered_at - self._ack_epoch_stamp)
        if self._ack_epoch_acked <= expected or self._ack_epoch_acked + rs.acked_sacked \
                >= _ACK_EPOCH_RESET_SEGMENTS * self.mss:
            # Delivered no faster than the bandwidth explains: a new epoch.
            self._ack_epoch_acked = 0
            self._ack_epoch_stamp = delivered_at
            expected = 0.0
        self._ack_epoch_acked += rs.acked_sacked
        extra = int(self._ack_epoch_acked - expected)
        if extra > self.cwnd:
            extra = self.cwnd
        if extra > self._extra_acked[self._extra_acked_index]:
            self._extra_acked[self._extra_acked_index] = extra

    def _is_next_cycle_phase(self, rs: RateSample, now: float) -> bool:
        full_length = self._rate.delivered_at - self._cycle_stamp > self.min_rtt
        gain = self.pacing_gain
        if gain == 1.0:
            return full_length
        inflight = self._in_net_at_edt(rs.prior_in_flight, rs.next_send, now)
        bw = self._bw.get()
        if gain > 1.0:
            # Probing: until a min RTT has passed and the flight has reached gain x
            # BDP, or a loss says the path holds no more.
            return full_length and (rs.losses > 0 or inflight >= self._inflight(bw, gain))
        # Draining: until a min RTT has passed, or the queue is gone.
        return full_length or inflight <= self._inflight(bw, 1.0)

    def _advance_cycle_phase(self) -> None:
        self._cycle_index = (self._cycle_index + 1) % len(PACING_GAINS)
        self._cycle_stamp = self._rate.delivered_at

    def _check_full_bw_reached(self, rs: RateSample) -> None:
        if self.full_bw_reached or not self._round_start or rs.app_limited:
            return
        bw = self._bw.get()
        if bw >= self._full_bw * FULL_BW_GROWTH:
            self._full_bw = bw
            self._full_bw_count = 0
            return
        self._full_bw_count += 1
        self.full_bw_reached = self._full_bw_count >= FULL_BW_ROUNDS

    def _check_drain(self, rs: RateSample, now: float) -> None:
        if self.mode is STARTUP and self.full_bw_reached:
            self.mode = DRAIN  # drain the queue STARTUP built
            self.ssthresh = self._inflight(self._bw.get(), 1.0)
        if self.mode is DRAIN and self._in_net_at_edt(rs.in_flight, rs.next_send, now) \
                <= self._inflight(self._bw.get(), 1.0):
            self._reset_probe_bw_mode()  # it has drained

    def _update_min_rtt(self, rs: RateSample, now: float) -> None:
        assert self._min_rtt_stamp is not None
        expired = now > self._min_rtt_stamp + MIN_RTT_WINDOW
        if rs.rtt >= 0 and (rs.rtt <= self.min_rtt or expired):
            self.min_rtt = rs.rtt
            self._min_rtt_stamp = now
        if expired and not self._idle_restart and self.mode is not PROBE_RTT:
            self.mode = PROBE_RTT  # let the queue drain, measure the RTT afresh
            self._save_cwnd()
            self._probe_rtt_done = None
        if self.mode is PROBE_RTT:
            rate = self._rate
            # What is delivered meanwhile says nothing of the bandwidth.
            rate.app_limited = (rate.delivered + rs.in_flight) or 1
            if self._probe_rtt_done is None and rs.in_flight <= MIN_CWND_SEGMENTS * self.mss:
                # Down to the minimum: hold it for 200 ms and a round trip.
                self._probe_rtt_done = now + PROBE_RTT_TIME
                self._probe_rtt_round_done = False
                self._next_round_delivered = rate.delivered
            elif self._probe_rtt_done is not None:
                if self._round_start:
                    self._probe_rtt_round_done = True
                if self._probe_rtt_round_done:
                    self._check_probe_rtt_done(now)
        if rs.delivered > 0:
            self._idle_restart = False

    def _check_probe_rtt_done(self, now: float) -> None:
        if self._probe_rtt_done is None or now <= self._probe_rtt_done:
            return
        self._min_rtt_stamp = now  # a while before the next PROBE_RTT
        if self._prior_cwnd > self.cwnd:
            self.cwnd = self._prior_cwnd
        self._reset_mode()

    def _update_gains(self) -> None:
        mode = self.mode
        if mode is PROBE_BW:
            self.pacing_gain = 1.0 if self._lt_use_bw else PACING_GAINS[self._cycle_index]
            self.cwnd_gain = CWND_GAIN
        elif mode is STARTUP:
            self.pacing_gain = self.cwnd_gain = HIGH_GAIN
        elif mode is DRAIN:
            self.pacing_gain = DRAIN_GAIN
            self.cwnd_gain = HIGH_GAIN  # keep the window, pace below the bandwidth
        else:
            self.pacing_gain = self.cwnd_gain = 1.0

    def _reset_mode(self) -> None:
        if self.full_bw_reached:
            self._reset_probe_bw_mode()
        else:
            self.mode = STARTUP

    def _reset_probe_bw_mode(self) -> None:
        self.mode = PROBE_BW
        # Start in a random phase, but never the drain (0.75) that follows a probe.
        self._random = (self._random * 1103515245 + 12345) & 0x7FFFFFFF
        self._cycle_index = len(PACING_GAINS) - 1 - (self._random >> 16) % _CYCLE_RAND
        self._advance_cycle_phase()

    # ------------------------------------------------ rate and window

    def _set_pacing_rate(self, bw: float, gain: float) -> None:
        rate = bw * gain * _PACING_MARGIN
        if not self._has_seen_rtt and self.rtt.srtt is not None:
            self._init_pacing_rate(self.rtt.srtt)
        # In STARTUP the rate only grows (samples lag behind the sending).
        if self.full_bw_reached or rate > self._pacing_rate:
            self._pacing_rate = rate

    def _tso_segments(self) -> int:
        """Segments a send carries at the pacing rate: a millisecond's worth, two at
        least (one below 1.2 Mbit/s), as Linux's TSO/GSO autosizing."""
        rate = self._pacing_rate
        segments = int(rate / 1024 // self.mss)
        least = 1 if rate < _MIN_TSO_RATE else 2
        return min(max(segments, least), 0x7F)

    def _bdp(self, bw: float, gain: float) -> int:
        """gain x the bandwidth-delay product, in segments, rounded up."""
        if self.min_rtt == _INF:
            return self._initial  # no RTT measured: no more than the initial window
        bdp = bw * self.min_rtt * gain / self.mss
        whole = int(bdp)
        return whole + 1 if bdp > whole else whole

    def _quantization_budget(self, segments: int) -> int:
        # Room for a send on its way out, one being sent and one being received
        # and acknowledged at each end; an even number (every other segment is
        # acknowledged); two more while probing, so that even a tiny BDP is
        # exceeded.
        segments += 3 * self._tso_segments()
        segments = (segments + 1) & ~1
        if self.mode is PROBE_BW and self._cycle_index == 0:
            segments += 2
        return segments

    def _inflight(self, bw: float, gain: float) -> int:
        """Bytes in flight that gain x the BDP stands for, with the budget above."""
        return self._quantization_budget(self._bdp(bw, gain)) * self.mss

    def _in_net_at_edt(self, inflight: int, next_send: float, now: float) -> float:
        """What will be in the network when the next paced segment leaves: some of
        the flight arrives while it waits; a probe counts that send too."""
        wait = next_send - now
        delivered = self.bw * wait if wait > 0 else 0.0
        if self.pacing_gain > 1.0:
            inflight += self._tso_segments() * self.mss
        return inflight - delivered if delivered < inflight else 0.0

    def _ack_aggregation_cwnd(self) -> int:
        if not self.full_bw_reached:
            return 0
        extra = max(self._extra_acked)
        most = self.bw * _EXTRA_ACKED_MAX_TIME
        return int(extra if extra < most else most)

    def _set_cwnd(self, rs: RateSample, bw: float) -> None:
        acked = rs.acked_sacked
        cwnd = self.cwnd
        mss = self.mss
        if acked:
            conserving, cwnd = self._recover_or_restore(rs, acked, cwnd)
            if not conserving:
                target = self._bdp(bw, self.cwnd_gain) + self._ack_aggregation_cwnd() // mss
                target = self._quantization_budget(target) * mss
                if self.full_bw_reached:
                    # Grow toward the target, or snap down to it.
                    cwnd = min(cwnd + acked, target)
                elif cwnd < target or self._rate.delivered < self._initial * mss:
                    cwnd += acked
                if cwnd < MIN_CWND_SEGMENTS * mss:
                    cwnd = MIN_CWND_SEGMENTS * mss
        self.cwnd = cwnd
        if self.mode is PROBE_RTT and cwnd > MIN_CWND_SEGMENTS * mss:
            self.cwnd = MIN_CWND_SEGMENTS * mss

    def _recover_or_restore(self, rs: RateSample, acked: int, cwnd: int) -> tuple[bool, int]:
        """Linux's bbr_set_cwnd_to_recover_or_restore: an ACK may release at most
        twice what it delivered; the first round of a recovery sends only what
        was delivered; its end restores the window from before it."""
        if rs.losses > 0:
            cwnd = max(cwnd - rs.losses, self.mss)
        state, prev = self._state, self._prev_state
        if state == _RECOVERY and prev != _RECOVERY:
            self._conserving = True
            self._next_round_delivered = self._rate.delivered  # the round starts now
            cwnd = rs.in_flight + acked
        elif prev >= _RECOVERY and state < _RECOVERY:
            if self._prior_cwnd > cwnd:
                cwnd = self._prior_cwnd
            self._conserving = False
        self._prev_state = state
        if self._conserving:
            return True, max(cwnd, rs.in_flight + acked)
        return False, cwnd

    def _save_cwnd(self) -> None:
        """Remember the window to go back to after a recovery or PROBE_RTT."""
        if self._prev_state < _RECOVERY and self.mode is not PROBE_RTT:
            self._prior_cwnd = self.cwnd
        elif self.cwnd > self._prior_cwnd:
            self._prior_cwnd = self.cwnd

    # ------------------------------------------------ the policer

    def _reset_lt_interval(self) -> None:
        rate = self._rate
        self._lt_last_stamp = rate.delivered_at
        self._lt_last_delivered = rate.delivered
        self._lt_last_lost = rate.lost
        self._lt_rounds = 0

    def _reset_lt(self) -> None:
        self._lt_bw = 0.0
        self._lt_use_bw = False
        self._lt_sampling = False
        self._reset_lt_interval()

    def _lt_bw_sampling(self, losses: int, app_limited: bool) -> None:
        """Linux's bbr_lt_bw_sampling: two intervals of the same rate with high
        loss in each mean a token-bucket policer; pace at its rate."""
        if self._lt_use_bw:
            if self.mode is PROBE_BW and self._round_start:
                self._lt_rounds += 1
                if self._lt_rounds >= _LT_BW_MAX_ROUNDS:
                    self._reset_lt()  # long enough: probe again
                    self._reset_probe_bw_mode()
            return
        if not self._lt_sampling:
            # Wait for a loss: the policer's tokens are spent, its rate shows.
            if not losses:
                return
            self._reset_lt_interval()
            self._lt_sampling = True
        if app_limited:
            self._reset_lt()
            return
        if self._round_start:
            self._lt_rounds += 1
        if self._lt_rounds < _LT_MIN_ROUNDS:
            return
        if self._lt_rounds > 4 * _LT_MIN_ROUNDS:
            self._reset_lt()  # too long without enough loss
            return
        if not losses:
            return  # end an interval on a loss
        rate = self._rate
        lost = rate.lost - self._lt_last_lost
        delivered = rate.delivered - self._lt_last_delivered
        if not delivered or lost < _LT_LOSS_THRESH * delivered:
            return
        t = rate.delivered_at - self._lt_last_stamp
        if t < 0.001:
            return
        self._lt_interval_done(delivered / t)

    def _lt_interval_done(self, bw: float) -> None:
        if self._lt_bw:
            diff = abs(bw - self._lt_bw)
            if diff <= _LT_BW_RATIO * self._lt_bw or diff * _PACING_MARGIN <= _LT_BW_DIFF:
                # Two intervals alike: a policer, at their mean rate.
                self._lt_bw = (bw + self._lt_bw) / 2
                self._lt_use_bw = True
                self.pacing_gain = 1.0
                self._lt_rounds = 0
                return
        self._lt_bw = bw
        self._reset_lt_interval()

    # ------------------------------------------------ loss recovery

    def on_ack(self, acked: int, now: float = 0.0, ack: int = 0, snd_max: int = 0) -> None:
        """(The window is set from each ACK's rate sample instead.)"""

    def enter_recovery(self, flight: int, snd_max: int, now: float = 0.0,
                       sack: bool = False) -> None:
        """A loss: remember the window; the next ACK's sample conserves packets."""
        self._save_cwnd()
        self.recover = snd_max
        self.in_recovery = True
        self._state = _RECOVERY

    def on_dupack_in_recovery(self) -> None:
        """(Packet conservation counts what left the network instead.)"""

    def on_partial_ack(self, acked: int) -> None:
        """(Packet conservation counts what left the network instead.)"""

    def exit_recovery(self, flight: int, now: float = 0.0) -> None:
        """The recovery is over: the next ACK's sample restores the window."""
        self.in_recovery = False
        self._state = _OPEN

    def leave_recovery(self, snd_una: int) -> None:
        """As NewReno's; the next ACK's sample restores the window, as at the end
        of any recovery."""
        super().leave_recovery(snd_una)
        self._state = _OPEN

    def on_tail_loss(self, now: float = 0.0) -> None:
        """A tail loss probe repaired a loss: as Linux's CWR, the window falls to
        ssthresh (the BDP when STARTUP ended), if set."""
        self._save_cwnd()
        if self.ssthresh < 1 << 30:
            self.cwnd = self.ssthresh

    def on_timeout(self, flight: int, snd_max: int, now: float = 0.0) -> None:
        """A retransmission timeout: one segment in flight, growing back toward
        the model's window; STARTUP's growth count starts over."""
        if self._state != _LOSS:
            self._save_cwnd()
        self.cwnd = self.mss
        self._acc = 0.0
        self.recover = snd_max
        self.in_recovery = False
        self._state = self._prev_state = _LOSS
        self._full_bw = 0.0
        self._round_start = True  # the timeout ends a round
        self._lt_bw_sampling(1, False)

    def undo_state(self) -> tuple:
        return (self.cwnd, self.ssthresh)

    def undo(self, state: tuple) -> None:
        """The recovery was needless: forget what STARTUP and the policer check
        concluded from it (Linux's bbr_undo_cwnd); the window stays."""
        self._full_bw = 0.0
        self._full_bw_count = 0
        self._reset_lt()
