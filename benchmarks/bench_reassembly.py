"""What one out-of-order segment costs the receiver, against the ranges it holds.

The attack of CVE-2018-5390's class sends one-byte segments with holes between
them, then duplicates of what is held. For each count of holes held, this
times adding a duplicate and adding one more hole, with the queue as it is
and with the list rebuild it replaced (kept below, for the side-by-side).

    python benchmarks/bench_reassembly.py
"""

from __future__ import annotations

import argparse
import sys
import timeit

from utcp.core import seq as sq
from utcp.core.buffers import ReassemblyQueue


class RebuiltList:
    """The queue before: the whole list rebuilt, sorted and summed on every add."""

    def __init__(self) -> None:
        self._ranges: list[tuple[int, bytes]] = []
        self.size = 0

    def add(self, seq: int, data: bytes, rcv_nxt: int) -> None:
        off = sq.sub(seq, rcv_nxt)
        end = off + len(data)
        out: list[tuple[int, bytes]] = []
        placed = False
        for s, d in self._ranges:
            so = sq.sub(s, rcv_nxt)
            eo = so + len(d)
            if eo <= off or so >= end or placed:
                if not placed and so >= end:
                    out.append((sq.add(rcv_nxt, off), data))
                    placed = True
                out.append((s, d))
                continue
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


def cost(kind: type, holes: int, what: str, number: int) -> float:
    """Microseconds per add, for a queue of ``kind`` holding ``holes`` one-byte ranges."""
    q = kind() if kind is RebuiltList else kind(max_ranges=holes + 10)
    for i in range(holes):
        q.add(2 + 2 * i, b"x", 0)
    if what == "duplicate":
        middle = 2 + 2 * (holes // 2)
        t = timeit.timeit(lambda: q.add(middle, b"x", 0), number=number)
    else:
        # A new hole beyond the others each time (the queue grows by `number`).
        offsets = iter(range(2 + 2 * holes, 2 + 2 * (holes + number), 2))
        t = timeit.timeit(lambda: q.add(next(offsets), b"x", 0), number=number)
    return t / number * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--holes", type=int, nargs="+", default=[10, 100, 1000, 6000],
                    help="ranges held (default 10 100 1000 6000)")
    ap.add_argument("--number", type=int, default=200, help="adds timed per case")
    args = ap.parse_args(argv)
    print(f"bench_reassembly: utcp's out-of-order queue, microseconds per segment, Python "
          f"{sys.version.split()[0]}")
    print("| ranges held | duplicate, before | duplicate, now | ratio | new hole, before | "
          "new hole, now | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for holes in args.holes:
        row = [f"{holes}"]
        for what in ("duplicate", "new hole"):
            before = cost(RebuiltList, holes, what, args.number)
            now = cost(ReassemblyQueue, holes, what, args.number)
            row += [f"{before:.2f}", f"{now:.2f}", f"{before / now:.0f}x"]
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
