"""The wire format: one TCP segment (RFC 9293 section 3.1) per UDP datagram.

``SEGMENT_LAYOUT`` declares the segment with ``construct``: fixed header, every
option this project knows, the skipping of unknown options, and the payload.
It is the single source of truth; ``build_construct`` and ``parse_construct``
use it directly.

``encode`` and ``decode`` are the per-segment codec used by the connection.
They are written with ``struct`` because construct costs tens of microseconds
per header, and the tests prove them byte for byte equal to the declaration:
same bytes out, same segments accepted, same errors (with the same messages).

The checksum is the RFC 1071 Internet checksum over the segment alone, with no
IP pseudo-header (UDP already covers the addresses, and a NAT rewrites them).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntFlag
from typing import Any, Final

from construct import (
    BitsInteger,
    BitStruct,
    ConstructError,
    FixedSized,
    Flag,
    FocusedSeq,
    GreedyBytes,
    GreedyRange,
    If,
    Int8ub,
    Int16ub,
    Int32ub,
    Pass,
    Rebuild,
    StopIf,
    Struct,
    Switch,
    Tell,
    Terminated,
    stream_size,
    this,
)

from .require import Invalid as _Invalid
from .require import Require as _Require

# The control bits, one name each (Final: compiled code inlines them).
FIN: Final = 1
SYN: Final = 2
RST: Final = 4
PSH: Final = 8
ACK: Final = 16
URG: Final = 32
ECE: Final = 64
CWR: Final = 128


class Flags(IntFlag):
    """The eight control bits; ``str()`` lists them the way ladders print them."""

    FIN = 1
    SYN = 2
    RST = 4
    PSH = 8
    ACK = 16
    URG = 32
    ECE = 64
    CWR = 128


# Option kinds (IANA "TCP Option Kind Numbers").
EOL: Final = 0
NOP: Final = 1
MSS: Final = 2
WSCALE: Final = 3
SACK_PERMITTED: Final = 4
SACK: Final = 5
TIMESTAMPS: Final = 8
#: The rate of utcp's TSval clock (RFC 7323 5.4): once a millisecond, as Linux's.
TS_HZ: Final = 1000


class MalformedSegment(ValueError):
    """A datagram is not a well-formed segment (short, bad offset, bad option, bad checksum)."""


class BadChecksum(MalformedSegment):
    """The segment's Internet checksum does not verify (corrupted in transit)."""


@dataclass(slots=True)
class Segment:
    """One TCP segment. ``flags`` is an int of the FIN..CWR bits.

    ``options`` is a tuple of ``(kind, value)`` in wire order: ``(MSS, int)``,
    ``(WSCALE, int)``, ``(SACK_PERMITTED, None)``, ``(SACK, ((left, right), ...))``,
    ``(TIMESTAMPS, (tsval, tsecr))``, ``(NOP, None)`` and, for kinds this project
    does not know, ``(kind, bytes)``. EOL ends the list and is not part of it.
    """

    src_port: int
    dst_port: int
    seq: int = 0
    ack: int = 0
    flags: int = 0
    window: int = 0
    urgent: int = 0
    options: tuple = ()
    payload: bytes = b""
    reserved: int = 0

    def __init__(self, src_port: int, dst_port: int, seq: int = 0, ack: int = 0,
                 flags: int = 0, window: int = 0, urgent: int = 0, options: tuple = (),
                 payload: bytes = b"", reserved: int = 0) -> None:
        # Written out (dataclass then makes none): the compiled core makes a Segment
        # for every segment, and an __init__ that dataclass generates stays
        # interpreted, slower there than in pure Python.
        self.src_port = src_port
        self.dst_port = dst_port
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.urgent = urgent
        self.options = options
        self.payload = payload
        self.reserved = reserved

    @property
    def seg_len(self) -> int:
        """SEG.LEN: payload length, plus one for SYN and one for FIN."""
        f = self.flags
        return len(self.payload) + (f & SYN and 1) + (f & FIN and 1)

    def option(self, kind: int) -> object:
        """Value of the first option of ``kind``, or None."""
        for k, v in self.options:
            if k == kind:
                return v
        return None

    def __repr__(self) -> str:
        opts = "".join(f" {_OPTION_NAMES.get(k, k)}={v}" for k, v in self.options)
        return (
            f"<Segment {self.src_port}>{self.dst_port} [{flag_names(self.flags)}] "
            f"seq={self.seq} ack={self.ack} win={self.window} len={len(self.payload)}{opts}>"
        )


