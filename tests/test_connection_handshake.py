"""Opening a connection: active, passive and simultaneous open, SYN options,
SYN and SYN-ACK retransmission, bad SYN-ACKs, and RSTs for segments that find
no connection (RFC 9293 3.5, 3.10.7.1-3.10.7.3; RFC 5961; RFC 6298; RFC 7323)."""

from __future__ import annotations

import pytest
from tcpscript import (
    LOCAL_ISS,
    LOCAL_PORT,
    PEER_SYN_OPTIONS,
    REMOTE_ISS,
    REMOTE_PORT,
    SHIFT,
    SYN_OPTIONS,
    SYN_WINDOW,
    WINDOW,
    conn_established,
    conn_listen,
    conn_syn_received,
    conn_syn_sent,
    events,
    expect,
    expect_nothing,
    make,
    out,
    seg,
    send,
    syn_options,
    tick,
)

from utcp.core.connection import Connection, ConnectionStateError, reset_for
from utcp.core.events import Connected, DataReceived, EndOfStream, Reset, TimedOut, Unreachable
from utcp.core.seq import add
from utcp.core.state import State
from utcp.core.wire import ACK, FIN, MSS, PSH, RST, SYN, WSCALE, Segment

SYN_SEG = out(0, None, SYN, SYN_WINDOW, options=syn_options())


def syn_seg(at: float) -> object:
    """Our SYN, sent (again) at time ``at``: its timestamp is the time in ms."""
    return out(0, None, SYN, SYN_WINDOW, options=syn_options(round(at * 1000)))
SYN_ACK_SEG = out(0, 1, SYN | ACK, SYN_WINDOW, options=SYN_OPTIONS)


def rst(seq: int) -> Segment:
    """<SEQ=seq><CTL=RST> from us, seq relative to our ISN."""
    return out(seq, None, RST, 0)


# ------------------------------------------------------------------ active open


def test_closed_connect_sends_syn():
    c = make()
    c.connect(0.0)
    expect(c, [SYN_SEG])
    assert c.state is State.SYN_SENT
    assert c.next_deadline() == 1.0
    assert events(c) == []


def test_closed_connect_twice_refused():
    c = conn_syn_sent()
    with pytest.raises(ConnectionStateError):
        c.connect(0.0)


def test_syn_sent_syn_ack():
    c = conn_syn_sent()
    send(c, seg(0, 1, SYN | ACK, options=PEER_SYN_OPTIONS), at=0.1)
    expect(c, [out(1, 1)])
    assert c.state is State.ESTABLISHED
    assert events(c) == [Connected()]
    assert c.next_deadline() is None


def test_syn_sent_syn_ack_sends_queued_data():
    c = conn_syn_sent()
    c.send(b"hello", 0.0)
    expect_nothing(c)
    send(c, seg(0, 1, SYN | ACK, options=PEER_SYN_OPTIONS))
    # The data segment carries the ACK of the peer's SYN: no separate ACK.
    expect(c, [out(1, 1, ACK | PSH, payload=b"hello")])
    assert c.state is State.ESTABLISHED


def test_syn_sent_ack_without_syn_dropped():
    # 3.10.7.3: neither SYN nor RST: drop the segment.
    c = conn_syn_sent()
    send(c, seg(0, 1))
    expect_nothing(c)
    assert c.state is State.SYN_SENT
    assert events(c) == []


def test_syn_sent_syn_ack_bad_ack():
    # 3.10.7.3: an ACK outside ISS < SEG.ACK =< SND.NXT draws <SEQ=SEG.ACK><CTL=RST>.
    c = conn_syn_sent()
    send(c, seg(0, 5, SYN | ACK, options=PEER_SYN_OPTIONS))
    expect(c, [rst(5)])
    assert c.state is State.SYN_SENT
    assert events(c) == []


def test_syn_sent_syn_ack_acking_iss_only():
    c = conn_syn_sent()
    send(c, seg(0, 0, SYN | ACK, options=PEER_SYN_OPTIONS))
    expect(c, [rst(0)])
    assert c.state is State.SYN_SENT


