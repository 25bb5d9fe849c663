"""The send buffer and the out-of-order reassembly queue."""

from __future__ import annotations

from . import seq as sq


class SendBuffer:
    """Bytes written by the application and not yet acknowledged.

    ``start`` is the sequence number of the first byte held, ``size`` how many
    are held (an attribute, not ``len()``: the per-segment path reads it often).
    """

    __slots__ = ("_buf", "_head", "start", "size")

    def __init__(self, start: int) -> None:
        self._buf = bytearray()
        self._head = 0  # bytes at the front already acknowledged, compacted lazily
        self.start = start
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def append(self, data: bytes) -> None:
        self._buf += data
        self.size += len(data)

    def peek(self, seq: int, n: int) -> bytes:
        """Copy up to ``n`` bytes starting at sequence number ``seq``."""
        i = self._head + ((seq - self.start) & sq.MASK)  # sq.sub(), never negative here
        return bytes(self._buf[i:i + n])

    def ack(self, n: int) -> None:
        """Drop ``n`` bytes from the front."""
        self._head += n
        self.size -= n
        self.start = (self.start + n) & sq.MASK  # sq.add()
        # Compact only when the dead prefix is large, so a stream of small ACKs
        # does not move the whole buffer each time.
        if self._head > 65536 and self._head * 2 > len(self._buf):
            del self._buf[:self._head]
            self._head = 0


class ReassemblyQueue:
    """Segments that arrived ahead of RCV.NXT, kept as disjoint sorted ranges."""

    __slots__ = ("_ranges", "size")

    def __init__(self) -> None:
        self._ranges: list[tuple[int, bytes]] = []  # (seq, data), sorted, non-overlapping
        self.size = 0

    def __len__(self) -> int:
        return len(self._ranges)

    def add(self, seq: int, data: bytes, rcv_nxt: int) -> None:
        """Hold ``data`` starting at ``seq`` (after RCV.NXT), trimming overlaps."""
        ranges = self._ranges
        off = sq.sub(seq, rcv_nxt)
        end = off + len(data)
        out: list[tuple[int, bytes]] = []
        placed = False
        for s, d in ranges:
            so = sq.sub(s, rcv_nxt)
            eo = so + len(d)
            if eo <= off or so >= end or placed:
                if not placed and so >= end:
                    out.append((sq.add(rcv_nxt, off), data))
                    placed = True
                out.append((s, d))
                continue
            # Overlap: keep what is already held, add only the new bytes around it.
            if off < so:
                out.append((sq.add(rcv_nxt, off), data[: so - off]))
            data = data[max(0, eo - off):]
            off = max(off, eo)
            if off >= end:
                data = b""
            out.append((s, d))
            if not data:
                placed = True
        if not placed and data:
            out.append((sq.add(rcv_nxt, off), data))
        out.sort(key=lambda r: sq.sub(r[0], rcv_nxt))
        self._ranges = out
        self.size = sum(len(d) for _, d in out)

    def clear(self) -> None:
        """Forget everything held."""
        self._ranges = []
        self.size = 0

    def pop_ready(self, rcv_nxt: int) -> bytes:
        """Remove and return the bytes that now continue at ``rcv_nxt`` (may be empty)."""
        ranges = self._ranges
        parts: list[bytes] = []
        while ranges:
            s, d = ranges[0]
            o = sq.sub(s, rcv_nxt)
            if o > 0:
                break
            ranges.pop(0)
            self.size -= len(d)
            if o + len(d) > 0:
                piece = d[-o:] if o < 0 else d
                parts.append(piece)
                rcv_nxt = sq.add(rcv_nxt, len(piece))
        return b"".join(parts)
