"""Moving data: segmenting, windows, reassembly, ACK policy, retransmission
(RFC 9293 3.8-3.10, RFC 1122 4.2.3, RFC 5681, RFC 6298, RFC 6582)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tcpscript import (
    LOCAL_ISS,
    PEER_SYN_OPTIONS,
    PEER_WINDOW,
    REMOTE_ISS,
    SHIFT,
    conn_established,
    conn_syn_sent,
    events,
    expect,
    expect_nothing,
    fire,
    out,
    seg,
    send,
    tick,
)

from utcp.core.buffers import RANGE_OVERHEAD
from utcp.core.events import DataReceived, Reset, TimedOut
from utcp.core.seq import add
from utcp.core.state import State
from utcp.core.wire import ACK, PSH, RST, SYN, WSCALE
from utcp.core.wire import MSS as MSS_OPTION

MSS = 1452


def data(n: int, start: int = 0) -> bytes:
    """``n`` recognisable bytes: the stream's bytes ``start .. start + n``."""
    return bytes((i * 7 + 3) % 251 for i in range(start, start + n))


def conn_established_rtt(r: float):
    """ESTABLISHED with one RTT sample ``r`` from the handshake, at time ``r``."""
    c = conn_syn_sent()
    send(c, seg(0, 1, SYN | ACK, options=PEER_SYN_OPTIONS), at=r)
    expect(c, [out(1, 1)])
    c.take_events()
    return c


# ------------------------------------------------------------------- sending


def test_established_send_segments_by_mss():
    c = conn_established()
    c.send(data(3000), 0.0)
    expect(c, [out(1, 1, ACK, payload=data(MSS)),
               out(1453, 1, ACK, payload=data(MSS, MSS)),
               out(2905, 1, ACK | PSH, payload=data(96, 2 * MSS))])
    assert c.next_deadline() == 0.2
    assert c.unacked_data == 3000


def test_established_send_small_write():
    c = conn_established()
    c.send(b"hello", 0.0)
    expect(c, [out(1, 1, ACK | PSH, payload=b"hello")])


def test_established_send_never_exceeds_peer_window():
    c = conn_established()
    send(c, seg(1, 1, window=3000))
    c.send(data(10000), 0.0)
    # 2 * 1452 fit in 3000; the 96 left would be a runt (RFC 1122 4.2.3.4).
    expect(c, [out(1, 1, ACK, payload=data(MSS)), out(1453, 1, ACK, payload=data(MSS, MSS))])
    send(c, seg(1, 1453, window=3000), at=0.1)
    # 1452 in flight, 3000 offered: one more full segment.
    expect(c, [out(2905, 1, ACK, payload=data(MSS, 2 * MSS))])
    send(c, seg(1, 4357, window=1000), at=0.2)
    # Right edge 4357 + 1000: exactly 1000 bytes, no more.
    expect(c, [out(4357, 1, ACK, payload=data(1000, 3 * MSS))])
    send(c, seg(1, 5357, window=0), at=0.3)
    expect_nothing(c)


def test_established_window_taken_from_ack_advancing_snd_una():
    # A peer that sends pure ACKs at SND.MAX (BSD does, and so do we) and then
    # retransmits older data: the window of the retransmission, whose SEG.SEQ is
    # below SND.WL1, still counts because its ACK is new (Linux's
    # tcp_may_update_window). Else SND.UNA + SND.WND would pass the offered edge.
    c = conn_established()
    send(c, seg(1001, 1, window=1000))  # the peer's pure ACK, seq = its SND.MAX
    c.send(data(3000), 0.0)
    expect(c, [out(1, 1, ACK, payload=data(1000))])
    send(c, seg(1, 1001, window=0, payload=data(100)), at=0.1)  # retransmitted data
    assert c.snd_wnd == 0
    assert events(c) == [DataReceived(data(100))]
    expect_nothing(c)  # the right edge is 1001 + 0: nothing may be sent
    fire(c, 0.14)
    expect(c, [out(1001, 101)])  # (the delayed ACK of the 100 bytes)
    fire(c, 0.3)
    expect(c, [out(1000, 101)])  # a zero-window probe


def test_established_old_ack_does_not_update_window():
    # 3.10.7.4: only SND.UNA =< SEG.ACK =< SND.NXT may update the window.
    c = conn_established()
    c.send(data(3000), 0.0)
    c.take_segments()
    send(c, seg(1, 1453, window=2000), at=0.1)
    send(c, seg(5, 1, window=60000), at=0.11)  # a higher SEG.SEQ, but an old ACK
    assert c.snd_wnd == 2000
    c.send(data(2000, 3000), 0.2)
    # Right edge 1453 + 2000: the 1548 in flight leave 452, a runt held back.
    expect_nothing(c)


actions = st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(1, 5000)),
    st.tuples(st.just("ack"), st.floats(0, 1), st.integers(0, 6000)),
    st.tuples(st.just("wait"), st.floats(0.01, 2.0)),
), max_size=40)


