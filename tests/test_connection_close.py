"""Ending a connection: FIN exchanges in all their orders, TIME-WAIT, FIN-WAIT-2,
close and abort, RSTs on a synchronized connection (RFC 9293 3.6, 3.10.4-3.10.7;
RFC 5961 3-4), and the transitions an observer sees over a whole lifecycle."""

from __future__ import annotations

import pytest
from tcpscript import (
    PEER_SYN_OPTIONS,
    SHIFT,
    WINDOW,
    conn_close_wait,
    conn_closing,
    conn_established,
    conn_fin_wait_1,
    conn_fin_wait_2,
    conn_last_ack,
    conn_time_wait,
    events,
    expect,
    expect_nothing,
    fire,
    make,
    out,
    seg,
    send,
    tick,
)

from utcp.core.connection import Connection
from utcp.core.events import (
    Closed,
    Connected,
    DataReceived,
    EndOfStream,
    FinAcked,
    Reset,
    TimedOut,
)
from utcp.core.observer import NullObserver
from utcp.core.state import State
from utcp.core.wire import ACK, FIN, PSH, RST, SYN, Segment


def rst(seq: int) -> Segment:
    """<SEQ=seq><CTL=RST> from us, seq relative to our ISN."""
    return out(seq, None, RST, 0)


# ------------------------------------------------------ active close (ours first)


def test_established_shutdown():
    c = conn_established()
    c.shutdown(0.0)
    expect(c, [out(1, 1, FIN | ACK)])
    assert c.state is State.FIN_WAIT_1
    assert c.next_deadline() == 0.2
    assert events(c) == []


def test_established_shutdown_after_data():
    c = conn_established()
    c.send(b"last words", 0.0)
    c.shutdown(0.0)
    expect(c, [out(1, 1, ACK | PSH, payload=b"last words"), out(11, 1, FIN | ACK)])
    assert c.state is State.FIN_WAIT_1


def test_established_shutdown_fin_rides_with_queued_data():
    c = conn_established()
    send(c, seg(1, 1, window=0))
    c.send(b"bye", 0.0)
    c.shutdown(0.0)
    expect_nothing(c)
    send(c, seg(1, 1, window=100), at=0.1)
    expect(c, [out(1, 1, FIN | PSH | ACK, payload=b"bye")])


def test_established_send_after_shutdown_refused():
    c = conn_fin_wait_1()
    with pytest.raises(RuntimeError):
        c.send(b"x", 0.0)


def test_fin_wait_1_ack_of_fin():
    c = conn_fin_wait_1()
    send(c, seg(1, 2))
    expect_nothing(c)
    assert c.state is State.FIN_WAIT_2
    assert c.next_deadline() is None  # shutdown(), not close(): no FIN-WAIT-2 timer
    assert events(c) == [FinAcked()]


def test_fin_wait_2_fin():
    c = conn_fin_wait_2()
    send(c, seg(1, 2, FIN | ACK), at=1.0)
    expect(c, [out(2, 2)])
    assert c.state is State.TIME_WAIT
    assert events(c) == [EndOfStream(), Closed()]
    assert c.next_deadline() == 61.0


def test_fin_wait_1_fin_with_ack_of_fin():
    c = conn_fin_wait_1()
    send(c, seg(1, 2, FIN | ACK))
    expect(c, [out(2, 2)])
    assert c.state is State.TIME_WAIT
    assert events(c) == [FinAcked(), EndOfStream(), Closed()]


def test_fin_wait_1_fin_retransmit_backoff_then_timeout():
    c = conn_fin_wait_1()
    t = 0.0
    for rto in [0.2 * 2**k for k in range(10)] + [120.0] * 5:
        t = fire(c, t + rto)
        expect(c, [out(1, 1, FIN | ACK)])
        assert c.state is State.FIN_WAIT_1
    fire(c, t + 120)
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert events(c) == [TimedOut("fin")]


