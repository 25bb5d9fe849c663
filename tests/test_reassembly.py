"""The out-of-order queue: what it delivers, what it costs, and what it refuses to hold."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tcpscript import conn_established, events, expect, out, seg, send

from utcp.core.buffers import RANGE_OVERHEAD, ReassemblyQueue
from utcp.core.events import DataReceived
from utcp.core.seq import add

STREAM = bytes(range(256)) * 16  # 4 KiB of stream, each byte telling its offset mod 256


@settings(max_examples=300, deadline=None)
@given(base=st.integers(0, 2**32 - 1),
       pieces=st.lists(st.tuples(st.integers(1, len(STREAM) - 1), st.integers(1, 300)),
                       max_size=40))
def test_any_order_of_segments_reassembles_the_stream(base: int,
                                                      pieces: list[tuple[int, int]]) -> None:
    # Segments ahead of RCV.NXT, overlapping, duplicated, in any order and across
    # the wrap of sequence space; then the first byte arrives.
    q = ReassemblyQueue(max_ranges=10_000)
    model = bytearray(len(STREAM))  # which stream bytes the queue should hold
    for off, n in pieces:
        n = min(n, len(STREAM) - off)
        q.add(add(base, off), STREAM[off:off + n], base)
        model[off:off + n] = b"\1" * n
        held = sum(model)
        assert q.size == held
        assert q.memory == held + len(q) * RANGE_OVERHEAD
    got = q.pop_ready(add(base, 1))  # byte 0 arrived in order: what follows it?
    run = 1
    while run < len(STREAM) and model[run]:
        run += 1
    assert got == STREAM[1:run]
    assert q.size == sum(model[run:])


def test_a_duplicate_changes_nothing() -> None:
    q = ReassemblyQueue()
    for off in range(10, 2010, 2):  # 1000 one-byte holes
        q.add(off, b"x", 0)
    before = (len(q), q.size, q.memory)
    for off in range(10, 2010, 2):
        q.add(off, b"x", 0)
    assert (len(q), q.size, q.memory) == before


def test_ranges_beyond_the_cap_are_dropped_from_the_far_end() -> None:
    q = ReassemblyQueue(max_ranges=100)
    for off in range(10, 2010, 2):  # 1000 holes
        q.add(off, b"y", 0)
    assert len(q) == 100
    assert q.dropped == 900
    # The lowest sequence numbers are kept: they are the next to be filled.
    assert q.pop_ready(10) == b"y"
    assert len(q) == 99


def test_the_memory_budget_holds() -> None:
    q = ReassemblyQueue()
    budget = 10_000
    for off in range(10, 20_010, 2):
        q.add(off, b"z", 0, budget)
        assert q.memory <= budget
    assert len(q) == budget // (1 + RANGE_OVERHEAD)


def test_a_peer_sending_one_byte_holes_is_held_to_its_receive_buffer() -> None:
    # The attack of CVE-2018-5390's class: a window's worth of one-byte segments,
    # each with a hole before it. The connection holds a bounded queue, charges it
    # to the window, and still delivers the stream when the holes are filled.
    c = conn_established(rcv_buf=64 * 1024)
    for off in range(2, 60_000, 2):
        send(c, seg(1 + off, 1, payload=STREAM[off % 256:off % 256 + 1]))
    c.take_segments()
    ooo = c._ooo  # (a white-box look: the counters below are what users see)
    assert len(ooo) <= ooo.max_ranges
    assert ooo.memory <= 64 * 1024
    assert c.counters.ooo_dropped > 0
    assert c.rcv_wnd < 64 * 1024 - ooo.size  # the overhead is charged to the window
    # The sender goes back and sends it all in order: everything arrives, once.
    data = bytes(i % 256 for i in range(60_000))
    for off in range(0, 60_000, 1000):
        send(c, seg(1 + off, 1, payload=data[off:off + 1000]))
    received = b"".join(e.data for e in events(c) if isinstance(e, DataReceived))
    assert received == data
    assert len(ooo) == 0


def test_filling_a_hole_delivers_what_was_held_behind_it() -> None:
    c = conn_established()
    send(c, seg(101, 1, payload=b"b" * 100))
    send(c, seg(201, 1, payload=b"c" * 100))
    c.take_segments()
    send(c, seg(1, 1, payload=b"a" * 100))
    expect(c, [out(1, 301)])
    assert events(c) == [DataReceived(b"a" * 100 + b"b" * 100 + b"c" * 100)]


def test_a_queue_that_never_empties_keeps_working_past_two_gigabytes() -> None:
    # A long transfer with a new hole opening before each old one fills: the
    # queue is never empty, and RCV.NXT runs on past 2**31 (and 2**32) from where
    # the queue began.
    q = ReassemblyQueue()
    base = 2**32 - 5000
    hole, step = 10, 1 << 24  # a loss every 16 MiB
    q.add(add(base, hole), b"x", base)
    for _ in range(600):  # about 10 GiB
        q.add(add(base, hole + step), b"y", add(base, hole))
        assert q.pop_ready(add(base, hole)) in (b"x", b"y")
        hole += step
    assert len(q) == 1 and q.size == 1


def test_a_large_window_holds_all_it_offered_behind_one_hole() -> None:
    # A 4 MiB receive buffer (a long, fat path) and the first segment of a window
    # lost: everything behind the hole is held and SACKed, none of it dropped to
    # be sent again, and filling the hole delivers the whole window at once.
    rcv_buf = 4 * 1024 * 1024
    c = conn_established(rcv_buf=rcv_buf)
    mss = c.options.mss
    n = 2000  # 2.9 MB behind the hole: far more segments than 512
    data = bytes(i % 251 for i in range((n + 1) * mss))
    for i in range(1, n + 1):
        send(c, seg(1 + i * mss, 1, payload=data[i * mss:(i + 1) * mss]))
    c.take_segments()
    assert c.counters.ooo_dropped == 0
    send(c, seg(1, 1, payload=data[:mss]))
    received = b"".join(e.data for e in events(c) if isinstance(e, DataReceived))
    assert received == data