_OPTION_NAMES = {NOP: "NOP", MSS: "MSS", WSCALE: "WS", SACK_PERMITTED: "SACK_PERM",
                 SACK: "SACK", TIMESTAMPS: "TS"}
_FLAG_ORDER = ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"), (ACK, "ACK"),
               (URG, "URG"), (ECE, "ECE"), (CWR, "CWR"))


def flag_names(flags: int) -> str:
    """``'SYN,ACK'``-style names of the set flags."""
    return ",".join(name for bit, name in _FLAG_ORDER if flags & bit)


# Cutting a number in two at a multiple of 16 bits and adding the halves keeps it
# modulo 0xFFFF (2**16 == 1). _sum16() reads a long datagram as two numbers, its
# halves (cut at _SPLIT bytes), adds them, and folds the sum three times: a few
# linear passes that leave the division (one machine division per 30-bit digit)
# a sixth of a full segment's digits. About a quarter cheaper than one number
# folded twice, a third cheaper than none.
_SPLIT: Final = 736  # bytes: 5888 bits
_FOLD1: Final = 2944
_FOLD1_MASK: Final = (1 << _FOLD1) - 1
_FOLD2: Final = 1472
_FOLD2_MASK: Final = (1 << _FOLD2) - 1
_FOLD3: Final = 736
_FOLD3_MASK: Final = (1 << _FOLD3) - 1


def _sum16(data: bytes | bytearray | memoryview) -> int:
    """A number equal modulo 0xFFFF to ``data`` read as one little-endian integer
    (see checksum()); zero only if that is."""
    if len(data) <= _SPLIT:
        return int.from_bytes(data, "little")
    n = int.from_bytes(data[:_SPLIT], "little") + int.from_bytes(data[_SPLIT:], "little")
    n = (n >> _FOLD1) + (n & _FOLD1_MASK)
    n = (n >> _FOLD2) + (n & _FOLD2_MASK)
    return (n >> _FOLD3) + (n & _FOLD3_MASK)


def checksum(data: bytes | bytearray | memoryview) -> int:
    """RFC 1071 Internet checksum of ``data`` (an odd length is padded with a zero byte)."""
    # 2**16 == 1 (mod 0xFFFF), so reducing the whole datagram as one integer modulo
    # 0xFFFF adds up its 16-bit words with every carry folded back in (RFC 1071 section
    # 2(D), deferred carries). Reading it little-endian makes a trailing zero pad byte
    # free; the sum then comes out byte-swapped, which multiplying by 256 undoes
    # (section 2(B), byte order independence).
    n = _sum16(data)
    s = (n % 0xFFFF << 8) % 0xFFFF
    if s:
        return 0xFFFF - s
    # A one's-complement sum is 0 only for all-zero data; otherwise "0" here is 0xFFFF.
    return 0 if n else 0xFFFF


# --- The declaration (RFC 9293 section 3.1) -------------------------------------------

def _remaining(ctx: Any) -> int:
    """Bytes left in the stream being parsed."""
    return stream_size(ctx._io) - ctx._io.tell()


def _rest(ctx: Any) -> bytes:
    """The unread bytes, without consuming them."""
    here = ctx._io.tell()
    data = ctx._io.read()
    ctx._io.seek(here)
    return data


_FLAG_FIELDS = (("CWR", CWR), ("ECE", ECE), ("URG", URG), ("ACK", ACK),
                ("PSH", PSH), ("RST", RST), ("SYN", SYN), ("FIN", FIN))

FIXED_HEADER = Struct(
    "src_port" / Int16ub,
    "dst_port" / Int16ub,
    "seq" / Int32ub,
    "ack" / Int32ub,
    "control" / BitStruct(
        "data_offset" / BitsInteger(4),  # header length in 32-bit words
        "reserved" / BitsInteger(4),
        "flags" / Struct(*(name / Flag for name, _bit in _FLAG_FIELDS)),
    ),
    "window" / Int16ub,
    "checksum" / Int16ub,
    "urgent" / Int16ub,
)
HEADER_LEN: Final[int] = FIXED_HEADER.sizeof()  # 20
MAX_OPTIONS_LEN: Final = 15 * 4 - HEADER_LEN  # a 4-bit data offset caps the header at 60 bytes