def test_syn_sent_bad_syn_ack_then_good_one():
    c = conn_syn_sent()
    send(c, seg(0, 1000, SYN | ACK, options=PEER_SYN_OPTIONS, raw_seq=99), at=0.1)
    expect(c, [rst(1000)])
    send(c, seg(0, 1, SYN | ACK, options=PEER_SYN_OPTIONS), at=0.2)
    expect(c, [out(1, 1)])
    assert c.state is State.ESTABLISHED
    assert events(c) == [Connected()]


def test_syn_sent_rst_with_acceptable_ack():
    c = conn_syn_sent()
    send(c, seg(0, 1, RST | ACK))
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert events(c) == [Reset(refused=True)]
    assert c.next_deadline() is None


def test_syn_sent_rst_without_ack_ignored():
    # 3.10.7.3: a RST without an acceptable ACK is dropped.
    c = conn_syn_sent()
    send(c, seg(0, None, RST))
    expect_nothing(c)
    assert c.state is State.SYN_SENT
    assert events(c) == []


def test_syn_sent_rst_with_bad_ack_ignored():
    c = conn_syn_sent()
    send(c, seg(0, 7, RST | ACK))
    expect_nothing(c)  # a RST is never answered
    assert c.state is State.SYN_SENT


def test_syn_sent_port_unreachable_refuses():
    # An ICMP port unreachable quoting our SYN: nothing is bound there.
    c = conn_syn_sent()
    c.port_unreachable(LOCAL_ISS, 0.01)
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert events(c) == [Reset(refused=True)]
    assert c.next_deadline() is None


def test_syn_sent_port_unreachable_quoting_another_seq_ignored():
    # Not our SYN (forged, or quoting something else): RFC 5927 asks for a check.
    c = conn_syn_sent()
    c.port_unreachable(LOCAL_ISS + 1, 0.01)
    assert c.state is State.SYN_SENT
    assert events(c) == []


def test_established_port_unreachable_ignored():
    # A soft error once synchronized (RFC 1122 4.2.3.9): the connection goes on.
    c = conn_established()
    c.port_unreachable(LOCAL_ISS + 1, 0.01)
    expect_nothing(c)
    assert c.state is State.ESTABLISHED
    assert events(c) == []


@pytest.mark.parametrize("what", ["host", "network"])
def test_syn_sent_host_or_network_unreachable_ends_the_attempt(what):
    # Linux ends a connect() on these hard errors at once, instead of retrying.
    c = conn_syn_sent()
    c.unreachable(LOCAL_ISS, what, 0.01)
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert events(c) == [Unreachable(what)]
    assert c.next_deadline() is None


def test_established_host_unreachable_ignored():
    c = conn_established()
    c.unreachable(LOCAL_ISS + 1, "host", 0.01)
    assert c.state is State.ESTABLISHED
    assert events(c) == []


def test_syn_sent_close():
    c = conn_syn_sent()
    c.close(0.5)
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert c.next_deadline() is None


# ----------------------------------------------------------------- passive open


def test_listen_syn():
    c = conn_listen()
    send(c, seg(0, None, SYN, options=PEER_SYN_OPTIONS))
    expect(c, [SYN_ACK_SEG])
    assert c.state is State.SYN_RECEIVED
    assert c.next_deadline() == 1.0
    assert events(c) == []


def test_listen_rst_ignored():
    c = conn_listen()
    send(c, seg(0, None, RST))
    send(c, seg(0, 9, RST | ACK))
    expect_nothing(c)
    assert c.state is State.LISTEN


def test_listen_ack_answered_with_rst():
    c = conn_listen()
    send(c, seg(0, 9))
    expect(c, [rst(9)])
    assert c.state is State.LISTEN


def test_listen_syn_ack_answered_with_rst():
    c = conn_listen()
    send(c, seg(0, 9, SYN | ACK))
    expect(c, [rst(9)])
    assert c.state is State.LISTEN


def test_listen_fin_without_syn_dropped():
    c = conn_listen()
    send(c, seg(0, None, FIN))
    expect_nothing(c)
    assert c.state is State.LISTEN


def test_syn_received_ack():
    c = conn_syn_received()
    send(c, seg(1, 1))
    expect_nothing(c)
    assert c.state is State.ESTABLISHED
    assert events(c) == [Connected()]
    assert c.next_deadline() is None


