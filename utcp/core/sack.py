"""The sender's SACK scoreboard (RFC 2018, RFC 6675): what the peer holds above
SND.UNA, what is therefore lost, and what is in flight.

Blocks are kept as absolute sequence numbers, sorted and merged; every question
is asked relative to the current SND.UNA, as an offset above it, so that the
sequence space may wrap under them.
"""

from __future__ import annotations

from typing import Final

from .seq import MASK

#: RFC 6675 DupThresh: a byte is lost once more than (DupThresh - 1) segments'
#: worth of data above it has been SACKed.
DUP_THRESH: Final = 3


class Scoreboard:
    """SACKed ranges above SND.UNA."""

    __slots__ = ("_blocks", "sacked")

    def __init__(self) -> None:
        self._blocks: list[list[int]] = []  # [left, right) offsets from _una... see below
        #: Bytes SACKed above SND.UNA.
        self.sacked = 0

    def __bool__(self) -> bool:
        return bool(self._blocks)

    def blocks(self) -> list[tuple[int, int]]:
        """The SACKed ranges, lowest first, as (left, right) sequence numbers."""
        return [(b[0], b[1]) for b in self._blocks]

    def update(self, blocks: tuple[tuple[int, int], ...], una: int, snd_max: int,
               newly: list[tuple[int, int]] | None = None) -> int:
        """Take the SACK blocks of one ACK; return how many new bytes they SACK,
        and if ``newly`` is given, append to it the ranges newly SACKed, as
        (left, right) sequence numbers.

        A block must lie within (SND.UNA, SND.MAX]: one at or below SND.UNA is a
        D-SACK (RFC 2883) and one beyond what was sent is bogus; both change
        nothing here.
        """
        top = (snd_max - una) & MASK
        new = 0
        for left, right in blocks:
            lo = (left - una) & MASK
            hi = (right - una) & MASK
            if not 0 < lo < hi <= top:
                continue
            new += self._add(lo, hi, una, newly)
        self.sacked += new
        return new

    def _add(self, lo: int, hi: int, una: int, newly: list[tuple[int, int]] | None) -> int:
        # Offsets of the existing blocks, relative to this una.
        bl = self._blocks
        i = 0
        n = len(bl)
        while i < n and (bl[i][1] - una) & MASK < lo:
            i += 1
        j = i
        covered = 0
        new_lo, new_hi = lo, hi
        at = lo  # (the part of [lo, hi) below this is SACKed already, or reported)
        while j < n and (bl[j][0] - una) & MASK <= hi:
            b_lo = (bl[j][0] - una) & MASK
            b_hi = (bl[j][1] - una) & MASK
            covered += max(0, min(b_hi, hi) - max(b_lo, lo))
            if newly is not None:
                if b_lo > at:
                    newly.append(((una + at) & MASK, (una + b_lo) & MASK))
                if b_hi > at:
                    at = b_hi
            if b_lo < new_lo:
                new_lo = b_lo
            if b_hi > new_hi:
                new_hi = b_hi
            j += 1
        if newly is not None and at < hi:
            newly.append(((una + at) & MASK, (una + hi) & MASK))
        bl[i:j] = [[(una + new_lo) & MASK, (una + new_hi) & MASK]]
        return (hi - lo) - covered

    def ack(self, una: int) -> None:
        """SND.UNA moved to ``una``: forget what is below it."""
        bl = self._blocks
        if not bl:
            return
        drop = 0
        while bl:
            left, right = bl[0]
            lo = (left - una) & MASK
            hi = (right - una) & MASK
            if lo < 1 << 31:
                break  # at or above una: this block and those after it stay
            if hi == 0 or hi >= 1 << 31:
                drop += (right - left) & MASK
                bl.pop(0)
                continue
            drop += (una - left) & MASK  # una fell inside it (the peer reneged?)
            bl[0][0] = una
            break
        self.sacked -= drop
        if not bl:
            self.sacked = 0

    def clear(self) -> None:
        """Forget every block (the peer reneged, or the connection starts afresh)."""
        self._blocks = []
        self.sacked = 0

    def lost_edge(self, una: int, mss: int) -> int:
        """The offset below which every byte not SACKed is lost (RFC 6675 IsLost):
        more than (DupThresh - 1) * MSS bytes are SACKed above it. 0 if none is."""
        need = (DUP_THRESH - 1) * mss
        above = 0
        for left, right in reversed(self._blocks):
            above += (right - left) & MASK
            if above > need:
                return (left - una) & MASK
        return 0

    def next_hole(self, una: int, start: int, end: int) -> tuple[int, int] | None:
        """The first range not SACKed at or after offset ``start`` and before
        ``end``, as (offset, length), or None."""
        at = start
        for left, right in self._blocks:
            lo = (left - una) & MASK
            hi = (right - una) & MASK
            if hi <= at:
                continue
            if lo > at:
                stop = lo if lo < end else end
                return (at, stop - at) if stop > at else None
            at = hi
            if at >= end:
                return None
        return (at, end - at) if at < end else None

    def unsacked(self, una: int, start: int, end: int) -> int:
        """Bytes not SACKed between offsets ``start`` and ``end``."""
        if end <= start:
            return 0
        total = end - start
        for left, right in self._blocks:
            lo = (left - una) & MASK
            hi = (right - una) & MASK
            a = lo if lo > start else start
            b = hi if hi < end else end
            if b > a:
                total -= b - a
        return total

    def sacked_at(self, una: int, offset: int) -> int:
        """If the byte at ``offset`` is SACKed, the offset where its block ends;
        else 0."""
        for left, right in self._blocks:
            lo = (left - una) & MASK
            hi = (right - una) & MASK
            if lo <= offset < hi:
                return hi
            if lo > offset:
                return 0
        return 0
