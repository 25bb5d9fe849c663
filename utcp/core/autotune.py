"""Receive-buffer autotuning: dynamic right-sizing, as Linux's tcp_rcv_space_adjust.

A receiver cannot see the sender's congestion window, but it can see how much
its application took in the last round trip. Once per round trip of its own
measure it compares that with the most taken in one before; when it grew, the
receive buffer grows to twice it (the measure is a round trip late, and a
sender in slow start doubles each round trip), with room for more the faster
it grew, up to a cap. The buffer never shrinks. The round trip comes from the
timestamps the sender echoes, or without them from the time the sender takes
to fill one window (Wu Feng and Mike Fisk's Dynamic Right-Sizing).
"""

from __future__ import annotations

from typing import Final

#: The measure's first comparison: ten segments, an initial window's worth (Linux
#: starts rcvq_space from TCP_INIT_CWND * advmss).
INITIAL_SEGMENTS: Final = 10
#: Beyond twice what was taken in a round trip, this many segments of slack
#: (Linux's 16 * advmss).
SLACK_SEGMENTS: Final = 16
_INF: Final = float("inf")


class ReceiveAutotune:
    """One connection's measure of its receiver's round trip and of what its
    application takes in one (Linux's rcv_rtt_est and rcvq_space)."""

    __slots__ = ("rtt", "due", "at", "seq", "space", "rtt_seq", "rtt_at", "tsecr")

    def __init__(self, copied_seq: int, space: int, window_end: int, now: float) -> None:
        #: The receiver's estimate of the round trip, in seconds (0.0: none yet).
        self.rtt = 0.0
        #: When the current measure began, and the sequence number the application
        #: had taken up to then.
        self.at = now
        self.seq = copied_seq
        #: When the current measure has lasted a round trip (at + rtt).
        self.due = _INF
        #: The most the application took in one round trip so far (rcvq_space.space).
        self.space = space
        #: Without timestamps: the right edge offered when the round trip being
        #: timed began, and when; the sender reaching it ends the round trip.
        self.rtt_seq = window_end
        self.rtt_at = now
        #: With timestamps: the last TSecr a sample came from.
        self.tsecr = 0

    def sample(self, r: float, smooth: bool) -> None:
        """Fold in a round trip of ``r`` seconds (tcp_rcv_rtt_update): a sample
        below the estimate replaces it; one above moves it an eighth of the way
        if ``smooth`` (a timestamp's, taken while nothing waits to be read),
        else is ignored (a window's: the sender may have been slower than the
        window, never faster). No time at all measures nothing (a window that
        arrived in one batch)."""
        if r <= 0.0:
            return
        old = self.rtt
        if old == 0.0 or r < old:
            new = r
        elif smooth:
            new = old + (r - old) / 8
        else:
            return
        self.rtt = new
        self.due = self.at + new

    def window_sample(self, window_end: int, now: float) -> None:
        """RCV.NXT reached the edge the timed round trip began with: sample the
        time it took, and time the sender's way to ``window_end``, the edge
        offered now."""
        self.sample(now - self.rtt_at, False)
        self.rtt_seq = window_end
        self.rtt_at = now

    def restart(self, copied_seq: int, now: float) -> None:
        """Begin the next round trip's measure of what the application takes."""
        self.seq = copied_seq
        self.at = now
        self.due = now + self.rtt if self.rtt else _INF


def grown_buffer(copied: int, space: int, mss: int) -> int:
    """The receive buffer for an application that took ``copied`` bytes in the last
    round trip, ``space`` (less, and more than zero) in the best one before: twice
    ``copied`` and some slack, plus twice that again in proportion to the growth,
    so that a sender in slow start is not held back (tcp_rcvbuf_grow)."""
    window = 2 * copied + SLACK_SEGMENTS * mss
    return window + 2 * (window * (copied - space) // space)