def test_fin_wait_1_fin_retries_configurable():
    c = conn_fin_wait_1(data_retries=1)
    fire(c, 0.2)
    expect(c, [out(1, 1, FIN | ACK)])
    fire(c, 0.6)
    expect_nothing(c)
    assert events(c) == [TimedOut("fin")]


def test_fin_wait_1_unacked_data_times_out_as_data():
    c = conn_established(data_retries=0)
    c.send(b"abc", 0.0)
    c.shutdown(0.0)
    c.take_segments()
    fire(c, 0.2)
    assert events(c) == [TimedOut("data")]


def test_fin_wait_1_receives_data():
    c = conn_fin_wait_1()
    send(c, seg(1, 1, ACK | PSH, payload=b"more"))
    assert events(c) == [DataReceived(b"more")]
    send(c, seg(5, 2, FIN | ACK), at=0.01)
    expect(c, [out(2, 6)])
    assert c.state is State.TIME_WAIT
    assert events(c) == [FinAcked(), EndOfStream(), Closed()]


def test_fin_wait_2_half_close_keeps_receiving():
    # After shutdown() the read side stays open until the peer's FIN.
    c = conn_fin_wait_2()
    send(c, seg(1, 2, ACK | PSH, payload=b"still"), at=1.0)
    assert events(c) == [DataReceived(b"still")]
    fire(c, 1.04)
    expect(c, [out(2, 6)])
    send(c, seg(6, 2, ACK | PSH, payload=b" talking"), at=2.0)
    assert events(c) == [DataReceived(b" talking")]
    assert c.state is State.FIN_WAIT_2
    send(c, seg(14, 2, FIN | ACK), at=3.0)
    expect(c, [out(2, 15)])
    assert c.state is State.TIME_WAIT
    assert events(c) == [EndOfStream(), Closed()]


def test_fin_wait_2_timeout_after_close():
    # Linux tcp_fin_timeout: an orphaned connection waits 60 s for the peer's FIN.
    c = conn_established()
    c.close(0.0)
    expect(c, [out(1, 1, FIN | ACK)])
    send(c, seg(1, 2), at=1.0)
    assert c.state is State.FIN_WAIT_2
    tick(c, 60.999)
    expect_nothing(c)
    fire(c, 61.0)
    expect(c, [rst(2)])
    assert c.state is State.CLOSED
    assert events(c) == [FinAcked(), TimedOut("fin-wait-2")]


def test_fin_wait_2_no_timeout_after_shutdown():
    c = conn_fin_wait_2()
    assert c.next_deadline() is None
    tick(c, 10_000.0)
    expect_nothing(c)
    assert c.state is State.FIN_WAIT_2


def test_fin_wait_2_close_starts_timeout():
    c = conn_fin_wait_2()
    c.close(5.0)
    expect_nothing(c)
    assert c.next_deadline() == 65.0


def test_fin_wait_2_orphaned_data_resets():
    # Nobody will read after close(): data is answered with RST, as Linux does.
    c = conn_established()
    c.close(0.0)
    c.take_segments()
    send(c, seg(1, 2), at=0.1)
    send(c, seg(1, 2, ACK | PSH, payload=b"hello?"), at=0.2)
    expect(c, [rst(2)])
    assert c.state is State.CLOSED


def test_fin_wait_2_fin_out_of_order():
    # A FIN ahead of a hole is processed once the hole is filled.
    c = conn_fin_wait_2()
    send(c, seg(5, 2, FIN | ACK, payload=b"efgh"), at=0.1)
    expect(c, [out(2, 1)])
    assert events(c) == []
    assert c.state is State.FIN_WAIT_2
    send(c, seg(1, 2, ACK, payload=b"abcd"), at=0.2)
    expect(c, [out(2, 10)])
    assert events(c) == [DataReceived(b"abcdefgh"), EndOfStream(), Closed()]
    assert c.state is State.TIME_WAIT


