"""RFC 7323 timestamps: negotiation, RTT samples from TSecr, and PAWS.

Our timestamp clock is the time in milliseconds plus the connection's offset
(0 here, so a segment sent at t = 1.25 s carries TSval 1250). The peer's clock
starts at PEER_TS.
"""

from __future__ import annotations

import pytest
from tcpscript import (
    PEER_SYN_OPTIONS,
    SHIFT,
    SYN_WINDOW,
    expect,
    expect_nothing,
    fire,
    make,
    out,
    seg,
    send,
    syn_options,
    synack_options,
    ts,
    window,
)

from utcp.core.connection import PATH_GUESS_MEMORY, PATH_GUESSES, Connection
from utcp.core.events import DataReceived
from utcp.core.state import ConnectionStateError, State
from utcp.core.wire import ACK, FIN, MSS, NOP, PSH, RST, SYN, TIMESTAMPS, WSCALE, Segment

PEER_TS = 70_000
LOCAL_MSS = 1452


def peer_syn_options(tsval: int = PEER_TS, tsecr: int = 0) -> tuple:
    return ((MSS, 1452), (NOP, None), (NOP, None), (TIMESTAMPS, (tsval, tsecr)),
            (NOP, None), (WSCALE, 0))


def ts_established(**opts) -> Connection:
    """ESTABLISHED by an active open at t=0, SYN-ACK at 10 ms, both with timestamps."""
    c = make(**opts)
    c.connect(0.0)
    expect(c, [out(0, None, SYN, SYN_WINDOW, options=syn_options(0, **opts))])
    send(c, seg(0, 1, SYN | ACK, options=peer_syn_options(PEER_TS, 0)), at=0.01)
    expect(c, [out(1, 1, window=window(**opts), options=ts(10, PEER_TS))])
    assert c.state is State.ESTABLISHED
    c.take_events()
    return c


# -------------------------------------------------------------- negotiation


def test_syn_offers_timestamps_with_our_clock():
    c = make()
    c.connect(1.25)
    [syn] = c.take_segments()
    assert syn.option(TIMESTAMPS) == (1250, 0)  # TSecr is 0: nothing to echo yet


def test_clock_offset_and_wrap():
    c = Connection(49152, 7007, iss=1000, ts_offset=2**32 - 500)
    c.connect(1.0)
    [syn] = c.take_segments()
    assert syn.option(TIMESTAMPS) == (500, 0)  # 1000 ms past an offset 500 short of 2**32


def test_timestamps_off_offers_none():
    c = make(timestamps=False, sack=False)
    c.connect(0.0)
    expect(c, [out(0, None, SYN, SYN_WINDOW, options=((MSS, LOCAL_MSS), (WSCALE, SHIFT)))])


def test_syn_ack_with_timestamps_turns_them_on():
    c = ts_established()
    assert c.info()["timestamps"] is True
    # RFC 6691: 12 bytes of each segment go to the option, not to data.
    assert c.send_mss == LOCAL_MSS - 12
    c.send(b"x" * 5000, 0.5)
    sizes = [len(s.payload) for s in c.take_segments()]
    assert sizes == [1440, 1440, 1440, 680]


def test_syn_ack_without_timestamps_leaves_them_off():
    c = make()
    c.connect(0.0)
    c.take_segments()
    send(c, seg(0, 1, SYN | ACK, options=PEER_SYN_OPTIONS), at=0.01)
    expect(c, [out(1, 1)])  # no option at all
    assert c.info()["timestamps"] is False and c.send_mss == LOCAL_MSS


def test_syn_ack_timestamps_ignored_when_we_offered_none():
    # RFC 7323 3.2: an option in the SYN-ACK means nothing if our SYN had none.
    c = make(timestamps=False)
    c.connect(0.0)
    c.take_segments()
    send(c, seg(0, 1, SYN | ACK, options=peer_syn_options()), at=0.01)
    expect(c, [out(1, 1)])


def test_passive_open_echoes_the_syn_timestamp():
    c = make()
    c.listen()
    send(c, seg(0, None, SYN, options=peer_syn_options()), at=2.0)
    # (The peer's SYN offers no SACK: the SYN-ACK offers none either.)
    expect(c, [out(0, 1, SYN | ACK, SYN_WINDOW, options=syn_options(2000, PEER_TS, sack=False))])
    send(c, seg(1, 1, options=ts(PEER_TS + 5, 2000)), at=2.003)
    assert c.state is State.ESTABLISHED and c.info()["timestamps"] is True
    assert c.rtt.srtt == pytest.approx(0.003)


