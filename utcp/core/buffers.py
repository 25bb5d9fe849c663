"""The send buffer and the out-of-order reassembly queue."""

from __future__ import annotations

import bisect
from typing import Final

from . import seq as sq

#: Writes shorter than this that follow another such are copied into the
#: buffer's last chunk (see :class:`SendBuffer`); others are held as they are.
SMALL_WRITE: Final = 2048
#: The most a chunk of small writes grows to before the next starts.
SMALL_TAIL: Final = 64 * 1024


class SendBuffer:
    """Bytes written by the application and not yet acknowledged.

    ``start`` is the sequence number of the first byte held, ``size`` how many
    are held (an attribute, not ``len()``: the per-segment path reads it often).

    Writes are held as the application gave them, as a list of chunks: a
    ``bytes`` write is kept, not copied, a segment within one chunk is one slice
    of it, and an ACK drops whole chunks from the front, so no byte moves twice.
    Small writes (under :data:`SMALL_WRITE` bytes) that follow one another while
    held gather in a ``bytearray`` at the end instead, so that many of them cost
    one object and a segment made of them one slice.
    """

    __slots__ = ("_chunks", "_ends", "_first", "_base", "start", "size")

    def __init__(self, start: int) -> None:
        # _ends[k]: the offset just past _chunks[k], counted from where the list
        # began; _base: the offset of ``start``. Chunks below _first are wholly
        # acknowledged, dropped from the list lazily.
        self._chunks: list[bytes | bytearray] = []
        self._ends: list[int] = []
        self._first = 0
        self._base = 0
        self.start = start
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def append(self, data: bytes | bytearray) -> None:
        n = len(data)
        if not n:
            return
        chunks = self._chunks
        ends = self._ends
        if n < SMALL_WRITE and chunks:
            last = chunks[-1]  # (held: ack() never leaves a dead chunk last)
            if type(last) is bytearray:
                if len(last) < SMALL_TAIL:
                    last += data
                    ends[-1] += n
                    self.size += n
                    return
            elif len(last) < SMALL_WRITE:
                # A second small write while the first is held: from here on they
                # gather in one bytearray.
                tail = bytearray(last)
                tail += data
                chunks[-1] = tail
                ends[-1] += n
                self.size += n
                return
        # Kept as given when immutable; a mutable buffer the caller may reuse.
        chunks.append(data if type(data) is bytes else bytes(data))
        ends.append((ends[-1] if ends else self._base) + n)
        self.size += n

    def peek(self, seq: int, n: int) -> bytes:
        """Copy up to ``n`` bytes starting at sequence number ``seq``."""
        o = self._base + ((seq - self.start) & sq.MASK)  # sq.sub(), never negative here
        ends = self._ends
        k = bisect.bisect_right(ends, o, self._first)  # the chunk holding byte o
        chunk = self._chunks[k]
        end = ends[k]
        i = o - (end - len(chunk))
        last = len(ends) - 1
        if o + n <= end or k == last:
            if type(chunk) is bytes:
                return chunk[i:i + n]  # (CPython gives a whole chunk itself, uncopied)
            return bytes(memoryview(chunk)[i:i + n])
        parts: list[bytes | bytearray | memoryview] = [memoryview(chunk)[i:]]
        n -= end - o
        while True:
            k += 1
            chunk = self._chunks[k]
            if n <= len(chunk) or k == last:
                parts.append(memoryview(chunk)[:n] if n < len(chunk) else chunk)
                break
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def peek_run(self, seq: int, n: int, count: int) -> list[bytes]:
        """Copies of ``count`` consecutive pieces of ``n`` bytes from sequence number
        ``seq`` on, all of them held: what ``count`` calls of :meth:`peek` would give."""
        o = self._base + ((seq - self.start) & sq.MASK)  # sq.sub(), never negative here
        ends = self._ends
        chunks = self._chunks
        k = bisect.bisect_right(ends, o, self._first)
        out: list[bytes] = []
        while count:
            chunk = chunks[k]
            end = ends[k]
            whole = (end - o) // n  # pieces wholly in this chunk
            if whole:
                if whole > count:
                    whole = count
                i = o - (end - len(chunk))
                if type(chunk) is bytes:
                    out += [chunk[j:j + n] for j in range(i, i + whole * n, n)]
                else:
                    view = memoryview(chunk)
                    out += [bytes(view[j:j + n]) for j in range(i, i + whole * n, n)]
                o += whole * n
                count -= whole
                if not count:
                    break
            if o < end:  # a piece across the chunk's end
                out.append(self.peek((self.start + o - self._base) & sq.MASK, n))
                o += n
                count -= 1
            k = bisect.bisect_right(ends, o, k)
        return out

    def ack(self, n: int) -> None:
        """Drop ``n`` bytes from the front."""
        self.size -= n
        self.start = (self.start + n) & sq.MASK  # sq.add()
        base = self._base = self._base + n
        ends = self._ends
        k = self._first
        last = len(ends)
        while k < last and ends[k] <= base:
            self._chunks[k] = b""  # (its bytes freed now, its slot later)
            k += 1
        if k >= 32 and 2 * k >= last or k == last:
            del self._chunks[:k], ends[:k]
            k = 0
        self._first = k