def test_established_bare_fin_out_of_order():
    c = conn_established()
    send(c, seg(4, 1, FIN | ACK))
    expect(c, [out(1, 1)])
    assert c.state is State.ESTABLISHED
    send(c, seg(1, 1, ACK, payload=b"abc"))
    expect(c, [out(1, 5)])
    assert events(c) == [DataReceived(b"abc"), EndOfStream()]
    assert c.state is State.CLOSE_WAIT


# ---------------------------------------------------- passive close (theirs first)


def test_established_fin():
    c = conn_established()
    send(c, seg(1, 1, FIN | ACK))
    expect(c, [out(1, 2)])
    assert c.state is State.CLOSE_WAIT
    assert events(c) == [EndOfStream()]


def test_established_data_and_fin():
    c = conn_established()
    send(c, seg(1, 1, FIN | PSH | ACK, payload=b"bye"))
    expect(c, [out(1, 5)])
    assert c.state is State.CLOSE_WAIT
    assert events(c) == [DataReceived(b"bye"), EndOfStream()]


def test_close_wait_keeps_sending():
    c = conn_close_wait()
    c.send(b"response", 0.1)
    expect(c, [out(1, 2, ACK | PSH, payload=b"response")])
    send(c, seg(2, 9), at=0.2)
    expect_nothing(c)
    assert c.state is State.CLOSE_WAIT
    assert c.send_buffered == 0


def test_close_wait_duplicate_fin_reacked():
    c = conn_close_wait()
    send(c, seg(1, 1, FIN | ACK), at=0.5)
    expect(c, [out(1, 2)])
    assert events(c) == []
    assert c.state is State.CLOSE_WAIT


def test_close_wait_shutdown():
    c = conn_close_wait()
    c.shutdown(0.1)
    expect(c, [out(1, 2, FIN | ACK)])
    assert c.state is State.LAST_ACK


def test_last_ack_ack_of_fin():
    c = conn_last_ack()
    send(c, seg(2, 2), at=0.1)
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert events(c) == [FinAcked(), Closed()]
    assert c.next_deadline() is None


def test_last_ack_fin_retransmit():
    c = conn_last_ack()
    fire(c, 0.2)
    expect(c, [out(1, 2, FIN | ACK)])
    fire(c, 0.6)
    expect(c, [out(1, 2, FIN | ACK)])
    send(c, seg(2, 2), at=0.7)
    assert c.state is State.CLOSED
    assert events(c) == [FinAcked(), Closed()]


def test_last_ack_ack_without_fin_ignored():
    c = conn_last_ack()
    send(c, seg(2, 1), at=0.1)
    expect_nothing(c)
    assert c.state is State.LAST_ACK


# --------------------------------------------------------- simultaneous close


def test_fin_wait_1_fin_simultaneous_close():
    c = conn_fin_wait_1()
    send(c, seg(1, 1, FIN | ACK))  # the peer's FIN, not yet acknowledging ours
    expect(c, [out(2, 2)])
    assert c.state is State.CLOSING
    assert events(c) == [EndOfStream()]


def test_closing_ack_of_fin():
    c = conn_closing()
    send(c, seg(2, 2), at=0.1)
    expect_nothing(c)
    assert c.state is State.TIME_WAIT
    assert events(c) == [FinAcked(), Closed()]
    assert c.next_deadline() == pytest.approx(60.1)


def test_closing_fin_retransmit():
    c = conn_closing()
    fire(c, 0.2)
    expect(c, [out(1, 2, FIN | ACK)])
    assert c.state is State.CLOSING


def test_simultaneous_close_two_connections():
    a = Connection(1111, 2222, iss=100)
    b = Connection(2222, 1111, iss=900)
    b.listen()
    a.connect(0.0)
    b.receive(a.take_segments()[0], 0.01)
    a.receive(b.take_segments()[0], 0.02)
    b.receive(a.take_segments()[0], 0.03)
    a.shutdown(0.1)
    b.shutdown(0.1)
    fin_a, fin_b = a.take_segments(), b.take_segments()
    assert [s.flags for s in fin_a + fin_b] == [FIN | ACK, FIN | ACK]
    a.receive(fin_b[0], 0.11)
    b.receive(fin_a[0], 0.11)
    assert a.state is b.state is State.CLOSING
    ack_a, ack_b = a.take_segments(), b.take_segments()
    a.receive(ack_b[0], 0.12)
    b.receive(ack_a[0], 0.12)
    assert a.state is b.state is State.TIME_WAIT
    assert a.take_segments() == b.take_segments() == []
    a.handle_timer(60.12)
    b.handle_timer(60.12)
    assert a.state is b.state is State.CLOSED
    assert a.take_events() == b.take_events() == [
        Connected(), EndOfStream(), FinAcked(), Closed()]