@pytest.mark.parametrize("peer_offers, ours", [(False, True), (True, False)])
def test_passive_open_without_both_uses_none(peer_offers, ours):
    c = make(timestamps=ours)
    c.listen()
    send(c, seg(0, None, SYN, options=peer_syn_options() if peer_offers else PEER_SYN_OPTIONS))
    expect(c, [out(0, 1, SYN | ACK, SYN_WINDOW, options=synack_options())])
    send(c, seg(1, 1, options=ts(PEER_TS, 0) if peer_offers else ()), at=0.01)
    c.send(b"hi", 0.02)
    expect(c, [out(1, 1, ACK | PSH, window(), b"hi")])


def test_every_segment_but_a_reset_carries_timestamps():
    c = ts_established(keepalive=True, keepalive_idle=10.0)
    c.send(b"data", 1.0)
    expect(c, [out(1, 1, ACK | PSH, payload=b"data", options=ts(1000, PEER_TS))])
    send(c, seg(1, 5, options=ts(PEER_TS + 100, 1000)), at=1.1)
    fire(c, 11.1)  # keepalive probe
    expect(c, [out(4, 1, options=ts(11100, PEER_TS + 100))])
    c.abort(12.0)
    expect(c, [Segment(49152, 7007, 1005, 0, RST)])


# ---------------------------------------------------------- RTT from TSecr


def test_every_ack_is_an_rtt_sample():
    # Karn's timing takes one sample per flight; the echo makes every ACK one.
    c = ts_established()
    c.send(b"a" * 2880, 1.0)
    c.take_segments()
    before = c.rtt.srtt
    send(c, seg(1, 1441, options=ts(PEER_TS + 1, 1000)), at=1.08)
    first = c.rtt.srtt
    send(c, seg(1, 2881, options=ts(PEER_TS + 2, 1000)), at=1.2)
    assert before != first != c.rtt.srtt
    # 7/8 of the last SRTT and 1/8 of the new sample (RFC 6298 2.3).
    assert c.rtt.srtt == pytest.approx(first * 7 / 8 + 0.2 / 8)


def test_retransmitted_syn_still_gives_an_rtt_sample():
    # Without timestamps a SYN-ACK after a retransmitted SYN gives no sample and
    # the data RTO starts at 3 s (RFC 6298 5.7); the echo tells which SYN it answers.
    c = make()
    c.connect(0.0)
    c.take_segments()
    fire(c, 1.0)
    [again] = c.take_segments()
    assert again.option(TIMESTAMPS) == (1000, 0)
    send(c, seg(0, 1, SYN | ACK, options=peer_syn_options(PEER_TS, 1000)), at=1.25)
    assert c.rtt.srtt == pytest.approx(0.25)
    c.take_segments()
    c.send(b"x", 2.0)
    c.take_segments()
    assert c.next_deadline() == pytest.approx(2.0 + 0.25 + 4 * 0.125)


@pytest.mark.parametrize("tsecr", [0, 5000], ids=["echoes-nothing", "from-the-future"])
def test_an_unusable_echo_falls_back_to_timing_one_segment(tsecr):
    # TSecr 0 echoes nothing, and one ahead of our clock is no echo of ours: the
    # sample is the one segment timed per flight, as without timestamps.
    c = ts_established()
    srtt = c.rtt.srtt
    c.send(b"a", 1.0)
    c.take_segments()
    send(c, seg(1, 2, options=ts(PEER_TS + 1, tsecr)), at=1.05)
    assert c.rtt.srtt == pytest.approx(srtt * 7 / 8 + 0.05 / 8)


# -------------------------------------------------------------------- PAWS


