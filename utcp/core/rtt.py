"""Round-trip time estimation and the retransmission timeout (RFC 6298)."""

from __future__ import annotations

from typing import Final

# RFC 6298 section 2: alpha = 1/8, beta = 1/4, K = 4.
_ALPHA: Final = 0.125
_BETA: Final = 0.25
_K: Final = 4
# RFC 6298 section 2.4 uses a clock granularity G; user-space timers are coarse.
_G: Final = 0.001


class RttEstimator:
    """SRTT, RTTVAR and the RTO with exponential backoff."""

    __slots__ = ("srtt", "rttvar", "_base", "_backoff", "min_rto", "max_rto", "latest",
                 "min_rtt", "samples")

    def __init__(self, initial_rto: float, min_rto: float, max_rto: float) -> None:
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.min_rto = min_rto
        self.max_rto = max_rto
        self._base = initial_rto
        self._backoff = 1
        #: The last sample, the smallest one, and how many were taken (congestion
        #: control reads them: CUBIC's clock, HyStart++'s rounds).
        self.latest = 0.0
        self.min_rtt = float("inf")
        self.samples = 0

    @property
    def rto(self) -> float:
        """The current retransmission timeout, backoff included."""
        return min(self._base * self._backoff, self.max_rto)

    def sample(self, r: float) -> None:
        """Fold in one RTT measurement (taken per Karn's rule: never from a retransmission)."""
        self.latest = r
        self.samples += 1
        if r < self.min_rtt:
            self.min_rtt = r
        if self.srtt is None:
            # RFC 6298 (2.2): the first measurement.
            self.srtt = r
            self.rttvar = r / 2
        else:
            # RFC 6298 (2.3): RTTVAR before SRTT, using the old SRTT.
            assert self.rttvar is not None
            self.rttvar = (1 - _BETA) * self.rttvar + _BETA * abs(self.srtt - r)
            self.srtt = (1 - _ALPHA) * self.srtt + _ALPHA * r
        # RFC 6298 (2.4), with Linux's 200 ms floor instead of 1 s (2.4 allows it).
        # (Written out: every ACK is a sample with timestamps, and min()/max() are calls.)
        var = _K * self.rttvar
        rto = self.srtt + (var if var > _G else _G)
        if rto < self.min_rto:
            rto = self.min_rto
        self._base = rto if rto < self.max_rto else self.max_rto
        self._backoff = 1

    def fall_back(self, rto: float) -> None:
        """No sample from the handshake (RFC 6298 5.7): start from at least ``rto``."""
        if self.srtt is None:
            self._base = min(max(self._base, rto), self.max_rto)
        self._backoff = 1

    def back_off(self) -> None:
        """Double the RTO after a timeout (RFC 6298 5.5), up to the maximum."""
        if self._base * self._backoff < self.max_rto:
            self._backoff *= 2

    def reset_backoff(self) -> None:
        """Forget the backoff once new data is acknowledged."""
        self._backoff = 1
