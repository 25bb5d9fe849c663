"""Receive-buffer autotuning (dynamic right-sizing, as Linux's tcp_rcv_space_adjust).

A connection's receive buffer starts at Options.rcv_buf and grows toward
rcv_buf_max while its application takes more in a round trip than it did in any
before; it never shrinks, and the SYN's window scale covers its largest size.

The rule itself with scripted segments against one connection (tcpscript, with
timestamps: the peer's TSecr times the receiver's round trip); what it buys with
two connections across a seeded bottleneck on virtual time (pairsim).
"""

from __future__ import annotations

import functools
import hashlib
import random
from itertools import pairwise

import pytest
from pairsim import Pair
from tcpscript import make, seg, send, ts
from test_connection_timestamps import PEER_TS, ts_established

from utcp.core import seq as sq
from utcp.core.buffers import ReceiveMemory
from utcp.core.config import Options
from utcp.core.connection import Connection
from utcp.core.events import DataReceived
from utcp.core.observer import NullObserver
from utcp.core.state import State
from utcp.core.wire import ACK, MSS, SYN, TIMESTAMPS, WSCALE, Segment
from utcp.emulator import Impairments

KIB = 1024
MIB = 1024 * 1024
DEFAULT_BUF = 256 * KIB

# ------------------------------------------------------------------ options


def test_the_default_grows_to_linux_tcp_rmem_max_from_256_kib():
    o = Options()
    assert (o.rcv_buf, o.rcv_buf_max, o.rcv_buf_limit) == (DEFAULT_BUF, 6 * MIB, 6 * MIB)
    assert o.wscale == 7  # 6 MiB >> 7 fits the 16-bit field; Linux's SYNs carry 7 too


@pytest.mark.parametrize("value", ["4194304", 1.5, True, -1, (0xFFFF << 14) + 1])
def test_rcv_buf_max_is_validated(value):
    with pytest.raises(ValueError, match=r"rcv_buf_max must be None or an integer between "
                                         r"0 and 1073725440, got "):
        Options(rcv_buf_max=value)
    with pytest.raises(ValueError, match="rcv_buf_max must be"):
        Options().with_(rcv_buf_max=value)


@pytest.mark.parametrize("options, limit", [
    ({"rcv_buf_max": None}, DEFAULT_BUF),  # fixed
    ({"rcv_buf_max": 0}, DEFAULT_BUF),  # not above rcv_buf: fixed
    ({"rcv_buf_max": DEFAULT_BUF}, DEFAULT_BUF),
    ({"rcv_buf": 8 * MIB}, 8 * MIB),  # above the default rcv_buf_max: fixed there
    ({"rcv_buf": 8192, "rcv_buf_max": 1 * MIB}, 1 * MIB),
])
def test_a_buffer_grows_only_when_rcv_buf_max_is_above_rcv_buf(options, limit):
    assert Options(**options).rcv_buf_limit == limit


# --------------------------------------------------------------- handshake


@pytest.mark.parametrize("options, shift", [
    ({}, 7),  # 6 MiB
    ({"rcv_buf_max": 1 * MIB}, 5),  # 1 MiB >> 4 is 65536: one too many
    ({"rcv_buf_max": 16 * MIB}, 9),
    ({"rcv_buf_max": None}, 3),  # a fixed 256 KiB buffer: today's shift
    ({"rcv_buf_max": 100_000}, 3),  # not above rcv_buf: fixed too
    ({"rcv_buf": 8 * MIB}, 8),
    ({"rcv_buf": 16 * KIB, "rcv_buf_max": None}, 0),
])
def test_syn_window_scale_follows_the_largest_buffer_and_the_window_the_first(options, shift):
    c = make(**options)
    c.connect(0.0)
    [syn] = c.take_segments()
    assert syn.option(WSCALE) == shift
    rcv_buf = Options(**options).rcv_buf
    assert syn.window == min(rcv_buf, 0xFFFF)  # a SYN's window is never scaled
    send(c, seg(0, 1, SYN | ACK, options=((MSS, 1452), (WSCALE, 0))))
    [ack] = c.take_segments()
    # What it offers first is rcv_buf, whatever it may grow to.
    assert ack.window == min(rcv_buf >> shift, 0xFFFF)
    assert c.info()["rcv_buf"] == rcv_buf


def test_a_passive_open_offers_the_same_scale():
    c = make()
    c.listen()
    send(c, seg(0, None, SYN, options=((MSS, 1452), (WSCALE, 2))))
    [synack] = c.take_segments()
    assert synack.option(WSCALE) == 7 and synack.window == 0xFFFF


