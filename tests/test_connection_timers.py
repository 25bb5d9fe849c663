"""The timers of one connection: the deadline contract, delayed ACK and keepalive
(RFC 1122 4.2.3.2 and 4.2.3.6; Linux tcp_keepalive_* defaults)."""

from __future__ import annotations

import pytest
from tcpscript import (
    conn_established,
    conn_syn_received,
    conn_syn_sent,
    conn_time_wait,
    events,
    expect,
    expect_nothing,
    fire,
    out,
    seg,
    send,
    tick,
)

from utcp.core.config import Options
from utcp.core.events import DataReceived, TimedOut
from utcp.core.state import State
from utcp.core.wire import ACK, PSH, RST, SYN

KA = {"keepalive": True, "keepalive_idle": 10.0, "keepalive_interval": 5.0,
      "keepalive_count": 3}
PROBE = out(0, 1)  # <SEQ=SND.UNA-1><ACK=RCV.NXT>, no data


# ----------------------------------------------------------- deadline contract


def test_timer_before_deadline_does_nothing():
    c = conn_syn_sent()
    tick(c, 0.5)
    expect_nothing(c)
    assert c.next_deadline() == 1.0
    assert c.state is State.SYN_SENT


def test_next_deadline_is_earliest_timer():
    c = conn_established()
    c.send(b"q", 0.0)  # retransmission at 0.2
    c.take_segments()
    send(c, seg(1, 1, payload=b"a"), at=0.1)  # delayed ACK at 0.14
    assert c.next_deadline() == 0.14


def test_late_timer_runs_everything_due():
    c = conn_established()
    c.send(b"q", 0.0)
    c.take_segments()
    send(c, seg(1, 1, payload=b"a"), at=0.1)
    tick(c, 0.3)
    # The delayed ACK (at SND.NXT), then the retransmission.
    expect(c, [out(2, 2), out(1, 2, ACK | PSH, payload=b"q")])


def test_established_idle_has_no_deadline():
    c = conn_established()
    assert c.next_deadline() is None


# ------------------------------------------------------------------ delayed ACK


def test_delayed_ack_not_restarted_by_later_segment():
    c = conn_established()
    send(c, seg(1, 1, payload=b"a" * 100), at=0.0)
    send(c, seg(101, 1, payload=b"b" * 100), at=0.02)
    tick(c, 0.039)
    expect_nothing(c)
    fire(c, 0.04)
    expect(c, [out(1, 201)])


def test_delayed_ack_configurable():
    c = conn_established(delayed_ack=0.2)
    send(c, seg(1, 1, payload=b"a"))
    tick(c, 0.19)
    expect_nothing(c)
    fire(c, 0.2)
    expect(c, [out(1, 2)])


def test_delayed_ack_cancelled_by_outgoing_data():
    c = conn_established()
    send(c, seg(1, 1, payload=b"a"))
    c.send(b"b", 0.01)
    expect(c, [out(1, 2, ACK | PSH, payload=b"b")])
    assert c.next_deadline() == pytest.approx(0.21)  # only the retransmission timer is left


# -------------------------------------------------------------------- keepalive


def test_keepalive_off_by_default():
    c = conn_established()
    assert not Options().keepalive
    assert c.next_deadline() is None
    tick(c, 7200.0)
    tick(c, 100_000.0)
    expect_nothing(c)
    assert c.state is State.ESTABLISHED


def test_keepalive_defaults():
    o = Options()
    assert (o.keepalive_idle, o.keepalive_interval, o.keepalive_count) == (7200.0, 75.0, 9)
    c = conn_established(keepalive=True)
    assert c.next_deadline() == 7200.0
    for k in range(9):
        fire(c, 7200.0 + 75.0 * k)
        expect(c, [PROBE])
    fire(c, 7200.0 + 75.0 * 9)
    expect(c, [out(1, None, RST, 0)])
    assert events(c) == [TimedOut("keepalive")]
    assert c.state is State.CLOSED


def test_keepalive_probe_after_idle():
    c = conn_established(**KA)
    tick(c, 9.999)
    expect_nothing(c)
    fire(c, 10.0)
    expect(c, [PROBE])
    assert c.state is State.ESTABLISHED
    assert c.next_deadline() == 15.0


def test_keepalive_unanswered_probes_abort():
    c = conn_established(**KA)
    for t in (10.0, 15.0, 20.0):
        fire(c, t)
        expect(c, [PROBE])
        assert events(c) == []
    fire(c, 25.0)
    # Like Linux: tell the peer, in case it is there after all.
    expect(c, [out(1, None, RST, 0)])
    assert events(c) == [TimedOut("keepalive")]
    assert c.state is State.CLOSED
    assert c.next_deadline() is None


