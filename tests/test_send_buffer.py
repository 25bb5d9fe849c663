"""The send buffer: what a segment reads from it is what the application wrote."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from utcp.core.buffers import SMALL_WRITE, SendBuffer

MASK = 0xFFFFFFFF


def test_a_segment_within_one_large_write_is_a_slice_of_it() -> None:
    data = bytes(range(256)) * 40
    buf = SendBuffer(1000)
    buf.append(data)
    assert buf.peek(1000, len(data)) == data
    assert buf.peek(1100, 1452) == data[100:1552]
    assert len(buf._chunks) == 1 and buf._chunks[0] is data  # held, not copied


def test_a_segment_across_writes_joins_them() -> None:
    a, b, c = b"a" * 5000, b"b" * 3000, b"c" * 4000
    buf = SendBuffer(0)
    for w in (a, b, c):
        buf.append(w)
    assert buf.peek(4000, 5000) == b"a" * 1000 + b"b" * 3000 + b"c" * 1000
    assert buf.peek(4999, 8001) == b"a" + b"b" * 3000 + b"c" * 4000


def test_a_mutable_write_is_copied_when_taken() -> None:
    data = bytearray(b"x" * 4096)
    buf = SendBuffer(0)
    buf.append(data)
    data[:] = b"y" * 4096
    small = bytearray(b"s" * 10)
    buf.append(small)
    small[:] = b"t" * 10
    assert buf.peek(0, 4106) == b"x" * 4096 + b"s" * 10


def test_a_lone_small_write_is_held_as_given() -> None:
    buf = SendBuffer(0)
    buf.append(b"big" * 1000)
    buf.ack(3000)
    data = b"request"
    buf.append(data)
    assert buf.peek(3000, 7) == data
    assert buf._chunks[-1] is data


def test_small_writes_share_one_chunk() -> None:
    buf = SendBuffer(0)
    for i in range(1000):
        buf.append(bytes([i % 256]) * 10)
    assert len(buf._chunks) == 1
    assert buf.peek(9985, 10) == bytes([998 % 256]) * 5 + bytes([999 % 256]) * 5
    assert buf.peek(9995, 10) == bytes([999 % 256]) * 5  # (no more than is held)


def test_acknowledged_writes_are_released() -> None:
    buf = SendBuffer(MASK - 99)  # and the sequence numbers wrap
    for _ in range(100):
        buf.append(b"z" * 10_000)
    buf.ack(999_000)
    assert buf.size == 1000 and buf.start == (MASK - 99 + 999_000) & MASK
    assert sum(len(c) for c in buf._chunks) <= 2 * 10_000
    assert buf.peek(buf.start, 1000) == b"z" * 1000
    buf.ack(1000)
    assert buf.size == 0 and not buf._chunks
    buf.append(b"after")
    assert buf.peek(buf.start, 5) == b"after"


_ops = st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(1, 3 * SMALL_WRITE), st.booleans()),
    st.tuples(st.just("ack"), st.sampled_from([0.0, 1.0]) | st.floats(0, 1)),
    st.tuples(st.just("peek"), st.floats(0, 1), st.integers(1, 9000)),
), max_size=80)


@given(start=st.integers(0, MASK) | st.integers(MASK - 50_000, MASK), ops=_ops)
@settings(max_examples=300, deadline=None)
def test_the_buffer_agrees_with_one_bytearray(start: int, ops: list) -> None:
    buf = SendBuffer(start)
    model = bytearray()
    model_start = start
    written = 0
    taken: list[tuple[bytes, bytes]] = []  # what peek gave, and what it should stay
    for op in ops:
        if op[0] == "write":
            n, mutable = op[1], op[2]
            data = bytes((written + i) % 251 for i in range(n))
            written += n
            if mutable:
                given_ = bytearray(data)
                buf.append(given_)
                given_[:] = b"\xff" * n  # the caller reuses its buffer
            else:
                buf.append(data)
            model += data
        elif op[0] == "ack":
            n = int(op[1] * len(model))
            buf.ack(n)
            del model[:n]
            model_start = (model_start + n) & MASK
        elif model:
            at = int(op[1] * (len(model) - 1))
            n = op[2]
            got = buf.peek((model_start + at) & MASK, n)
            assert type(got) is bytes and got == bytes(model[at:at + n])
            taken.append((got, bytes(got)))
        assert buf.size == len(model) and buf.start == model_start
    for got, copy in taken:  # (a segment sent is never changed by later writes)
        assert got == copy


def test_many_acknowledged_chunks_are_compacted_away() -> None:
    buf = SendBuffer(0)
    for i in range(100):
        buf.append(bytes([i]) * 3000)
    for i in range(99):
        buf.ack(3000)
        assert buf.peek(buf.start, 3000) == bytes([i + 1]) * 3000
        assert buf.peek(buf.start + 2999, 2) == bytes([i + 1]) + (bytes([i + 2]) if i < 98 else b"")
    assert len(buf._chunks) < 40


def test_a_peek_past_the_wrap_of_the_sequence_space() -> None:
    buf = SendBuffer(MASK - 9)
    data = bytes(range(100))
    buf.append(data)
    assert buf.peek(40, 20) == data[50:70]  # (sequence number 40 is 50 bytes on)
    buf.ack(30)
    assert buf.start == 20 and buf.peek(20, 10) == data[30:40]