def test_syn_received_ack_with_data():
    c = conn_syn_received()
    send(c, seg(1, 1, ACK | PSH, payload=b"abc"))
    assert c.state is State.ESTABLISHED
    assert events(c) == [Connected(), DataReceived(b"abc")]
    tick(c, 0.04)
    expect(c, [out(1, 4)])


def test_syn_received_fin():
    # The handshake's ACK was lost; the peer's FIN carries it.
    c = conn_syn_received()
    send(c, seg(1, 1, FIN | ACK))
    expect(c, [out(1, 2)])
    assert c.state is State.CLOSE_WAIT
    assert events(c) == [Connected(), EndOfStream()]


def test_syn_received_bad_ack():
    # 3.10.7.4, fifth: an unacceptable ACK in SYN-RECEIVED draws <SEQ=SEG.ACK><CTL=RST>.
    c = conn_syn_received()
    send(c, seg(1, 50))
    expect(c, [rst(50)])
    assert c.state is State.SYN_RECEIVED
    assert events(c) == []


def test_syn_received_retransmitted_syn():
    # Our SYN-ACK was lost and the peer sent its SYN again: send the SYN-ACK again.
    c = conn_syn_received()
    send(c, seg(0, None, SYN, options=PEER_SYN_OPTIONS), at=0.5)
    expect(c, [SYN_ACK_SEG])
    assert c.state is State.SYN_RECEIVED


def test_syn_received_rst():
    # 3.10.7.4: a passive open returns to LISTEN; the listener (not this
    # connection) keeps listening, so the connection ends without an event.
    c = conn_syn_received()
    send(c, seg(1, None, RST))
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert events(c) == []


def test_syn_received_send_waits_for_handshake():
    c = conn_syn_received()
    c.send(b"early", 0.1)
    expect_nothing(c)
    send(c, seg(1, 1), at=0.2)
    expect(c, [out(1, 1, ACK | PSH, payload=b"early")])


def test_syn_received_ack_without_ack_bit_dropped():
    c = conn_syn_received()
    send(c, seg(1, None, PSH, payload=b"data"))
    expect_nothing(c)
    assert c.state is State.SYN_RECEIVED
    assert events(c) == []


def test_established_retransmitted_syn_ack():
    # Our ACK of the SYN-ACK was lost: the repeated SYN-ACK is re-ACKed.
    c = conn_syn_sent()
    send(c, seg(0, 1, SYN | ACK, options=PEER_SYN_OPTIONS))
    expect(c, [out(1, 1)])
    send(c, seg(0, 1, SYN | ACK, options=PEER_SYN_OPTIONS), at=1.0)
    expect(c, [out(1, 1)])
    assert c.state is State.ESTABLISHED
    assert events(c) == [Connected()]


def test_syn_received_shutdown_sends_fin_after_handshake():
    c = conn_syn_received()
    c.shutdown(0.1)
    expect_nothing(c)
    send(c, seg(1, 1), at=0.2)
    expect(c, [out(1, 1, FIN | ACK)])
    assert c.state is State.FIN_WAIT_1
    assert events(c) == [Connected()]


# ------------------------------------------------------------ simultaneous open


def test_syn_sent_syn_simultaneous_open():
    # 3.5, figure 8: SYN crosses SYN; each side answers with SYN-ACK.
    c = conn_syn_sent()
    send(c, seg(0, None, SYN, options=PEER_SYN_OPTIONS), at=0.1)
    expect(c, [SYN_ACK_SEG])
    assert c.state is State.SYN_RECEIVED
    send(c, seg(0, 1, SYN | ACK, options=PEER_SYN_OPTIONS), at=0.2)
    expect_nothing(c)
    assert c.state is State.ESTABLISHED
    assert events(c) == [Connected()]
    assert c.next_deadline() is None


