"""Pacing on a fake clock: past the initial window, once an RTT is known, a paced
connection sends at its pacing rate, a batch of about a millisecond's worth per
wake-up, and names the time of the next batch as its deadline."""

from __future__ import annotations

import pytest
from tcpscript import PEER_SYN_OPTIONS, conn_syn_sent, expect, out, seg, send, window

from utcp.core.config import Options
from utcp.core.connection import Connection
from utcp.core.wire import ACK, SYN

MSS = 1452
SRTT = 0.01
CWND = 30  # segments
# Congestion avoidance (cwnd at least half ssthresh): the window over SRTT, times 1.2.
RATE = CWND * MSS / SRTT * 1.2  # 5.2 MB/s: a segment every 0.28 ms


def established(rtt: float = SRTT, **opts) -> Connection:
    """Established by a SYN-ACK ``rtt`` seconds after the SYN (an RTT sample), with a
    window of CWND segments in congestion avoidance."""
    c = conn_syn_sent(congestion_control="newreno", **opts)
    send(c, seg(0, 1, SYN | ACK, options=PEER_SYN_OPTIONS), at=rtt)
    expect(c, [out(1, 1, window=window(**opts))])
    c.cc.cwnd = CWND * MSS
    c.cc.ssthresh = CWND * MSS
    return c


def sent_at(c: Connection) -> list[int]:
    """The sequence numbers (relative) of the data segments queued since last asked."""
    return [(s.seq - c.iss) for s in c.take_segments() if s.payload]


def test_the_initial_window_goes_at_once_then_a_batch_per_wake_up_at_the_rate():
    c = established(pacing=True)
    assert c.pacing_rate == pytest.approx(RATE)
    t0 = SRTT
    c.send(bytes(40 * MSS), t0)
    # The initial window (10 segments) unpaced, then up to a millisecond ahead of
    # the rate: 8 more segments (a batch, and a batch's credit).
    first = sent_at(c)
    assert len(first) == 18
    per_segment = MSS / RATE
    due = t0 - 0.001 + 8 * per_segment  # where the schedule stands after them
    assert c.next_deadline() == pytest.approx(due)
    # Each wake-up sends a batch (a millisecond's worth: 4 segments at this rate),
    # and names the time the rate has caught up with them.
    t = due
    for _ in range(2):
        c.handle_timer(t)
        assert len(sent_at(c)) == 4
        t += 4 * per_segment
        assert c.next_deadline() == pytest.approx(t)
    # The last batch fills the window (30 segments): what holds the rest back is
    # the window, and the next deadline is the retransmission timeout.
    c.handle_timer(t)
    assert len(sent_at(c)) == 4
    assert c.next_deadline() == pytest.approx(t0 + c.rtt.rto)


def test_a_late_wake_up_sends_what_it_missed_and_the_schedule_holds():
    # Timers run late (the stack's tick is a millisecond): woken half a millisecond
    # after its deadline, the connection sends that much more, and the next
    # deadline is where the rate alone puts it.
    c = established(pacing=True)
    c.send(bytes(40 * MSS), SRTT)
    sent_at(c)
    due = c.next_deadline()
    per_segment = MSS / RATE
    c.handle_timer(due + 0.0005)
    assert len(sent_at(c)) == 6  # 4, and 0.5 ms (1.8 segments) more
    assert c.next_deadline() == pytest.approx(due + 6 * per_segment)


def test_slow_start_paces_at_twice_the_window_over_srtt():
    c = established(pacing=True)
    c.cc.ssthresh = 1 << 30  # slow start: cwnd below half of ssthresh
    assert c.pacing_rate == pytest.approx(CWND * MSS / SRTT * 2)


def test_no_pacing_before_an_rtt_sample():
    # The SYN is sent again (Karn: no sample from its answer), so no RTT is known:
    # the whole window goes at once, and the only deadline is the RTO.
    c = conn_syn_sent(congestion_control="newreno", pacing=True)
    c.handle_timer(1.0)
    c.take_segments()
    send(c, seg(0, 1, SYN | ACK, options=PEER_SYN_OPTIONS), at=1.5)
    c.take_segments()
    assert c.rtt.srtt is None and c.pacing_rate is None
    c.cc.cwnd = CWND * MSS
    c.send(bytes(40 * MSS), 1.5)
    assert len(sent_at(c)) == CWND
    assert c.next_deadline() == pytest.approx(1.5 + c.rtt.rto)


def test_without_pacing_the_window_goes_at_once():
    c = established(pacing=False)
    c.send(bytes(40 * MSS), SRTT)
    assert len(sent_at(c)) == CWND
    assert c.pacing_rate is None
    assert c.next_deadline() == pytest.approx(SRTT + c.rtt.rto)


def test_cubic_and_newreno_do_not_pace_unless_asked():
    assert established().pacing_rate is None
    assert Options().pacing is None
    with pytest.raises(ValueError, match="pacing must be None, True or False"):
        Options(pacing="yes")


def test_an_ack_sends_what_the_rate_allows_and_no_more():
    # Acknowledging part of the flight opens the window, but the rate still holds
    # the next segments back until their time.
    c = established(pacing=True)
    c.send(bytes(40 * MSS), SRTT)
    sent_at(c)
    due = c.next_deadline()
    send(c, seg(1, 1 + 4 * MSS, ACK), at=SRTT + 0.0001)
    assert sent_at(c) == []
    assert c.next_deadline() == pytest.approx(due)