@settings(max_examples=150, deadline=None)
@given(actions)
def test_established_new_data_never_passes_right_edge(script):
    # Whatever the peer's ACKs and windows do (shrinking included), data sent for
    # the first time ends within SEG.ACK + SEG.WND of the latest window update.
    c = conn_established(data_retries=100)
    sent_to, edge, una, t = 1, 1 + PEER_WINDOW, 1, 0.0  # relative to our ISN
    for action in script:
        if action[0] == "write":
            c.send(bytes(action[1]), t)
        elif action[0] == "ack":
            una = max(una, una + int(action[1] * (sent_to - una)))
            send(c, seg(1, una, window=action[2]), at=t)
            edge = una + action[2]
        else:
            t += action[1]
            while c.next_deadline() is not None and c.next_deadline() <= t:
                c.handle_timer(c.next_deadline())
        for s in c.take_segments():
            end = s.seq - LOCAL_ISS + len(s.payload)
            if end > sent_to:
                assert end <= edge, f"new data up to {end}, right edge {edge}"
                sent_to = end
    assert c.state is State.ESTABLISHED


def test_established_send_limited_by_initial_cwnd():
    # RFC 6928: 10 segments, then slow start grows it by the bytes acknowledged
    # (RFC 3465 byte counting): an ACK of 2 segments lets 2 + 2 new ones out.
    c = conn_established()
    c.send(data(20 * MSS), 0.0)
    got = c.take_segments()
    assert [s.seq - got[0].seq for s in got] == [i * MSS for i in range(10)]
    send(c, seg(1, 1 + 2 * MSS), at=0.1)
    got = c.take_segments()
    assert [len(s.payload) for s in got] == [MSS] * 4
    assert got[0] == out(1 + 10 * MSS, 1, ACK, payload=data(MSS, 10 * MSS))


def test_established_stretch_ack_grows_cwnd_by_bytes_acked():
    # One ACK for a batch of 8 segments (coalesced by the receiver) counts for 8.
    c = conn_established()
    c.send(data(40 * MSS), 0.0)
    c.take_segments()
    send(c, seg(1, 1 + 8 * MSS), at=0.1)
    assert c.cc.cwnd == 18 * MSS
    assert len(c.take_segments()) == 16


def test_established_cwnd_does_not_grow_when_not_cwnd_limited():
    # RFC 7661: an application sending less than the window does not inflate it.
    c = conn_established()
    for i in range(50):
        c.send(data(MSS), i * 0.1)
        (s,) = c.take_segments()
        send(c, seg(1, 1 + (i + 1) * MSS), at=i * 0.1 + 0.05)
    assert c.cc.cwnd == 10 * MSS


def test_established_batched_acks_one_per_batch():
    # With coalesce_acks (a shell reading datagrams in batches), in-order data is
    # ACKed once at the end of the batch instead of every second segment.
    c = conn_established()
    c.coalesce_acks = True
    for i in range(6):
        send(c, seg(1 + i * MSS, 1, payload=data(MSS, i * MSS)), at=0.5)
    expect_nothing(c)
    c.flush_acks(0.5)
    expect(c, [out(1, 1 + 6 * MSS)])
    c.flush_acks(0.5)
    expect_nothing(c)


def test_established_batched_acks_keep_duplicate_acks_immediate():
    # Out-of-order data still draws an immediate duplicate ACK (fast retransmit).
    c = conn_established()
    c.coalesce_acks = True
    send(c, seg(1 + MSS, 1, payload=data(MSS)), at=0.5)
    expect(c, [out(1, 1)])


def test_established_batched_acks_capped_at_16_segments():
    # However long the batch, at most 16 full-sized segments go unacknowledged: the
    # sender's window and its ACK clock must not wait for the whole batch.
    c = conn_established()
    c.coalesce_acks = True
    for i in range(40):
        send(c, seg(1 + i * MSS, 1, payload=data(MSS, i * MSS)), at=0.5)
        if i == 15:
            expect(c, [out(1, 1 + 16 * MSS)])
        elif i == 31:
            expect(c, [out(1, 1 + 32 * MSS)])
        else:
            expect_nothing(c)
    c.flush_acks(0.5)
    expect(c, [out(1, 1 + 40 * MSS)])


def test_established_ack_frees_send_buffer():
    c = conn_established()
    c.send(data(3000), 0.0)
    c.take_segments()
    send(c, seg(1, 1453), at=0.1)
    expect_nothing(c)
    assert c.send_buffered == 3000 - MSS
    assert c.next_deadline() == pytest.approx(0.1 + c.rtt.rto)  # RFC 6298 5.3: restarted
    send(c, seg(1, 3001), at=0.15)
    expect_nothing(c)
    assert c.send_buffered == 0
    assert c.next_deadline() is None  # RFC 6298 5.2: all acknowledged, timer off


def test_established_ack_of_unsent_data():
    # 3.10.7.4: SEG.ACK > SND.NXT: send an ACK, drop the segment.
    c = conn_established()
    c.send(b"abc", 0.0)
    c.take_segments()
    send(c, seg(1, 100, ACK | PSH, payload=b"zz"))
    expect(c, [out(4, 1)])
    assert events(c) == []
    assert c.send_buffered == 3


def test_established_old_ack_ignored():
    c = conn_established()
    c.send(data(3000), 0.0)
    c.take_segments()
    send(c, seg(1, 1453), at=0.1)
    send(c, seg(1, 1), at=0.11)  # reordered older ACK
    expect_nothing(c)
    assert c.send_buffered == 3000 - MSS