def test_simultaneous_open_two_connections():
    a = Connection(1111, 2222, iss=100)
    b = Connection(2222, 1111, iss=900)
    a.connect(0.0)
    b.connect(0.0)
    syn_a, syn_b = a.take_segments(), b.take_segments()
    assert [s.flags for s in syn_a + syn_b] == [SYN, SYN]
    a.receive(syn_b[0], 0.01)
    b.receive(syn_a[0], 0.01)
    synack_a, synack_b = a.take_segments(), b.take_segments()
    # Each SYN-ACK echoes the other's SYN timestamp (0) with its own (10 ms).
    synack = syn_options(10, 0)
    assert synack_a == [Segment(1111, 2222, 100, 901, SYN | ACK, SYN_WINDOW, 0, synack)]
    assert synack_b == [Segment(2222, 1111, 900, 101, SYN | ACK, SYN_WINDOW, 0, synack)]
    assert a.state is b.state is State.SYN_RECEIVED
    a.receive(synack_b[0], 0.02)
    b.receive(synack_a[0], 0.02)
    assert a.take_segments() == b.take_segments() == []
    assert a.state is b.state is State.ESTABLISHED
    assert a.take_events() == b.take_events() == [Connected()]
    # RFC 7323 2.2: the windows of the SYN-ACKs are not scaled.
    assert a.snd_wnd == b.snd_wnd == SYN_WINDOW
    # Data flows both ways afterwards.
    a.send(b"ping", 0.03)
    b.receive(a.take_segments()[0], 0.04)
    assert b.take_events() == [DataReceived(b"ping")]


# --------------------------------------------------------- MSS and window scale


@pytest.mark.parametrize("peer_mss, sizes", [
    (1000, [1000, 1000, 500]),  # the peer's MSS is what we may send
    (9000, [1452, 1048]),  # capped at ours
    (None, [536] * 4 + [356]),  # RFC 1122 4.2.2.6: no option means 536
])
def test_syn_sent_syn_ack_mss(peer_mss, sizes):
    c = conn_syn_sent()
    opts = ((MSS, peer_mss), (WSCALE, 0)) if peer_mss else ((WSCALE, 0),)
    send(c, seg(0, 1, SYN | ACK, options=opts))
    expect(c, [out(1, 1)])
    c.send(bytes(2500), 0.0)
    got = c.take_segments()
    assert [len(s.payload) for s in got] == sizes
    assert c.send_mss == sizes[0]


@pytest.mark.parametrize("peer_mss", [1, 40, 87])
def test_syn_sent_syn_ack_tiny_mss_clamped(peer_mss):
    # A tiny MSS option must not make us send runts (CVE-2019-11479): it is raised
    # to 88 bytes, the least MSS we accept for ourselves (Linux's TCP_MIN_MSS).
    c = conn_syn_sent()
    send(c, seg(0, 1, SYN | ACK, options=((MSS, peer_mss), (WSCALE, 0))))
    expect(c, [out(1, 1)])
    c.send(bytes(200), 0.0)
    got = c.take_segments()
    assert [len(s.payload) for s in got] == [88, 88, 24]
    assert c.send_mss == 88


def test_syn_sent_syn_ack_mss_zero_taken_as_absent():
    # An MSS option of 0 is ignored, as Linux does: the RFC 1122 default of 536.
    c = conn_syn_sent()
    send(c, seg(0, 1, SYN | ACK, options=((MSS, 0), (WSCALE, 0))))
    expect(c, [out(1, 1)])
    assert c.send_mss == 536


def test_listen_syn_mss_taken_as_send_mss():
    c = conn_listen()
    send(c, seg(0, None, SYN, options=((MSS, 700),)))
    c.take_segments()
    send(c, seg(1, 1))
    c.send(bytes(1000), 0.0)
    expect(c, [out(1, 1, ACK, 65535, bytes(700)), out(701, 1, ACK | PSH, 65535, bytes(300))])


def test_listen_syn_without_wscale():
    # RFC 7323 1.3: no WSCALE in the SYN means none in the SYN-ACK and no scaling
    # in either direction.
    c = conn_listen(rcv_buf=100_000, rcv_buf_max=None)  # fixed: would be a shift of 1
    send(c, seg(0, None, SYN, options=((MSS, 1452),)))
    expect(c, [out(0, 1, SYN | ACK, 65535, options=((MSS, 1452),))])
    send(c, seg(1, 1, window=1000))
    assert c.state is State.ESTABLISHED
    c.send(bytes(3000), 0.0)
    # The peer's 1000 is 1000 bytes, and our window field is bytes, capped.
    expect(c, [out(1, 1, ACK, 65535, bytes(1000))])