# ------------------------------------------------------ the rule, scripted

RTT = 0.1


class Peer:
    """The sending end of a connection that :func:`ts_established` opened: it sends
    full segments a round trip at a time (round trip k starts at k * RTT, all its
    segments at once), each echoing the TSval of the last ACK it had from us, so
    that each round trip's first segment times one round trip."""

    def __init__(self, c: Connection) -> None:
        self.c = c
        self.rounds = 0
        self.tsecr = 10  # what ts_established's ACK carried

    @property
    def now(self) -> float:
        return 0.01 + self.rounds * RTT

    def segment(self, seq: int, data: bytes) -> Segment:
        return Segment(7007, 49152, seq, self.c.snd_nxt, ACK, 0xFFFF, 0,
                       ts(PEER_TS + int(self.now * 1000), self.tsecr), data)

    def round_trips(self, sizes: list[int]) -> list[int]:
        """Send ``sizes[k]`` segments in each of the next round trips; return the
        receive buffer after each, checking that none changed it twice."""
        c = self.c
        bufs = []
        for n in sizes:
            self.rounds += 1
            seen = set()
            for _ in range(n):
                c.receive(self.segment(c.rcv_nxt, bytes(c.send_mss)), self.now)
                seen.add(c.rcv_buf)
            assert len(seen) == 1  # at most one adjustment a round trip
            acks = c.take_segments()
            if not acks:  # an odd segment out: its ACK is delayed
                c.handle_timer(self.now + c.options.delayed_ack)
                acks = c.take_segments()
            self.tsecr = acks[-1].option(TIMESTAMPS)[0]  # type: ignore[index]
            bufs.append(c.rcv_buf)
        return bufs


def slow_start(**opts) -> tuple[Connection, Peer]:
    c = ts_established(**opts)
    return c, Peer(c)


def test_the_buffer_grows_to_twice_a_round_trip_and_more_while_that_grows():
    # A sender in slow start: 10, 20, 40, ... segments of 1440 bytes a round trip.
    # Once a round trip brings more than any before, the buffer becomes twice it
    # plus 16 segments, plus twice that again times the growth: the sender may
    # double again by the time the window it is offered reaches it. Until that
    # passes 256 KiB, nothing changes. (Each round trip's measure is taken as
    # the next one's first segment comes.)
    c, peer = slow_start()
    bufs = peer.round_trips([10, 20, 40, 80, 160, 320, 640, 1280, 2560])
    assert bufs == [DEFAULT_BUF, DEFAULT_BUF, DEFAULT_BUF,
                    # 40 segments (57600 bytes) after 20: 2 * 57600 + 16 * 1452 = 138432,
                    # plus twice 138432 * (57600 - 28800) / 28800.
                    415_296, 760_896, 1_452_096, 2_834_496, 5_599_296,
                    6 * MIB]  # and no further: rcv_buf_max
    assert c.info()["rcv_buf"] == 6 * MIB


def test_the_window_offered_follows_the_buffer():
    c, peer = slow_start()
    assert peer.round_trips([10, 20, 40, 80])[-1] == 415_296
    # The next round trip's first two segments: 80 segments came in the last,
    # twice the one before, and the buffer grows again before they are ACKed.
    peer.rounds += 1
    for _ in range(2):
        c.receive(peer.segment(c.rcv_nxt, bytes(c.send_mss)), peer.now)
    [ack] = c.take_segments()
    assert c.rcv_buf == 760_896
    assert ack.window == 760_896 >> 7  # all of it: the application took everything


def test_a_round_trip_that_brings_no_more_grows_nothing():
    c, peer = slow_start()
    assert peer.round_trips([10, 20, 40, 80, 80, 80, 60, 80]) == \
        [DEFAULT_BUF] * 3 + [415_296] + [760_896] * 4


def test_an_application_that_does_not_read_grows_nothing():
    # Slow start as above, but the application holds all of it unread: the window
    # closes at 256 KiB (to within its 128-byte unit) and the buffer stays so.
    c, peer = slow_start()
    c.pause_reading()
    assert peer.round_trips([10, 20, 40, 80, 160]) == [DEFAULT_BUF] * 5
    unread = c.info()["unread"]
    assert DEFAULT_BUF <= unread < DEFAULT_BUF + 128
    # Taking it all at once proves no need for more room either: it waited for
    # the reader, not the sender for the window.
    c.resume_reading(peer.now + 0.05)
    assert [len(e.data) for e in c.take_events() if isinstance(e, DataReceived)] == [unread]
    assert peer.round_trips([10, 10]) == [DEFAULT_BUF] * 2