def test_established_nagle():
    # RFC 896 (nodelay=False): one small segment in flight at a time.
    c = conn_established(nodelay=False)
    c.send(b"ab", 0.0)
    expect(c, [out(1, 1, ACK | PSH, payload=b"ab")])
    c.send(b"cd", 0.01)
    c.send(b"ef", 0.02)
    expect_nothing(c)
    send(c, seg(1, 3), at=0.05)
    expect(c, [out(3, 1, ACK | PSH, payload=b"cdef")])


# ----------------------------------------------------------------- receiving


def test_established_receive_delayed_ack():
    c = conn_established()
    send(c, seg(1, 1, ACK | PSH, payload=b"hello"))
    expect_nothing(c)
    assert events(c) == [DataReceived(b"hello")]
    assert c.next_deadline() == 0.04
    tick(c, 0.039)
    expect_nothing(c)
    tick(c, 0.04)
    expect(c, [out(1, 6)])
    assert c.next_deadline() is None


def test_established_receive_every_second_full_segment_acked():
    # RFC 5681 4.2 / RFC 1122 4.2.3.2: ACK at least every second full-sized segment.
    c = conn_established()
    send(c, seg(1, 1, payload=data(MSS)))
    expect_nothing(c)
    send(c, seg(1453, 1, payload=data(MSS, MSS)), at=0.01)
    expect(c, [out(1, 2905)])
    send(c, seg(2905, 1, payload=data(MSS, 2 * MSS)), at=0.02)
    expect_nothing(c)
    tick(c, 0.06)
    expect(c, [out(1, 4357)])
    assert events(c) == [DataReceived(data(MSS)), DataReceived(data(MSS, MSS)),
                         DataReceived(data(MSS, 2 * MSS))]


def test_established_every_second_segment_of_smaller_peer_mss_acked():
    # "Full-sized" is the size the peer sends: with its MSS of 536, two 536-byte
    # segments already call for an ACK.
    c = conn_syn_sent()
    send(c, seg(0, 1, SYN | ACK, options=((MSS_OPTION, 536), (WSCALE, 0))))
    expect(c, [out(1, 1)])
    send(c, seg(1, 1, payload=data(536)))
    expect_nothing(c)
    send(c, seg(537, 1, payload=data(536, 536)), at=0.01)
    expect(c, [out(1, 1073)])


def test_established_delayed_ack_piggybacked():
    c = conn_established()
    send(c, seg(1, 1, payload=b"question"))
    c.send(b"answer", 0.01)
    expect(c, [out(1, 9, ACK | PSH, payload=b"answer")])
    tick(c, 0.04)
    expect_nothing(c)


def test_established_receive_out_of_order():
    c = conn_established()
    send(c, seg(101, 1, payload=data(100, 100)))
    # RFC 5681 4.2: an out-of-order segment draws an immediate duplicate ACK.
    expect(c, [out(1, 1)])
    assert events(c) == []
    send(c, seg(1, 1, payload=data(100)), at=0.01)
    # The hole is filled: one delivery of the joined bytes, ACKed at once.
    expect(c, [out(1, 201)])
    assert events(c) == [DataReceived(data(200))]


def test_established_receive_out_of_order_several_holes():
    c = conn_established(rcv_buf_max=None)  # fixed at 256 KiB: a shift of 3
    full = (256 * 1024) >> 3
    send(c, seg(301, 1, payload=data(100, 300)))
    send(c, seg(101, 1, payload=data(100, 100)))
    expect(c, [out(1, 1, window=full), out(1, 1, window=full)])
    send(c, seg(1, 1, payload=data(100)))
    # The bytes still held out of order take buffer space, with what holding their
    # range costs: the window is smaller.
    expect(c, [out(1, 201, window=(256 * 1024 - 100 - RANGE_OVERHEAD) >> 3)])
    assert events(c) == [DataReceived(data(200))]
    send(c, seg(201, 1, payload=data(100, 200)))
    expect(c, [out(1, 401, window=full)])
    assert events(c) == [DataReceived(data(200, 200))]


def test_established_receive_partial_gap_fill_acked_at_once():
    c = conn_established()
    send(c, seg(201, 1, payload=data(100, 200)))
    expect(c, [out(1, 1)])
    # RFC 5681 4.2: filling part of the hole [1, 201) is ACKed at once, not delayed.
    send(c, seg(1, 1, payload=data(100)), at=0.01)
    # (The window is what keeps the right edge where it was, to within the scale's
    # unit: the range still held costs more than its bytes, so rounding up would
    # offer more than a unit beyond the free space, and it is rounded down.)
    expect(c, [out(1, 101, window=(256 * 1024 - 100) >> SHIFT)])
    assert events(c) == [DataReceived(data(100))]


def test_established_receive_overlapping_out_of_order():
    c = conn_established()
    send(c, seg(101, 1, payload=data(100, 100)))
    send(c, seg(51, 1, payload=data(200, 50)))  # overlaps the held range both sides
    expect(c, [out(1, 1), out(1, 1)])
    send(c, seg(1, 1, payload=data(60)))
    expect(c, [out(1, 251)])
    assert events(c) == [DataReceived(data(250))]


