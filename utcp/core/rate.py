"""Delivery rate estimation (draft-cheng-iccrg-delivery-rate-estimation, as
Linux's tcp_rate.c): a sample, from each ACK, of the rate at which the network
delivered this connection's data.

When a segment is sent, it takes a snapshot of the connection's delivery state:
how many bytes had been delivered (acknowledged or SACKed) by then, when the
last of them was, and when the segment delivered last had been sent. When an
ACK delivers segments, the most recently sent of them gives the sample: the
bytes delivered since its snapshot, over the longer of two intervals, the one
in which those bytes were sent and the one in which their ACKs came back (an
ACK compressed or delayed can make the second look shorter than the network
allows, never the first).

A sample is marked application-limited when the sender ran out of data at
some point while its segments were in flight: it then tells what the
application asked for, not what the path can do.

The snapshot lives in the record RACK keeps of each segment in flight
(:mod:`utcp.core.rack`), four fields after its own: a connection that takes
rate samples stamps each record it sends or resends. A connection without
RACK's records takes one sample per round trip, from a segment it times.
"""

from __future__ import annotations

from .rack import RETRANSMITTED

#: Where a record (see rack.py) keeps the snapshot taken when it was last sent:
#: bytes delivered by then, when the last of them was, when the segment
#: delivered last had been sent, and whether the sender was application-limited.
DELIVERED, DELIVERED_AT, FIRST_SENT_AT, APP_LIMITED = 4, 5, 6, 7


class RateSample:
    """What one ACK says of the delivery rate, with the connection's state around
    it. Bytes, seconds; -1 where the ACK gives no measure."""

    __slots__ = ("delivered", "interval", "acked_sacked", "losses", "prior_delivered",
                 "app_limited", "is_retrans", "rtt", "prior_in_flight", "in_flight",
                 "next_send")

    def __init__(self) -> None:
        #: Bytes delivered over ``interval`` (-1: no sample from this ACK).
        self.delivered = -1
        self.interval = -1.0
        #: Bytes this ACK newly acknowledged or SACKed, and newly marked lost.
        self.acked_sacked = 0
        self.losses = 0
        #: The connection's delivered count when the sampled segment was sent.
        self.prior_delivered = 0
        #: Whether the sender ran short of data while the sample was taken.
        self.app_limited = False
        #: Whether the sampled segment had been sent more than once.
        self.is_retrans = False
        #: The round trip of the newest segment this ACK delivered (-1: none).
        self.rtt = -1.0
        #: Bytes in flight before this ACK and after it (SACKed and lost left out).
        self.prior_in_flight = 0
        self.in_flight = 0
        #: When the connection's next paced segment may leave.
        self.next_send = 0.0


class DeliveryRate:
    """One connection's delivery state, and the sample its latest ACK gave."""

    __slots__ = ("delivered", "delivered_at", "first_sent_at", "app_limited", "lost",
                 "min_rtt", "point", "sample")

    def __init__(self) -> None:
        #: Bytes delivered (acknowledged or SACKed, each once) since the start.
        self.delivered = 0
        #: When ``delivered`` last grew, or the flight last started from nothing.
        self.delivered_at = 0.0
        #: When the segment delivered last was sent.
        self.first_sent_at = 0.0
        #: While the sender is application-limited: the delivered count past which
        #: what was then in flight has all arrived, and samples tell of the path
        #: again; else 0.
        self.app_limited = 0
        #: Bytes marked lost since the start.
        self.lost = 0
        #: The least round trip a sample has measured (inf before the first).
        self.min_rtt = float("inf")
        #: Without RACK's records: the one segment being timed, as a record.
        self.point: list | None = None
        #: What the latest ACK gave.
        self.sample = RateSample()

    def stamp(self, rec: list, now: float, idle: bool) -> None:
        """``rec`` (a record as rack.py keeps them) is sent or resent at ``now``:
        take the snapshot. ``idle``: nothing else is outstanding, so the interval
        starts here (no ACK to come can be for anything sent before)."""
        if idle:
            self.first_sent_at = self.delivered_at = now
        rec[DELIVERED:] = (self.delivered, self.delivered_at, self.first_sent_at,
                           self.app_limited != 0)

    def check_app_limited(self, unsent: int, mss: int, in_flight: int, cwnd: int,
                          lost: int) -> None:
        """The application is writing: if the sender had run out of data (less than
        a segment unsent), with room in cwnd and nothing lost waiting to be resent,
        then what is in flight now is application-limited."""
        if unsent < mss and in_flight < cwnd and not lost:
            self.app_limited = (self.delivered + in_flight) or 1

    def generate(self, rec: list | None, acked_sacked: int, losses: int, now: float,
                 rtt: float, min_rtt: float) -> RateSample:
        """The sample of an ACK that delivered ``acked_sacked`` bytes, the newest of
        them sent as ``rec`` (None: none with a snapshot), and marked ``losses``
        bytes lost; ``rtt`` is the round trip it measured (-1: none).

        An interval shorter than the least RTT is no measure (it would overstate
        the rate), as Linux has it: the least of the samples' round trips, which
        are as precise as the clock (the connection's ``min_rtt``, from
        timestamps that tick in milliseconds, stands in until the first)."""
        rs = self.sample
        rs.rtt = rtt
        if 0 <= rtt < self.min_rtt:
            self.min_rtt = rtt
        if self.min_rtt < min_rtt:
            min_rtt = self.min_rtt
        if self.app_limited and self.delivered > self.app_limited:
            self.app_limited = 0  # the bubble has arrived
        if acked_sacked:
            self.delivered_at = now
        rs.acked_sacked = acked_sacked
        rs.losses = losses
        rs.delivered = -1
        rs.interval = -1.0
        if rec is None or len(rec) <= APP_LIMITED:
            rs.prior_delivered = 0
            rs.app_limited = False
            rs.is_retrans = False
            return rs
        rs.prior_delivered = rec[DELIVERED]
        rs.app_limited = rec[APP_LIMITED]
        rs.is_retrans = bool(rec[3] & RETRANSMITTED)
        sent = rec[2]
        send_phase = sent - rec[FIRST_SENT_AT]
        self.first_sent_at = sent
        ack_phase = now - rec[DELIVERED_AT]
        interval = send_phase if send_phase > ack_phase else ack_phase
        rs.delivered = self.delivered - rec[DELIVERED]
        if interval >= min_rtt and interval > 0:
            rs.interval = interval
        return rs
