"""Delivery rate estimation on a fake clock (draft-cheng-iccrg-delivery-rate-
estimation): records stamped when sent, a sample from each ACK."""

from __future__ import annotations

import pytest

from utcp.core.rack import RETRANSMITTED, Rack
from utcp.core.rate import DeliveryRate

MSS = 1000


def flight(rate: DeliveryRate, start: int, n: int, at: float, gap: float = 0.0) -> list[list]:
    """``n`` records of one segment each from ``start``, sent ``gap`` apart from
    ``at``, the first with nothing else outstanding."""
    recs = []
    for i in range(n):
        r = [start + i * MSS, start + (i + 1) * MSS, at + i * gap, 0]
        rate.stamp(r, at + i * gap, idle=i == 0 and start == 0)
        recs.append(r)
    return recs


def deliver(rate: DeliveryRate, rec: list, nbytes: int, now: float, min_rtt: float = 0.05):
    rate.delivered += nbytes
    return rate.generate(rec, nbytes, 0, now, -1.0, min_rtt)


def test_a_window_acknowledged_one_rtt_later_samples_its_size_over_the_rtt():
    rate = DeliveryRate()
    recs = flight(rate, 0, 10, at=1.0)
    rs = deliver(rate, recs[-1], 10 * MSS, 1.1)
    assert rs.delivered == 10 * MSS and rs.interval == pytest.approx(0.1)
    assert rs.delivered / rs.interval == pytest.approx(100_000)
    assert rs.acked_sacked == 10 * MSS and not rs.app_limited


def test_the_next_window_is_measured_from_the_ack_that_released_it():
    # Segments sent as ACKs arrive carry the delivery state of those ACKs: the
    # second window's sample covers one round trip of it, not two.
    rate = DeliveryRate()
    first = flight(rate, 0, 10, at=1.0)
    deliver(rate, first[-1], 10 * MSS, 1.1)
    second = flight(rate, 10 * MSS, 20, at=1.1)
    rs = deliver(rate, second[-1], 20 * MSS, 1.2)
    assert rs.delivered == 20 * MSS and rs.interval == pytest.approx(0.1)


def test_compressed_acks_cannot_make_the_rate_faster_than_it_was_sent():
    # Mid-flow: the last ACK came at 1.0, for a segment sent at 0.9. Ten segments
    # follow over 50 ms, and their ACKs come back bunched, 30 ms after the last
    # was sent: the ACKs' interval (0.08 s) is shorter than the one the segments
    # took to send (0.1 s, from that earlier segment's send time), and the sample
    # takes the longer.
    rate = DeliveryRate()
    rate.delivered, rate.delivered_at, rate.first_sent_at = 50 * MSS, 1.0, 0.9
    recs = []
    for i in range(10):
        r = [i * MSS, (i + 1) * MSS, 0.955 + i * 0.005, 0]
        rate.stamp(r, r[2], idle=False)
        recs.append(r)
    rs = deliver(rate, recs[-1], 10 * MSS, 1.08)
    assert rs.interval == pytest.approx(0.1)  # 1.0 - 0.9
    assert rs.delivered == 10 * MSS


def test_an_interval_shorter_than_the_least_rtt_is_no_sample():
    rate = DeliveryRate()
    recs = flight(rate, 0, 2, at=1.0)
    rs = deliver(rate, recs[-1], 2 * MSS, 1.02, min_rtt=0.05)
    assert rs.delivered == 2 * MSS and rs.interval == -1


def test_an_ack_without_a_stamped_record_gives_no_sample():
    rate = DeliveryRate()
    rs = rate.generate(None, 0, MSS, 1.0, -1.0, 0.05)
    assert rs.delivered == -1 and rs.interval == -1 and rs.losses == MSS


def test_samples_taken_while_the_application_ran_dry_are_marked_until_its_data_arrives():
    rate = DeliveryRate()
    first = flight(rate, 0, 2, at=1.0)
    # The application writes with nothing left to send and room in cwnd.
    rate.check_app_limited(unsent=0, mss=MSS, in_flight=2 * MSS, cwnd=10 * MSS, lost=0)
    assert rate.app_limited == 2 * MSS
    later = flight(rate, 2 * MSS, 1, at=1.01)
    assert deliver(rate, first[-1], 2 * MSS, 1.1).app_limited is False
    rs = deliver(rate, later[0], MSS, 1.11)
    assert rs.app_limited is True  # sent while the bubble was in flight
    assert rate.app_limited == 0  # ... which has now arrived


def test_a_sender_held_by_cwnd_or_holding_losses_is_not_application_limited():
    rate = DeliveryRate()
    rate.check_app_limited(unsent=0, mss=MSS, in_flight=10 * MSS, cwnd=10 * MSS, lost=0)
    rate.check_app_limited(unsent=0, mss=MSS, in_flight=2 * MSS, cwnd=10 * MSS, lost=MSS)
    rate.check_app_limited(unsent=5 * MSS, mss=MSS, in_flight=2 * MSS, cwnd=10 * MSS, lost=0)
    assert rate.app_limited == 0


def test_rack_names_the_newest_record_an_ack_delivered_resent_or_not():
    rack = Rack(0)
    recs = [[i * MSS, (i + 1) * MSS, 1.0 + i * 0.001, 0] for i in range(4)]
    recs[1][2:4] = [1.2, RETRANSMITTED]  # resent just now: no RTT from it
    rack.recs = list(recs)
    rack.resent_to = 4 * MSS  # (as the retransmission that flagged it records)
    rack.on_ack(0, 4 * MSS, None, None, None, 1.2001, 0.05, None)
    assert rack.newest is recs[1]  # the rate's sample: the one sent last
    assert rack.newest_rtt == pytest.approx(1.2001 - 1.003)  # the newest sent once


def test_the_least_rtt_is_the_samples_own_not_a_coarser_clocks():
    # Timestamps tick in milliseconds: on a path of 0.1 ms the connection's least
    # RTT reads 1 ms. The samples' own round trips are precise, and an interval
    # of 0.3 ms is then a measure.
    rate = DeliveryRate()
    recs = flight(rate, 0, 10, at=1.0)
    rate.delivered += MSS
    rate.generate(recs[0], MSS, 0, 1.0001, 0.0001, 0.001)
    rate.delivered += 9 * MSS
    rs = rate.generate(recs[-1], 9 * MSS, 0, 1.0003, 0.0003, 0.001)
    assert rs.interval == pytest.approx(0.0003) and rs.delivered == 10 * MSS