@settings(max_examples=60, deadline=None)
@given(st.data(), st.sampled_from([REMOTE_ISS, 2**32 - 3000]))
def test_established_reassembly_any_order(draw, irs):
    # Segments of a stream arrive in any order, some twice, some overlapping, also
    # across the 2**32 wrap: the application sees exactly the stream, in order.
    stream = data(6000)
    c = conn_syn_sent()
    send(c, seg(0, 1, SYN | ACK, options=PEER_SYN_OPTIONS, raw_seq=irs))
    c.take_segments()
    c.take_events()
    cuts = sorted(draw.draw(st.sets(st.integers(1, len(stream) - 1), max_size=12)))
    bounds = list(zip([0, *cuts], [*cuts, len(stream)], strict=True))
    extra = draw.draw(st.lists(st.tuples(st.integers(0, 5999), st.integers(1, 1452)),
                               max_size=4))
    pieces = bounds + [(a, min(a + n, len(stream))) for a, n in extra]
    order = draw.draw(st.permutations(pieces))
    for t, (a, b) in enumerate(order):
        send(c, seg(0, 1, payload=stream[a:b], raw_seq=add(irs, 1 + a)), at=t * 0.001)
    got = b"".join(e.data for e in c.take_events())
    assert got == stream
    assert c.rcv_nxt == add(irs, 1 + len(stream))


def test_established_receive_duplicate():
    c = conn_established()
    send(c, seg(1, 1, payload=b"abcd"))
    tick(c, 0.04)
    expect(c, [out(1, 5)])
    events(c)
    send(c, seg(1, 1, payload=b"abcd"), at=0.5)
    # 3.10.7.4: not acceptable: ACK it and drop it.
    expect(c, [out(1, 5)])
    assert events(c) == []
    assert c.counters.duplicates == 1


def test_established_receive_partial_duplicate_trimmed():
    c = conn_established()
    send(c, seg(1, 1, payload=b"abcd"))
    events(c)
    send(c, seg(3, 1, payload=b"cdef"), at=0.01)
    assert events(c) == [DataReceived(b"ef")]
    tick(c, 0.04)
    expect(c, [out(1, 7)])


def test_established_window_shrinks_while_paused():
    c = conn_established(rcv_buf=8192, rcv_buf_max=None)  # fixed, unscaled: the field is bytes
    c.pause_reading()
    send(c, seg(1, 1, payload=data(1000)))
    tick(c, 0.04)
    expect(c, [out(1, 1001, window=7192)])
    send(c, seg(1001, 1, payload=data(1000, 1000)), at=0.1)
    tick(c, 0.14)
    expect(c, [out(1, 2001, window=6192)])
    assert events(c) == []
    c.resume_reading(0.2)
    # RFC 1122 4.2.3.3: the window grew by more than an MSS: announce it.
    expect(c, [out(1, 2001, window=8192)])
    assert events(c) == [DataReceived(data(2000))]


def test_established_resume_small_growth_not_announced():
    # Receiver SWS avoidance: growth below min(buffer / 2, MSS) waits.
    c = conn_established(rcv_buf=8192, rcv_buf_max=None)
    c.pause_reading()
    send(c, seg(1, 1, payload=data(100)))
    tick(c, 0.04)
    expect(c, [out(1, 101, window=8092)])
    c.resume_reading(0.1)
    expect_nothing(c)
    assert events(c) == [DataReceived(data(100))]


def test_established_scaled_window_never_retracts():
    # RFC 9293 3.8.6.2.2: the right edge must not move left. With a shift of 7 the
    # field counts 128-byte units, so 262144 - 1001 free bytes round up, as Linux does.
    c = conn_established()
    c.pause_reading()
    send(c, seg(1, 1, payload=data(1001)))
    fire(c, 0.04)
    expect(c, [out(1, 1002, window=2041)])
    assert 1002 + (2041 << SHIFT) >= 1 + (256 * 1024)


def test_established_scaled_window_holds_a_paused_reader_to_its_buffer():
    # With a shift of 7, each ACK could round the right edge up by up to 127 bytes;
    # small segments at that edge must not grow a paused reader's buffer for ever.
    c = conn_established()
    c.pause_reading()
    rcv = 1
    for _ in range(20):  # fill most of the 256 KiB buffer, ACKed every 2 segments
        send(c, seg(rcv, 1, payload=data(13_100)))
        rcv += 13_100
    for _ in range(300):  # then 3-byte segments, each ACKed when the delay runs out
        send(c, seg(rcv, 1, payload=b"abc"))
        tick(c, 1.0)
        acks = c.take_segments()
        if acks:
            rcv = acks[-1].ack - REMOTE_ISS
    held = rcv - 1
    assert 256 * 1024 <= held < 256 * 1024 + (1 << SHIFT)  # the window closed within a unit
    assert acks[-1].window == 0
    c.resume_reading(2.0)
    assert sum(len(e.data) for e in events(c)) == held


def test_established_zero_window_rst_at_rcv_nxt_resets():
    # RFC 5961 3.2: a RST exactly at RCV.NXT resets, even with the window shut by a
    # paused reader (table 6's zero-window case accepts SEQ = RCV.NXT).
    c = conn_established(rcv_buf=2000, mss=1000, rcv_buf_max=None)
    c.pause_reading()
    send(c, seg(1, 1, payload=data(2000)))
    c.take_segments()
    assert c.rcv_wnd == 0
    send(c, seg(2001, None, RST), at=0.1)
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert events(c) == [Reset()]


