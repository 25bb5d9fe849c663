"""BBR on a fake clock. The controller is driven directly where a state
transition is the point (each call one ACK, its rate sample written out), and
two connections cross a seeded bottleneck on virtual time where the whole loop
is: rate samples from the records of what is in flight, pacing, recovery."""

from __future__ import annotations

import pytest
from pairsim import Pair
from tcpscript import conn_established

from utcp.core.config import Options
from utcp.core.congestion import Bbr, make_controller
from utcp.core.congestion.bbr import (
    DRAIN,
    DRAIN_GAIN,
    HIGH_GAIN,
    PACING_GAINS,
    PROBE_BW,
    PROBE_RTT,
    STARTUP,
    WindowedMax,
)
from utcp.core.rtt import RttEstimator
from utcp.emulator import Impairments

MSS = 1000
RTT = 0.1
BW = 1_000_000  # bytes a second: a BDP of 100 segments at RTT


class Driver:
    """Feeds a :class:`Bbr` the rate samples of ACKs, as a connection would."""

    def __init__(self, iss: int = 0) -> None:
        rtt = RttEstimator(1.0, 0.2, 120.0)
        rtt.sample(RTT)
        self.cc = Bbr(MSS, 10, iss, rtt)
        self.now = 0.0
        self.round_began = 0  # the delivered count when this round's data was sent

    def ack(self, *, bw: float = BW, acked: int = 10 * MSS, in_flight: int | None = None,
            rtt: float = RTT, new_round: bool = False, losses: int = 0, dt: float = 0.01,
            app_limited: bool = False) -> None:
        """One ACK, ``dt`` after the last, delivering ``acked`` bytes with a sample of
        ``bw``; ``new_round``: it acknowledges data sent after the last round ended."""
        cc = self.cc
        rate = cc.rate
        self.now += dt
        rate.delivered += acked
        rate.delivered_at = self.now
        rate.lost += losses
        rs = rate.sample
        rs.acked_sacked = acked
        rs.losses = losses
        rs.interval = RTT
        rs.delivered = int(bw * RTT)
        if new_round:
            self.round_began = rate.delivered
        rs.prior_delivered = self.round_began if new_round else self.round_began - 1
        rs.app_limited = app_limited
        rs.rtt = rtt
        flight = cc.cwnd if in_flight is None else in_flight
        rs.prior_in_flight = rs.in_flight = flight
        rs.next_send = self.now
        cc.on_rate_sample(0, self.now)

    def rounds(self, n: int, **kw) -> None:
        for _ in range(n):
            self.ack(new_round=True, dt=RTT, **kw)


def bdp_segments(bw: float = BW) -> int:
    return int(bw * RTT / MSS)


def test_startup_paces_at_high_gain_and_grows_the_window_by_what_is_acked():
    d = Driver()
    assert d.cc.mode is STARTUP and d.cc.pacing_gain == HIGH_GAIN
    before = d.cc.cwnd
    d.ack(bw=BW / 4, new_round=True)
    assert d.cc.cwnd == before + 10 * MSS
    assert d.cc.pacing_rate(RTT, 0) == pytest.approx(BW / 4 * HIGH_GAIN * 0.99)


def test_startup_ends_after_three_rounds_without_a_quarter_more_bandwidth():
    d = Driver()
    for bw in (BW / 8, BW / 4, BW / 2, BW):  # doubling every round
        d.ack(bw=bw, new_round=True, dt=RTT)
        assert d.cc.mode is STARTUP
    # Then 20 % more (not 25 %), and flat: the pipe is full after three such rounds.
    d.ack(bw=BW * 1.2, new_round=True, dt=RTT, in_flight=10 * MSS)
    d.ack(bw=BW * 1.2, new_round=True, dt=RTT, in_flight=10 * MSS)
    assert d.cc.mode is STARTUP and not d.cc.full_bw_reached
    # ACKs within a round do not count as rounds.
    for _ in range(5):
        d.ack(bw=BW * 1.2, in_flight=300 * MSS)
    assert d.cc.mode is STARTUP
    d.ack(bw=BW * 1.2, new_round=True, dt=RTT, in_flight=300 * MSS)
    assert d.cc.full_bw_reached and d.cc.mode is DRAIN
    assert d.cc.bw == pytest.approx(BW * 1.2)