_SACK_BLOCK = Struct("left" / Int32ub, "right" / Int32ub)
_MAX_SACK_BLOCKS: Final = 4  # RFC 2018 section 3: 4 blocks fill 34 of the 40 option bytes
_TIMESTAMPS = Struct("tsval" / Int32ub, "tsecr" / Int32ub)

# The bytes after kind and length, by kind (RFC 9293 3.2, RFC 7323 2.2 and 3.2, RFC 2018 2-3).
_OPTION_VALUE = Switch(this.kind, {
    MSS: Int16ub,
    WSCALE: Int8ub,
    SACK_PERMITTED: Pass,
    SACK: GreedyRange(_SACK_BLOCK),
    TIMESTAMPS: _TIMESTAMPS,
}, default=GreedyBytes)

# Option lengths a receiver accepts, by kind, derived from the layouts above.
_VALID_LENGTHS: Final[dict[int, tuple[int, ...]]] = {
    kind: (2 + _OPTION_VALUE.cases[kind].sizeof(),)
    for kind in (MSS, WSCALE, SACK_PERMITTED, TIMESTAMPS)}
_VALID_LENGTHS[SACK] = tuple(2 + n * _SACK_BLOCK.sizeof()
                             for n in range(1, _MAX_SACK_BLOCKS + 1))
_KIND_NAMES: Final = {MSS: "MSS", WSCALE: "window scale", SACK_PERMITTED: "SACK-permitted",
               SACK: "SACK", TIMESTAMPS: "timestamps"}


# Messages shared by both codecs, so that they reject a datagram in the same words.

def _too_short(n: int) -> str:
    return f"datagram of {n} bytes is shorter than the {HEADER_LEN}-byte TCP header"


_BAD_CHECKSUM: Final = "bad checksum: the RFC 1071 sum over the segment does not verify"


def _offset_too_small(offset: int) -> str:
    return f"data offset {offset} is below the minimum of 5 ({HEADER_LEN} bytes)"


def _offset_past_end(offset: int, n: int) -> str:
    return f"data offset {offset} ({offset * 4} bytes) runs past the end of the {n}-byte datagram"


def _no_length_byte(kind: int, at: int) -> str:
    return f"option kind {kind} at byte {at} is cut off by the end of the header before its length"


def _length_below_two(kind: int, at: int, length: int) -> str:
    return (f"option kind {kind} at byte {at} has length {length}; the length counts the "
            f"kind and length bytes, so it is at least 2")


def _past_header(kind: int, at: int, length: int, end: int) -> str:
    return f"option kind {kind} at byte {at} with length {length} runs past the {end}-byte header"


def _wrong_length(kind: int, at: int, length: int) -> str:
    allowed = _VALID_LENGTHS[kind]
    want = str(allowed[0]) if len(allowed) == 1 else (
        ", ".join(map(str, allowed[:-1])) + f" or {allowed[-1]}")
    return f"{_KIND_NAMES[kind]} option at byte {at} has length {length}; it must be {want}"


def _at(ctx: Any) -> int:
    """Offset of the current option within the segment."""
    return HEADER_LEN + ctx.position - ctx._.start


def _header_end(ctx: Any) -> int:
    """Length of the header the current option sits in."""
    return HEADER_LEN + stream_size(ctx._io) - ctx._.start


def _length_of(ctx: Any) -> int:
    """Length byte of the option being built: kind, length and value."""
    return 2 + len(_OPTION_VALUE.build(ctx.value, kind=ctx.kind))


OPTION = Struct(
    "position" / Tell,
    "kind" / Int8ub,
    # RFC 9293 3.1: EOL ends the option list; what follows up to the data offset is padding.
    "padding" / If(this.kind == EOL, GreedyBytes),
    StopIf(lambda ctx: ctx.kind in (EOL, NOP)),  # both are a single byte
    # Every other kind, known or not, has a length byte (RFC 9293 3.1), which is how
    # a receiver skips options it does not implement (RFC 9293 3.2, MUST-68).
    _Require(lambda ctx: _remaining(ctx) >= 1,
             lambda ctx: _no_length_byte(ctx.kind, _at(ctx))),
    "length" / Rebuild(Int8ub, _length_of),
    _Require(lambda ctx: ctx.length >= 2,
             lambda ctx: _length_below_two(ctx.kind, _at(ctx), ctx.length)),
    _Require(lambda ctx: _remaining(ctx) >= ctx.length - 2,
             lambda ctx: _past_header(ctx.kind, _at(ctx), ctx.length, _header_end(ctx))),
    _Require(lambda ctx: ctx.kind not in _VALID_LENGTHS or ctx.length in _VALID_LENGTHS[ctx.kind],
             lambda ctx: _wrong_length(ctx.kind, _at(ctx), ctx.length)),
    "value" / FixedSized(this.length - 2, _OPTION_VALUE),
)