def test_established_zero_window_data_still_acknowledges_ours():
    # Our reader is paused and our window is shut; the peer's data at RCV.NXT cannot
    # be taken, but the ACK it carries for our data is processed (RFC 9293 table 6's
    # "special allowance"), and the shut window is ACKed again.
    c = conn_established(rcv_buf=2000, mss=1000, rcv_buf_max=None)
    c.pause_reading()
    send(c, seg(1, 1, payload=data(2000)))
    c.take_segments()
    c.send(b"request", 0.0)
    c.take_segments()
    send(c, seg(2001, 8, ACK | PSH, payload=b"more"), at=0.1)
    expect(c, [out(8, 2001, window=0)])
    assert c.unacked_data == 0  # our 7 bytes are acknowledged
    assert c.next_deadline() is None  # nothing in flight: no retransmission timer
    c.resume_reading(0.2)
    assert events(c) == [DataReceived(data(2000))]  # "more" was dropped, not delivered


def test_fast_retransmit_resends_only_what_was_sent():
    # The peer's window let 100 of 3000 bytes out. The fast retransmission is those
    # 100 bytes, not a full MSS of bytes never sent (whose ACK would be dropped as
    # acknowledging unsent data, and the transfer would stall).
    c = conn_established()
    send(c, seg(1, 1, window=100))
    c.send(data(3000), 0.0)
    expect(c, [out(1, 1, ACK, payload=data(100))])
    for k in range(3):
        send(c, seg(1, 1, window=100), at=0.01 + k * 0.001)
    expect(c, [out(1, 1, ACK | PSH, payload=data(100))])
    send(c, seg(1, 101, window=65535), at=0.05)  # it opens its window: the rest flows
    rest = c.take_segments()
    assert rest[0].seq == LOCAL_ISS + 101
    assert b"".join(s.payload for s in rest) == data(3000)[100:]
    send(c, seg(1, 3001), at=0.1)
    assert c.unacked_data == 0 and c.counters.challenge_acks == 0


def test_established_bare_ack_at_the_window_edge_is_accepted():
    # The peer filled our window past a hole; its bare ACKs carry SEQ = its SND.MAX,
    # which is our right edge (RCV.NXT + RCV.WND). They still acknowledge our data.
    c = conn_established(rcv_buf=4096, rcv_buf_max=None)  # unscaled
    c.send(b"request", 0.0)
    c.take_segments()
    send(c, seg(101, 1, payload=data(4096 - 100)))  # all but the first 100 bytes
    expect(c, [out(8, 1, window=4096)])  # the edge offered stays (3.8.6.2.2)
    send(c, seg(1 + 4096, 8), at=0.01)
    expect_nothing(c)
    assert c.unacked_data == 0
    assert c.counters.unacceptable == 0
    assert c.next_deadline() is None  # nothing in flight: no retransmission timer


def test_established_segment_beyond_window_acked():
    c = conn_established(rcv_buf=4096, rcv_buf_max=None)
    send(c, seg(1 + 4096, 1, payload=b"far"))
    expect(c, [out(1, 1, window=4096)])
    assert events(c) == []


def test_established_unacceptable_acks_rate_limited():
    # RFC 5961 7 (Linux tcp_invalid_ratelimit): two ends that disagree must not
    # exchange ACKs forever; bare unacceptable ACKs draw at most one reply per 0.5 s.
    c = conn_established()
    send(c, seg(1_000_000, 1), at=1.0)
    expect(c, [out(1, 1)])
    send(c, seg(1_000_000, 1), at=1.2)
    expect_nothing(c)
    send(c, seg(1_000_000, 1), at=1.6)
    expect(c, [out(1, 1)])


def test_established_probes_always_answered():
    # Keepalive and zero-window probes (SEQ = RCV.NXT - 1, no data) exist to draw an
    # ACK: the rate limit on unacceptable bare ACKs must not swallow them.
    c = conn_established()
    for t in (1.0, 1.1, 1.2):
        send(c, seg(0, 1), at=t)
        expect(c, [out(1, 1)])


def test_established_ack_too_old_challenged():
    # RFC 5961 5.2: SEG.ACK below SND.UNA - MAX.SND.WND: challenge ACK, drop it.
    c = conn_established()
    send(c, seg(1, -70_000, ACK | PSH, payload=b"forged"))
    expect(c, [out(1, 1)])
    assert events(c) == []
    assert c.counters.challenge_acks == 1


def test_established_zero_window_advertised():
    c = conn_established(rcv_buf=4096, rcv_buf_max=None)
    c.pause_reading()
    send(c, seg(1, 1, payload=data(MSS)))
    send(c, seg(1453, 1, payload=data(MSS, MSS)))
    expect(c, [out(1, 2905, window=4096 - 2904)])
    send(c, seg(2905, 1, payload=data(1192, 2904)))
    tick(c, 0.04)
    expect(c, [out(1, 4097, window=0)])
    # Nothing more fits: a further segment is unacceptable and re-ACKed.
    send(c, seg(4097, 1, payload=b"x"), at=0.1)
    expect(c, [out(1, 4097, window=0)])
    assert events(c) == []
    c.resume_reading(0.2)
    expect(c, [out(1, 4097, window=4096)])
    assert events(c) == [DataReceived(data(4096))]


