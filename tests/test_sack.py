"""Selective acknowledgments (RFC 2018, RFC 2883, RFC 6675): negotiation, the
blocks a receiver reports, and a sender's recovery from several losses in one
window. Sans-I/O, on a fake clock; the scoreboard alone at the end."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from tcpscript import LOCAL_ISS, LOCAL_MSS, REMOTE_ISS, fire, make, seg, send

import utcp
from utcp.core.recovery import UNDO_MAX_RESENT, _dsacked, note_resent
from utcp.core.sack import Scoreboard
from utcp.core.seq import MASK
from utcp.core.state import State
from utcp.core.wire import ACK, MSS, NOP, SACK, SACK_PERMITTED, SYN, TIMESTAMPS, WSCALE
from utcp.emulator import Impairments, VirtualNetwork

PEER_SACK_SYN = ((MSS, LOCAL_MSS), (NOP, None), (NOP, None), (SACK_PERMITTED, None),
                 (NOP, None), (WSCALE, 0))
M = LOCAL_MSS


def data(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


def sack_established(**opts):
    """ESTABLISHED by an active open, both SYNs offering SACK (no timestamps)."""
    opts.setdefault("timestamps", False)
    c = make(**opts)
    c.connect(0.0)
    [syn] = c.take_segments()
    assert (SACK_PERMITTED, None) in syn.options
    send(c, seg(0, 1, SYN | ACK, options=PEER_SACK_SYN), at=0.01)
    c.take_segments()
    assert c.state is State.ESTABLISHED
    return c


def sack(*blocks: tuple[int, int]) -> tuple:
    """A SACK option with blocks given relative to our ISS + 1, in MSS units."""
    return ((NOP, None), (NOP, None),
            (SACK, tuple(((LOCAL_ISS + 1 + a * M) & MASK, (LOCAL_ISS + 1 + b * M) & MASK)
                         for a, b in blocks)))


def sacks_of(segment) -> tuple:
    """The SACK blocks of one of our segments, relative to the peer's ISS + 1."""
    blocks = segment.option(SACK) or ()
    return tuple(((a - REMOTE_ISS - 1) & MASK, (b - REMOTE_ISS - 1) & MASK) for a, b in blocks)


# ------------------------------------------------------------- negotiation


def test_syn_offers_sack_in_linuxs_layout():
    c = make()
    c.connect(0.0)
    [syn] = c.take_segments()
    assert [k for k, _ in syn.options] == [MSS, SACK_PERMITTED, TIMESTAMPS, NOP, WSCALE]


def test_sack_is_used_only_when_both_syns_offer_it():
    c = make(timestamps=False)
    c.connect(0.0)
    c.take_segments()
    send(c, seg(0, 1, SYN | ACK, options=((MSS, 1452), (WSCALE, 0))), at=0.01)
    c.take_segments()
    assert not c.info()["sack"]
    assert sack_established().info()["sack"]


def test_a_listener_answers_sack_permitted_only_to_a_syn_that_offered_it():
    for offered in (True, False):
        c = make(timestamps=False)
        c.listen()
        send(c, seg(0, None, SYN, options=PEER_SACK_SYN if offered else ((MSS, 1452),)))
        [synack] = c.take_segments()
        assert ((SACK_PERMITTED, None) in synack.options) is offered


def test_sack_false_offers_none_and_takes_none():
    c = make(timestamps=False, sack=False)
    c.connect(0.0)
    [syn] = c.take_segments()
    assert (SACK_PERMITTED, None) not in syn.options
    send(c, seg(0, 1, SYN | ACK, options=PEER_SACK_SYN), at=0.01)
    assert not c.info()["sack"]


# ---------------------------------------------------------------- receiver


def test_an_ack_reports_held_blocks_the_latest_first():
    c = sack_established()
    send(c, seg(1 + 2 * M, 1, payload=data(M)), at=0.1)  # a hole before it
    [a1] = c.take_segments()
    assert a1.ack == REMOTE_ISS + 1 and sacks_of(a1) == ((2 * M, 3 * M),)
    send(c, seg(1 + 5 * M, 1, payload=data(M)), at=0.11)
    [a2] = c.take_segments()
    assert sacks_of(a2) == ((5 * M, 6 * M), (2 * M, 3 * M))
    send(c, seg(1 + 3 * M, 1, payload=data(M)), at=0.12)  # joins the first block
    [a3] = c.take_segments()
    assert sacks_of(a3) == ((2 * M, 4 * M), (5 * M, 6 * M))
    send(c, seg(1, 1, payload=data(2 * M)), at=0.13)  # fills the first hole
    [a4] = c.take_segments()
    assert a4.ack == REMOTE_ISS + 1 + 4 * M and sacks_of(a4) == ((5 * M, 6 * M),)