def test_paws_drops_an_old_duplicate_and_acks():
    c = ts_established()
    send(c, seg(1, 1, ACK | PSH, payload=b"new", options=ts(PEER_TS + 50, 10)), at=1.0)
    assert c.take_events() == [DataReceived(b"new")]
    c.take_segments()
    # Bytes in the window, but from an older pass through the sequence space.
    send(c, seg(4, 1, ACK | PSH, payload=b"old", options=ts(PEER_TS + 10, 10)), at=1.1)
    expect(c, [out(1, 4, options=ts(1100, PEER_TS + 50))])
    assert c.take_events() == []
    assert c.rcv_nxt == 5000 + 4 and c.counters.paws_rejected == 1


def test_paws_answers_are_rate_limited():
    c = ts_established()
    send(c, seg(1, 1, options=ts(PEER_TS + 50, 10)), at=1.0)
    for k in range(5):
        send(c, seg(1, 1, ACK | PSH, payload=b"x", options=ts(PEER_TS, 10)), at=1.1 + k * 0.01)
    assert len(c.take_segments()) == 1
    assert c.counters.paws_rejected == 5


def test_paws_does_not_judge_a_reset():
    # RFC 7323 5.2: a RST is acceptable by its sequence number alone.
    c = ts_established()
    send(c, seg(1, 1, options=ts(PEER_TS + 50, 10)), at=1.0)
    send(c, seg(1, None, RST, options=ts(PEER_TS, 0)), at=1.1)
    assert c.state is State.CLOSED


def test_paws_rests_after_24_days_of_silence():
    c = ts_established()
    day = 86400.0
    send(c, seg(1, 1, ACK | PSH, payload=b"late", options=ts(PEER_TS - 1, 10)), at=25 * day)
    assert c.take_events() == [DataReceived(b"late")]


def test_timestamps_wrap_like_sequence_numbers():
    c = make()
    c.connect(0.0)
    c.take_segments()
    top = 2**32 - 2
    send(c, seg(0, 1, SYN | ACK, options=peer_syn_options(top, 0)), at=0.01)
    c.take_segments()
    c.take_events()
    send(c, seg(1, 1, ACK | PSH, payload=b"past", options=ts(3, 10)), at=0.02)  # wrapped
    assert c.take_events() == [DataReceived(b"past")]
    c.take_segments()
    c.send(b"x", 0.1)
    assert c.take_segments()[0].option(TIMESTAMPS) == (100, 3)


def test_echo_is_the_earliest_unacknowledged_segment():
    # RFC 7323 4.3: out of order, TS.Recent stays with the segment that filled
    # RCV.NXT last, so the echo measures the whole delay, not the latest segment's.
    c = ts_established()
    send(c, seg(1441, 1, ACK | PSH, payload=b"b" * 100, options=ts(PEER_TS + 20, 10)), at=1.0)
    expect(c, [out(1, 1, options=ts(1000, PEER_TS))])  # dup ACK, echo unchanged
    send(c, seg(1, 1, ACK | PSH, payload=b"a" * 1440, options=ts(PEER_TS + 30, 10)), at=1.1)
    expect(c, [out(1, 1541, options=ts(1100, PEER_TS + 30))])


def test_syn_with_an_old_timestamp_draws_a_challenge_ack():
    c = ts_established()
    send(c, seg(1, 1, options=ts(PEER_TS + 50, 10)), at=1.0)
    send(c, seg(0, None, SYN, options=peer_syn_options(PEER_TS)), at=1.1)
    expect(c, [out(1, 1, options=ts(1100, PEER_TS + 50))])
    assert c.counters.challenge_acks == 1 and c.state is State.ESTABLISHED


def test_fin_in_time_wait_is_reacked_with_timestamps():
    c = ts_established()
    c.shutdown(1.0)
    expect(c, [out(1, 1, FIN | ACK, options=ts(1000, PEER_TS))])
    send(c, seg(1, 2, FIN | ACK, options=ts(PEER_TS + 40, 1000)), at=1.04)
    expect(c, [out(2, 2, options=ts(1040, PEER_TS + 40))])
    assert c.state is State.TIME_WAIT
    # A retransmitted FIN is no acceptable segment: its timestamp is not taken
    # (RFC 7323 R3), and the echo stays that of the FIN that ended the connection.
    send(c, seg(1, 2, FIN | ACK, options=ts(PEER_TS + 300, 1000)), at=1.3)
    expect(c, [out(2, 2, options=ts(1300, PEER_TS + 40))])
    assert c.next_deadline() == pytest.approx(1.3 + 60)
    send(c, seg(1, 2, FIN | ACK, options=ts(PEER_TS + 39, 1000)), at=1.9)  # older
    expect(c, [out(2, 2, options=ts(1900, PEER_TS + 40))])  # answered all the same
    assert c.counters.paws_rejected == 1
    expect_nothing(c)


