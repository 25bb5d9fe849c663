"""The wire format: round trips, the struct codec against the construct declaration,
scapy's reading of our bytes, every kind of malformed datagram, and the checksum."""

from __future__ import annotations

import logging
import struct

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pairsim import Pair

import utcp
from utcp.core import wire
from utcp.core.config import Options
from utcp.core.observer import NullObserver
from utcp.core.state import State
from utcp.core.wire import (
    ACK,
    CWR,
    EOL,
    FIN,
    MSS,
    NOP,
    PSH,
    SACK,
    SACK_PERMITTED,
    SYN,
    TIMESTAMPS,
    WSCALE,
    Flags,
    MalformedSegment,
    Segment,
    build_construct,
    checksum,
    decode,
    encode,
    flag_names,
    parse_construct,
)

MODERATE = settings(max_examples=250, deadline=None)
CODECS = pytest.mark.parametrize("parse", [decode, parse_construct],
                                 ids=["decode", "parse_construct"])


# --- helpers ---------------------------------------------------------------------------

def rfc1071(data: bytes) -> int:
    """RFC 1071 checksum the long way: 16-bit words, end-around carry, complement."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += data[i] << 8 | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def seal(data: bytes) -> bytes:
    """``data`` with a checksum field that verifies (if it is long enough to have one)."""
    if len(data) < 18:
        return bytes(data)
    zeroed = bytes(data[:16]) + b"\0\0" + bytes(data[18:])
    return zeroed[:16] + checksum(zeroed).to_bytes(2, "big") + zeroed[18:]


def raw_segment(options: bytes = b"", *, offset: int | None = None,
                payload: bytes = b"") -> bytes:
    """A sealed datagram with the given options area and data offset, built by hand."""
    if offset is None:
        offset = 5 + len(options) // 4
    head = struct.pack("!HHIIBBHHH", 1234, 80, 1, 0, offset << 4, ACK, 1000, 0, 0)
    return seal(head + options + payload)


def verdict(parse, data: bytes):
    """What a codec makes of ``data``: a Segment, or the MalformedSegment message.

    Any other exception propagates and fails the test.
    """
    try:
        return parse(data)
    except MalformedSegment as exc:
        return ("malformed", str(exc))


def option_size(entry: tuple) -> int:
    kind, value = entry
    if kind == NOP:
        return 1
    if kind == SACK:
        return 2 + 8 * len(value)
    fixed = {MSS: 4, WSCALE: 3, SACK_PERMITTED: 2, TIMESTAMPS: 10}
    return fixed[kind] if kind in fixed else 2 + len(value)


# --- strategies ------------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 2**32 - 1)
unknown_kinds = st.integers(6, 255).filter(lambda k: k != TIMESTAMPS)

option_entries = st.one_of(
    st.just((NOP, None)),
    u16.map(lambda v: (MSS, v)),
    u8.map(lambda v: (WSCALE, v)),
    st.just((SACK_PERMITTED, None)),
    st.lists(st.tuples(u32, u32), min_size=1, max_size=4).map(lambda b: (SACK, tuple(b))),
    st.tuples(u32, u32).map(lambda ts: (TIMESTAMPS, ts)),
    st.tuples(unknown_kinds, st.binary(max_size=38)),
)


@st.composite
def option_lists(draw) -> tuple:
    """Options in wire order that fit the 40-byte options area."""
    chosen, room = [], 40
    for entry in draw(st.lists(option_entries, max_size=10)):
        if option_size(entry) <= room:
            chosen.append(entry)
            room -= option_size(entry)
    return tuple(chosen)


# What every segment of a connection with timestamps carries: the codec's fast path
# (wire.NOP_OPTION itself, as the connection puts it, or equal tuples, as others may).
timestamps_only = st.tuples(u32, u32, st.booleans()).map(
    lambda t: ((wire.NOP_OPTION, wire.NOP_OPTION) if t[2] else ((NOP, None), (NOP, None)))
    + ((TIMESTAMPS, t[:2]),))

# A SYN's options as utcp lays them out (the codec's SYN fast path) and as Linux does.
syn_layouts = st.tuples(u16, u32, u32, u8, st.booleans()).map(
    lambda t: ((MSS, t[0]), wire.NOP_OPTION, wire.NOP_OPTION, (TIMESTAMPS, (t[1], t[2])),
               wire.NOP_OPTION, (WSCALE, t[3])) if t[4] else
    ((MSS, t[0]), (SACK_PERMITTED, None), (TIMESTAMPS, (t[1], t[2])), (NOP, None),
     (WSCALE, t[3])))

segments = st.builds(
    Segment,
    src_port=u16, dst_port=u16, seq=u32, ack=u32, flags=u8, window=u16, urgent=u16,
    options=st.one_of(st.just(()), option_lists(), timestamps_only, syn_layouts),
    payload=st.one_of(st.binary(max_size=64), st.binary(min_size=1400, max_size=1452)),
    reserved=st.integers(0, 15),
)


@st.composite
def mutated_segments(draw) -> bytes:
    """A valid segment with a few bytes changed, maybe cut short, maybe re-sealed."""
    data = bytearray(encode(draw(segments)))
    for _ in range(draw(st.integers(0, 4))):
        data[draw(st.integers(0, min(len(data), 64) - 1))] = draw(u8)
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))):]
    return seal(data) if draw(st.booleans()) else bytes(data)


@st.composite
def option_soup(draw) -> bytes:
    """A sealed datagram whose options area is built from plausible and implausible tokens."""
    tokens = []
    for _ in range(draw(st.integers(0, 8))):
        shape = draw(st.sampled_from(["single", "tlv", "junk"]))
        if shape == "single":
            tokens.append(bytes([draw(st.sampled_from([EOL, NOP]))]))
        elif shape == "junk":
            tokens.append(draw(st.binary(min_size=1, max_size=3)))
        else:
            kind = draw(st.sampled_from([MSS, WSCALE, SACK_PERMITTED, SACK, TIMESTAMPS, 30, 254]))
            fixed = {MSS: 4, WSCALE: 3, SACK_PERMITTED: 2, TIMESTAMPS: 10}
            if kind in fixed:
                good = fixed[kind]
            elif kind == SACK:
                good = draw(st.sampled_from([10, 18, 26, 34]))
            else:
                good = draw(st.integers(2, 12))
            length = draw(st.one_of(st.just(good), st.integers(max(good - 2, 0), good + 2),
                                    st.integers(0, 42)))
            body = max(length - 2, 0)
            tokens.append(bytes([kind, length]) + draw(st.binary(min_size=body, max_size=body)))
    area = b"".join(tokens)[:40]
    area += draw(st.binary(min_size=-len(area) % 4, max_size=-len(area) % 4))
    offset = 5 + len(area) // 4
    if draw(st.integers(0, 3)) == 0:
        offset = draw(st.integers(0, 15))
    head = struct.pack("!HHIIBBHHH", draw(u16), draw(u16), draw(u32), draw(u32),
                       offset << 4 | draw(st.integers(0, 15)), draw(u8), draw(u16), 0, draw(u16))
    return seal(head + area + draw(st.binary(max_size=8)))


# --- round trip and agreement with the declaration ---------------------------------------

@MODERATE
@given(segments)
def test_round_trip(seg: Segment) -> None:
    assert decode(encode(seg)) == seg


@MODERATE
@given(segments)
def test_struct_codec_builds_the_bytes_the_declaration_builds(seg: Segment) -> None:
    assert encode(seg) == build_construct(seg)


@MODERATE
@given(segments)
def test_declaration_parses_what_encode_wrote(seg: Segment) -> None:
    assert parse_construct(encode(seg)) == seg


@MODERATE
@given(st.one_of(st.binary(max_size=24), st.binary(min_size=20, max_size=80)), st.booleans())
def test_codecs_agree_on_arbitrary_bytes(data: bytes, sealed: bool) -> None:
    if sealed:
        data = seal(data)
    assert verdict(decode, data) == verdict(parse_construct, data)


@MODERATE
@given(mutated_segments())
def test_codecs_agree_on_mutated_segments(data: bytes) -> None:
    assert verdict(decode, data) == verdict(parse_construct, data)


@MODERATE
@given(option_soup())
def test_codecs_agree_on_option_soup(data: bytes) -> None:
    assert verdict(decode, data) == verdict(parse_construct, data)


def test_struct_layout_matches_the_declaration() -> None:
    assert wire.HEADER_LEN == wire.FIXED_HEADER.sizeof() == wire._HEADER.size == 20
    assert wire._VALID_LENGTHS == {MSS: (4,), WSCALE: (3,), SACK_PERMITTED: (2,),
                                   TIMESTAMPS: (10,), SACK: (10, 18, 26, 34)}


def test_known_answer_syn() -> None:
    # Bytes written out from RFC 9293 3.1, RFC 7323 2.2/3.2 and RFC 2018 2-3 by hand.
    seg = Segment(0x1234, 0x0050, 0x01020304, 0, SYN | CWR | Flags.ECE, 0xFFFF, 0,
                  ((MSS, 1460), (SACK_PERMITTED, None), (TIMESTAMPS, (7, 0)),
                   (NOP, None), (WSCALE, 7)))
    expected = bytes.fromhex(
        "1234 0050 01020304 00000000 a0c2 ffff 0000 0000"
        "020405b4 0402 080a0000000700000000 01 030307")
    expected = seal(expected)
    assert encode(seg) == expected
    assert decode(expected) == seg


def test_sack_known_answer() -> None:
    seg = Segment(1, 2, options=((NOP, None), (NOP, None), (SACK, ((10, 20), (30, 40)))))
    assert encode(seg)[20:] == bytes.fromhex("0101 0512 0000000a00000014 0000001e00000028")


def test_options_padded_with_eol_to_a_word() -> None:
    data = encode(Segment(1, 2, options=((WSCALE, 3),)))
    assert data[12] >> 4 == 6
    assert data[20:] == bytes([WSCALE, 3, 3, EOL])


def test_bytes_after_eol_are_ignored() -> None:
    data = raw_segment(bytes([MSS, 4, 5, 0xB4, EOL, 0xFF, 0x00, 0x03]), payload=b"data")
    for parse in (decode, parse_construct):
        seg = parse(data)
        assert seg.options == ((MSS, 1460),)
        assert seg.payload == b"data"


def test_options_area_without_eol() -> None:
    data = raw_segment(bytes([NOP, NOP, NOP, NOP, MSS, 4, 1, 0]))
    assert decode(data).options == ((NOP, None),) * 4 + ((MSS, 256),)
    assert parse_construct(data) == decode(data)


def test_unknown_option_is_skipped_by_its_length() -> None:
    data = raw_segment(bytes([30, 6, 1, 2, 3, 4, WSCALE, 3, 14, EOL, 0, 0]))
    for parse in (decode, parse_construct):
        assert parse(data).options == ((30, b"\x01\x02\x03\x04"), (WSCALE, 14))


def test_forty_bytes_of_options_fit() -> None:
    seg = Segment(1, 2, options=((TIMESTAMPS, (1, 2)),) * 4)
    data = encode(seg)
    assert data[12] >> 4 == 15 and len(data) == 60
    assert decode(data) == seg


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_decode_accepts_buffers(kind) -> None:
    data = encode(Segment(5, 6, 7, 8, ACK, options=((MSS, 9),), payload=b"xyz"))
    for parse in (decode, parse_construct):
        seg = parse(kind(data))
        assert type(seg.payload) is bytes and seg.payload == b"xyz"


# --- scapy reads our bytes as TCP ------------------------------------------------------

@pytest.fixture(scope="module")
def scapy_tcp():
    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
    from scapy.layers import inet  # a declared test dependency: missing is a failure

    return inet.TCP, inet.TCPOptions[1]


def from_scapy_options(options: list) -> tuple:
    ours = []
    for name, value in options:
        if name == "EOL":
            break
        if name == "NOP":
            ours.append((NOP, None))
        elif name == "MSS":
            ours.append((MSS, value))
        elif name == "WScale":
            ours.append((WSCALE, value))
        elif name == "SAckOK":
            assert value == b""
            ours.append((SACK_PERMITTED, None))
        elif name == "SAck":
            ours.append((SACK, tuple(zip(value[::2], value[1::2], strict=True))))
        elif name == "Timestamp":
            ours.append((TIMESTAMPS, tuple(value)))
        else:
            assert isinstance(name, int), f"scapy's own layout for option {name}"
            ours.append((name, bytes(value)))
    return tuple(ours)


@MODERATE
@given(segments)
def test_scapy_dissects_our_segments(scapy_tcp, seg: Segment) -> None:
    TCP, scapy_kinds = scapy_tcp
    # Kinds that scapy parses with layouts of their own (MD5, TCP-AO, ...) and utcp
    # carries as opaque bytes: scapy's parsers fail on lengths those layouts do not
    # expect (TCP-AO of length 3 raises struct.error inside scapy), so leave them out.
    ours = (NOP, MSS, WSCALE, SACK_PERMITTED, SACK, TIMESTAMPS)
    assume(not any(k in scapy_kinds.values() and k not in ours for k, _ in seg.options))
    t = TCP(encode(seg))
    assert (t.sport, t.dport, t.seq, t.ack) == (seg.src_port, seg.dst_port, seg.seq, seg.ack)
    # scapy splits the 4 reserved bits as 3 reserved + the historic NS bit above CWR.
    assert int(t.flags) == seg.flags | (seg.reserved & 1) << 8
    assert t.reserved == seg.reserved >> 1
    assert (t.window, t.urgptr) == (seg.window, seg.urgent)
    assert t.dataofs == 5 + (sum(map(option_size, seg.options)) + 3) // 4
    assert from_scapy_options(t.options) == seg.options
    assert bytes(t.payload) == seg.payload


class _Sent(NullObserver):
    def __init__(self) -> None:
        self.segments: list[Segment] = []

    def segment_sent(self, conn, seg, now):
        self.segments.append(seg)


def test_scapy_dissects_every_segment_a_connection_sends(scapy_tcp) -> None:
    # What the state machine really emits, not generated segments: a handshake with
    # options, data both ways over a lossy link (retransmissions, duplicate ACKs), a
    # receiver that stops reading (zero-window probes), the four-way close, and a
    # second connection that is aborted (RST).
    TCP, scapy_kinds = scapy_tcp
    sent = _Sent()
    p = Pair(client_observer=sent, server_observer=sent, loss=0.05, seed=3,
             server_opts=Options(rcv_buf=8192))
    p.client.connect(0.0)
    p.run(stop=lambda: p.client.state is State.ESTABLISHED)
    p.server.pause_reading()
    p.client.send(bytes(range(256)) * 200, p.now)
    p.run(until=p.now + 3)
    p.server.resume_reading(p.now)
    p.server.send(b"reply", p.now)
    p.run(stop=lambda: p.client.unacked_data == p.client.unsent == 0)
    p.client.shutdown(p.now)
    p.server.shutdown(p.now)
    p.run()
    q = Pair(client_observer=sent, server_observer=sent)
    q.client.connect(0.0)
    q.run(stop=lambda: q.server.state is State.ESTABLISHED)
    q.client.abort(q.now)
    q.run()

    kinds = {flag_names(s.flags) for s in sent.segments}
    assert {"SYN", "SYN,ACK", "ACK", "PSH,ACK", "FIN,ACK", "RST"} <= kinds, kinds
    assert p.client.counters.retransmissions > 0
    assert any(s.window == 0 for s in sent.segments)  # the stalled reader's window
    for seg in sent.segments:
        t = TCP(encode(seg))
        assert (t.sport, t.dport, t.seq, t.ack) == (seg.src_port, seg.dst_port, seg.seq,
                                                    seg.ack)
        assert int(t.flags) == seg.flags and t.window == seg.window
        assert from_scapy_options(t.options) == seg.options
        assert bytes(t.payload) == seg.payload


# --- malformed datagrams ---------------------------------------------------------------

@CODECS
@pytest.mark.parametrize("n", [0, 1, 19])
def test_shorter_than_header(parse, n: int) -> None:
    with pytest.raises(MalformedSegment, match=f"{n} bytes is shorter than the 20-byte"):
        parse(bytes(raw_segment()[:n]))


@CODECS
@pytest.mark.parametrize("offset", [0, 1, 4])
def test_data_offset_below_five(parse, offset: int) -> None:
    with pytest.raises(MalformedSegment, match=f"data offset {offset} is below the minimum"):
        parse(raw_segment(offset=offset, payload=b"12345678"))


@CODECS
@pytest.mark.parametrize(("offset", "payload"), [(6, b""), (15, b"x" * 39)])
def test_data_offset_past_end(parse, offset: int, payload: bytes) -> None:
    with pytest.raises(MalformedSegment, match=f"data offset {offset} .* runs past the end"):
        parse(raw_segment(offset=offset, payload=payload))


@CODECS
@pytest.mark.parametrize("length", [0, 1])
@pytest.mark.parametrize("kind", [MSS, SACK, 30])
def test_option_length_below_two(parse, kind: int, length: int) -> None:
    with pytest.raises(MalformedSegment, match=f"kind {kind} at byte 20 has length {length}"):
        parse(raw_segment(bytes([kind, length, 0, 0])))


@CODECS
@pytest.mark.parametrize("area", [bytes([30, 10, 0, 0]), bytes([NOP, TIMESTAMPS, 10, 0]),
                                  bytes([MSS, 4, 1, 2, NOP, SACK, 10, 0])])
def test_option_runs_past_header(parse, area: bytes) -> None:
    with pytest.raises(MalformedSegment, match=f"runs past the {20 + len(area)}-byte header"):
        parse(raw_segment(area, payload=b"payload bytes beyond the header"))


@CODECS
@pytest.mark.parametrize("kind", [MSS, 30])
def test_option_missing_length_byte(parse, kind: int) -> None:
    with pytest.raises(MalformedSegment, match=f"kind {kind} at byte 23 is cut off"):
        parse(raw_segment(bytes([NOP, NOP, NOP, kind]), payload=b"\x04"))


@CODECS
@pytest.mark.parametrize(("kind", "length", "name"), [
    (MSS, 3, "MSS"), (MSS, 6, "MSS"),
    (WSCALE, 2, "window scale"), (WSCALE, 4, "window scale"),
    (SACK_PERMITTED, 3, "SACK-permitted"), (SACK_PERMITTED, 4, "SACK-permitted"),
    (TIMESTAMPS, 8, "timestamps"), (TIMESTAMPS, 12, "timestamps"),
    (SACK, 2, "SACK"), (SACK, 9, "SACK"), (SACK, 12, "SACK"), (SACK, 36, "SACK"),
])
def test_known_option_with_wrong_length(parse, kind: int, length: int, name: str) -> None:
    area = bytes([kind, length]) + bytes(length - 2)
    area += bytes(-len(area) % 4)
    with pytest.raises(MalformedSegment, match=f"{name} option at byte 20 has length {length}"):
        parse(raw_segment(area))


@CODECS
def test_bad_checksum(parse) -> None:
    data = bytearray(encode(Segment(1, 2, 3, 4, ACK, 100, payload=b"hello")))
    data[16] ^= 0x01
    with pytest.raises(MalformedSegment, match="bad checksum"):
        parse(bytes(data))


@CODECS
def test_all_zero_datagram_fails_the_checksum(parse) -> None:
    with pytest.raises(MalformedSegment, match="bad checksum"):
        parse(bytes(40))


@MODERATE
@given(segments, st.data())
def test_any_corrupted_byte_is_caught(seg: Segment, data) -> None:
    wire_bytes = bytearray(encode(seg))
    i = data.draw(st.integers(0, len(wire_bytes) - 1))
    wire_bytes[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(MalformedSegment, match="bad checksum"):
        decode(bytes(wire_bytes))


# --- checksum --------------------------------------------------------------------------

@MODERATE
@given(st.one_of(st.binary(max_size=300), st.binary(min_size=500, max_size=3000)))
def test_checksum_equals_word_by_word_rfc1071(data: bytes) -> None:
    # (Past 736 bytes the sum is taken as two halves and folded: both ways are here.)
    assert checksum(data) == rfc1071(data)


@pytest.mark.parametrize("data", [b"", b"\0", b"\0\0\0", b"\xff", b"\xff\xff", b"\xff\xff\xff",
                                  b"\x01", b"\x00\x01\xf2", b"\xff" * 1453, bytes(1452),
                                  b"\xff" * 736, b"\xff" * 737, bytes(736) + b"\x01",
                                  b"\x01" + bytes(736), bytes(737), b"\x01" + bytes(9000),
                                  bytes(9000) + b"\x01", b"\xff" * 65507])
def test_checksum_edge_cases(data: bytes) -> None:
    assert checksum(data) == rfc1071(data)


def test_checksum_rfc1071_example() -> None:
    # RFC 1071 section 3: these bytes sum to ddf2 (one's complement).
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == ~0xDDF2 & 0xFFFF


@MODERATE
@given(segments)
def test_encoded_segment_verifies(seg: Segment) -> None:
    data = encode(seg)
    assert checksum(data) == 0
    zeroed = data[:16] + b"\0\0" + data[18:]
    assert int.from_bytes(data[16:18], "big") == rfc1071(zeroed)


# --- encode rejects what it cannot represent -------------------------------------------

BAD_SEGMENTS = {
    "src_port": (Segment(65536, 80), "src_port must be an int in 0..65535"),
    "dst_port": (Segment(1, -1), "dst_port must be an int in 0..65535"),
    "seq": (Segment(1, 2, seq=2**32), r"seq must be an int in 0..4294967295"),
    "ack": (Segment(1, 2, ack=-1), "ack must be an int"),
    "flags": (Segment(1, 2, flags=256), "flags must be an int in 0..255"),
    "window": (Segment(1, 2, window=65536), "window must be"),
    "urgent": (Segment(1, 2, urgent=1 << 16), "urgent must be"),
    "reserved": (Segment(1, 2, reserved=16), "reserved must be an int in 0..15"),
    "too many options": (Segment(1, 2, options=((TIMESTAMPS, (1, 2)),) * 5),
                         "options take 50 bytes; a header has room for 40"),
    "unknown too long": (Segment(1, 2, options=((30, bytes(39)),)), "options take 41 bytes"),
    "EOL entry": (Segment(1, 2, options=((EOL, None),)), "EOL is not an entry"),
    "SACK empty": (Segment(1, 2, options=((SACK, ()),)), "option kind 5 value must be 1 to 4"),
    "SACK five": (Segment(1, 2, options=((SACK, ((1, 2),) * 5),)), "option kind 5 value"),
    "SACK edge": (Segment(1, 2, options=((SACK, ((1, 2**32),)),)), "option kind 5 value"),
    "MSS": (Segment(1, 2, options=((MSS, 70000),)), "option kind 2 value must be an int"),
    "WSCALE": (Segment(1, 2, options=((WSCALE, 256),)), "option kind 3 value"),
    "NOP value": (Segment(1, 2, options=((NOP, 1),)), "option kind 1 value must be None"),
    "SACK_PERMITTED value": (Segment(1, 2, options=((SACK_PERMITTED, True),)), "kind 4 value"),
    "TIMESTAMPS range": (Segment(1, 2, options=((TIMESTAMPS, (2**32, 0)),)), "kind 8 value"),
    "TIMESTAMPS shape": (Segment(1, 2, options=((TIMESTAMPS, (1,)),)), "kind 8 value"),
    "kind 256": (Segment(1, 2, options=((256, b""),)), "option kind must be an int in 0..255"),
    "unknown value": (Segment(1, 2, options=((30, 5),)), "option kind 30 value must be bytes"),
    "not a pair": (Segment(1, 2, options=((MSS,),)), r"must be a \(kind, value\) pair"),
}


@pytest.mark.parametrize(("seg", "message"), BAD_SEGMENTS.values(), ids=BAD_SEGMENTS.keys())
def test_encoders_reject_out_of_range_fields(seg: Segment, message: str) -> None:
    with pytest.raises(ValueError, match=message) as by_struct:
        encode(seg)
    with pytest.raises(ValueError, match=message) as by_construct:
        build_construct(seg)
    assert by_struct.type is by_construct.type is ValueError
    assert str(by_struct.value) == str(by_construct.value)


# Fields of the wrong type. The compiled core's Segment checks its fields' types as
# they are set (TypeError, from mypyc); the pure-Python one takes anything, and the
# encoders find it.
WRONG_TYPES = {
    "seq float": ({"seq": 1.5}, "seq must be an int"),
    "payload": ({"payload": "text"}, "payload must be bytes"),
}


@pytest.mark.parametrize(("fields", "message"), WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_fields_of_the_wrong_type_are_rejected(fields: dict, message: str) -> None:
    if utcp.compiled:
        with pytest.raises(TypeError):
            Segment(1, 2, **fields)
        return
    test_encoders_reject_out_of_range_fields(Segment(1, 2, **fields), message)


def outcome(encoder, seg: Segment):
    """What an encoder makes of ``seg``: bytes, or the ValueError message."""
    try:
        return encoder(seg)
    except ValueError as exc:
        assert type(exc) is ValueError
        return ("rejected", str(exc))


loose_ints = st.one_of(st.sampled_from([-1, 0, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 1.5]),
                       st.integers(-2, 2**33))
loose_values = st.one_of(
    st.none(), loose_ints, st.binary(max_size=45), st.text(max_size=3),
    st.tuples(loose_ints, loose_ints), st.tuples(loose_ints),
    st.lists(st.tuples(loose_ints, loose_ints), max_size=6).map(tuple),
)
loose_entries = st.one_of(
    st.tuples(st.sampled_from([EOL, NOP, MSS, WSCALE, SACK_PERMITTED, SACK, TIMESTAMPS]),
              loose_values),
    st.tuples(st.integers(-1, 300), loose_values),
    option_entries,
    st.tuples(st.just(MSS)),
)


@st.composite
def loose_segments(draw) -> Segment:
    """A valid segment with up to two fields replaced by values that may be out of range."""
    seg = draw(segments)
    names = ["src_port", "dst_port", "seq", "ack", "flags", "window", "urgent", "reserved",
             "options", "options", "payload"]
    for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True)):
        if name == "options":
            value = tuple(draw(st.lists(st.one_of(option_entries, loose_entries), max_size=5)))
        elif name == "payload":
            value = draw(st.one_of(st.text(max_size=2), st.lists(u8, max_size=3),
                                   st.binary(max_size=3).map(memoryview)))
        elif name in ("flags", "reserved"):
            value = draw(st.integers(-1, 300 if name == "flags" else 17))
        else:
            value = draw(loose_ints)
        try:
            setattr(seg, name, value)
        except TypeError:
            # The compiled core's Segment takes only values of its fields' types
            # (ints, a tuple, bytes); the pure-Python one takes anything.
            assert utcp.compiled
            assume(False)
    return seg


@MODERATE
@given(loose_segments())
def test_encoders_agree_on_any_fields(seg: Segment) -> None:
    assert outcome(encode, seg) == outcome(build_construct, seg)


# --- the Segment type ------------------------------------------------------------------

def test_segment_helpers() -> None:
    seg = Segment(1, 2, 100, 0, SYN | FIN, options=((MSS, 536), (MSS, 9)), payload=b"ab")
    assert seg.seg_len == 4
    assert seg.option(MSS) == 536 and seg.option(WSCALE) is None
    assert flag_names(SYN | ACK | PSH) == "SYN,PSH,ACK"
    assert repr(seg) == "<Segment 1>2 [SYN,FIN] seq=100 ack=0 win=0 len=2 MSS=536 MSS=9>"
    assert issubclass(MalformedSegment, ValueError)


def test_checksum_failure_is_its_own_malformed_kind() -> None:
    """The endpoint counts corruption apart from other malformed datagrams."""
    from utcp.core.wire import BadChecksum

    data = bytearray(encode(Segment(1, 2, 3, 4, ACK, 5, payload=b"abc")))
    data[-1] ^= 0xFF
    for parse in (decode, parse_construct):
        with pytest.raises(BadChecksum):
            parse(bytes(data))
    assert issubclass(BadChecksum, MalformedSegment)


def test_timestamps_fast_path_known_answer() -> None:
    # NOP NOP TS: the layout of every segment of a connection with timestamps.
    seg = Segment(49152, 7007, 1000, 5000, ACK, 512, 0,
                  (wire.NOP_OPTION, wire.NOP_OPTION, (TIMESTAMPS, (0x01020304, 0xA0B0C0D0))))
    data = encode(seg)
    assert data[12] >> 4 == 8 and data[20:32] == bytes.fromhex("0101080a01020304a0b0c0d0")
    assert rfc1071(data) == 0
    assert data == build_construct(seg)
    assert decode(data) == seg and decode(data).options[0] is wire.NOP_OPTION
    # Eight words of header, but other options in them: the general path.
    other = Segment(1, 2, 3, 4, ACK, 5, 0, ((MSS, 1460), (NOP, None), (WSCALE, 7), (NOP, None),
                                            (NOP, None), (NOP, None), (NOP, None)))
    assert decode(encode(other)) == other


def test_syn_options_fast_path_known_answer() -> None:
    ours = ((MSS, 1452), wire.NOP_OPTION, wire.NOP_OPTION, (TIMESTAMPS, (7, 0)),
            wire.NOP_OPTION, (WSCALE, 3))
    data = encode(Segment(1, 2, 3, 0, SYN, 65535, 0, ours))
    assert data[20:40] == bytes.fromhex("020405ac 0101 080a 00000007 00000000 010303 03"
                                        .replace(" ", ""))
    assert decode(data).options == ours
    linux = bytes.fromhex("020405b4 0402 080a 0000000a 00000000 010303 07".replace(" ", ""))
    seg = parse_construct(seal(raw_segment(linux)))
    assert decode(seal(raw_segment(linux))) == seg
    assert seg.options == ((MSS, 1460), (SACK_PERMITTED, None), (TIMESTAMPS, (10, 0)),
                           (NOP, None), (WSCALE, 7))


def test_segments_written_out_init_takes_the_fields_in_order_with_their_defaults():
    import dataclasses
    import inspect

    params = inspect.signature(Segment).parameters
    fields = dataclasses.fields(Segment)
    assert list(params) == [f.name for f in fields]
    for f in fields:
        default = params[f.name].default
        assert default == (inspect.Parameter.empty if f.default is dataclasses.MISSING
                           else f.default), f.name