def test_no_buffer_grows_while_memory_is_short():
    c, peer = slow_start()
    c.memory = ReceiveMemory(4 * MIB)
    assert peer.round_trips([10, 20, 40, 80])[-1] == 415_296
    c.memory.update("others", 3 * MIB)  # other readers hold three quarters of it
    assert peer.round_trips([160]) == [415_296]
    c.memory.update("others", 0)
    assert peer.round_trips([320]) == [1_452_096]


def test_no_buffer_grows_past_what_the_socket_beneath_can_queue():
    # The endpoint sets the cap from the UDP socket's buffer (208 KiB of payload
    # on a stock Linux, net.core.rmem_max): a larger window lets the peer send
    # bursts the kernel drops before they are read.
    c, peer = slow_start()
    c.memory = ReceiveMemory()
    c.memory.rcv_buf_cap = 1 * MIB
    assert peer.round_trips([10, 20, 40, 80, 160, 320, 640])[-1] == 1 * MIB
    assert c._drs is None  # at its largest: nothing more to measure
    small, peer = slow_start()
    small.memory = ReceiveMemory()
    small.memory.rcv_buf_cap = 200 * KIB  # below rcv_buf: the buffer stays as it is
    assert peer.round_trips([10, 20, 40, 80, 160]) == [DEFAULT_BUF] * 5
    assert small._drs is None


def test_a_window_grown_past_twice_what_was_offered_is_announced_at_once():
    c, peer = slow_start()
    assert peer.round_trips([10, 20, 40, 160]) == [DEFAULT_BUF] * 3 + [415_296]
    # Four times as much came in the last round trip as in the one before: the
    # buffer grows past twice the window offered, and the segment that shows it
    # is ACKed at once, alone as it is ...
    peer.rounds += 1
    c.receive(peer.segment(c.rcv_nxt, bytes(c.send_mss)), peer.now)
    [ack] = c.take_segments()
    assert c.rcv_buf == 3_388_224 and ack.window == 3_388_224 >> 7
    # ... where one that grows nothing waits for the delayed ACK.
    peer.rounds += 1
    c.receive(peer.segment(c.rcv_nxt, bytes(c.send_mss)), peer.now)
    assert c.take_segments() == [] and c.rcv_buf == 3_388_224
    c.handle_timer(peer.now + c.options.delayed_ack)
    assert len(c.take_segments()) == 1


def test_the_receivers_round_trip_comes_from_full_segments_echoes():
    c, peer = slow_start()
    peer.round_trips([2])
    drs = c._drs  # (white-box: the estimate itself)
    approx = functools.partial(pytest.approx, abs=0.002)  # (the clock counts ms)
    assert drs is not None and drs.rtt == approx(0.1)
    mss = c.send_mss

    def arrives(at: float, echoed: float, size: int = mss) -> None:
        """A segment at ``at`` s into the round trip, echoing our TSval of ``echoed``."""
        c.receive(Segment(7007, 49152, c.rcv_nxt, c.snd_nxt, ACK, 0xFFFF, 0,
                          ts(PEER_TS + int((peer.now + at) * 1000),
                             int((peer.now + echoed) * 1000)), bytes(size)), peer.now + at)

    arrives(0.3, 0.0, mss - 1)  # a short segment's echo may have waited: no sample
    assert drs.rtt == approx(0.1)
    arrives(0.35, 0.15)  # longer: an eighth of the way
    assert drs.rtt == approx(0.1125)
    c.pause_reading()
    arrives(0.36, 0.15)  # (the same echo: nothing new)
    arrives(0.45, 0.16)  # longer while data waits for the reader: not taken
    assert drs.rtt == approx(0.1125)
    arrives(0.5, 0.45)  # shorter: taken whole, waiting data or not
    assert drs.rtt == approx(0.05)


def test_without_window_scaling_nothing_grows():
    # A peer whose SYN-ACK offers no window scale: no window could offer more
    # than 64 KiB, so a larger buffer would only hold more of nothing.
    c = make()
    c.connect(0.0)
    c.take_segments()
    send(c, seg(0, 1, SYN | ACK, options=((MSS, 1452), (TIMESTAMPS, (PEER_TS, 0)))), at=0.01)
    [ack] = c.take_segments()
    assert ack.window == 0xFFFF  # unscaled
    assert Peer(c).round_trips([10, 20, 40, 80, 160]) == [DEFAULT_BUF] * 5
    assert c._drs is None


@pytest.mark.parametrize("fixed", [{"rcv_buf_max": None}, {"rcv_buf_max": 128 * KIB}])
def test_a_fixed_buffer_does_not_grow(fixed):
    _, peer = slow_start(**fixed)
    assert peer.round_trips([10, 20, 40, 80, 160]) == [DEFAULT_BUF] * 5


