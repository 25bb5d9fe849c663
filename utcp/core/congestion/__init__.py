"""Congestion control, counted in bytes: NewReno (RFC 5681, RFC 6582), CUBIC
(RFC 9438) with HyStart++ (RFC 9406), the default, as in Linux, and BBR (version
1, as Linux ships it); one module each.

A controller owns cwnd and ssthresh, and NewReno's fast-recovery bookkeeping
(the recovery point, inflation by duplicate ACKs) that loss recovery drives.
The connection calls it through this interface:

- ``mss_known(mss)``: the handshake settled the MSS;
- ``on_ack(acked, now, ack, snd_max)``: new data acknowledged outside recovery,
  while cwnd limits sending;
- ``may_enter_recovery``, ``enter_recovery(flight, snd_max, now, sack)``,
  ``on_dupack_in_recovery``, ``on_partial_ack``, ``exit_recovery(flight, now)``:
  a loss found by duplicate ACKs or RACK, and its repair;
- ``undo_state()``, ``undo(state)``, ``leave_recovery(snd_una)``: a recovery that
  D-SACKs showed needless takes back its reduction, and if still under way
  ends there;
- ``on_tail_loss(now)``: a loss a tail loss probe repaired, outside recovery;
- ``on_timeout(flight, snd_max, now)``: a retransmission timeout;
- ``pacing_rate(srtt, flight)``: the rate, in bytes a second, to pace at, when
  the connection paces (``Options.pacing``).

A controller that models the path from the delivery rate (BBR) has a
:class:`~utcp.core.rate.DeliveryRate` as its ``rate`` (else None): the
connection then stamps each segment it sends, takes a sample from every ACK,
and calls ``on_rate_sample(una, now)`` after the ACK's loss detection and
``on_send_after_idle(now)`` when it sends with nothing outstanding.

A subclass chooses how much a loss takes off the window (:meth:`NewReno._reduce`)
and how the window grows (:meth:`NewReno.on_ack`).
"""

from __future__ import annotations

from typing import Final

from utcp.core.rtt import RttEstimator

from .bbr import Bbr
from .cubic import Cubic
from .newreno import NewReno

__all__ = ["CONTROLLERS", "PACED", "Bbr", "Cubic", "NewReno", "make_controller"]

#: The congestion controls a connection may use (``Options.congestion_control``).
CONTROLLERS: Final = ("cubic", "newreno", "bbr")
#: Those that pace their sending unless ``Options.pacing`` says otherwise: BBR,
#: whose model is a rate.
PACED: tuple[str, ...] = ("bbr",)


def make_controller(name: str, mss: int, initial_segments: int, iss: int,
                    rtt: RttEstimator) -> NewReno:
    """The controller called ``name`` (one of :data:`CONTROLLERS`)."""
    if name == "cubic":
        return Cubic(mss, initial_segments, iss, rtt)
    if name == "newreno":
        return NewReno(mss, initial_segments, iss)
    if name == "bbr":
        return Bbr(mss, initial_segments, iss, rtt)
    raise ValueError(f"unknown congestion control {name!r}; choose from {', '.join(CONTROLLERS)}")
