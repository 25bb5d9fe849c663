"""Congestion control, counted in bytes: NewReno (RFC 5681, RFC 6582) and CUBIC
(RFC 9438) with HyStart++ (RFC 9406), the default, as in Linux; one module each.

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
- ``on_timeout(flight, snd_max, now)``: a retransmission timeout;
- ``pacing_rate(srtt, flight)``: the rate, in bytes a second, to pace at, when
  the connection paces (``Options.pacing``).

A subclass chooses how much a loss takes off the window (:meth:`NewReno._reduce`)
and how the window grows (:meth:`NewReno.on_ack`).
"""

from __future__ import annotations

from utcp.core.rtt import RttEstimator

from .cubic import Cubic
from .newreno import NewReno

__all__ = ["CONTROLLERS", "PACED", "Cubic", "NewReno", "make_controller"]

#: The congestion controls a connection may use (``Options.congestion_control``).
CONTROLLERS = ("cubic", "newreno")
#: Those that pace their sending unless ``Options.pacing`` says otherwise.
PACED: tuple[str, ...] = ()


def make_controller(name: str, mss: int, initial_segments: int, iss: int,
                    rtt: RttEstimator) -> NewReno:
    """The controller called ``name`` (one of :data:`CONTROLLERS`)."""
    if name == "cubic":
        return Cubic(mss, initial_segments, iss, rtt)
    if name == "newreno":
        return NewReno(mss, initial_segments, iss)
    raise ValueError(f"unknown congestion control {name!r}; choose from {', '.join(CONTROLLERS)}")
