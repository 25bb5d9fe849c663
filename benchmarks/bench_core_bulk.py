"""The core's CPU per segment in a bulk transfer, each side timed on its own.

Two sans-I/O stacks (``utcp.core.stack.Stack``) on a fake clock, joined
directly: the sender's datagrams reach the receiver in batches of up to
``--batch`` (as one UDP GRO read brings them), the receiver's ACKs go back at
the end of each batch. No sockets and no event loop: what is timed is the core
alone, the part of ``bench_bulk.py``'s figure that Python work in utcp decides,
and it is steady from run to run where the two-process benchmark moves with the
kernel and the machine's load. The checksum's own cost per full-sized segment
is printed beside it, as the floor under both sides.

    python benchmarks/bench_core_bulk.py              # 50 MB, median of 5
    python benchmarks/bench_core_bulk.py --profile    # Python calls per segment
"""

from __future__ import annotations

import argparse
import cProfile
import os
import statistics
import sys
import timeit
from time import perf_counter
from typing import Any

from harness import build, calls_counted

from utcp.core import wire
from utcp.core.config import Options
from utcp.core.events import Connected, DataReceived
from utcp.core.stack import Stack

CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 7007)
WRITE = 64 * 1024
TICK = 20e-6  # fake seconds per batch: the round trip stays well under a millisecond


class _Side:
    """One stack and the CPU time spent in it."""

    def __init__(self, stack: Stack, addr: tuple[str, int], profile: bool) -> None:
        self.stack = stack
        self.addr = addr
        self.cpu = 0.0
        self.profile = cProfile.Profile() if profile else None

    def __enter__(self) -> _Side:
        if self.profile is not None:
            self.profile.enable()
        self._t0 = perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu += perf_counter() - self._t0
        if self.profile is not None:
            self.profile.disable()


def transfer(size: int, batch: int, profile: bool = False) -> dict[str, Any]:
    """Move ``size`` bytes from a client stack to a server stack; each side's CPU."""
    options = Options()
    client = _Side(Stack(CLIENT, coalesce_acks=True), CLIENT, profile)
    server = _Side(Stack(SERVER, coalesce_acks=True), SERVER, profile)
    server.stack.listen(SERVER[1], 128, options)
    data = os.urandom(WRITE)
    now = 0.0
    received = 0
    written = 0
    conn = client.stack.connect(SERVER, SERVER[1], options, now)
    wire_: dict[_Side, list[bytes]] = {client: [], server: []}
    connected = False
    steps = 0
    while received < size:
        steps += 1
        if steps > 10_000_000:
            raise RuntimeError("the transfer did not finish")
        now += TICK
        for side, peer in ((client, server), (server, client)):
            with side:
                out, delivery = side.stack.take_output()
            wire_[peer] += [d for d, _, _ in out]
            for _, events in delivery:
                for e in events:
                    if type(e) is DataReceived:
                        received += len(e.data)
                    elif type(e) is Connected and side is client:
                        connected = True
        if connected and written < size:
            with client:
                # The sender keeps about 4 MB queued, as a writer held back by
                # drain() would.
                while written < size and conn.unsent < 4_000_000:
                    client.stack.send(conn, data, now)
                    written += WRITE
        for side in (server, client):
            pending = wire_[side]
            if not pending:
                continue
            take, wire_[side] = pending[:batch], pending[batch:]
            src = CLIENT if side is server else SERVER
            with side:
                side.stack.receive_batch([(d, src) for d in take], now)
                side.stack.end_batch(now)
        if not wire_[server] and not wire_[client]:
            # Nothing in flight: on to the next deadline (a delayed ACK, say).
            deadlines = [d for d in (client.stack.next_deadline(),
                                     server.stack.next_deadline()) if d is not None]
            if deadlines and received < size:
                now = max(now, min(deadlines))
                for side in (client, server):
                    d = side.stack.next_deadline()
                    if d is not None and d <= now:
                        with side:
                            side.stack.handle_timer(now)
    segments = conn.counters.segments_out
    result = {"segments": segments, "resent": conn.counters.retransmissions,
              "sender_us": client.cpu / segments * 1e6,
              "receiver_us": server.cpu / segments * 1e6}
    if profile:
        assert client.profile is not None and server.profile is not None
        result["sender_calls"] = calls_counted(client.profile) / segments
        result["receiver_calls"] = calls_counted(server.profile) / segments
    return result


def checksum_floor() -> float:
    """Microseconds the checksum of one full-sized datagram takes on its own."""
    datagram = os.urandom(1472)
    n = 50_000
    t = min(timeit.repeat(lambda: wire.checksum(datagram), number=n, repeat=5))
    return t / n * 1e6


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=float, default=50, help="megabytes (default 50)")
    ap.add_argument("--batch", type=int, default=44,
                    help="datagrams the receiver takes at once (default 44, a GRO read)")
    ap.add_argument("--repeat", type=int, default=5, help="runs; the median is shown")
    ap.add_argument("--profile", action="store_true",
                    help="count Python calls per segment (cProfile; the times then mean nothing)")
    args = ap.parse_args(argv)
    size = int(args.size * 1e6)
    print(f"bench_core_bulk: {args.size:g} MB, batches of {args.batch}, "
          f"Python {sys.version.split()[0]}, {build()}")
    runs = [transfer(size, args.batch, args.profile) for _ in range(args.repeat)]
    for key in ("sender_us", "receiver_us"):
        values = [r[key] for r in runs]
        print(f"  {key[:-3]:9} {statistics.median(values):6.2f} µs a segment "
              f"({min(values):.2f}-{max(values):.2f})")
    if args.profile:
        print(f"  Python calls a segment: sender {runs[0]['sender_calls']:.1f}, "
              f"receiver {runs[0]['receiver_calls']:.1f}")
    print(f"  checksum  {checksum_floor():6.2f} µs a 1472-byte datagram, on its own")
    print(f"  segments {runs[0]['segments']}, resent {runs[0]['resent']}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