OPTIONS_AREA = FocusedSeq(
    "options",
    "start" / Tell,
    "options" / GreedyRange(OPTION),
    Terminated,  # every byte of the area belongs to an option or to EOL's padding
)

# One segment, as RFC 9293 section 3.1 lays it out: the single source of truth.
SEGMENT_LAYOUT = Struct(
    _Require(lambda ctx: _remaining(ctx) >= HEADER_LEN,
             lambda ctx: _too_short(_remaining(ctx))),
    # Integrity before structure: a damaged datagram is reported as damaged.
    _Require(lambda ctx: checksum(_rest(ctx)) == 0, lambda ctx: _BAD_CHECKSUM),
    "header" / FIXED_HEADER,
    _Require(lambda ctx: ctx.header.control.data_offset >= 5,
             lambda ctx: _offset_too_small(ctx.header.control.data_offset)),
    _Require(lambda ctx: ctx.header.control.data_offset * 4 - HEADER_LEN <= _remaining(ctx),
             lambda ctx: _offset_past_end(ctx.header.control.data_offset,
                                          HEADER_LEN + _remaining(ctx))),
    "options" / FixedSized(this.header.control.data_offset * 4 - HEADER_LEN, OPTIONS_AREA),
    "payload" / GreedyBytes,
)


def _option_from_parsed(opt: Any) -> tuple[int, Any]:
    kind = opt.kind
    if kind in (NOP, SACK_PERMITTED):
        return kind, None
    value = opt.value
    if kind == SACK:
        return kind, tuple((b.left, b.right) for b in value)
    if kind == TIMESTAMPS:
        return kind, (value.tsval, value.tsecr)
    return kind, value


def _option_to_build(kind: int, value: Any) -> dict[str, Any]:
    if kind == SACK:
        value = [{"left": left, "right": right} for left, right in value]
    elif kind == TIMESTAMPS:
        value = {"tsval": value[0], "tsecr": value[1]}
    return {"kind": kind, "padding": None, "value": value}


def parse_construct(data: bytes | bytearray | memoryview) -> Segment:
    """Parse one datagram with ``SEGMENT_LAYOUT``; accepts and rejects exactly as ``decode``."""
    try:
        parsed = SEGMENT_LAYOUT.parse(bytes(data))
    except _Invalid as exc:
        if exc.reason == _BAD_CHECKSUM:
            raise BadChecksum(exc.reason) from None
        raise MalformedSegment(exc.reason) from None
    except ConstructError as exc:  # every read is guarded above, so this is a gap in them
        raise MalformedSegment(f"undecodable segment: {exc}") from None
    h = parsed.header
    flags = sum(bit for name, bit in _FLAG_FIELDS if h.control.flags[name])
    options = tuple(_option_from_parsed(o) for o in parsed.options if o.kind != EOL)
    return Segment(h.src_port, h.dst_port, h.seq, h.ack, flags, h.window, h.urgent,
                   options, parsed.payload, h.control.reserved)


def build_construct(seg: Segment) -> bytes:
    """Serialize ``seg`` with ``SEGMENT_LAYOUT`` (checksum filled in); same bytes as ``encode``."""
    problem = _field_problem(seg)
    if problem:
        raise ValueError(problem)
    options = [_option_to_build(k, v) for k, v in seg.options]
    area = len(OPTIONS_AREA.build(options))
    fields: dict[str, Any] = {
        "header": {
            "src_port": seg.src_port, "dst_port": seg.dst_port, "seq": seg.seq, "ack": seg.ack,
            "control": {
                "data_offset": 5 + (area + 3) // 4,  # padded to whole words with EOL (zero)
                "reserved": seg.reserved,
                "flags": {name: bool(seg.flags & bit) for name, bit in _FLAG_FIELDS},
            },
            "window": seg.window, "checksum": 0, "urgent": seg.urgent,
        },
        "options": options,
        "payload": bytes(seg.payload),
    }
    # RFC 9293 3.1: the checksum is computed with the checksum field itself zero.
    fields["header"]["checksum"] = checksum(SEGMENT_LAYOUT.build(fields))
    return SEGMENT_LAYOUT.build(fields)


# --- Field validation for the encoders -------------------------------------------------