def test_an_idle_connection_holds_no_autotuning_state():
    # (White-box: 100,000 idle connections must cost what they did.)
    c, peer = slow_start()
    assert c._drs is None
    peer.round_trips([1])
    assert c._drs is not None
    peer.round_trips([10, 20, 40, 80, 160, 320, 640, 1280, 2560])
    assert c.rcv_buf == 6 * MIB and c._drs is None  # at its largest: nothing to measure


def test_the_out_of_order_queue_grows_with_the_buffer():
    # Grown to 2.8 MB, the buffer may hold a window with a hole before every other
    # segment: 900 ranges, where a 256 KiB buffer held at most 512.
    c, peer = slow_start()
    peer.round_trips([10, 20, 40, 80, 160, 320, 640])
    assert c.rcv_buf == 2_834_496
    mss = c.send_mss
    base = c.rcv_nxt
    stream = random.Random(3).randbytes(1800 * mss)
    peer.rounds += 1
    for start in (1, 0):  # the odd segments first, then the holes between them
        for i in range(start, 1800, 2):
            c.receive(peer.segment(sq.add(base, i * mss), stream[i * mss:(i + 1) * mss]),
                      peer.now)
        assert c.counters.ooo_dropped == 0
    got = b"".join(e.data for e in c.take_events() if isinstance(e, DataReceived))
    assert got[-len(stream):] == stream


# ------------------------------------------------- across a bottleneck


class Upload(Pair):
    """A client that uploads to a server across ``impairments`` each way, on virtual
    time. The server's application reads what arrives at once, or (``read_rate``
    bytes a second) through a buffer of its own that pauses the connection past
    128 KiB and resumes it below 32 KiB, as asyncio's StreamReader does with its
    default limit."""

    def __init__(self, impairments: Impairments, *, seed: int = 1,
                 read_rate: float | None = None, **opts) -> None:
        options = Options(**opts)
        self.read_rate = read_rate
        self.app = 0.0  # bytes in the application's own buffer
        self.app_at = 0.0
        self.largest = 0  # the server's largest receive buffer so far
        #: Each window the server offered once synchronized: its ACK, its size,
        #: the edge up to which data is taken (RCV.ADV), and whether data was held
        #: out of order then.
        self.offers: list[tuple[int, int, int, bool]] = []
        self.shift = options.wscale
        offers = self.offers

        class Offers(NullObserver):
            def segment_sent(self, conn, s, now):
                if s.flags & ACK and not s.flags & SYN:
                    offers.append((s.ack, s.window << conn._rcv_wscale, conn._rcv_adv,
                                   bool(conn._ooo.size)))

        super().__init__(client_opts=options, server_opts=options, seed=seed,
                         impairments=impairments, server_observer=Offers())
        self.client.connect(0.0)
        self.run(stop=lambda: self.server.state is State.ESTABLISHED)

    def pump(self) -> None:
        before = len(self.received[self.server])
        super().pump()
        rate = self.read_rate
        if rate is not None:
            self.app += len(self.received[self.server]) - before
            self.app = max(0.0, self.app - rate * (self.now - self.app_at))
            self.app_at = self.now
            if self.app > 128 * KIB and not self.server.reading_paused:
                self.server.pause_reading()
            elif self.app < 32 * KIB and self.server.reading_paused:
                self.server.resume_reading(self.now)
                self.pump()
        self.largest = max(self.largest, self.server.rcv_buf)

    def step(self) -> bool:
        if super().step():
            return True
        if self.app:  # nothing on the path: the application reads on meanwhile
            self.now += 0.001
            self.pump()
            return True
        return False

    def upload(self, size: int) -> float:
        """Seconds until the server's application has ``size`` random bytes, which
        must be those sent."""
        blob = random.Random(size).randbytes(size)
        start = self.now
        self.client.send(blob, self.now)
        self.run(stop=lambda: len(self.received[self.server]) >= size, until=start + 60)
        assert hashlib.sha256(self.received[self.server]).digest() \
            == hashlib.sha256(blob).digest()
        return self.now - start


#: 50 Mbit/s and a 100 ms round trip: 625 kB in flight fill the path, more than a
#: 256 KiB buffer lets a sender have; a queue of one such product.
FAT = Impairments(delay=0.05, rate=50e6, queue=430)
SIZE = 4_000_000


