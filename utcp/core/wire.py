"""The wire format: one TCP segment (RFC 9293 section 3.1) per UDP datagram.

(Provisional codec: the construct declaration, the full option codec and the
property tests replace this.)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntFlag

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 1, 2, 4, 8, 16, 32, 64, 128


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
EOL, NOP, MSS, WSCALE, SACK_PERMITTED, SACK, TIMESTAMPS = 0, 1, 2, 3, 4, 5, 8


class MalformedSegment(ValueError):
    """A datagram is not a well-formed segment (short, bad offset, bad option, bad checksum)."""


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


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum of ``data``."""
    if len(data) & 1:
        data = bytes(data) + b"\0"
    s = int.from_bytes(data, "big") % 0xFFFF  # 2**16 == 1 (mod 0xFFFF): folds every word
    return (~s & 0xFFFF) if s or not any(data) else 0


_HDR = struct.Struct("!HHIIBBHHH")


def encode(seg: Segment) -> bytes:
    """Serialize ``seg`` (checksum filled in)."""
    opts = b""
    for kind, value in seg.options:
        if kind == MSS:
            opts += struct.pack("!BBH", MSS, 4, value)
        elif kind == WSCALE:
            opts += struct.pack("!BBB", WSCALE, 3, value)
        elif kind == NOP:
            opts += b"\x01"
    opts += b"\0" * (-len(opts) % 4)
    off = 5 + len(opts) // 4
    head = bytearray(_HDR.pack(seg.src_port, seg.dst_port, seg.seq, seg.ack,
                               off << 4 | seg.reserved, seg.flags, seg.window, 0, seg.urgent))
    data = bytes(head) + opts + seg.payload
    c = checksum(data)
    return data[:16] + c.to_bytes(2, "big") + data[18:]


def decode(data: bytes) -> Segment:
    """Parse one datagram; raise MalformedSegment if it is not a valid segment."""
    if len(data) < 20:
        raise MalformedSegment(f"datagram of {len(data)} bytes is shorter than a TCP header")
    sp, dp, seq, ack, offres, flags, win, _c, urg = _HDR.unpack_from(data)
    off = (offres >> 4) * 4
    if off < 20 or off > len(data):
        raise MalformedSegment(f"data offset {off} bytes is invalid")
    if checksum(data) != 0:
        raise MalformedSegment("bad checksum")
    opts = []
    i = 20
    while i < off:
        k = data[i]
        if k == EOL:
            break
        if k == NOP:
            opts.append((NOP, None))
            i += 1
            continue
        n = data[i + 1]
        if k == MSS:
            opts.append((MSS, int.from_bytes(data[i + 2:i + 4], "big")))
        elif k == WSCALE:
            opts.append((WSCALE, data[i + 2]))
        i += n
    return Segment(sp, dp, seq, ack, flags, win, urg, tuple(opts), bytes(data[off:]),
                   offres & 0xF)