def test_established_data_beyond_window_trimmed():
    c = conn_established(rcv_buf=4096, rcv_buf_max=None)
    c.pause_reading()
    send(c, seg(1, 1, payload=data(MSS)))
    send(c, seg(1453, 1, payload=data(MSS, MSS)))
    expect(c, [out(1, 2905, window=1192)])
    # Only the 1192 bytes inside the offered window are kept.
    send(c, seg(2905, 1, payload=data(MSS, 2 * MSS)))
    tick(c, 0.04)
    expect(c, [out(1, 4097, window=0)])
    c.resume_reading(0.1)
    assert events(c) == [DataReceived(data(4096))]


# ------------------------------------------------------- zero-window probing


def test_established_zero_window_persist_probe():
    c = conn_established()
    send(c, seg(1, 1, window=0))
    c.send(b"x" * 100, 0.0)
    expect_nothing(c)
    fire(c, 0.2)
    # Linux's probe: an old sequence number (SND.UNA - 1) that draws an ACK.
    expect(c, [out(0, 1)])
    send(c, seg(1, 1, window=0), at=0.3)  # the answer: still closed
    expect_nothing(c)
    fire(c, 0.6)
    expect(c, [out(0, 1)])
    fire(c, 1.4)  # backing off
    expect(c, [out(0, 1)])
    assert c.next_deadline() == pytest.approx(3.0)
    send(c, seg(1, 1, window=1000), at=1.5)  # the window opens
    expect(c, [out(1, 1, ACK | PSH, payload=b"x" * 100)])
    assert c.next_deadline() == pytest.approx(1.7)  # the RTO again, backoff gone


def test_established_window_closes_with_data_in_flight():
    c = conn_established()
    c.send(data(200), 0.0)
    expect(c, [out(1, 1, ACK | PSH, payload=data(200))])
    c.send(data(100, 200), 0.01)
    expect(c, [out(201, 1, ACK | PSH, payload=data(100, 200))])
    send(c, seg(1, 301, window=0), at=0.05)
    assert c.next_deadline() is None
    c.send(data(50, 300), 0.06)
    expect_nothing(c)
    fire(c, 0.26)
    expect(c, [out(300, 1)])
    send(c, seg(1, 301, window=500), at=0.3)
    expect(c, [out(301, 1, ACK | PSH, payload=data(50, 300))])


def test_established_window_shrunk_to_zero_under_flight_is_probed():
    # 3.8.6.2.2: a sender MUST probe a window that shrank to zero, and SHOULD NOT
    # time the connection out while data beyond the edge goes unacknowledged.
    c = conn_established(data_retries=3)
    c.send(data(3000), 0.0)
    c.take_segments()
    send(c, seg(1, 1453, window=0), at=0.1)  # retracts the edge below SND.NXT
    expect_nothing(c)
    t = fire(c, 0.3)
    expect(c, [out(1452, 1)])  # a probe, not data beyond the window
    for k in range(1, 8):  # answered probes never time out
        send(c, seg(1, 1453, window=0), at=t + 0.01)
        if k == 3:
            # The answers are duplicate ACKs (RFC 5681 2): the third one resends
            # the oldest segment, which 3.8.6.2.2 allows beyond the edge (so does Linux).
            expect(c, [out(1453, 1, ACK | PSH, payload=data(MSS, MSS))])
        t = fire(c, t + 0.2 * 2**k)
        expect(c, [out(1452, 1)])
    assert c.state is State.ESTABLISHED
    assert events(c) == []
    send(c, seg(1, 1453, window=2000), at=t + 0.01)  # open again: resend from SND.UNA
    expect(c, [out(1453, 1, ACK, payload=data(MSS, MSS)),
               out(2905, 1, ACK | PSH, payload=data(96, 2 * MSS))])


def test_established_persist_gives_up():
    c = conn_established(data_retries=2)
    send(c, seg(1, 1, window=0))
    c.send(b"x", 0.0)
    fire(c, 0.2)
    expect(c, [out(0, 1)])
    fire(c, 0.6)
    expect(c, [out(0, 1)])
    fire(c, 1.4)
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert events(c) == [TimedOut("persist")]


def test_closed_connection_persist_gives_up_though_probes_are_answered():
    # A peer that answers every probe with a shut window keeps an open connection
    # waiting for ever (3.8.6.1); one the application has closed gets
    # data_retries probes in all, as Linux's orphans do, then times out.
    c = conn_established(data_retries=3)
    send(c, seg(1, 1, window=0))
    c.send(b"x", 0.0)
    c.close(0.0)
    assert c.state is State.FIN_WAIT_1
    t = 0.0
    for k in range(3):
        t = fire(c, t + 0.2 * 2**k)
        expect(c, [out(0, 1)])
        send(c, seg(1, 1, window=0), at=t + 0.01)  # answered: still shut
        expect_nothing(c)
    fire(c, t + 0.2 * 2**3)
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert events(c) == [TimedOut("persist")]