@pytest.mark.parametrize("timestamps", [True, False], ids=["timestamps", "no-timestamps"])
def test_a_reader_that_keeps_up_grows_its_buffer_and_the_transfer_goes_faster(timestamps):
    fixed = Upload(FAT, timestamps=timestamps, rcv_buf_max=None)
    fixed_took = fixed.upload(SIZE)
    # The window held it: no faster than 256 KiB a round trip.
    assert fixed_took >= SIZE / (DEFAULT_BUF / 0.1)
    assert fixed.largest == DEFAULT_BUF
    tuned = Upload(FAT, timestamps=timestamps)
    took = tuned.upload(SIZE)
    assert took < 0.7 * fixed_took
    assert 2 * MIB < tuned.server.rcv_buf <= 6 * MIB
    assert tuned.server.info()["rcv_buf"] == tuned.server.rcv_buf


def test_the_buffer_stops_at_rcv_buf_max():
    up = Upload(FAT, rcv_buf_max=1 * MIB)
    up.upload(SIZE)
    assert up.largest == up.server.rcv_buf == 1 * MIB
    assert max(size for _, size, _, _ in up.offers) <= 1 * MIB


@pytest.mark.parametrize("impairments, seed", [
    (Impairments(delay=0.03, rate=30e6, queue=3000), 1),  # never full: nothing lost
    (Impairments(delay=0.03, rate=30e6, queue=200, loss=0.01, reorder=0.02), 4),
], ids=["clean", "lossy"])
def test_the_right_edge_offered_never_moves_left(impairments, seed):
    # With the buffer growing (RFC 9293 3.8.6.2.2): the edge up to which data is
    # taken never moves left, nor does the one each segment shows while nothing
    # is held out of order. Holding some charges each range's cost to the window,
    # and then the edge shown may fall short of the last one by less than the
    # window's unit (RFC 7323 2.4), which RCV.ADV still takes data up to.
    up = Upload(impairments, seed=seed)
    up.upload(SIZE)
    assert up.server.rcv_buf > DEFAULT_BUF
    unit = 1 << up.shift
    adv = [a for _, _, a, _ in up.offers]
    assert all(sq.ge(b, a) for a, b in pairwise(adv))
    for (ack, size, _, _), (ack2, size2, _, holding) in pairwise(up.offers):
        edge, edge2 = sq.add(ack, size), sq.add(ack2, size2)
        assert sq.ge(edge2, edge) or (holding and sq.sub(edge, edge2) < unit)
    assert (up.server.counters.out_of_order > 0) == (impairments.loss > 0)


def test_a_receiver_that_does_not_read_does_not_grow():
    up = Upload(FAT)
    up.server.pause_reading()
    blob = random.Random(7).randbytes(2 * MIB)
    up.client.send(blob, up.now)
    up.run(until=up.now + 5)
    assert up.largest == up.server.rcv_buf == DEFAULT_BUF
    assert DEFAULT_BUF <= up.server.info()["unread"] < DEFAULT_BUF + 128
    up.server.resume_reading(up.now)
    up.run(stop=lambda: len(up.received[up.server]) >= len(blob), until=up.now + 60)
    assert hashlib.sha256(up.received[up.server]).digest() == hashlib.sha256(blob).digest()


def test_a_reader_slower_than_the_path_grows_far_less():
    # 2 MB/s through its own 128 KiB buffer, on a path of 6 MB/s: the buffer grows
    # only while the first round trips come faster than that buffer fills.
    slow = Upload(FAT, read_rate=2e6)
    slow.upload(SIZE)
    assert slow.largest <= 1 * MIB


def test_a_fixed_buffer_keeps_its_size_and_scale():
    runs = []
    for fixed in (None, 0, DEFAULT_BUF):  # three ways to say it
        up = Upload(FAT, rcv_buf_max=fixed)
        assert up.server._rcv_wscale == up.client._rcv_wscale == 3
        took = up.upload(SIZE)
        assert up.largest == DEFAULT_BUF
        assert max(size for _, size, _, _ in up.offers) <= DEFAULT_BUF
        runs.append((took, up.sent_segments))
    assert runs[0] == runs[1] == runs[2]  # the same connection, segment for segment


def test_small_messages_make_no_autotuning_state():
    # (White-box, as above.) With timestamps only a full segment times the round
    # trip, and without one nothing grows: a connection of small messages, as most
    # are, never pays for the measures; the first full segment starts them.
    c, peer = slow_start()
    for i in range(50):
        c.receive(peer.segment(c.rcv_nxt, b"request %d" % i), peer.now + i * 0.001)
    assert c._drs is None
    c.receive(peer.segment(c.rcv_nxt, bytes(c.send_mss)), peer.now + 0.1)
    assert c._drs is not None