# ------------------------------------------------------------------ TIME-WAIT


def test_time_wait_2msl():
    c = conn_time_wait()
    tick(c, 59.999)
    assert c.state is State.TIME_WAIT
    fire(c, 60.0)
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert events(c) == []  # Closed was reported on entering TIME-WAIT
    assert c.next_deadline() is None


def test_time_wait_short_msl():
    c = conn_time_wait(msl=0.005)
    fire(c, 0.01)
    assert c.state is State.CLOSED


def test_time_wait_retransmitted_fin():
    # Our last ACK was lost: re-ACK the FIN and restart the 2 MSL timer.
    c = conn_time_wait()
    send(c, seg(1, 2, FIN | ACK), at=30.0)
    expect(c, [out(2, 2)])
    assert c.state is State.TIME_WAIT
    assert events(c) == []
    tick(c, 60.0)
    assert c.state is State.TIME_WAIT
    fire(c, 90.0)
    assert c.state is State.CLOSED


def test_time_wait_after_2msl_segment_reset():
    c = conn_time_wait()
    fire(c, 60.0)
    send(c, seg(1, 2, FIN | ACK), at=61.0)
    expect(c, [rst(2)])


# ------------------------------------------------------------- close and abort


def test_established_close():
    c = conn_established()
    c.close(0.0)
    expect(c, [out(1, 1, FIN | ACK)])
    assert c.state is State.FIN_WAIT_1


def test_established_close_with_unread_data_resets():
    # RFC 2525 2.17, as Linux: unread data at close() means RST, not FIN.
    c = conn_established()
    c.pause_reading()
    send(c, seg(1, 1, ACK | PSH, payload=b"unread"))
    c.close(0.01)
    expect(c, [rst(1)])
    assert c.state is State.CLOSED
    assert events(c) == []
    assert c.next_deadline() is None


def test_established_abort():
    c = conn_established()
    c.send(b"abc", 0.0)
    c.take_segments()
    c.abort(0.1)
    expect(c, [rst(4)])
    assert c.state is State.CLOSED
    assert c.next_deadline() is None
    assert events(c) == []


# 3.10.5: in CLOSING, LAST-ACK and TIME-WAIT, ABORT sends nothing (the peer has
# finished sending, and a RST could only destroy its side's orderly end): the
# connection is simply deleted. As in the other states, abort() reports no event.


def test_closing_abort():
    c = conn_closing()
    c.abort(0.1)
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert c.next_deadline() is None
    assert events(c) == []


def test_last_ack_abort():
    c = conn_last_ack()
    c.abort(0.1)
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert c.next_deadline() is None
    assert events(c) == []


def test_time_wait_abort():
    c = conn_time_wait()
    c.abort(1.0)
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert c.next_deadline() is None
    assert events(c) == []


# ------------------------------------------------ RST on a synchronized connection


def test_established_rst():
    c = conn_established()
    send(c, seg(1, None, RST))
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert events(c) == [Reset()]
    assert c.next_deadline() is None


def test_established_rst_ack():
    c = conn_established()
    send(c, seg(1, 1, RST | ACK))
    expect_nothing(c)  # a RST is never answered
    assert c.state is State.CLOSED
    assert events(c) == [Reset()]
    assert c.next_deadline() is None