def test_open_connection_persists_while_probes_are_answered():
    c = conn_established(data_retries=3)
    send(c, seg(1, 1, window=0))
    c.send(b"x", 0.0)
    t = 0.0
    for k in range(6):
        t = fire(c, t + 0.2 * 2**k)
        expect(c, [out(0, 1)])
        send(c, seg(1, 1, window=0), at=t + 0.01)
    assert c.state is State.ESTABLISHED
    assert events(c) == []


# -------------------------------------------------------- RTO (RFC 6298)


def test_rto_first_sample():
    c = conn_established_rtt(0.1)
    assert c.rtt.srtt == pytest.approx(0.1)
    assert c.rtt.rttvar == pytest.approx(0.05)
    c.send(b"x", 1.0)
    c.take_segments()
    assert c.next_deadline() == pytest.approx(1.3)  # SRTT + 4 * RTTVAR


def test_rto_second_sample():
    c = conn_established_rtt(0.1)
    c.send(b"x", 1.0)
    c.take_segments()
    send(c, seg(1, 2), at=1.2)
    # RFC 6298 2.3: RTTVAR = 3/4 * 0.05 + 1/4 * |0.1 - 0.2|; SRTT = 7/8 * 0.1 + 1/8 * 0.2.
    assert c.rtt.rttvar == pytest.approx(0.0625)
    assert c.rtt.srtt == pytest.approx(0.1125)
    assert c.rtt.rto == pytest.approx(0.3625)


def test_rto_minimum_200ms():
    c = conn_established()  # the handshake sampled 0 s
    c.send(b"x", 0.0)
    c.take_segments()
    assert c.next_deadline() == 0.2


def test_rto_retransmit():
    c = conn_established()
    c.send(b"hello", 0.0)
    expect(c, [out(1, 1, ACK | PSH, payload=b"hello")])
    tick(c, 0.199)
    expect_nothing(c)
    tick(c, 0.2)
    expect(c, [out(1, 1, ACK | PSH, payload=b"hello")])
    assert c.next_deadline() == pytest.approx(0.6)


def test_rto_karn_no_sample_from_retransmission():
    c = conn_established_rtt(0.1)
    c.send(b"x", 1.0)
    c.take_segments()
    tick(c, c.next_deadline())
    expect(c, [out(1, 1, ACK | PSH, payload=b"x")])
    send(c, seg(1, 2), at=1.35)
    assert c.rtt.srtt == pytest.approx(0.1)  # no sample from the retransmitted segment
    assert c.rtt.rttvar == pytest.approx(0.05)
    assert c.next_deadline() is None
    # No sample, so the backoff stays (RFC 6298 section 5): new data waits 2 x 0.3 s.
    c.send(b"y", 2.0)
    c.take_segments()
    assert c.next_deadline() == pytest.approx(2.6)
    send(c, seg(1, 3), at=2.1)  # a segment sent once: a sample collapses the RTO
    assert c.rtt.srtt == pytest.approx(0.1)
    assert c.rtt.rto == pytest.approx(0.25)  # 0.1 + 4 * (3/4 * 0.05)


def test_rto_karn_backoff_kept_until_rtt_grown_past_it_is_sampled():
    # The path's RTT jumps from 0.1 s to 1 s, above the 0.3 s RTO. Every ACK answers
    # a segment that was also retransmitted, so none is a sample; only a backoff kept
    # until the RTO exceeds the RTT lets a segment through once and be timed.
    c = conn_established_rtt(0.1)
    t, acked, spurious = 1.0, 1, []
    for _ in range(6):
        c.send(b"x", t)
        c.take_segments()
        before = c.counters.retransmissions
        while c.next_deadline() is not None and c.next_deadline() < t + 1.0:
            tick(c, c.next_deadline())
            c.take_segments()
        acked += 1
        send(c, seg(1, acked), at=t + 1.0)
        spurious.append(c.counters.retransmissions - before)
        t += 2.0
    assert spurious[0] >= 1 and spurious[-3:] == [0, 0, 0], spurious
    assert c.rtt.srtt > 0.5  # the grown RTT was measured


def test_rto_exponential_backoff_to_120s_then_timeout():
    c = conn_established()
    c.send(b"x", 0.0)
    expect(c, [out(1, 1, ACK | PSH, payload=b"x")])
    t = 0.0
    intervals = [0.2 * 2**k for k in range(10)] + [120.0] * 5  # 15 retries
    for rto in intervals:
        assert c.next_deadline() == pytest.approx(t + rto)
        t = c.next_deadline()
        tick(c, t)
        expect(c, [out(1, 1, ACK | PSH, payload=b"x")])
        assert c.state is State.ESTABLISHED
    assert c.next_deadline() == pytest.approx(t + 120)
    tick(c, c.next_deadline())
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert events(c) == [TimedOut("data")]
    assert c.next_deadline() is None


def test_rto_ack_resets_retries():
    c = conn_established(data_retries=2)
    c.send(b"a", 0.0)
    c.take_segments()
    tick(c, 0.2)
    tick(c, 0.6)
    send(c, seg(1, 2), at=0.7)
    c.send(b"b", 1.0)
    c.take_segments()
    tick(c, c.next_deadline())
    tick(c, c.next_deadline())
    assert c.state is State.ESTABLISHED  # two retries of "b": still within the limit
    assert events(c) == []