def test_an_echo_from_before_a_timeout_is_no_rtt_sample():
    # The original arrived and its ACK was lost; after the RTO the peer answers
    # the retransmission echoing the original's timestamp (TS.Recent is not taken
    # from a duplicate). That "RTT" is the RTO plus a lost ACK: taken, it would
    # push the RTO to its maximum and keep it there, timeout after timeout.
    c = ts_established()
    srtt, rto = c.rtt.srtt, c.rtt.rto
    c.send(b"a" * 100, 1.0)  # TSval 1000 + 1000 ms
    c.take_segments()
    fire(c, c.next_deadline())
    [again] = c.take_segments()
    assert again.seq == c.iss + 1
    send(c, seg(1, 101, options=ts(PEER_TS + 1, 1000)), at=1.0 + rto + 0.05)
    assert c.rtt.srtt == srtt  # no sample from the stale echo
    # The next echo of a segment sent after the timeout is a sample again.
    c.send(b"b" * 100, 2.0)
    c.take_segments()
    send(c, seg(1, 201, options=ts(PEER_TS + 2, 2000)), at=2.1)
    assert c.rtt.srtt == pytest.approx(srtt * 7 / 8 + 0.1 / 8)
    assert c.rtt.rto < 1.0


def test_a_syn_ack_echoing_an_earlier_syn_than_the_last_gives_no_rtt_sample():
    # SYNs at 0, 1 and 3 s; the SYN-ACK that arrives echoes the one of 1 s: it may be
    # the peer's own retransmission, answering a copy whose answer was lost, and
    # 2 s would be no RTT at all. The data RTO starts from 3 s instead (RFC 6298 5.7).
    c = make()
    c.connect(0.0)
    c.take_segments()
    fire(c, 1.0)
    fire(c, 3.0)
    c.take_segments()
    send(c, seg(0, 1, SYN | ACK, options=peer_syn_options(PEER_TS, 1000)), at=3.01)
    assert c.state is State.ESTABLISHED and c.rtt.srtt is None
    assert c.rtt.rto == pytest.approx(3.0)


# ------------------------------------------------- a new address, proven (moved())

JUMP = 1 << 21


def moved_with_data_in_flight(acked: int = 0) -> Connection:
    """ESTABLISHED with timestamps, 3000 bytes sent at 20 ms (TSval 20); then at
    100 ms the peer shows up at a new address with an ACK of ``acked`` of them."""
    c = ts_established()
    c.send(b"a" * 3000, 0.02)
    assert [len(s.payload) for s in c.take_segments()] == [1440, 1440, 120]
    c.moved(0.1, JUMP)
    send(c, seg(1, 1 + acked, options=ts(PEER_TS + 1, 20)), at=0.1)
    return c


@pytest.mark.parametrize("acked", [0, 1440])
def test_a_move_jumps_our_timestamps_and_probes_with_one_byte_in_flight(acked):
    c = moved_with_data_in_flight(acked)
    # The first byte in flight once the segment that moved us is taken, with a
    # TSval no one could have guessed: a segment the peer accepts (one it has
    # would draw an echo of an older TSval), so that it takes the TSval and
    # echoes it.
    expect(c, [out(1 + acked, 1, payload=b"a", window=window(),
                   options=ts(100 + JUMP, PEER_TS + 1))])
    assert c.unproven
    # Until then no data: an ACK of part of it lets nothing new go.
    send(c, seg(1, 1 + acked + 100, options=ts(PEER_TS + 1, 20)), at=0.11)
    expect_nothing(c)
    assert c.unproven


def test_an_echo_older_than_the_move_proves_nothing_and_the_timeout_probes_again():
    c = moved_with_data_in_flight()
    c.take_segments()
    send(c, seg(1, 1, options=ts(PEER_TS + 1, 20 + 90)), at=0.11)  # a guess: before the jump
    assert c.unproven
    fire(c, c.next_deadline())
    [probe] = c.take_segments()
    assert len(probe.payload) == 1 and probe.seq == c.snd_una
    assert probe.option(TIMESTAMPS)[0] > JUMP