def test_at_most_four_blocks_without_timestamps():
    c = sack_established()
    for i in range(6):
        send(c, seg(1 + (2 * i + 1) * M, 1, payload=data(M)), at=0.1 + i / 100)
    acks = c.take_segments()
    assert len(acks[-1].option(SACK)) == 4
    assert sacks_of(acks[-1])[0] == (11 * M, 12 * M)  # the latest first


def test_a_duplicate_is_reported_first_as_a_dsack():
    c = sack_established()
    send(c, seg(1, 1, payload=data(M)), at=0.1)
    c.take_segments()
    send(c, seg(1, 1, payload=data(M)), at=0.2)  # again: the sender resent it needlessly
    [ack] = c.take_segments()
    assert sacks_of(ack) == ((0, M),)
    send(c, seg(1 + M, 1, payload=data(10)), at=0.3)
    for s in c.take_segments():
        assert not s.option(SACK)  # reported once


def test_a_copy_of_data_held_out_of_order_is_reported_as_a_dsack_before_its_block():
    # RFC 2883 4.1.3: the duplicate first, then the block holding it, so that the
    # sender sees it is a duplicate though it lies above the cumulative ACK.
    c = sack_established()
    send(c, seg(1 + 2 * M, 1, payload=data(M)), at=0.1)  # a hole before it
    send(c, seg(1 + 3 * M, 1, payload=data(M)), at=0.11)
    c.take_segments()
    send(c, seg(1 + 2 * M, 1, payload=data(M)), at=0.2)  # again
    [ack] = c.take_segments()
    assert ack.ack == REMOTE_ISS + 1 and sacks_of(ack) == ((2 * M, 3 * M), (2 * M, 4 * M))
    send(c, seg(1 + 5 * M, 1, payload=data(M)), at=0.3)
    [ack] = c.take_segments()
    assert sacks_of(ack) == ((5 * M, 6 * M), (2 * M, 4 * M))  # reported once