def test_keepalive_answered_probe_resets():
    c = conn_established(**KA)
    fire(c, 10.0)
    expect(c, [PROBE])
    fire(c, 15.0)
    expect(c, [PROBE])
    send(c, seg(1, 1), at=16.0)  # the peer's ACK of the probe
    expect_nothing(c)
    assert c.next_deadline() == 26.0
    for t in (26.0, 31.0, 36.0):  # a full count of probes again
        fire(c, t)
        expect(c, [PROBE])
    fire(c, 41.0)
    assert events(c) == [TimedOut("keepalive")]


def test_keepalive_anything_received_resets_idle():
    c = conn_established(**KA)
    send(c, seg(1, 1, ACK | PSH, payload=b"hi"), at=5.0)
    assert events(c) == [DataReceived(b"hi")]
    fire(c, 5.04)
    expect(c, [out(1, 3)])
    tick(c, 14.9)
    expect_nothing(c)
    fire(c, 15.0)
    expect(c, [out(0, 3)])


def test_keepalive_unacceptable_segment_does_not_reset_idle():
    c = conn_established(**KA)
    send(c, seg(100_000_000, 1), at=5.0)  # far outside the window
    expect(c, [out(1, 1)])  # 3.10.7.4: answered with an ACK, and otherwise ignored
    fire(c, 10.0)
    expect(c, [PROBE])


@pytest.mark.parametrize("flags", [RST, SYN], ids=["rst", "syn"])
def test_keepalive_challenged_segment_does_not_reset_idle(flags):
    # An in-window RST or SYN only draws a challenge ACK (RFC 5961): anyone could
    # have sent it, so it says nothing about the peer being alive.
    c = conn_established(**KA)
    send(c, seg(100, None, flags), at=5.0)
    expect(c, [out(1, 1)])
    fire(c, 10.0)
    expect(c, [PROBE])


def test_keepalive_none_in_time_wait():
    # TIME-WAIT only waits out 2 MSL: a segment it accepts starts no keepalive,
    # and it ends at 2 MSL silently, without probes, RST or a timeout.
    c = conn_time_wait(**KA)
    send(c, seg(2, 2), at=1.0)
    expect_nothing(c)
    fire(c, 60.0)
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert events(c) == []


def test_keepalive_waits_while_data_in_flight():
    # The retransmission timer watches the peer while data is outstanding.
    c = conn_established(**KA, data_retries=100, max_rto=1.0)
    fire(c, 10.0)
    expect(c, [PROBE])
    c.send(b"x", 12.0)
    c.take_segments()
    fire(c, 12.2)  # the data's retransmission, not a probe
    expect(c, [out(1, 1, ACK | PSH, payload=b"x")])
    fire(c, 12.6)
    c.take_segments()
    fire(c, 13.4)
    c.take_segments()
    fire(c, 14.4)
    c.take_segments()
    fire(c, 15.0)  # keepalive due: data in flight, so no probe, try again later
    expect_nothing(c)
    assert c.state is State.ESTABLISHED


def test_keepalive_passive_open():
    c = conn_syn_received(**KA)
    send(c, seg(1, 1), at=1.0)
    assert c.state is State.ESTABLISHED
    fire(c, 11.0)
    expect(c, [PROBE])


def test_nat_keepalive_probes_a_quiet_connection_and_never_gives_up():
    # Every 25 s of silence a probe goes out, to keep a NAT's mapping; unanswered,
    # it ends nothing (keepalive is what decides a peer is gone).
    c = conn_established(nat_keepalive=25.0)
    assert c.next_deadline() == 25.0
    for k in range(1, 41):
        fire(c, 25.0 * k)
        expect(c, [PROBE])
    assert c.state is State.ESTABLISHED and events(c) == []


def test_nat_keepalive_waits_from_the_last_thing_heard():
    c = conn_established(nat_keepalive=25.0)
    send(c, seg(1, 1, payload=b"hi"), at=20.0)
    tick(c, 21.0)  # (its delayed ACK)
    c.take_segments()
    tick(c, 44.9)
    expect_nothing(c)
    fire(c, 45.0)
    expect(c, [out(0, 3)])  # (a probe, acknowledging what came)


def test_nat_keepalive_with_keepalive_probes_often_and_aborts_on_time():
    # NAT probes every 25 s; keepalive's own idle time (100 s) and count still
    # decide when an unanswering peer is given up: 100 + 3 x 10 s.
    c = conn_established(keepalive=True, keepalive_idle=100.0, keepalive_interval=10.0,
                         keepalive_count=3, nat_keepalive=25.0)
    for t in (25.0, 50.0, 75.0, 100.0, 110.0, 120.0):
        fire(c, t)
        expect(c, [PROBE])
    fire(c, 130.0)
    expect(c, [out(1, None, RST, 0)])
    assert events(c) == [TimedOut("keepalive")]


def test_nat_keepalive_must_be_a_positive_number_of_seconds():
    for bad in (0, -1, float("inf"), True, "25"):
        with pytest.raises(ValueError, match="nat_keepalive must be None or a finite number"):
            Options(nat_keepalive=bad)