def test_the_echo_of_the_probe_proves_the_address_and_what_was_in_flight_goes_again():
    c = moved_with_data_in_flight()
    [probe] = c.take_segments()
    # The peer had nothing of it (it went to the old address): it takes the byte
    # and ACKs it, echoing the probe's TSval.
    send(c, seg(1, 2, options=ts(PEER_TS + 1, probe.option(TIMESTAMPS)[0])), at=0.13)
    assert not c.unproven
    # From a collapsed window (a new path), as after a timeout.
    resent = c.take_segments()
    assert [(s.seq, len(s.payload)) for s in resent] == [(c.snd_una, 1440)]
    # Its RTT: the 30 ms since the probe; an echo from before the jump, late,
    # counts the 110 ms since TSval 20 was sent, not the jump's 35 minutes.
    assert c.rtt.srtt is not None and c.rtt.srtt < 0.05
    assert c._ts_rtt(20, 0.13) == pytest.approx(0.11)


def test_moved_needs_timestamps_and_a_jump_no_one_could_guess():
    c = ts_established()
    with pytest.raises(ValueError, match="jump"):
        c.moved(0.1, 1000)
    plain = make(timestamps=False)
    plain.connect(0.0)
    send(plain, seg(0, 1, SYN | ACK, options=PEER_SYN_OPTIONS), at=0.01)
    assert plain.state is State.ESTABLISHED
    with pytest.raises(ConnectionStateError, match="timestamps"):
        plain.moved(0.1, JUMP)


def test_each_move_draws_a_new_secret_and_an_old_one_proves_nothing():
    # What a probe told one address proves no other: the peer itself, moved to a
    # victim's address and back to its own, learns the second secret, not one
    # that would prove the victim's.
    c = moved_with_data_in_flight()
    [probe] = c.take_segments()
    c.moved(0.2, JUMP * 2)
    send(c, seg(1, 1, options=ts(PEER_TS + 2, 20)), at=0.2)
    [again] = c.take_segments()
    assert again.seq == probe.seq and again.option(TIMESTAMPS)[0] == 200 + 3 * JUMP
    send(c, seg(1, 1, options=ts(PEER_TS + 3, probe.option(TIMESTAMPS)[0])), at=0.21)
    assert c.unproven
    send(c, seg(1, 2, options=ts(PEER_TS + 4, 200 + 3 * JUMP)), at=0.23)
    assert not c.unproven
    # An echo from before both jumps, late, is aged from when it was sent.
    assert c._ts_rtt(20, 0.25) == pytest.approx(0.23)


def test_seven_guesses_leave_the_proof_and_a_move_does_not_refill_the_count():
    c = moved_with_data_in_flight()
    [probe] = c.take_segments()
    secret = probe.option(TIMESTAMPS)[0]
    for i in range(PATH_GUESSES - 1):
        send(c, seg(1, 1, options=ts(PEER_TS + 1, secret + 1 + i)), at=0.11)
    send(c, seg(1, 2, options=ts(PEER_TS + 2, secret)), at=0.12)
    assert not c.unproven
    c.take_segments()  # (what was in flight, resent)
    # Moved again: one more guess uses the count up, the move did not reset it.
    c.moved(0.2, JUMP)
    send(c, seg(1, 2, options=ts(PEER_TS + 3, secret)), at=0.2)
    [probe] = c.take_segments()
    secret = probe.option(TIMESTAMPS)[0]
    send(c, seg(1, 2, options=ts(PEER_TS + 4, secret + 1)), at=0.21)
    send(c, seg(1, 3, options=ts(PEER_TS + 5, secret)), at=0.22)
    assert c.unproven
    # Ten minutes on, the count starts again.
    send(c, seg(1, 3, options=ts(PEER_TS + 6, secret)), at=0.22 + PATH_GUESS_MEMORY + 1)
    assert not c.unproven