_RANGES: Final = (("src_port", 16), ("dst_port", 16), ("seq", 32), ("ack", 32), ("flags", 8),
           ("window", 16), ("urgent", 16), ("reserved", 4))
_BYTES_LIKE: Final = (bytes, bytearray, memoryview)


def _uint(value: Any, bits: int) -> bool:
    return isinstance(value, int) and 0 <= value < 1 << bits


def _option_problem(kind: Any, value: Any) -> str | None:
    """What is wrong with one ``(kind, value)`` entry, or None."""
    if not _uint(kind, 8):
        return f"option kind must be an int in 0..255, got {kind!r}"
    if kind == EOL:
        return "EOL is not an entry of Segment.options: it ends the list, and encode pads with it"
    if kind in (NOP, SACK_PERMITTED):
        ok = value is None
        want = "None"
    elif kind == MSS:
        ok, want = _uint(value, 16), "an int in 0..65535"
    elif kind == WSCALE:
        ok, want = _uint(value, 8), "an int in 0..255"
    elif kind == TIMESTAMPS:
        ok = (isinstance(value, tuple) and len(value) == 2
              and all(_uint(v, 32) for v in value))
        want = "(tsval, tsecr), each an int in 0..2**32-1"
    elif kind == SACK:
        ok = (isinstance(value, tuple) and 1 <= len(value) <= _MAX_SACK_BLOCKS
              and all(isinstance(b, (tuple, list)) and len(b) == 2
                      and all(_uint(e, 32) for e in b) for b in value))
        want = f"1 to {_MAX_SACK_BLOCKS} (left, right) blocks of ints in 0..2**32-1"
    else:
        ok, want = isinstance(value, _BYTES_LIKE), "bytes (the value of an unknown kind)"
    if ok:
        return None
    return f"option kind {kind} value must be {want}, got {value!r}"


def _field_problem(seg: Segment) -> str | None:
    """What makes ``seg`` unencodable, or None."""
    for name, bits in _RANGES:
        value = getattr(seg, name)
        if not _uint(value, bits):
            return f"{name} must be an int in 0..{(1 << bits) - 1}, got {value!r}"
    if not isinstance(seg.payload, _BYTES_LIKE):
        return f"payload must be bytes, got {type(seg.payload).__name__}"
    size = 0
    for entry in seg.options:
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2):
            return f"each option must be a (kind, value) pair, got {entry!r}"
        problem = _option_problem(*entry)
        if problem:
            return problem
        kind, value = entry
        if kind == NOP:
            size += 1
        elif kind == SACK:
            size += 2 + 8 * len(value)
        elif kind in _VALID_LENGTHS:
            size += _VALID_LENGTHS[kind][0]
        else:
            size += 2 + len(value)
    if size > MAX_OPTIONS_LEN:
        return (f"options take {size} bytes; a header has room for {MAX_OPTIONS_LEN} "
                f"(RFC 9293 3.1: data offset at most 15 words)")
    return None


# --- The struct codec (hot path) -------------------------------------------------------

_HEADER: Final = struct.Struct("!HHIIBBHHH")  # FIXED_HEADER, with data offset+reserved as one byte
_KIND_LEN: Final = struct.Struct("!BB")
_MSS_OPT: Final = struct.Struct("!BBH")
_WSCALE_OPT: Final = struct.Struct("!BBB")
_TS_OPT: Final = struct.Struct("!BBII")
_U32_PAIR: Final = struct.Struct("!II")
_SACK_PERMITTED_OPT: Final = bytes((SACK_PERMITTED, 2))
#: The NOP option as ``Segment.options`` holds it. Segments whose options are
#: ``(NOP_OPTION, NOP_OPTION, (TIMESTAMPS, ...))``, this very object twice (the
#: layout every segment of a connection with timestamps has), take a fast path.
#: (Typed as any tuple and not Final, so that compiled code keeps this one object:
#: it would unbox a tuple of known shape into a fresh one at each use, and keep a
#: Final literal apart from the one Python code sees.)
NOP_OPTION: tuple = (NOP, None)
_NOP_ENTRY: Final = NOP_OPTION
# The header followed by NOP, NOP and the timestamps option, in one piece.
_HEADER_TS: Final = struct.Struct("!HHIIBBHHHIII")
_TS_AREA: Final = struct.Struct("!III")  # NOP NOP kind length as one word, then TSval, TSecr
_NOP_NOP_TS: Final = 0x0101080A
# The 20-byte options of a SYN: MSS, then NOP NOP (ours) or SACK-permitted (Linux's),
# timestamps, NOP, window scale.
_SYN_AREA: Final = struct.Struct("!BBHBBBBIIBBBB")
_SACK_PERMITTED_ENTRY: Final[tuple] = (SACK_PERMITTED, None)