@pytest.mark.parametrize("rst_seq", [100, 2], ids=["inside", "rcv-nxt-plus-one"])
def test_established_rst_in_window_not_exact(rst_seq):
    # RFC 5961 3.2: in the window but not RCV.NXT (RCV.NXT + 1 included): challenge
    # ACK, keep the connection.
    c = conn_established()
    send(c, seg(rst_seq, None, RST))
    expect(c, [out(1, 1)])
    assert c.state is State.ESTABLISHED
    assert events(c) == []
    assert c.counters.challenge_acks == 1


@pytest.mark.parametrize("suspicious", [
    seg(100, None, RST),  # RFC 5961 3.2: in the window, not RCV.NXT
    seg(100, None, SYN),  # 4.2: a SYN on a synchronized connection
    seg(1, -70_000, ACK | PSH, payload=b"forged"),  # 5.2: an ACK far too old
    seg(1, 5000, ACK | PSH, payload=b"forged"),  # 5.2 / 3.10.7.4: ACKs data not yet sent
], ids=["rst", "syn", "old-ack", "unsent-ack"])
def test_established_challenge_acks_rate_limited(suspicious):
    # RFC 5961 7: a burst of suspicious segments draws one challenge ACK per 0.5 s
    # (Linux: tcp_invalid_ratelimit), so a blind attacker cannot make us flood.
    c = conn_established()
    send(c, suspicious, at=1.0)
    expect(c, [out(1, 1)])
    for t in (1.1, 1.2, 1.49):
        send(c, suspicious, at=t)
        expect_nothing(c)
    send(c, suspicious, at=1.5)
    expect(c, [out(1, 1)])
    assert c.state is State.ESTABLISHED
    assert events(c) == []
    assert c.counters.challenge_acks == 2  # those sent


def test_established_rst_above_window_dropped():
    c = conn_established()
    send(c, seg(1 + (WINDOW << SHIFT), None, RST))
    expect_nothing(c)
    assert c.state is State.ESTABLISHED


def test_established_rst_below_window_dropped():
    c = conn_established()
    send(c, seg(0, None, RST))
    expect_nothing(c)
    assert c.state is State.ESTABLISHED
    assert events(c) == []


def test_established_syn_in_window():
    # RFC 5961 4.2: a SYN on a synchronized connection draws a challenge ACK.
    c = conn_established()
    send(c, seg(1, None, SYN, options=PEER_SYN_OPTIONS))
    expect(c, [out(1, 1)])
    send(c, seg(500, 1, SYN | ACK), at=0.5)  # after the challenge-ACK interval
    expect(c, [out(1, 1)])
    assert c.state is State.ESTABLISHED
    assert events(c) == []
    assert c.counters.challenge_acks == 2


def test_established_syn_old():
    # The peer's original SYN again (outside the window): ACKed, nothing else.
    c = conn_established()
    send(c, seg(0, None, SYN, options=PEER_SYN_OPTIONS))
    expect(c, [out(1, 1)])
    assert c.state is State.ESTABLISHED
    assert c.counters.challenge_acks == 1


# Each synchronized state, with our SND.MAX and RCV.NXT there (relative to the ISNs).
SYNCHRONIZED = [
    pytest.param(conn_established, 1, 1, id="ESTABLISHED"),
    pytest.param(conn_fin_wait_1, 2, 1, id="FIN-WAIT-1"),
    pytest.param(conn_fin_wait_2, 2, 1, id="FIN-WAIT-2"),
    pytest.param(conn_close_wait, 1, 2, id="CLOSE-WAIT"),
    pytest.param(conn_closing, 2, 2, id="CLOSING"),
    pytest.param(conn_last_ack, 2, 2, id="LAST-ACK"),
    pytest.param(conn_time_wait, 2, 2, id="TIME-WAIT"),
]