class ReassemblyQueue:
    """Segments that arrived ahead of RCV.NXT, kept as disjoint sorted ranges.

    Adding a segment costs a binary search among the n ranges held, a step for
    each range it overlaps, and a list insertion (a memmove of n pointers) for
    each new range; a duplicate of what is held costs the search alone. Each
    range is charged its bytes and :data:`RANGE_OVERHEAD` for the objects that
    hold it (:attr:`memory`), since a peer that sends one-byte segments with a
    hole between each would otherwise hold a hundred times its window. What
    would take the queue past ``max_ranges`` ranges or past the memory budget
    given to :meth:`add` is dropped from the far end, the highest sequence
    numbers first, as Linux prunes its out-of-order queue: the sender
    retransmits it once the holes before it are filled.
    """

    __slots__ = ("_base", "_starts", "_data", "size", "max_ranges", "dropped")

    def __init__(self, max_ranges: int = 512) -> None:
        self._base = 0  # the sequence number offsets are counted from
        self._starts: list[int] = []  # offsets from _base, sorted; ranges never overlap
        self._data: list[bytes] = []
        #: Bytes held.
        self.size = 0
        #: The most ranges held at once.
        self.max_ranges = max_ranges
        #: Bytes dropped to stay within the limits.
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._starts)

    @property
    def memory(self) -> int:
        """What the queue costs: its bytes plus each range's overhead."""
        return self.size + len(self._starts) * RANGE_OVERHEAD

    def add(self, seq: int, data: bytes, rcv_nxt: int, budget: int | None = None) -> int:
        """Hold ``data`` starting at ``seq`` (after RCV.NXT), trimming overlaps, within
        ``max_ranges`` and (if given) ``budget`` bytes of :attr:`memory`; how many of
        its bytes were not held already (0: a duplicate)."""
        starts, datas = self._starts, self._data
        if not starts:
            self._base = rcv_nxt
        start = off = sq.sub(seq, self._base)
        end = off + len(data)
        # The first range that ends after our start: ranges before it are untouched.
        i = bisect.bisect_right(starts, off)
        if i and starts[i - 1] + len(datas[i - 1]) > off:
            i -= 1
        pieces: list[tuple[int, bytes]] = []  # the new bytes, around those already held
        j = i
        while j < len(starts) and starts[j] < end:
            s = starts[j]
            if s > off:
                pieces.append((off, data[off - start: s - start]))
            off = max(off, s + len(datas[j]))
            j += 1
        if off < end:
            pieces.append((off, data[off - start:]))
        if not pieces:
            return 0  # a duplicate of what is held
        # Insert each new piece where it belongs (after index i; j - i ranges between).
        k = i
        new = 0
        for p_off, p_data in pieces:
            while k < len(starts) and starts[k] < p_off:
                k += 1
            starts.insert(k, p_off)
            datas.insert(k, p_data)
            self.size += len(p_data)
            new += len(p_data)
            k += 1
        limit = self.max_ranges
        while starts and (len(starts) > limit or
                          (budget is not None and self.memory > budget)):
            starts.pop()
            gone = datas.pop()
            self.size -= len(gone)
            self.dropped += len(gone)
        return new

    def blocks(self) -> list[tuple[int, int]]:
        """What is held, as merged (left, right) sequence ranges, lowest first."""
        merged: list[list[int]] = []
        for s, d in zip(self._starts, self._data, strict=True):
            if merged and merged[-1][1] == s:
                merged[-1][1] = s + len(d)
            else:
                merged.append([s, s + len(d)])
        base = self._base
        return [((base + a) & sq.MASK, (base + b) & sq.MASK) for a, b in merged]

    def clear(self) -> None:
        """Forget everything held."""
        self._starts = []
        self._data = []
        self.size = 0

    def pop_ready(self, rcv_nxt: int) -> bytes:
        """Remove and return the bytes that now continue at ``rcv_nxt`` (may be empty)."""
        starts, datas = self._starts, self._data
        if not starts:
            return b""
        at = sq.sub(rcv_nxt, self._base)
        parts: list[bytes] = []
        n = 0
        while n < len(starts) and starts[n] <= at:
            d = datas[n]
            o = starts[n] - at
            if o + len(d) > 0:
                piece = d[-o:] if o < 0 else d
                parts.append(piece)
                at += len(piece)
            n += 1
        if n:
            del starts[:n]
            for d in datas[:n]:
                self.size -= len(d)
            del datas[:n]
        if at > _REBASE:
            # Offsets are counted from _base, and a queue that never empties (a
            # long transfer with a new hole before each old one fills) would see
            # them pass 2**31 and go negative: count from RCV.NXT again.
            self._base = (self._base + at) & 0xFFFFFFFF
            starts[:] = [s - at for s in starts]
        return b"".join(parts)


