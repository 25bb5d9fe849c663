"""Congestion control on a fake clock: CUBIC's curve (RFC 9438), HyStart++ (RFC
9406), and the choice between controllers. The controller is driven directly:
each round trip acknowledges a window's worth of segments."""

from __future__ import annotations

import pytest
from tcpscript import conn_established

from utcp.core.config import Options
from utcp.core.congestion import Cubic, NewReno, make_controller
from utcp.core.rtt import RttEstimator

MSS = 1000
ISS = 0


def cubic() -> Cubic:
    return Cubic(MSS, 10, ISS, RttEstimator(1.0, 0.2, 120.0))


def round_trip(cc: Cubic, now: float, rtt: float, snd: list[int]) -> None:
    """One RTT: the window sent at ``now`` is acknowledged a segment at a time, each
    ACK sending more (so SND.MAX is one window past it), each an RTT sample."""
    start = snd[0]
    n = cc.cwnd // MSS
    for i in range(n):
        cc.rtt.sample(rtt)
        ack = start + (i + 1) * MSS
        cc.on_ack(MSS, now + rtt * (i + 1) / n, ack, ack + cc.cwnd)
    snd[0] = start + n * MSS


def after_a_loss_at(cc: Cubic, w_max_segments: int, now: float = 0.0) -> None:
    cc.cwnd = w_max_segments * MSS
    cc.ssthresh = 1 << 30
    cc.enter_recovery(cc.cwnd, 0, now)
    cc.exit_recovery(cc.ssthresh, now)


def test_a_loss_takes_thirty_percent_off_not_half():
    c, r = cubic(), NewReno(MSS, 10, ISS)
    for cc in (c, r):
        cc.cwnd = 100 * MSS
        cc.enter_recovery(100 * MSS, 0)
    assert c.ssthresh == 70 * MSS and r.ssthresh == 50 * MSS


def test_the_window_grows_back_along_a_cubic_curve_with_a_plateau_at_w_max():
    cc = cubic()
    rtt = 0.1
    after_a_loss_at(cc, 100)
    assert cc.cwnd == 70 * MSS
    k = (100 * MSS * 0.3 / MSS / 0.4) ** (1 / 3)  # RFC 9438 eq. 2: 4.22 s
    now, snd, trace = 0.0, [0], []
    while now < 2 * k:
        round_trip(cc, now, rtt, snd)
        now += rtt
        trace.append((now, cc.cwnd / MSS))
    at = {round(t, 1): w for t, w in trace}
    # Concave up to W_max: fast at first, slow near it; a plateau around K...
    early = at[1.0] - at[0.5]
    late = at[round(k - 0.5, 1)] - at[round(k - 1.0, 1)]
    assert early > 2 * late > 0
    assert at[round(k, 1)] == pytest.approx(100, rel=0.05)
    # ...then convex past it: probing for more, faster and faster.
    assert at[round(k + 1.5, 1)] - at[round(k + 1.0, 1)] > \
        at[round(k + 0.5, 1)] - at[round(k, 1)] > 0
    assert trace[-1][1] > 110


def test_never_slower_than_reno_on_a_short_path():
    # At 1 ms RTT the cubic curve barely moves in a few hundred round trips; the
    # Reno-friendly estimate grows alpha = 0.53 segments per RTT (RFC 9438 4.3).
    cc = cubic()
    after_a_loss_at(cc, 100)
    now, snd = 0.0, [0]
    for _ in range(100):
        round_trip(cc, now, 0.001, snd)
        now += 0.001
    assert cc.cwnd / MSS >= 70 + 100 * 0.5


def test_fast_convergence_aims_lower_after_a_loss_below_the_last_w_max():
    cc = cubic()
    after_a_loss_at(cc, 100)
    assert cc._w_max == 100 * MSS
    cc.cwnd = 80 * MSS
    cc.enter_recovery(80 * MSS, 0, 1.0)  # a second loss, short of the first W_max
    assert cc._w_max == pytest.approx(80 * MSS * (1 + 0.7) / 2)


def test_hystart_turns_slow_start_conservative_when_the_rtt_rises_and_then_ends_it():
    cc = cubic()
    now, snd = 0.0, [0]
    for _ in range(3):  # rounds at a steady 100 ms: plain slow start, doubling
        before = cc.cwnd
        round_trip(cc, now, 0.1, snd)
        now += 0.1
        assert cc.cwnd == 2 * before
    round_trip(cc, now, 0.12, snd)  # 20 ms more (the threshold is 12.5 ms): a queue
    now += 0.12
    assert cc.in_css
    grown = []
    for _ in range(7):
        before = cc.cwnd
        round_trip(cc, now, 0.12, snd)
        now += 0.12
        grown.append(round(cc.cwnd / before, 2))
    # A quarter of slow start's growth per round, for five rounds in all (the one
    # it began in counts); then slow start ends, at the window it reached.
    assert grown[:4] == [1.25] * 4
    assert all(g < 1.02 for g in grown[4:])  # congestion avoidance
    assert not cc.in_css and cc.ssthresh < 1 << 30


def test_hystart_resumes_slow_start_after_a_false_alarm():
    cc = cubic()
    now, snd = 0.0, [0]
    for rtt in (0.1, 0.1, 0.1, 0.12):
        round_trip(cc, now, rtt, snd)
        now += rtt
    assert cc.in_css
    round_trip(cc, now, 0.09, snd)  # the RTT falls back below where CSS began
    now += 0.09
    assert not cc.in_css
    before = cc.cwnd
    round_trip(cc, now, 0.09, snd)
    assert cc.cwnd == 2 * before


def test_connections_use_cubic_by_default_and_newreno_on_request():
    assert isinstance(conn_established().cc, Cubic)
    assert type(conn_established(congestion_control="newreno").cc) is NewReno


def test_an_unknown_congestion_control_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="congestion_control must be one of cubic, newreno"):
        Options(congestion_control="bbr9")
    with pytest.raises(ValueError, match="unknown congestion control"):
        make_controller("vegas", MSS, 10, ISS, RttEstimator(1.0, 0.2, 120.0))