@pytest.mark.parametrize("fixture, snd, rcv", SYNCHRONIZED)
@pytest.mark.parametrize("where", ["in-window", "old"])
def test_synchronized_syn_draws_rate_limited_challenge_ack(fixture, snd, rcv, where):
    # RFC 5961 4.2: any SYN on a synchronized connection, in the window or not,
    # draws a challenge ACK and changes nothing; 7: a burst draws one per 500 ms.
    c = fixture()
    state = c.state
    syn_seq = rcv + 10 if where == "in-window" else 0
    for k in range(5):
        send(c, seg(syn_seq, None, SYN, options=PEER_SYN_OPTIONS), at=k * 0.1)
        expect(c, [out(snd, rcv)] if k == 0 else [])
    send(c, seg(syn_seq, None, SYN, options=PEER_SYN_OPTIONS), at=0.5)
    expect(c, [out(snd, rcv)])
    assert c.state is state
    assert events(c) == []
    assert c.counters.challenge_acks == 2


@pytest.mark.parametrize("junk_first", [False, True], ids=["fin-first", "junk-first"])
def test_established_data_past_an_early_fin_is_not_delivered(junk_first):
    # A FIN ahead of a hole fixes where the stream ends: bytes a misbehaving peer
    # sends at or past it are no data, whether they come before the FIN or after.
    c = conn_established()
    junk = seg(11, 1, payload=b"XXXXX")
    if junk_first:
        send(c, junk)
    send(c, seg(11, 1, ACK | FIN))
    if not junk_first:
        send(c, junk)
    c.take_segments()
    send(c, seg(1, 1, payload=b"a" * 10))  # the hole fills
    expect(c, [out(1, 12)])
    assert events(c) == [DataReceived(b"a" * 10), EndOfStream()]
    assert c.state is State.CLOSE_WAIT
    c.close(0.1)  # nothing unread is held: an orderly FIN, not a reset
    expect(c, [out(1, 12, FIN | ACK)])


def test_established_abort_drops_held_data():
    c = conn_established()
    c.pause_reading()
    send(c, seg(1, 1, payload=b"held"))
    c.abort(0.1)
    c.resume_reading(0.2)
    assert events(c) == []


def test_established_rst_drops_held_data():
    # Before the peer's FIN a reset ends reading at once, held data included.
    c = conn_established()
    c.pause_reading()
    send(c, seg(1, 1, payload=b"held"))
    send(c, seg(5, None, RST))
    c.resume_reading(0.2)
    assert events(c) == [Reset()]


def test_fin_wait_2_rst():
    c = conn_fin_wait_2()
    send(c, seg(1, None, RST))
    assert c.state is State.CLOSED
    assert events(c) == [Reset()]


def test_close_wait_rst():
    # The peer's FIN came first: everything it sent is here (as Linux, which leaves
    # the receive queue readable and fails only sending).
    c = conn_close_wait()
    send(c, seg(2, None, RST))
    assert c.state is State.CLOSED
    assert events(c) == [Reset(after_fin=True)]


def test_close_wait_rst_leaves_held_data_readable():
    c = conn_established()
    c.pause_reading()
    send(c, seg(1, 1, ACK | PSH, payload=b"request"))
    send(c, seg(8, 1, FIN | ACK))
    assert c.state is State.CLOSE_WAIT
    c.take_segments()
    assert events(c) == []  # held while reading is paused, EOF behind the data
    send(c, seg(9, None, RST))
    assert c.state is State.CLOSED
    assert events(c) == [Reset(after_fin=True)]
    c.resume_reading(0.5)
    expect_nothing(c)
    assert events(c) == [DataReceived(b"request"), EndOfStream()]


@pytest.mark.parametrize("fixture, told", [
    (conn_closing, [Reset(after_fin=True)]),
    (conn_last_ack, [Reset(after_fin=True)]),
    (conn_time_wait, []),
])
def test_closing_states_rst(fixture, told):
    # 3.10.7.4: CLOSING, LAST-ACK, TIME-WAIT: a RST just ends the connection. Where
    # our FIN was not yet acknowledged, the application learns of the reset.
    c = fixture()
    send(c, seg(2, None, RST))
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert events(c) == told


def test_time_wait_rst_in_window_not_exact():
    c = conn_time_wait()
    send(c, seg(50, None, RST))
    expect(c, [out(2, 2)])
    assert c.state is State.TIME_WAIT