def test_listen_syn_with_wscale():
    c = conn_listen(rcv_buf=100_000, rcv_buf_max=None)  # fixed: the shift follows rcv_buf
    send(c, seg(0, None, SYN, options=((MSS, 1452), (WSCALE, 2))))
    expect(c, [out(0, 1, SYN | ACK, 65535, options=((MSS, 1452), (WSCALE, 1)))])
    send(c, seg(1, 1, window=1000))
    c.send(bytes(5000), 0.0)
    # 1000 << 2 = 4000 bytes may be sent (the 1096 left would be a runt: RFC 1122
    # 4.2.3.4 holds it back); our window is 100000 >> 1.
    expect(c, [out(1, 1, ACK, 50000, bytes(1452)), out(1453, 1, ACK, 50000, bytes(1452))])


def test_syn_sent_syn_ack_without_wscale():
    c = conn_syn_sent()  # offered a shift of 7
    send(c, seg(0, 1, SYN | ACK, window=1000, options=((MSS, 1452),)))
    expect(c, [out(1, 1, window=65535)])  # 256 KiB, unscaled and capped
    c.send(bytes(3000), 0.0)
    expect(c, [out(1, 1, ACK, 65535, bytes(1000))])


def test_syn_sent_syn_ack_with_wscale():
    c = conn_syn_sent()
    send(c, seg(0, 1, SYN | ACK, window=1000, options=((MSS, 1452), (WSCALE, 1))))
    expect(c, [out(1, 1, window=WINDOW)])  # 256 KiB >> 7
    # The SYN-ACK's own window is not scaled (RFC 7323 2.2) ...
    c.send(bytes(3000), 0.0)
    expect(c, [out(1, 1, ACK, WINDOW, bytes(1000))])
    # ... later windows are.
    send(c, seg(1, 1001, window=1000))
    expect(c, [out(1001, 1, ACK, WINDOW, bytes(1452)),
               out(2453, 1, ACK | PSH, WINDOW, bytes(548))])


def test_syn_sent_wscale_above_14_taken_as_14():
    # RFC 7323 2.3.
    c = conn_syn_sent()
    send(c, seg(0, 1, SYN | ACK, window=1, options=((MSS, 1452), (WSCALE, 15))))
    c.take_segments()
    send(c, seg(1, 1, window=1))
    assert c.snd_wnd == 1 << 14


# ------------------------------------------------------ SYN and SYN-ACK retries


def test_syn_sent_retransmit_exponential_backoff():
    c = conn_syn_sent()
    t = 0.0
    for rto in (1, 2, 4, 8, 16, 32):
        tick(c, t + rto - 0.001)
        expect_nothing(c)
        t += rto
        assert c.next_deadline() == t
        tick(c, t)
        expect(c, [syn_seg(t)])
        assert c.state is State.SYN_SENT
    assert c.next_deadline() == 63 + 64
    tick(c, 127)
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert events(c) == [TimedOut("syn")]
    assert c.next_deadline() is None


def test_syn_sent_retries_configurable():
    c = conn_syn_sent(syn_retries=1)
    tick(c, 1.0)
    expect(c, [syn_seg(1.0)])
    tick(c, 3.0)
    expect_nothing(c)
    assert events(c) == [TimedOut("syn")]
    assert c.state is State.CLOSED


def test_syn_received_retransmit_exponential_backoff():
    c = conn_syn_received()
    t = 0.0
    for rto in (1, 2, 4, 8, 16):
        tick(c, t + rto - 0.001)
        expect_nothing(c)
        t += rto
        tick(c, t)
        expect(c, [SYN_ACK_SEG])
        assert c.state is State.SYN_RECEIVED
    assert c.next_deadline() == 31 + 32
    tick(c, 63)
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert events(c) == [TimedOut("synack")]


def test_syn_sent_retransmitted_then_syn_ack_no_rtt_sample():
    # Karn: the SYN-ACK may answer either SYN, so it gives no RTT sample, and
    # RFC 6298 5.7: after a retransmitted SYN the data RTO starts at 3 s.
    c = conn_syn_sent()
    tick(c, 1.0)
    expect(c, [syn_seg(1.0)])
    send(c, seg(0, 1, SYN | ACK, options=PEER_SYN_OPTIONS), at=1.1)
    expect(c, [out(1, 1)])
    assert c.rtt.srtt is None
    c.send(b"x", 2.0)
    expect(c, [out(1, 1, ACK | PSH, payload=b"x")])
    assert c.next_deadline() == 5.0


