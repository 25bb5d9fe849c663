"""One client connecting toward one server for as long as it likes.

A client process (this one) runs ``utcp bench connect``'s workload (connect,
16-byte echo, close, ``--concurrency`` in flight) against ``utcp echo-server``
in a process of its own, for ``--duration`` seconds. Every ``--interval`` it
prints the connections so far, the rate over the interval, failures, the
TIME-WAIT entries the client holds and both processes' resident memory.

Without TIME-WAIT reuse the client would run out of its 28232 ports toward the
server within seconds (every closed 4-tuple is held for 2 MSL = 60 s); with it,
the rate and the memory must stay flat. At the end it compares the rate over
the first ``--early`` connections with the rate over as many connections after
``--late`` (200,000 by default).

    python benchmarks/bench_endurance.py --duration 300
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter

from harness import HOST, EchoServer, rss_bytes, run_on, uvloop_available, warm_malloc

import utcp
from utcp import bench

MESSAGE = b"ping-0123456789!"


async def endurance(port: int, server_pid: int, duration: float, concurrency: int,
                    interval: float, early: int, late: int) -> int:
    done = 0
    failures: Counter[str] = Counter()
    marks: dict[int, float] = {}  # connection count -> when it was reached
    stack = None
    start = time.perf_counter()
    stop_at = start + duration

    async def one() -> None:
        nonlocal done, stack
        reader, writer = await utcp.open_connection(HOST, port)
        try:
            writer.write(MESSAGE)
            await reader.readexactly(len(MESSAGE))
        finally:
            writer.close()
        await writer.wait_closed()
        if stack is None:
            stack = writer.transport.endpoint.stack
        done += 1
        if done in (early, late, late + early):
            marks[done] = time.perf_counter()

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            try:
                await asyncio.wait_for(one(), bench.CYCLE_TIMEOUT)
            except Exception as exc:
                failures[bench.failure_cause(exc)] += 1

    async def report() -> None:
        last_t, last_n = start, 0
        print(f"{'seconds':>7} {'connections':>11} {'conn/s':>7} {'failed':>6} "
              f"{'TIME-WAIT':>9} {'client RSS':>10} {'server RSS':>10}", flush=True)
        while True:
            await asyncio.sleep(interval)
            now = time.perf_counter()
            tw = stack.statistics()["connections"].get("TIME-WAIT", 0) if stack else 0
            print(f"{now - start:>7.0f} {done:>11} {(done - last_n) / (now - last_t):>7.0f} "
                  f"{sum(failures.values()):>6} {tw:>9} {rss_bytes() / 2**20:>7.1f} MiB "
                  f"{rss_bytes(server_pid) / 2**20:>7.1f} MiB", flush=True)
            last_t, last_n = now, done

    reporter = asyncio.ensure_future(report())
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    reporter.cancel()
    elapsed = time.perf_counter() - start
    print(f"\n{done} connections in {elapsed:.0f} s = {done / elapsed:.0f} conn/s; "
          f"failures: {dict(failures) or 'none'}")
    if early in marks and late in marks and late + early in marks:
        first = early / (marks[early] - start)
        later = early / (marks[late + early] - marks[late])
        print(f"rate over the first {early} connections: {first:.0f} conn/s; over "
              f"{early} after {late}: {later:.0f} conn/s ({later / first:.2f} of it)")
    elif early in marks:
        print(f"(fewer than {late + early} connections: no late rate to compare)")
    return sum(failures.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=300.0,
                    help="seconds to run (default 300)")
    ap.add_argument("--concurrency", type=int, default=64,
                    help="connections in flight (default 64)")
    ap.add_argument("--interval", type=float, default=10.0,
                    help="seconds between progress rows (default 10)")
    ap.add_argument("--early", type=int, default=1000,
                    help="connections whose rate is compared (default 1000)")
    ap.add_argument("--late", type=int, default=200_000,
                    help="...with the rate of as many after this many (default 200000)")
    ap.add_argument("--uvloop", action="store_true", help="run client and server on uvloop")
    args = ap.parse_args(argv)
    if args.duration <= 0 or args.concurrency < 1 or args.interval <= 0:
        ap.error("--duration and --interval must be > 0, --concurrency >= 1")
    if args.uvloop and not uvloop_available():
        ap.error("--uvloop: uvloop is not installed (pip install 'utcp[uvloop]')")
    warm_malloc()
    loop_name = "uvloop" if args.uvloop else "asyncio"
    print(f"bench_endurance: {args.duration:g} s, {args.concurrency} in flight, {loop_name}, "
          f"client and server in two processes, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}")
    with EchoServer(loop_name) as server:
        failed = run_on(endurance(server.port, server.pid, args.duration, args.concurrency,
                                  args.interval, args.early, args.late), loop_name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