def test_each_segment_of_a_burst_carries_the_sack_blocks_it_has_room_for():
    # RFC 2018 4: while data is held above a hole, every segment reports it; a
    # full one has no room left under the MSS (RFC 6691), the shorter last one has.
    c = sack_established()
    send(c, seg(1 + 2 * M, 1, payload=data(M)), at=0.1)  # a hole before it
    c.take_segments()
    c.send(data(2 * M + M // 2), 0.2)
    burst = c.take_segments()
    assert [len(s.payload) for s in burst] == [M, M, M // 2]
    assert [sacks_of(s) for s in burst] == [(), (), ((2 * M, 3 * M),)]


# ------------------------------------------------------------------ sender


def test_three_losses_in_one_window_are_all_resent_at_once():
    # Ten segments out; the first, fourth and seventh are lost. NewReno would
    # find one hole per round trip; the SACKs show all three.
    c = sack_established()
    c.send(data(10 * M), 1.0)
    assert len(c.take_segments()) == 10
    blocks = sack((1, 3), (4, 6), (7, 10))
    send(c, seg(1, 1, options=blocks), at=1.1)
    resent = c.take_segments()
    assert [s.seq - LOCAL_ISS - 1 for s in resent] == [0, 3 * M, 6 * M]
    assert c.cc.in_recovery
    # They arrive: one cumulative ACK ends the recovery.
    send(c, seg(1, 1 + 10 * M), at=1.2)
    assert not c.cc.in_recovery and c.unacked_data == 0


def test_without_sack_the_same_losses_take_a_round_trip_each():
    c = make(timestamps=False, sack=False)
    c.connect(0.0)
    c.take_segments()
    send(c, seg(0, 1, SYN | ACK, options=PEER_SACK_SYN), at=0.01)
    c.take_segments()
    c.send(data(10 * M), 1.0)
    c.take_segments()
    for t in (1.1, 1.11, 1.12):
        send(c, seg(1, 1), at=t)
    assert [s.seq - LOCAL_ISS - 1 for s in c.take_segments()] == [0]


def test_a_timeout_resends_only_what_the_peer_has_not_sacked():
    # RFC 6675 alone (Linux's tcp_recovery=0): with RACK, the reorder timer finds
    # these holes lost before any timeout (see test_rack.py).
    c = sack_established(rack=False)
    c.send(data(6 * M), 1.0)
    c.take_segments()
    send(c, seg(1, 1, options=sack((1, 2), (4, 5))), at=1.1)  # too few for recovery
    c.take_segments()
    fire(c, c.next_deadline())
    resent = [s.seq - LOCAL_ISS - 1 for s in c.take_segments()]
    assert resent == [0]  # cwnd is one segment after an RTO
    send(c, seg(1, 1 + M, options=sack((4, 5))), at=2.3)
    send(c, seg(1, 1 + 2 * M, options=sack((4, 5))), at=2.31)
    later = [s.seq - LOCAL_ISS - 1 for s in c.take_segments()]
    assert 4 * M not in later and {2 * M, 3 * M} <= set(later)


# --------------------------------------------------------------- scoreboard


def test_the_scoreboard_merges_blocks_and_counts_each_byte_once():
    sb = Scoreboard()
    una, top = 100, 100 + 10_000
    assert sb.update(((200, 300), (400, 500)), una, top) == 200
    assert sb.update(((250, 450),), una, top) == 100  # bridges the gap
    assert sb.blocks() == [(200, 500)] and sb.sacked == 300
    assert sb.update(((50, 150), (10_200, 10_300)), una, top) == 0  # D-SACK, beyond SND.MAX
    sb.ack(300)
    assert sb.blocks() == [(300, 500)] and sb.sacked == 200
    sb.ack(600)
    assert not sb and sb.sacked == 0


def test_the_scoreboard_reports_what_an_ack_newly_sacks():
    sb = Scoreboard()
    una, top = 100, 100 + 10_000
    newly: list[tuple[int, int]] = []
    sb.update(((200, 300), (400, 500)), una, top, newly)
    assert newly == [(200, 300), (400, 500)]
    newly = []
    sb.update(((150, 600),), una, top, newly)  # around both, and the gap between
    assert newly == [(150, 200), (300, 400), (500, 600)]
    newly = []
    sb.update(((150, 600), (250, 260)), una, top, newly)  # all held already
    assert newly == []


def test_the_scoreboard_works_across_the_wrap():
    sb = Scoreboard()
    una = (1 << 32) - 1000
    sb.update((((una + 500) & MASK, (una + 2500) & MASK),), una, (una + 5000) & MASK)
    assert sb.sacked == 2000
    assert sb.next_hole(una, 0, 5000) == (0, 500)
    assert sb.next_hole(una, 500, 5000) == (2500, 2500)
    assert sb.unsacked(una, 0, 5000) == 3000
    sb.ack((una + 1500) & MASK)
    assert sb.sacked == 1000


def test_lost_means_more_than_two_segments_sacked_above():
    sb = Scoreboard()
    una = 0
    sb.update(((1000, 3000),), una, 10_000)
    assert sb.lost_edge(una, 1000) == 0  # two segments: not yet
    sb.update(((5000, 5500),), una, 10_000)
    assert sb.lost_edge(una, 1000) == 1000


# ------------------------------------------------------- on a lossy network


def bursty_upload(seed: int, **options) -> tuple[float, int]:
    """Virtual seconds until the server has all of 1 MB through a 10 Mbit/s
    bottleneck that loses 2 % in bursts, and the client's timeouts; the sha256 of
    what arrived is checked. ``options`` go to both ends."""
    net = VirtualNetwork(seed=seed)
    server = net.add_host("10.0.0.1", "server")
    client = net.add_host("10.0.0.2")
    net.set_path("10.0.0.1", "10.0.0.2",
                 Impairments(delay=0.015, rate=10e6, queue=25, loss=0.02, burst=3))
    blob = data(1_000_000)
    done: dict[str, float] = {}

    async def sink(reader, writer):
        got = await reader.read()
        done["at"] = asyncio.get_running_loop().time()
        writer.write(hashlib.sha256(got).digest())
        writer.close()

    async def main():
        await server.run(utcp.start_server(sink, "0.0.0.0", 7000, **options))

        async def go():
            loop = asyncio.get_running_loop()
            reader, writer = await utcp.open_connection("server", 7000, **options)
            t0 = loop.time()
            writer.write(blob)
            writer.write_eof()
            digest = await reader.read()
            return t0, digest, writer.get_extra_info("utcp")["timeouts"]

        return await client.run(go())

    t0, digest, timeouts = net.run(main())
    assert digest == hashlib.sha256(blob).digest()
    return done["at"] - t0, timeouts


def transfer_time(use_sack: bool, seed: int) -> float:
    """:func:`bursty_upload`'s seconds, NewReno, so that only SACK differs."""
    return bursty_upload(seed, sack=use_sack, congestion_control="newreno")[0]


def test_sack_repairs_bursts_of_loss_in_far_less_time():
    # One round trip for a burst of losses, against one per hole: over three
    # seeded runs, less than half the time.
    with_sack = sum(transfer_time(True, seed) for seed in (1, 2, 3))
    without = sum(transfer_time(False, seed) for seed in (1, 2, 3))
    assert with_sack < 0.5 * without


def in_recovery(*blocks: tuple[int, int]) -> tuple[Any, int, float, list]:
    """A sender with ten segments out, told by a SACK of ``blocks`` that the ones
    below are missing: its window before, the time, and what it resent once it
    had resent something (RACK may wait out its reordering window first)."""
    c = sack_established()
    c.send(data(10 * M), 1.0)
    assert len(c.take_segments()) == 10
    before = c.cc.cwnd
    send(c, seg(1, 1, options=sack(*blocks)), at=1.1)
    t = 1.1
    resent = c.take_segments()
    while not resent:
        t = c.next_deadline()
        c.handle_timer(t)
        resent = c.take_segments()
    return c, before, t, resent


def test_a_recovery_for_a_segment_only_overtaken_is_undone_by_its_dsack():
    # The first of ten segments is only late: the nine after it are SACKed, it is
    # taken for lost and resent, and the window cut. Then it arrives after all,
    # and the peer reports the resent copy as a duplicate (D-SACK): every
    # retransmission of that recovery was needless, so the cut is undone.
    c, before, t, resent = in_recovery((1, 10))
    assert resent[0].seq == LOCAL_ISS + 1 and c.cc.cwnd < before
    send(c, seg(1, 1 + 10 * M), at=t + 0.01)  # the original, late
    send(c, seg(1, 1 + 10 * M, options=sack((0, 1))), at=t + 0.1)  # and the copy: D-SACK
    assert c.cc.cwnd >= before and c.counters.undos == 1


def test_a_recovery_that_repaired_a_real_loss_is_not_undone():
    c, before, t, _ = in_recovery((1, 10))
    send(c, seg(1, 1 + 10 * M), at=t + 0.1)  # only the resent copy arrived: no D-SACK
    assert c.cc.cwnd < before and c.counters.undos == 0


def test_a_recovery_undone_while_under_way_ends_and_a_later_loss_is_found_anew():
    # Segment 1 was only late, segment 10 is really lost. The D-SACK for segment
    # 1's resend undoes the recovery before SND.UNA reaches its end: it ends
    # there (Linux: tcp_try_to_open), so that the loss of segment 10, found
    # after, is answered as a loss of its own: a probe resends it at once,
    # where before it waited for the retransmission timeout.
    c, before, t, resent = in_recovery((1, 9))
    assert [s.seq for s in resent if s.payload] == [LOCAL_ISS + 1]
    send(c, seg(1, 1 + 9 * M), at=t + 0.001)  # the original, late: 1-9 are in
    send(c, seg(1, 1 + 9 * M, options=sack((0, 1))), at=t + 0.002)  # and the copy
    assert c.counters.undos == 1 and c.cc.cwnd >= before
    assert not c.cc.in_recovery and c.cc.may_enter_recovery(c.snd_una, c.snd_max)
    out: list = []
    while not [s for s in out if s.payload]:
        c.handle_timer(c.next_deadline())
        out += c.take_segments()
    assert [s.seq for s in out if s.payload] == [LOCAL_ISS + 1 + 9 * M]
    assert c.counters.timeouts == 0 and c.counters.tlp_probes == 1


def test_a_dsack_for_a_segment_the_recovery_did_not_resend_undoes_nothing():
    # Segment 1 is lost and resent; segment 6, never resent, reached the peer
    # twice because the network duplicated it. The peer reports that copy
    # (D-SACK, above its cumulative ACK, before the block holding it): it is not
    # the recovery's retransmission coming back, and the cut stands.
    c, before, t, resent = in_recovery((1, 10))
    assert [s.seq for s in resent if s.payload] == [LOCAL_ISS + 1] and c.cc.cwnd < before
    send(c, seg(1, 1, options=sack((5, 6), (1, 10))), at=1.12)
    assert c.cc.cwnd < before and c.counters.undos == 0
    send(c, seg(1, 1 + 10 * M), at=1.15)  # the resent copy arrived: a real loss
    assert c.cc.cwnd < before and c.counters.undos == 0


def test_one_dsack_for_two_resent_segments_undoes_the_recovery_that_resent_them():
    # Segments 1 and 2 are only late, and both are resent; the peer then reports
    # both copies in one D-SACK block. It counts for two, as Linux's dup_segs do.
    c, before, t, resent = in_recovery((2, 10))
    assert [s.seq for s in resent if s.payload] == [LOCAL_ISS + 1, LOCAL_ISS + 1 + M]
    assert c.cc.cwnd < before and c.counters.retransmissions == 2
    send(c, seg(1, 1 + 10 * M), at=1.11)  # the originals, late
    send(c, seg(1, 1 + 10 * M, options=sack((0, 2))), at=1.13)  # both copies: D-SACK
    assert c.cc.cwnd >= before and c.counters.undos == 1


def test_a_dsack_for_later_data_the_network_duplicated_undoes_no_real_loss():
    # Segment 1 is really lost: the recovery resends it, and only the resent copy
    # arrives. Meanwhile new data went out, and the network delivered one of
    # those new segments twice: the peer reports that duplicate (D-SACK). It says
    # nothing of the recovery, whose cut must stand.
    c, before, t, resent = in_recovery((1, 10))
    assert resent[0].seq == LOCAL_ISS + 1 and c.cc.cwnd < before
    c.send(data(4 * M), t)
    new = [s for s in c.take_segments() if s.payload]
    assert len(new) >= 2 and new[0].seq == (LOCAL_ISS + 1 + 10 * M) & MASK
    send(c, seg(1, 1 + 12 * M), at=t + 0.1)  # the resent copy and two new ones
    send(c, seg(1, 1 + 12 * M, options=sack((11, 12))), at=t + 0.11)  # a copy of one
    assert c.cc.cwnd < before and c.counters.undos == 0


def test_a_range_resent_twice_needs_both_copies_reported():
    # RACK found the first resend lost and resent it again: one D-SACK reports
    # one copy only (the other may have been the lost one), as Linux counts.
    pending = [(1000, 2440), (1000, 2440)]
    assert not _dsacked(pending, 1000, 2440) and pending == [(1000, 2440)]
    assert _dsacked(pending, 1000, 2440) and pending == []


def test_a_dsack_block_that_is_no_block_strikes_nothing():
    pending = [(1000, 2440), (5000, 5001)]
    assert not _dsacked(pending, 2440, 1000)  # inverted: it would span 2**32
    assert not _dsacked(pending, 5000, 5000)  # empty
    assert pending == [(1000, 2440), (5000, 5001)]
    assert not _dsacked(pending, 4000, 5000)  # reaches a FIN, covers no byte of it
    assert pending == [(1000, 2440), (5000, 5001)]


def test_a_recovery_that_resends_more_than_reordering_could_explain_is_not_undone():
    c = sack_established()
    c._undo = [c.cc.undo_state(), []]
    for i in range(UNDO_MAX_RESENT):
        note_resent(c, i * M, (i + 1) * M)
    assert c._undo is not None
    note_resent(c, UNDO_MAX_RESENT * M, (UNDO_MAX_RESENT + 1) * M)
    assert c._undo is None


def test_a_peer_that_reneges_on_its_sacks_gets_the_data_again_after_a_timeout():
    # The peer SACKed segments 2-10, then acknowledged segment 1 alone and dropped
    # the rest (as a receiver short of memory may). At the timeout the segment at
    # SND.UNA is still "SACKed" and unacknowledged: the sender forgets the SACKs
    # and sends it all again (RFC 2018 8), instead of waiting for ever.
    c = sack_established()
    c.send(data(10 * M), 1.0)
    c.take_segments()
    send(c, seg(1, 1, options=sack((1, 10))), at=1.1)
    t = 1.1
    while not c.take_segments():  # segment 1, taken for lost, is resent
        t = c.next_deadline()
        c.handle_timer(t)
    send(c, seg(1, 1 + M), at=t + 0.1)  # segment 1 arrived; the peer reneged on 2-10
    c.take_segments()
    t = c.next_deadline()
    c.handle_timer(t)
    resent = c.take_segments()
    assert resent and resent[0].seq == LOCAL_ISS + 1 + M