def _encode_options(options: Any) -> bytes:
    """The options area, padded with EOL to whole 32-bit words; ValueError if invalid."""
    if len(options) == 6 and options[1] is _NOP_ENTRY and options[2] is _NOP_ENTRY \
            and options[4] is _NOP_ENTRY:
        # Our SYN's options (see connection._send_syn), in one pack.
        (k0, mss), _, _, (k3, ts), _, (k5, ws) = options
        if k0 == MSS and k3 == TIMESTAMPS and k5 == WSCALE and isinstance(ts, tuple):
            return _SYN_AREA.pack(MSS, 4, mss, NOP, NOP, TIMESTAMPS, 10, ts[0], ts[1],
                                  NOP, WSCALE, 3, ws)
    out = bytearray()
    for kind, value in options:
        if kind == NOP and value is None:
            out.append(NOP)
        elif kind == MSS:
            out += _MSS_OPT.pack(MSS, 4, value)
        elif kind == WSCALE:
            out += _WSCALE_OPT.pack(WSCALE, 3, value)
        elif kind == TIMESTAMPS and isinstance(value, tuple):
            tsval, tsecr = value
            out += _TS_OPT.pack(TIMESTAMPS, 10, tsval, tsecr)
        elif kind == SACK_PERMITTED and value is None:
            out += _SACK_PERMITTED_OPT
        elif kind == SACK and isinstance(value, tuple) and 1 <= len(value) <= _MAX_SACK_BLOCKS:
            out += _KIND_LEN.pack(SACK, 2 + 8 * len(value))
            for left, right in value:
                out += _U32_PAIR.pack(left, right)
        elif kind in (EOL, NOP, MSS, WSCALE, SACK_PERMITTED, SACK, TIMESTAMPS):
            raise ValueError("bad option")
        elif isinstance(value, _BYTES_LIKE):
            out += _KIND_LEN.pack(kind, 2 + len(value))
            out += value
        else:
            raise ValueError("bad option")
    if len(out) > MAX_OPTIONS_LEN:
        raise ValueError("options too long")
    out += bytes(-len(out) % 4)  # RFC 9293 3.1: pad with zeros (EOL) to a word boundary
    return bytes(out)