def test_application_limited_rounds_do_not_end_startup():
    d = Driver()
    d.rounds(1, bw=BW)
    d.rounds(5, bw=BW / 2, app_limited=True)
    assert d.cc.mode is STARTUP and not d.cc.full_bw_reached


def test_drain_paces_below_the_bandwidth_until_the_flight_is_down_to_one_bdp():
    d = Driver()
    d.rounds(4, bw=BW, in_flight=250 * MSS)
    assert d.cc.mode is DRAIN and d.cc.pacing_gain == DRAIN_GAIN
    assert d.cc.pacing_rate(RTT, 0) == pytest.approx(BW * DRAIN_GAIN * 0.99)
    bdp = bdp_segments()
    for flight in (250, 200, 150, bdp + 20):
        d.ack(in_flight=flight * MSS)
        assert d.cc.mode is DRAIN
    # One BDP, and the budget for sends on their way (3 of 2 segments, even).
    d.ack(in_flight=(bdp + 6) * MSS)
    assert d.cc.mode is PROBE_BW


def probe_bw(iss: int = 0) -> Driver:
    d = Driver(iss)
    d.rounds(4, bw=BW, in_flight=250 * MSS)
    d.ack(in_flight=50 * MSS)
    assert d.cc.mode is PROBE_BW
    return d


def test_probe_bw_cycles_its_pacing_gain_a_min_rtt_per_phase():
    # An ACK every 30 ms (min RTT 100 ms). Probing (1.25) ends once a min RTT has
    # passed and the flight has reached 1.25 BDP; draining (0.75) at once if the
    # flight is down to one BDP; cruising (1.0), after a min RTT.
    d = probe_bw()
    bdp = bdp_segments()
    phases: list[list] = []  # [cycle index, pacing gain, ACKs in the phase]
    for _ in range(100):
        flight = int(1.4 * bdp) if d.cc.pacing_gain > 1 else bdp
        d.ack(in_flight=flight * MSS, dt=0.03)
        if not phases or phases[-1][0] != d.cc.cycle_index:
            phases.append([d.cc.cycle_index, d.cc.pacing_gain, 0])
        phases[-1][2] += 1
    assert all(gain == PACING_GAINS[i] for i, gain, _ in phases)
    assert all((b[0] - a[0]) % 8 == 1 for a, b in zip(phases, phases[1:], strict=False))
    whole = phases[1:-1]
    assert {i for i, _, _ in whole} == set(range(8))  # every phase, in turn
    assert all(n == 1 for i, _, n in whole if i == 1)  # the drain: one ACK, done
    assert all(n == 4 for i, _, n in whole if i != 1)  # the others: a min RTT
    assert PACING_GAINS == (1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)


def test_probe_bw_starts_in_a_phase_drawn_from_the_iss_but_never_the_drain():
    starts = {probe_bw(iss).cc.cycle_index for iss in range(0, 4000, 97)}
    assert 1 not in starts and len(starts) >= 5


def test_probe_rtt_after_ten_seconds_without_a_lower_rtt_holds_four_segments_200_ms():
    d = probe_bw()
    full = d.cc.cwnd
    last_min = d.now  # the last sample at the least RTT
    # Samples a little above the least RTT: none renews it, for 10 s.
    while d.cc.mode is not PROBE_RTT and d.now < 20:
        d.ack(rtt=RTT * 1.1, in_flight=bdp_segments() * MSS, dt=RTT / 2)
    assert d.cc.mode is PROBE_RTT
    assert 10.0 < d.now - last_min <= 10.0 + RTT / 2
    assert d.cc.cwnd == 4 * MSS and d.cc.pacing_gain == 1.0
    # The flight drains to four segments; from then on it stays there for 200 ms
    # and a round trip, then BBR goes back to PROBE_BW with the window it had.
    d.ack(in_flight=4 * MSS, rtt=RTT, acked=MSS)
    began = d.now
    while d.cc.mode is PROBE_RTT and d.now - began < 1:
        assert d.cc.cwnd == 4 * MSS
        d.ack(in_flight=4 * MSS, acked=MSS, dt=0.02, new_round=d.now - began > 0.1)
    assert d.cc.mode is PROBE_BW
    assert 0.2 < d.now - began <= 0.22
    assert d.cc.cwnd >= full
    assert d.cc.min_rtt == pytest.approx(RTT)