def test_rto_goes_back_to_snd_una():
    # RFC 5681 (4), RFC 6298 5.4: resend the oldest segment, with cwnd = 1 MSS.
    c = conn_established()
    c.send(data(3000), 0.0)
    c.take_segments()
    tick(c, 0.2)
    expect(c, [out(1, 1, ACK, payload=data(MSS))])
    send(c, seg(1, 1453), at=0.3)
    # Slow start again: two segments now, the rest of the old flight.
    expect(c, [out(1453, 1, ACK, payload=data(MSS, MSS)),
               out(2905, 1, ACK | PSH, payload=data(96, 2 * MSS))])


# ------------------------------------------- fast retransmit (RFC 5681 3.2)


def test_fast_retransmit_on_third_duplicate_ack():
    c = conn_established()
    c.send(data(5 * MSS), 0.0)
    assert len(c.take_segments()) == 5
    send(c, seg(1, 1), at=0.01)
    send(c, seg(1, 1), at=0.02)
    expect_nothing(c)
    send(c, seg(1, 1), at=0.03)
    expect(c, [out(1, 1, ACK | PSH, payload=data(MSS))])
    assert c.cc.in_recovery
    assert c.counters.recoveries == 1
    send(c, seg(1, 1), at=0.04)  # a fourth inflates cwnd; nothing new to send
    expect_nothing(c)
    send(c, seg(1, 1 + 5 * MSS), at=0.05)
    expect_nothing(c)
    assert not c.cc.in_recovery
    assert c.next_deadline() is None


def test_fast_retransmit_partial_ack():
    # RFC 6582: a partial ACK in recovery resends the next hole at once.
    c = conn_established()
    c.send(data(5 * MSS), 0.0)
    c.take_segments()
    for t in (0.01, 0.02, 0.03):
        send(c, seg(1, 1), at=t)
    expect(c, [out(1, 1, ACK | PSH, payload=data(MSS))])
    send(c, seg(1, 1 + 2 * MSS), at=0.04)
    expect(c, [out(1 + 2 * MSS, 1, ACK | PSH, payload=data(MSS, 2 * MSS))])
    assert c.cc.in_recovery


def test_rto_duplicate_acks_below_recover_no_fast_retransmit():
    # RFC 6582 3.2 step 2 (avoiding multiple fast retransmits): after a timeout,
    # recover = the highest sequence sent; duplicate ACKs that do not cover more than
    # it (the peer answering data it already had) start no fast retransmit.
    c = conn_established(congestion_control="newreno")  # (its arithmetic, RFC 6582)
    c.send(data(5 * MSS), 0.0)
    assert len(c.take_segments()) == 5
    fire(c, 0.2)
    expect(c, [out(1, 1, ACK, payload=data(MSS))])
    assert c.cc.cwnd == MSS
    for t in (0.25, 0.26, 0.27, 0.28):
        send(c, seg(1, 1), at=t)
        expect_nothing(c)
    assert not c.cc.in_recovery
    assert c.counters.recoveries == 0 and c.counters.timeouts == 1
    assert c.cc.cwnd == MSS
    assert c.cc.ssthresh == 2 * MSS + MSS // 2  # from the timeout, not halved again


def test_rto_duplicate_acks_past_recover_fast_retransmit():
    # Once the cumulative ACK is past recover, three duplicate ACKs start a fast
    # retransmit again.
    c = conn_established(congestion_control="newreno")  # (its arithmetic, RFC 6582)
    c.send(data(5 * MSS), 0.0)
    c.take_segments()
    fire(c, 0.2)  # recover = 1 + 5 MSS
    c.take_segments()
    send(c, seg(1, 1 + 5 * MSS), at=0.3)
    expect_nothing(c)
    c.send(data(5 * MSS, 5 * MSS), 0.4)
    assert len(c.take_segments()) == 2  # cwnd: ssthresh (2.5 MSS) after that ACK
    send(c, seg(1, 1 + 6 * MSS), at=0.45)
    expect(c, [out(1 + 7 * MSS, 1, ACK, payload=data(MSS, 7 * MSS))])
    for t in (0.46, 0.47):
        send(c, seg(1, 1 + 6 * MSS), at=t)
    expect_nothing(c)
    send(c, seg(1, 1 + 6 * MSS), at=0.48)
    # The retransmission, then the new data that cwnd = ssthresh + 3 MSS lets out.
    expect(c, [out(1 + 6 * MSS, 1, ACK | PSH, payload=data(MSS, 6 * MSS)),
               out(1 + 8 * MSS, 1, ACK, payload=data(MSS, 8 * MSS)),
               out(1 + 9 * MSS, 1, ACK | PSH, payload=data(MSS, 9 * MSS))])
    assert c.cc.in_recovery


def test_window_update_is_not_a_duplicate_ack():
    c = conn_established()
    c.send(data(5 * MSS), 0.0)
    c.take_segments()
    for w in (60000, 50000, 40000):
        send(c, seg(1, 1, window=w))
    expect_nothing(c)
    assert not c.cc.in_recovery


def test_ack_with_data_is_not_a_duplicate_ack():
    c = conn_established()
    c.send(data(5 * MSS), 0.0)
    c.take_segments()
    for i in range(3):
        send(c, seg(1 + i, 1, payload=b"z"))
    expect_nothing(c)  # (the bytes themselves are ACKed after the delay)
    assert not c.cc.in_recovery