def encode(seg: Segment) -> bytes:
    """Serialize ``seg`` (checksum filled in); ValueError if a field is out of range."""
    try:
        reserved = seg.reserved
        if reserved >> 4:  # would spill into the data offset, where struct cannot see it
            raise ValueError("reserved")
        sp, dp, seq, ack = seg.src_port, seg.dst_port, seg.seq, seg.ack
        flags, window, urgent = seg.flags, seg.window, seg.urgent
        options = seg.options
        payload = seg.payload
        if len(options) == 3 and options[0] is _NOP_ENTRY and options[1] is _NOP_ENTRY \
                and options[2][0] == TIMESTAMPS and type(options[2][1]) is tuple:
            # Timestamps alone (see NOP_OPTION): the same bytes as below, in one pack.
            # Their words add into the sum as 0x0101 + 0x080A + TSval + TSecr.
            tsval, tsecr = options[2][1]
            offres = 0x80 | reserved
            p = _sum16(payload)
            s = (sp + dp + seq + ack + (offres << 8 | flags) + window + urgent
                 + 0x0101 + 0x080A + tsval + tsecr + ((p % 0xFFFF) << 8)) % 0xFFFF
            head = _HEADER_TS.pack(sp, dp, seq, ack, offres, flags, window,
                                   0xFFFF - s if s else 0, urgent, _NOP_NOP_TS, tsval, tsecr)
            return head + payload  # (bytes + b"" is the same bytes object: no copy)
        # RFC 1071 sum with the checksum field zero, taken mod 0xFFFF (see checksum()):
        # each header field is a whole number of 16-bit words, so it adds in as is; the
        # options and payload start at even offsets and add in byte-swapped, read
        # little-endian and multiplied by 256.
        if options:
            opts = _encode_options(options)
            offres = (5 + len(opts) // 4) << 4 | reserved
            tail = (int.from_bytes(opts, "little") + _sum16(payload)) % 0xFFFF
        else:
            opts = b""
            offres = 0x50 | reserved
            tail = _sum16(payload) % 0xFFFF
        s = (sp + dp + seq + ack + (offres << 8 | flags) + window + urgent + (tail << 8)) % 0xFFFF
        # The header is never all zero (data offset >= 5), so a zero sum stands for 0xFFFF.
        head = _HEADER.pack(sp, dp, seq, ack, offres, flags, window,
                            0xFFFF - s if s else 0, urgent)
        return head + opts + payload if opts else head + payload
    except (struct.error, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(_field_problem(seg) or f"cannot encode {seg!r}: {exc}") from None


def encodes_as_run(seg: Segment) -> bool:
    """Whether :func:`encode_run` takes ``seg`` as a run's first segment: its options
    none, or the timestamps alone (see NOP_OPTION)."""
    options = seg.options
    return not options or (len(options) == 3 and options[0] is _NOP_ENTRY
                           and options[1] is _NOP_ENTRY and options[2][0] == TIMESTAMPS
                           and type(options[2][1]) is tuple)


def encode_run(first: Segment, seq: int, payloads: list[bytes]) -> list[bytes]:
    """The datagrams of segments that follow ``first`` with its ports, ACK, window
    and options, flags ACK alone, starting at ``seq``, one per payload: what
    :func:`encode` gives for each. ValueError unless :func:`encodes_as_run`."""
    if not encodes_as_run(first):
        raise ValueError(f"a run cannot follow {first!r}")
    sp, dp, ack, window = first.src_port, first.dst_port, first.ack, first.window
    options = first.options
    out: list[bytes] = []
    if not options:
        base = sp + dp + ack + (0x5000 | ACK) + window
        pack = _HEADER.pack
        for payload in payloads:
            s = (base + seq + ((_sum16(payload) % 0xFFFF) << 8)) % 0xFFFF
            out.append(pack(sp, dp, seq, ack, 0x50, ACK, window, 0xFFFF - s if s else 0, 0)
                       + payload)
            seq = (seq + len(payload)) & 0xFFFFFFFF
        return out
    tsval, tsecr = options[2][1]
    base = sp + dp + ack + (0x8000 | ACK) + window + 0x0101 + 0x080A + tsval + tsecr
    pack = _HEADER_TS.pack
    for payload in payloads:
        s = (base + seq + ((_sum16(payload) % 0xFFFF) << 8)) % 0xFFFF
        out.append(pack(sp, dp, seq, ack, 0x80, ACK, window, 0xFFFF - s if s else 0, 0,
                        _NOP_NOP_TS, tsval, tsecr) + payload)
        seq = (seq + len(payload)) & 0xFFFFFFFF
    return out


def decode(data: bytes | bytearray | memoryview) -> Segment:
    """Parse one datagram; raise MalformedSegment if it is not a valid segment."""
    n = len(data)
    if n < 20:
        raise MalformedSegment(_too_short(n))
    # RFC 1071 section 1: the check sums everything, checksum field included, and must
    # get 0xFFFF, i.e. 0 mod 0xFFFF (read little-endian: see checksum()). All-zero data
    # sums to a true 0 and fails, as checksum() says.
    total = _sum16(data)
    if total % 0xFFFF or not total:
        raise BadChecksum(_BAD_CHECKSUM)
    sp, dp, seq, ack, offres, flags, window, _, urgent = _HEADER.unpack_from(data)
    offset = offres >> 4
    if offset == 5:  # no options
        payload = data[20:]
        if type(payload) is not bytes:
            payload = bytes(payload)
        return Segment(sp, dp, seq, ack, flags, window, urgent, (), payload, offres & 0xF)
    if offset == 8 and n >= 32:
        nops, tsval, tsecr = _TS_AREA.unpack_from(data, 20)
        if nops == _NOP_NOP_TS:  # NOP, NOP, timestamps: what _decode_options would make
            payload = data[32:]
            if type(payload) is not bytes:
                payload = bytes(payload)
            return Segment(sp, dp, seq, ack, flags, window, urgent,
                           (_NOP_ENTRY, _NOP_ENTRY, (TIMESTAMPS, (tsval, tsecr))), payload,
                           offres & 0xF)
    if offset < 5:
        raise MalformedSegment(_offset_too_small(offset))
    end = offset * 4
    if end > n:
        raise MalformedSegment(_offset_past_end(offset, n))
    return Segment(sp, dp, seq, ack, flags, window, urgent, _decode_options(data, end),
                   bytes(data[end:]), offres & 0xF)


# A run's segment (see run_header()) as five pieces: the ports; the sequence
# number; ACK, data offset and reserved; the flags; the window; then (the checksum
# skipped) the urgent pointer with the options, if any. All but the sequence
# number and the flags must repeat the run's first segment's, byte for byte.
_RUN: Final = struct.Struct("!4sI5sB2s2x2s")
_RUN_TS: Final = struct.Struct("!4sI5sB2s2x14s")
_RUN_TS_AREA: Final = b"\x00\x00\x01\x01\x08\x0a"  # urgent 0, NOP, NOP, TS kind, length


def run_header(data: bytes, size: int) -> tuple[Any, ...] | None:
    """The header of a datagram that may continue a run of segments (see
    ``Stack.receive_batch``) whose first segment's header is ``size`` bytes: 20
    (no options) or 32 (NOP, NOP, timestamps). As ``(ports, seq, rest of the
    fixed header, flags, window, urgent pointer and options)``, the ports, the
    window and the two runs of bytes as ``bytes``: a continuation's equal the
    first's, as :func:`run_start` gives them. Given if the datagram carries data
    and its checksum is right; else None, and :func:`decode` tells what is wrong
    with it."""
    if len(data) <= size:
        return None
    total = _sum16(data)  # (as decode() checks it)
    if total % 0xFFFF or not total:
        return None
    return (_RUN_TS if size == 32 else _RUN).unpack_from(data)


def run_start(data: bytes) -> tuple[Any, ...] | None:
    """The header of a decoded segment that may start a run, as :func:`run_header`
    gives it, if it has one of the two layouts a run can have and no urgent
    pointer; else None."""
    size = (data[12] >> 4) * 4
    if size == 20:
        fields = _RUN.unpack_from(data)
        return fields if fields[5] == b"\x00\x00" else None
    if size == 32:
        fields = _RUN_TS.unpack_from(data)
        if fields[5][:6] == _RUN_TS_AREA:
            return fields
    return None


def _decode_options(data: Any, end: int) -> tuple:
    """The options in ``data[20:end]``, validated as ``OPTION`` requires."""
    if end == 40:
        # A SYN's 20 bytes as we and Linux lay them out: one unpack, the same tuple.
        k0, l0, mss, a, b, k3, l3, tsval, tsecr, nop, k5, l5, ws = _SYN_AREA.unpack_from(data, 20)
        if k0 == MSS and l0 == 4 and k3 == TIMESTAMPS and l3 == 10 and nop == NOP \
                and k5 == WSCALE and l5 == 3:
            if a == NOP and b == NOP:
                return ((MSS, mss), _NOP_ENTRY, _NOP_ENTRY, (TIMESTAMPS, (tsval, tsecr)),
                        _NOP_ENTRY, (WSCALE, ws))
            if a == SACK_PERMITTED and b == 2:
                return ((MSS, mss), _SACK_PERMITTED_ENTRY, (TIMESTAMPS, (tsval, tsecr)),
                        _NOP_ENTRY, (WSCALE, ws))
    options = []
    i = 20
    while i < end:
        kind = data[i]
        if kind == EOL:  # the rest of the area is padding
            break
        if kind == NOP:
            options.append(_NOP_ENTRY)
            i += 1
            continue
        if i + 1 == end:
            raise MalformedSegment(_no_length_byte(kind, i))
        length = data[i + 1]
        if length < 2:
            raise MalformedSegment(_length_below_two(kind, i, length))
        if i + length > end:
            raise MalformedSegment(_past_header(kind, i, length, end))
        valid = _VALID_LENGTHS.get(kind)
        if valid is not None and length not in valid:
            raise MalformedSegment(_wrong_length(kind, i, length))
        if kind == MSS:
            value: Any = data[i + 2] << 8 | data[i + 3]
        elif kind == WSCALE:
            value = data[i + 2]
        elif kind == TIMESTAMPS:
            value = _U32_PAIR.unpack_from(data, i + 2)
        elif kind == SACK:
            value = tuple(_U32_PAIR.iter_unpack(data[i + 2:i + length]))
        elif kind == SACK_PERMITTED:
            value = None
        else:  # unknown kind: kept opaque, skipped by its length (RFC 9293 3.2)
            value = bytes(data[i + 2:i + length])
        options.append((kind, value))
        i += length
    return tuple(options)