def test_syn_received_retransmitted_syn_ack_no_rtt_sample():
    c = conn_syn_received()
    send(c, seg(0, None, SYN, options=PEER_SYN_OPTIONS), at=0.5)
    expect(c, [SYN_ACK_SEG])
    send(c, seg(1, 1), at=0.6)
    assert c.state is State.ESTABLISHED
    assert c.rtt.srtt is None
    # RFC 6298 5.7: with no sample from the handshake, data starts from a 3 s RTO.
    c.send(b"x", 1.0)
    c.take_segments()
    assert c.next_deadline() == pytest.approx(4.0)


def test_syn_sent_syn_ack_rtt_sample():
    # RFC 6298 2.2: the first sample R sets SRTT = R, RTTVAR = R/2.
    c = conn_syn_sent()
    send(c, seg(0, 1, SYN | ACK, options=PEER_SYN_OPTIONS), at=0.1)
    assert c.rtt.srtt == pytest.approx(0.1)
    assert c.rtt.rttvar == pytest.approx(0.05)
    assert c.rtt.rto == pytest.approx(0.3)


# ---------------------------------------------------- segments for no connection


def test_reset_for_ack():
    # 3.10.7.1: <SEQ=SEG.ACK><CTL=RST>.
    s = Segment(7007, 49152, 123, 456, ACK)
    assert reset_for(s) == Segment(49152, 7007, 456, 0, RST)


def test_reset_for_syn():
    # <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>; the SYN counts in SEG.LEN.
    s = Segment(7007, 49152, 123, 0, SYN)
    assert reset_for(s) == Segment(49152, 7007, 0, 124, RST | ACK)


def test_reset_for_data_and_fin():
    s = Segment(7007, 49152, 2**32 - 5, 0, FIN | PSH, payload=b"0123456789")
    assert reset_for(s) == Segment(49152, 7007, 0, 6, RST | ACK)


def test_reset_for_bare_segment():
    s = Segment(7007, 49152, 123, 0, 0)
    assert reset_for(s) == Segment(49152, 7007, 0, 123, RST | ACK)


@pytest.mark.parametrize("flags", [RST, RST | ACK, RST | SYN, RST | FIN])
def test_reset_for_rst_never_answered(flags):
    assert reset_for(Segment(7007, 49152, 123, 456, flags)) is None


def test_closed_segment_answered_with_rst():
    c = make()
    send(c, seg(0, None, SYN))
    expect(c, [out(0, 1, RST | ACK, 0, raw_seq=0)])
    send(c, seg(3, 77, ACK | PSH, payload=b"zz"))
    expect(c, [rst(77)])
    send(c, seg(3, 77, RST))
    expect_nothing(c)
    assert c.state is State.CLOSED


def test_reset_for_uses_segment_ports():
    r = reset_for(seg(0, None, SYN))
    assert (r.src_port, r.dst_port) == (LOCAL_PORT, REMOTE_PORT)
    assert (r.seq, r.ack) == (0, add(REMOTE_ISS, 1))


def test_syn_received_never_offers_more_than_its_syn_ack():
    # Until the handshake completes, every segment offers the SYN-ACK's (unscaled)
    # edge: a retransmitted SYN-ACK, which cannot scale, then pulls nothing back,
    # and data the peer sends up to any edge it was shown is taken.
    c = conn_syn_received(rcv_buf=300_000)  # a shift of 7; the SYN-ACK offered 65535
    send(c, seg(2, None, RST), at=0.01)  # in window, not exact: a challenge ACK
    (challenge,) = c.take_segments()
    assert challenge.window << SHIFT <= 65535
    c.handle_timer(c.next_deadline())  # the SYN-ACK's retransmission
    (synack,) = c.take_segments()
    assert synack.flags == SYN | ACK and synack.window == 65535
    send(c, seg(1, 1), at=1.1)
    assert c.state is State.ESTABLISHED
    send(c, seg(1 + 60_000, 1, payload=b"x" * 1000), at=1.2)  # within the 65535 offered
    assert c.counters.out_of_order == 1 and c.counters.unacceptable == 0