# Past this offset from _base, pop_ready counts from RCV.NXT again (well before 2**31).
_REBASE: Final = 1 << 30

#: What holding one out-of-order range costs beyond its bytes (a bytes object's
#: header, an int, two list slots: CPython 3.11, 64-bit), charged against the
#: receive buffer.
RANGE_OVERHEAD: Final = 96


class ReceiveMemory:
    """What the connections of one stack hold in receive buffers, against a limit.

    A connection holds bytes for an application that has paused reading, and
    segments that arrived ahead of a hole (each charged what it costs, see
    :attr:`ReassemblyQueue.memory`); data read at once is not held. Past
    :attr:`pressure_at` (three quarters of ``limit``) a connection that holds
    anything offers no new window, so its peer's window shrinks to what it has
    already been offered; data that would take the total past ``limit`` is
    dropped, unacknowledged, and counted (its sender retransmits it).
    """

    __slots__ = ("limit", "pressure_at", "held", "holders", "dropped", "rcv_buf_cap")

    def __init__(self, limit: int | None = None) -> None:
        self.limit: int | None = None
        #: From this many bytes held, the stack is under memory pressure.
        self.pressure_at = 1 << 62
        self.set_limit(limit)
        #: Bytes held by all connections.
        self.held = 0
        #: What each connection that holds anything holds.
        self.holders: dict[object, int] = {}
        #: Segments dropped because they would have taken ``held`` past ``limit``.
        self.dropped = 0
        #: The most any connection's receive buffer may grow to by autotuning, or
        #: None: what the socket beneath can queue (its adapter sets it). A window
        #: larger than that invites bursts the kernel drops before they are read.
        self.rcv_buf_cap: int | None = None

    def set_limit(self, limit: int | None) -> None:
        """Hold at most ``limit`` bytes (None: no limit); ValueError if negative."""
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)
                                  or limit < 0):
            raise ValueError(f"max_receive_memory must be >= 0 or None, not {limit!r}")
        self.limit = limit
        self.pressure_at = limit * 3 // 4 if limit is not None else 1 << 62

    @property
    def under_pressure(self) -> bool:
        """Whether connections that hold data may offer no new window."""
        return self.held >= self.pressure_at

    def room(self) -> int:
        """Bytes that may still be held (a very large number without a limit)."""
        return self.limit - self.held if self.limit is not None else 1 << 62

    def update(self, conn: object, held: int) -> None:
        """``conn`` now holds ``held`` bytes."""
        holders = self.holders
        old = holders.pop(conn, 0)
        if held:
            holders[conn] = held
        self.held += held - old