def test_random_loss_does_not_cut_the_rate_or_the_window():
    d = probe_bw()
    rate, cwnd = d.cc.pacing_rate(RTT, 0), d.cc.cwnd
    for i in range(200):
        d.ack(in_flight=bdp_segments() * MSS, losses=MSS if i % 50 == 0 else 0,
              new_round=i % 10 == 0)
    assert d.cc.bw == pytest.approx(BW)
    assert d.cc.pacing_rate(RTT, 0) >= rate * 0.75  # (the cycle's own dip at most)
    assert d.cc.cwnd >= cwnd - 2 * MSS


def test_windowed_max_forgets_a_maximum_older_than_its_window():
    m = WindowedMax()
    m.update(10, 0, 100.0)
    for t in range(1, 11):
        assert m.update(10, t, 40.0) == 100.0  # within 10 rounds of it
    assert m.update(10, 11, 40.0) == 40.0
    assert m.update(10, 12, 50.0) == 50.0


def test_a_connection_chooses_bbr_and_paces_by_default():
    c = conn_established(congestion_control="bbr")
    assert isinstance(c.cc, Bbr) and c.pacing_rate is not None
    assert isinstance(make_controller("bbr", MSS, 10, 0, RttEstimator(1.0, 0.2, 120.0)), Bbr)
    assert conn_established(congestion_control="bbr", pacing=False).pacing_rate is None


# ------------------------------------------------ through a bottleneck


class Bottleneck(Pair):
    """A client and a server connection across a seeded ImpairedPath each way, on
    virtual time; the client uploads ``size`` bytes, and the client's BBR modes
    are noted as they change."""

    def __init__(self, impairments: Impairments, seed: int, size: int, **opts) -> None:
        options = Options(**opts)
        super().__init__(client_opts=options, server_opts=options, seed=seed,
                         impairments=impairments)
        self.size = size
        self.modes: list[tuple[float, object]] = []
        self.client.connect(0.0)

    def pump(self) -> None:
        super().pump()
        mode = getattr(self.client.cc, "mode", None)
        if mode is not None and (not self.modes or self.modes[-1][1] is not mode):
            self.modes.append((self.now, mode))

    def upload(self) -> float:
        """Seconds until the server has all the data."""
        super().run(stop=lambda: self.client.state.synchronized)
        self.client.send(bytes(self.size), self.now)
        super().run(stop=lambda: len(self.received[self.server]) >= self.size)
        assert len(self.received[self.server]) >= self.size, "stuck"
        return self.now


LOSSY = Impairments(delay=0.02, rate=10e6, queue=50, loss=0.01)


def test_through_one_percent_random_loss_bbr_keeps_its_rate():
    # 10 Mbit/s, RTT 40 ms, 1 % of packets lost each way. BBR's bandwidth estimate
    # stays at the bottleneck's rate through the losses, and so does its goodput;
    # CUBIC, which takes each loss for congestion, gets a fraction of it.
    size = 1_500_000
    bbr = Bottleneck(LOSSY, 3, size, congestion_control="bbr")
    took = bbr.upload()
    assert bbr.paths[bbr.client].counters["lost"] >= 5  # it was lossy
    assert [m for _, m in bbr.modes[:3]] == [STARTUP, DRAIN, PROBE_BW]
    assert bbr.client.cc.bw * 8 >= 0.95 * 10e6 * 1452 / 1480  # of the link, less headers
    assert size * 8 / took >= 7.5e6
    cubic = Bottleneck(LOSSY, 3, size, congestion_control="cubic")
    assert size * 8 / cubic.upload() < 6e6