# ----------------------------------------------------------------- the observer


class Recorder(NullObserver):
    def __init__(self) -> None:
        self.transitions: list[tuple] = []
        self.sent: list[Segment] = []
        self.received: list[Segment] = []

    def state_changed(self, conn, old, new, cause, now):
        assert conn.state is new
        self.transitions.append((str(old), str(new), cause, now))

    def segment_sent(self, conn, seg, now):
        self.sent.append(seg)

    def segment_received(self, conn, seg, now):
        self.received.append(seg)


def test_observer_active_lifecycle():
    rec = Recorder()
    c = make(observer=rec)
    c.connect(0.0)
    send(c, seg(0, 1, SYN | ACK, options=PEER_SYN_OPTIONS), at=0.1)
    c.shutdown(1.0)
    send(c, seg(1, 2), at=1.1)
    send(c, seg(1, 2, FIN | ACK), at=2.0)
    fire(c, 62.0)
    assert rec.transitions == [
        ("CLOSED", "SYN-SENT", "connect", 0.0),
        ("SYN-SENT", "ESTABLISHED", "SYN,ACK received", 0.1),
        ("ESTABLISHED", "FIN-WAIT-1", "close", 1.0),
        ("FIN-WAIT-1", "FIN-WAIT-2", "ACK of FIN", 1.1),
        ("FIN-WAIT-2", "TIME-WAIT", "FIN received", 2.0),
        ("TIME-WAIT", "CLOSED", "2MSL timeout", 62.0),
    ]
    assert rec.sent == c.take_segments()
    assert [s.flags for s in rec.sent] == [SYN, ACK, FIN | ACK, ACK]
    assert [s.flags for s in rec.received] == [SYN | ACK, ACK, FIN | ACK]


def test_observer_passive_lifecycle():
    rec = Recorder()
    c = make(observer=rec)
    c.listen()
    send(c, seg(0, None, SYN, options=PEER_SYN_OPTIONS), at=0.0)
    send(c, seg(1, 1), at=0.1)
    send(c, seg(1, 1, FIN | ACK), at=1.0)
    c.shutdown(1.5)
    send(c, seg(2, 2), at=1.6)
    assert rec.transitions == [
        ("CLOSED", "LISTEN", "listen", 0.0),
        ("LISTEN", "SYN-RECEIVED", "SYN received", 0.0),
        ("SYN-RECEIVED", "ESTABLISHED", "ACK of SYN", 0.1),
        ("ESTABLISHED", "CLOSE-WAIT", "FIN received", 1.0),
        ("CLOSE-WAIT", "LAST-ACK", "close", 1.5),
        ("LAST-ACK", "CLOSED", "ACK of FIN", 1.6),
    ]
    assert events(c)[-1] == Closed()


def test_observer_simultaneous_close_and_reset():
    rec = Recorder()
    c = conn_established(observer=rec)
    c.shutdown(1.0)
    send(c, seg(1, 1, FIN | ACK), at=1.1)
    send(c, seg(2, 2), at=1.2)
    send(c, seg(2, None, RST), at=1.3)
    assert [t[:3] for t in rec.transitions[2:]] == [
        ("ESTABLISHED", "FIN-WAIT-1", "close"),
        ("FIN-WAIT-1", "CLOSING", "FIN received"),
        ("CLOSING", "TIME-WAIT", "ACK of FIN"),
        ("TIME-WAIT", "CLOSED", "RST received"),
    ]


def test_observer_sees_every_segment():
    rec = Recorder()
    c = conn_established(observer=rec)
    c.send(b"abc", 0.0)
    send(c, seg(1, 4, ACK | PSH, payload=b"xyz"), at=0.1)
    fire(c, 0.14)
    taken = c.take_segments()
    assert rec.sent[-2:] == taken == [out(1, 1, ACK | PSH, payload=b"abc"), out(4, 4)]
    assert rec.received[-1] == seg(1, 4, ACK | PSH, payload=b"xyz")
