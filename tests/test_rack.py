"""RACK-TLP (RFC 8985): loss found by the time segments were sent, lost
retransmissions resent again, tail losses repaired by a probe instead of the
retransmission timeout, reordering tolerated within a window that D-SACKs widen.
Sans-I/O, on a fake clock, in test_sack.py's style (without timestamps, the
handshake's RTT is 10 ms: SRTT and the least RTT, and the RTO is its 200 ms
floor); one transfer on the emulator at the end."""

from __future__ import annotations

import pytest
from tcpscript import LOCAL_ISS, fire, make, seg, send, ts
from test_sack import M, bursty_upload, data, sack, sack_established

from utcp.core.rack import LOST, SACKED, Rack
from utcp.core.state import State
from utcp.core.wire import ACK, MSS, SACK_PERMITTED, SYN, TIMESTAMPS, WSCALE

RTT = 0.01
REO_WND = RTT / 4  # a quarter of the least RTT, with no D-SACK seen
PTO = 2 * RTT + 0.002  # two SRTT, and Linux's two timer ticks, for a flight of several


def offsets(segments) -> list[int]:
    """Where each of our segments starts, relative to ISS + 1, in MSS units."""
    return [(s.seq - LOCAL_ISS - 1) // M for s in segments]


def sent_at(c, t: float, n: int):
    """``n`` segments' worth of data written at ``t``; all of it goes out."""
    c.send(data(n * M), t)
    out = c.take_segments()
    assert len(out) == n
    return out


def test_rack_is_used_with_sack_and_rack_false_turns_it_off():
    assert sack_established().info()["rack"]
    assert not sack_established(rack=False).info()["rack"]


# ------------------------------------------------------------------ RACK


def test_established_a_lost_retransmission_is_resent_again_without_a_timeout():
    c = sack_established()
    c.send(data(16 * M), 1.0)
    assert offsets(c.take_segments()) == list(range(10))  # the initial window
    # Segments 1-3 arrive, 0 does not: three SACKed, so no reordering window.
    send(c, seg(1, 1, options=sack((1, 4))), at=1.01)
    assert offsets(c.take_segments()) == [0]
    assert c.cc.in_recovery
    send(c, seg(1, 1, options=sack((1, 7))), at=1.02)
    assert offsets(c.take_segments()) == [10, 11, 12]  # the pipe has room again
    send(c, seg(1, 1, options=sack((1, 10))), at=1.03)
    assert offsets(c.take_segments()) == [13, 14, 15]
    # Segment 10, sent after the retransmission of 0, arrives; 0 again does not.
    # RFC 6675 never resends below HighRxt: this would wait for the RTO.
    send(c, seg(1, 1, options=sack((1, 11))), at=1.04)
    assert offsets(c.take_segments()) == [0]
    assert c.counters.lost_retransmissions == 1
    assert c.next_deadline() == pytest.approx(1.2)  # the RTO, still ahead
    send(c, seg(1, 1 + 16 * M), at=1.05)
    assert c.unacked_data == 0 and c.counters.timeouts == 0
    assert c.counters.retransmissions == 2


def test_established_reordering_within_the_window_resends_nothing():
    c = sack_established()
    sent_at(c, 1.0, 4)
    # Segment 1 arrives before 0: RACK waits a quarter RTT for 0 ...
    send(c, seg(1, 1, options=sack((1, 2))), at=1.01)
    assert c.take_segments() == []
    assert c.next_deadline() == pytest.approx(1.0 + RTT + REO_WND)
    # ... and 0 arrives within it.
    send(c, seg(1, 1 + 2 * M), at=1.011)
    assert c.take_segments() == [] and c.counters.retransmissions == 0
    assert not c.cc.in_recovery
    assert c._rack.reordering_seen
    # What is left in flight waits for a probe now, not for the reorder timer.
    assert c.next_deadline() == pytest.approx(1.011 + 2 * c.rtt.srtt + 0.002)


def test_established_reordering_past_the_window_is_a_loss():
    c = sack_established()
    sent_at(c, 1.0, 4)
    send(c, seg(1, 1, options=sack((1, 2))), at=1.01)
    fire(c, 1.0 + RTT + REO_WND)
    assert offsets(c.take_segments()) == [0]
    assert c.cc.in_recovery


def ts_sack_established():
    """As sack_established(), with timestamps: ours are the time in ms (1 s: 1000).
    The MSS offered is 12 bytes more, so that segments still carry M bytes."""
    c = make(mss=M + 12)
    c.connect(0.0)
    c.take_segments()
    send(c, seg(0, 1, SYN | ACK, options=((MSS, M + 12), (SACK_PERMITTED, None),
                                          (TIMESTAMPS, (500, 0)), (WSCALE, 0))), at=RTT)
    c.take_segments()
    assert c.state is State.ESTABLISHED and c.info()["timestamps"]
    return c


def test_established_an_echo_tells_a_late_original_from_its_retransmission():
    c = ts_sack_established()
    sent_at(c, 1.0, 5)
    send(c, seg(1, 1, options=ts(501, 1000) + sack((1, 4))), at=1.01)
    assert offsets(c.take_segments()) == [0]  # resent at 1010 ms
    # The original 0 arrives after all: the ACK echoes its timestamp (RFC 7323
    # 4.3: it moved RCV.NXT), older than the retransmission's. Reordering.
    assert not c._rack.reordering_seen
    send(c, seg(1, 1 + 4 * M, options=ts(502, 1000)), at=1.015)
    assert c._rack.reordering_seen


def test_established_a_dsack_widens_the_reordering_window_once_a_round_trip():
    c = sack_established()
    sent_at(c, 1.0, 4)
    send(c, seg(1, 1 + 2 * M), at=1.01)
    # The peer got segments 0 and 1 twice (RFC 2883: blocks below the ACK), in
    # one round trip (SND.UNA has not passed what was sent at the first).
    send(c, seg(1, 1 + 2 * M, options=sack((0, 1))), at=1.012)
    send(c, seg(1, 1 + 2 * M, options=sack((1, 2))), at=1.013)
    assert c._rack.reo_wnd_mult == 2
    send(c, seg(1, 1 + 4 * M), at=1.02)
    sent_at(c, 1.1, 4)
    send(c, seg(1, 1 + 4 * M, options=sack((5, 6))), at=1.11)
    assert c.take_segments() == []
    assert c.next_deadline() == pytest.approx(1.1 + RTT + 2 * REO_WND)


def test_established_three_sacked_segments_are_enough_without_reordering():
    # DupThresh, expressed as RACK's reordering window of zero (RFC 8985 6.2).
    c = sack_established()
    sent_at(c, 1.0, 5)
    send(c, seg(1, 1, options=sack((1, 3))), at=1.01)
    assert c.take_segments() == []  # two: wait for the window
    send(c, seg(1, 1, options=sack((1, 4))), at=1.0105)
    assert offsets(c.take_segments()) == [0]


def test_established_a_recovery_reduces_from_no_more_than_cwnd():
    c = sack_established()
    c.send(data(20 * M), 1.0)
    assert len(c.take_segments()) == 10
    # Segment 0 is late; each segment SACKed makes room for a new one.
    send(c, seg(1, 1, options=sack((1, 2))), at=1.01)
    send(c, seg(1, 1, options=sack((1, 3))), at=1.011)
    assert offsets(c.take_segments()) == [10, 11]
    cwnd = c.cc.cwnd
    send(c, seg(1, 1, options=sack((1, 4))), at=1.012)
    assert c.cc.in_recovery
    # CUBIC: 0.7 of cwnd, not of the twelve segments between SND.UNA and SND.MAX.
    assert c.cc.ssthresh == int(cwnd * 0.7) and c.cc.cwnd < cwnd


def test_established_a_timeout_resends_what_is_not_sacked_lowest_first():
    c = sack_established()
    sent_at(c, 1.0, 4)
    fire(c, 1.0 + PTO)  # nothing came back: the probe resends the last segment
    assert offsets(c.take_segments()) == [3]
    fire(c, 1.0 + PTO + 0.2)  # the RTO, restarted by the probe
    assert offsets(c.take_segments()) == [0]  # one segment's window
    assert c.counters.timeouts == 1 and c.counters.tlp_probes == 1
    # The resent 0 and the probe arrived.
    send(c, seg(1, 1 + M, options=sack((3, 4))), at=1.3)
    assert offsets(c.take_segments()) == [1, 2]


# ------------------------------------------------------------------- TLP


def test_established_a_lone_lost_segment_is_probed_before_the_timeout():
    # With RFC 6298's 1 s floor on the RTO, the probe (2 SRTT and the peer's
    # longest delayed ACK, for a lone segment) comes long before it.
    c = sack_established(min_rto=1.0)
    sent_at(c, 1.0, 4)
    send(c, seg(1, 1 + 3 * M), at=1.01)  # the last segment is lost
    probe_at = 1.01 + 2 * RTT + 0.2
    fire(c, probe_at)
    [probe] = c.take_segments()
    assert offsets([probe]) == [3] and probe.payload == data(4 * M)[3 * M:]
    assert c.counters.tlp_probes == 1
    assert c.next_deadline() == pytest.approx(probe_at + 1.0)  # then the RTO
    send(c, seg(1, 1 + 4 * M), at=probe_at + RTT)
    assert c.unacked_data == 0 and c.counters.timeouts == 0
    assert c.next_deadline() is None


def test_established_with_linuxs_rto_floor_the_probe_takes_the_timeouts_place():
    # 2 SRTT + 200 ms is past the 200 ms RTO: the probe comes at the RTO's time,
    # capped, but as a probe: no timeout, no collapse of the window.
    c = sack_established()
    sent_at(c, 1.0, 4)
    send(c, seg(1, 1 + 3 * M), at=1.01)
    cwnd = c.cc.cwnd
    fire(c, 1.01 + 0.2)
    assert offsets(c.take_segments()) == [3]
    assert c.counters.timeouts == 0 and c.cc.cwnd == cwnd


def test_established_three_lost_at_the_tail_are_found_by_the_probe_and_rack():
    c = sack_established()
    sent_at(c, 1.0, 6)
    send(c, seg(1, 1 + 3 * M), at=1.01)  # 3, 4 and 5 are lost
    probe_at = 1.01 + PTO
    assert c.next_deadline() == pytest.approx(probe_at)
    fire(c, probe_at)
    assert offsets(c.take_segments()) == [5]
    # The probe arrives: sent after 3 and 4, it shows them lost.
    send(c, seg(1, 1 + 3 * M, options=sack((5, 6))), at=probe_at + RTT)
    assert offsets(c.take_segments()) == [3, 4]
    assert c.cc.in_recovery
    send(c, seg(1, 1 + 6 * M), at=probe_at + 2 * RTT)
    assert c.unacked_data == 0 and c.counters.timeouts == 0
    assert probe_at + 2 * RTT < 1.01 + 0.2  # well before the RTO would have fired


def test_established_a_probe_of_new_data_past_the_congestion_window():
    c = sack_established()
    c.send(data(11 * M), 1.0)
    assert len(c.take_segments()) == 10  # one segment waits for the window
    fire(c, 1.0 + PTO)
    [probe] = c.take_segments()
    assert offsets([probe]) == [10]  # new data, although cwnd is full
    assert c.counters.tlp_probes == 1 and c.counters.retransmissions == 0


def test_established_one_probe_per_episode_then_the_timeout():
    c = sack_established()
    sent_at(c, 1.0, 4)
    fire(c, 1.0 + PTO)
    assert offsets(c.take_segments()) == [3]
    # A SACK for the probe says nothing of 0-2 yet: no second probe.
    send(c, seg(1, 1, options=sack((3, 4))), at=1.0 + PTO + RTT)
    assert c.next_deadline() > 1.0 + PTO + 0.2 - 1e-9
    assert c.counters.tlp_probes == 1


def test_established_a_probe_that_repaired_a_loss_reduces_the_window():
    c = sack_established()
    sent_at(c, 1.0, 4)
    send(c, seg(1, 1 + 3 * M), at=1.01)
    fire(c, 1.01 + 0.2)
    c.take_segments()
    cwnd = c.cc.cwnd
    send(c, seg(1, 1 + 4 * M), at=1.22)  # the probe filled the hole
    sent_at(c, 1.23, 2)
    send(c, seg(1, 1 + 5 * M), at=1.24)  # past the probe, with no D-SACK for it
    assert c.cc.cwnd < cwnd and c.counters.timeouts == 0


def test_established_a_probe_the_peer_had_already_changes_nothing():
    c = sack_established()
    sent_at(c, 1.0, 4)
    send(c, seg(1, 1 + 3 * M), at=1.01)
    fire(c, 1.01 + 0.2)
    c.take_segments()
    cwnd = c.cc.cwnd
    # Only the ACK was lost: the probe arrives as a duplicate, reported (D-SACK).
    send(c, seg(1, 1 + 4 * M), at=1.215)
    send(c, seg(1, 1 + 4 * M, options=sack((3, 4))), at=1.22)
    sent_at(c, 1.23, 2)
    send(c, seg(1, 1 + 5 * M), at=1.24)
    assert c.cc.cwnd >= cwnd


def test_established_no_probe_while_the_peer_shuts_its_window():
    c = sack_established()
    sent_at(c, 1.0, 2)
    send(c, seg(1, 1 + M, window=0), at=1.01)
    assert c.next_deadline() == pytest.approx(1.01 + 0.2)  # the RTO alone


def test_fin_wait_1_a_lost_fin_is_probed():
    c = sack_established()
    sent_at(c, 1.0, 2)
    c.shutdown(1.0)
    [fin] = c.take_segments()
    send(c, seg(1, 1 + 2 * M), at=1.01)  # the data arrived, the FIN did not
    fire(c, 1.01 + 0.2)  # a lone segment's PTO, capped at the RTO
    assert c.take_segments() == [fin]
    assert c.counters.tlp_probes == 1 and c.counters.timeouts == 0


# ------------------------------------------------------ on a lossy network


def transfer_time(rack: bool, seed: int) -> tuple[float, int]:
    """:func:`test_sack.bursty_upload`, with RACK-TLP or RFC 6675 alone."""
    return bursty_upload(seed, rack=rack)


def test_rack_tlp_repairs_bursts_of_loss_sooner_than_rfc_6675_alone():
    # Where RFC 6675 alone needs no timeout the two take the same time; these
    # seeds show what the timeouts it needs cost (lost retransmissions, tails).
    seeds = (1, 3, 5)
    with_rack = [transfer_time(True, seed) for seed in seeds]
    without = [transfer_time(False, seed) for seed in seeds]
    assert sum(t for t, _ in with_rack) < 0.85 * sum(t for t, _ in without)
    assert sum(n for _, n in with_rack) < sum(n for _, n in without)



def test_a_segment_sacked_up_to_our_fin_is_not_delivered_again_by_the_ack_of_the_fin():
    # The last segment carries our FIN; a SACK block can end at the FIN but never
    # covers it, so the record counts as SACKed whole. The ACK of the data, then of
    # the FIN, delivers nothing new: that record was delivered when SACKed.
    rack = Rack(0)
    recs = [[0, 1000, 1.0, 0], [1000, 2001, 1.001, 0]]  # FIN at 2000
    rack.recs = recs
    rack.on_ack(0, 0, [(1000, 2000)], lambda una, start: 2000, 2000, 1.05, 0.01, None)
    assert recs[1][3] & SACKED and rack.fack == 2000
    rack.on_ack(0, 2000, None, None, 2000, 1.06, 0.01, None)
    assert rack.newest is recs[0]
    rack.on_ack(2000, 2001, None, None, 2000, 1.07, 0.01, None)
    assert rack.newest is None and len(rack) == 0


def test_an_ack_of_segments_marked_lost_and_not_yet_resent_counts_them_off():
    # (After a timeout with the window shut, say: all marked lost, none resent.)
    rack = Rack(0)
    rack.recs = [[0, 1000, 1.0, LOST], [1000, 2000, 1.001, LOST]]
    rack.lost = 2000
    rack.on_ack(0, 1000, None, None, None, 2.0, 0.01, None)
    assert rack.lost == 1000 and len(rack) == 1