def test_what_goes_to_an_unproven_address_repeats_the_probes_tsval():
    # So that the echo that proves it is of one of a few values, however many
    # ticks the ACKs sent meanwhile span (a paced upload's, say).
    c = moved_with_data_in_flight()
    [probe] = c.take_segments()
    for i in range(30):
        send(c, seg(1 + 100 * i, 1, payload=b"u" * 100, options=ts(PEER_TS + 1 + i, 20)),
             at=0.101 + i * 0.001)
    acks = c.take_segments()
    assert acks and {s.option(TIMESTAMPS)[0] for s in acks} == {probe.option(TIMESTAMPS)[0]}
    send(c, seg(3001, 2, options=ts(PEER_TS + 40, probe.option(TIMESTAMPS)[0])), at=0.14)
    assert not c.unproven


def test_no_fast_retransmit_toward_an_unproven_address():
    c = moved_with_data_in_flight()
    c.take_segments()
    for i in range(4):  # duplicate ACKs, as a peer's own would be, or a forger's
        send(c, seg(1, 1, options=ts(PEER_TS + 2 + i, 20)), at=0.11 + 0.001 * i)
    assert not [s for s in c.take_segments() if len(s.payload) > 1]
    assert c.counters.recoveries == 0


def test_a_shut_window_is_probed_with_a_bare_segment_and_one_below_it():
    # The peer shut its window on our data, then moved: the probe cannot be a
    # byte it would take. A bare segment at SND.UNA sets its TS.Recent, and one
    # at SND.UNA - 1, which it does not take, draws at once an ACK that echoes
    # it: proven in a round trip, with the window still shut.
    c = ts_established()
    c.send(b"a" * 3000, 0.02)
    c.take_segments()
    send(c, seg(1, 1441, window=0, options=ts(PEER_TS + 1, 20)), at=0.05)
    c.take_segments()
    c.moved(0.1, JUMP)
    send(c, seg(1, 1441, window=0, options=ts(PEER_TS + 2, 20)), at=0.1)
    c.take_segments()
    at = c.next_deadline()
    assert at is not None
    fire(c, at)
    bare, below = c.take_segments()
    assert not bare.payload and bare.seq == c.snd_una
    assert not below.payload and below.seq == (c.snd_una - 1) & 0xFFFFFFFF
    assert bare.option(TIMESTAMPS)[0] == below.option(TIMESTAMPS)[0]
    send(c, seg(1, 1441, window=0, options=ts(PEER_TS + 3, bare.option(TIMESTAMPS)[0])),
         at=at + 0.02)
    assert not c.unproven and c.state is State.ESTABLISHED
    send(c, seg(1, 1441, window=8192, options=ts(PEER_TS + 4, bare.option(TIMESTAMPS)[0])),
         at=at + 0.5)
    assert b"".join(s.payload for s in c.take_segments()) == b"a" * 1440  # (window: 1)


def test_a_byte_sent_long_after_the_move_is_timed_from_when_it_went():
    # Nothing in flight when the peer moved; our ACK to it went unanswered. A
    # write 100 s later sends its one byte with a TSval of its own: the echo that
    # proves the address times that byte, not the 100 s.
    c = ts_established()
    c.moved(0.1, JUMP)
    send(c, seg(1, 1, payload=b"hi", options=ts(PEER_TS + 1, 10)), at=0.1)
    fire(c, c.next_deadline())  # (the delayed ACK)
    [ack] = c.take_segments()
    c.send(b"reply", 100.1)
    [byte] = c.take_segments()
    assert byte.payload == b"r" and byte.option(TIMESTAMPS)[0] != ack.option(TIMESTAMPS)[0]
    send(c, seg(3, 2, options=ts(PEER_TS + 2, byte.option(TIMESTAMPS)[0])), at=100.12)
    assert not c.unproven
    assert c.rtt.srtt is not None and c.rtt.srtt < 0.05


def test_guesses_at_the_secret_use_up_the_proof():
    c = moved_with_data_in_flight()
    [probe] = c.take_segments()
    secret = probe.option(TIMESTAMPS)[0]
    # Out of the windows, guesses count for nothing; in them, each is one of
    # PATH_GUESSES, after which not even the right echo proves the address.
    send(c, seg(1, 10**6, options=ts(PEER_TS + 1, secret + 1)), at=0.11)
    for i in range(PATH_GUESSES):
        send(c, seg(1, 1, options=ts(PEER_TS + 1, secret + 1 + i)), at=0.11)
        assert c.unproven
    send(c, seg(1, 2, options=ts(PEER_TS + 2, secret)), at=0.12)
    assert c.unproven
