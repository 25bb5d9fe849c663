"""Connections per second: utcp against asyncio over the kernel's TCP, side by side.

Each connection is one full cycle: the client opens it, writes a few bytes, the
server echoes them, the client reads them back and closes first (so TIME-WAIT
lands on the client), then the server closes on end-of-stream. Two workloads:

* sequential: ``--count`` cycles one after the other;
* concurrent: ``--concurrency`` clients doing cycles until ``--count`` in all.

Both run on the kernel's TCP (``asyncio.open_connection`` / ``asyncio.start_server``)
and on utcp (``utcp.open_connection`` / ``utcp.start_server``), on asyncio's default
loop and, with ``--uvloop``, on uvloop too, all in one run so the ratios compare
like with like. utcp keeps its default MSL, so every client connection stays in
the endpoint's table for 2 MSL = 60 s after it closes: the table size and the
memory it holds are reported too.

Everything runs on 127.0.0.1 and stops by itself: each case ends after
``--count`` cycles or ``--duration`` seconds, whichever comes first, and a case
that hangs is cancelled after ``--duration`` plus a grace period.

    python benchmarks/bench_connect.py --count 2000 --concurrency 16 --uvloop
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness import medians, run_on, warm_malloc

import utcp

HOST = "127.0.0.1"
MESSAGE = b"ping-0123456789!"  # 16 bytes: "a few bytes"
GRACE = 15.0  # seconds a case may overrun --duration before it is cancelled


@dataclass
class Result:
    stack: str
    loop: str
    mode: str
    concurrency: int
    cycles: int = 0
    elapsed: float = 0.0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    table: int | None = None  # client endpoint table size after the run (utcp)
    states: dict[str, int] = field(default_factory=dict)
    rss_growth: int = 0  # bytes
    stats: dict[str, Any] = field(default_factory=dict)
    timed_out: bool = False

    @property
    def rate(self) -> float:
        return self.cycles / self.elapsed if self.elapsed > 0 else 0.0


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


# ------------------------------------------------------------------- the workload

async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        data = await reader.readexactly(len(MESSAGE))
        writer.write(data)
        await writer.drain()
        await reader.read()  # the client closes first: wait for its FIN
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


async def _cycle(open_connection: Callable[..., Any], port: int) -> None:
    reader, writer = await open_connection(HOST, port)
    try:
        writer.write(MESSAGE)
        echo = await reader.readexactly(len(MESSAGE))
        if echo != MESSAGE:
            raise RuntimeError(f"bad echo {echo!r}")
    finally:
        writer.close()
        await writer.wait_closed()


async def _run_case(stack: str, mode: str, count: int, concurrency: int,
                    duration: float, loop_name: str) -> Result:
    res = Result(stack, loop_name, mode, concurrency)
    if stack == "utcp":
        server: Any = await utcp.start_server(_serve, HOST, 0)
        port = server.port
        open_connection = utcp.open_connection
    else:
        server = await asyncio.start_server(_serve, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        open_connection = asyncio.open_connection

    # One warm-up cycle so that lazy setup (the client endpoint, imports) is not timed.
    await asyncio.wait_for(_cycle(open_connection, port), 5)

    client_endpoint = None
    if stack == "utcp":
        # The loop's shared client endpoint (private: utcp has no public handle on it).
        from utcp.streams import _shared
        client_endpoint = _shared[asyncio.get_running_loop()][socket.AF_INET]

    remaining = count
    deadline = time.perf_counter() + duration
    latencies = res.latencies

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            t0 = time.perf_counter()
            try:
                await asyncio.wait_for(_cycle(open_connection, port), 10)
            except (OSError, asyncio.TimeoutError, RuntimeError,
                    asyncio.IncompleteReadError) as exc:
                res.errors += 1
                if res.errors <= 3:
                    print(f"  {stack}/{loop_name}/{mode}: cycle failed: {exc!r}",
                          file=sys.stderr)
                continue
            latencies.append(time.perf_counter() - t0)

    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    workers = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    try:
        await asyncio.wait_for(asyncio.gather(*workers), duration + GRACE)
    except asyncio.TimeoutError:
        res.timed_out = True
    res.elapsed = time.perf_counter() - t0
    res.cycles = len(latencies)
    res.rss_growth = rss_bytes() - rss0

    if client_endpoint is not None:
        st = client_endpoint.statistics()
        res.table = len(client_endpoint.stack)
        res.states = st["connections"]
        res.stats = {"client": st, "server": server.statistics()}

    server.close()
    try:
        await asyncio.wait_for(server.wait_closed(), 5)
    except asyncio.TimeoutError:
        print(f"  {stack}/{loop_name}/{mode}: server did not close in 5 s", file=sys.stderr)
    return res


async def _time_wait_memory(n: int) -> tuple[int, int]:
    """Bytes Python holds per closed utcp client connection left in TIME-WAIT.

    Runs ``n`` untimed cycles under tracemalloc and divides what the client
    endpoint's table grew by its number of entries.
    """
    import tracemalloc

    from utcp.streams import _shared

    server = await utcp.start_server(_serve, HOST, 0)
    await _cycle(utcp.open_connection, server.port)  # create the client endpoint
    endpoint = _shared[asyncio.get_running_loop()][socket.AF_INET]
    await asyncio.sleep(0.1)  # let the server side of the warm-up finish
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table0 = len(endpoint.stack)
    for _ in range(n):
        await asyncio.wait_for(_cycle(utcp.open_connection, server.port), 10)
    # The last FIN exchanges finish and the server forgets its side; its timer heap
    # lets go of stale entries (the SYN-ACK retransmission deadline, 1 s) only when due.
    await asyncio.sleep(1.2)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    entries = len(endpoint.stack) - table0
    server.close()
    await asyncio.wait_for(server.wait_closed(), 5)
    return entries, (after - before) // max(entries, 1)


def run_case(stack: str, mode: str, count: int, concurrency: int, duration: float,
             loop_name: str) -> Result:
    return run_on(_run_case(stack, mode, count, concurrency, duration, loop_name), loop_name)


# ------------------------------------------------------------------------ report

def _ms(xs: list[float], q: float) -> str:
    if not xs:
        return "-"
    xs = sorted(xs)
    return f"{xs[min(len(xs) - 1, int(q * len(xs)))] * 1e3:.2f}"


def _workload(r: Result) -> str:
    return "sequential" if r.mode == "sequential" else f"concurrent x{r.concurrency}"


def _median_runs(runs: list[Result]) -> list[Result]:
    """One result per case: the run with the median rate, noting the spread."""
    out = []
    for med, rs in medians(runs, lambda r: (r.loop, r.mode, r.stack), lambda r: r.rate):
        med.spread = (rs[0].rate, rs[-1].rate)  # type: ignore[attr-defined]
        out.append(med)
    return out


def report(runs: list[Result]) -> None:
    results = _median_runs(runs)
    by = {(r.loop, r.mode, r.stack): r for r in results}
    repeats = len(runs) // max(len(results), 1)
    print()
    if repeats > 1:
        print(f"median of {repeats} runs per row, the slowest and fastest run in brackets; "
              f"latencies are those of the median run")
    print(f"{'loop':<8} {'workload':<14} {'stack':<8} {'cycles':>7} {'conn/s':>7} "
          f"{'(min-max)':>13} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'utcp/asyncio':>12}")
    for r in results:
        ratio = ""
        if r.stack == "utcp":
            base = by.get((r.loop, r.mode, "asyncio"))
            if base is not None and base.rate:
                ratio = f"{r.rate / base.rate:.2f}"
        flag = " (timed out)" if r.timed_out else ""
        lo, hi = r.spread  # type: ignore[attr-defined]
        spread = f"({lo:.0f}-{hi:.0f})"
        print(f"{r.loop:<8} {_workload(r):<14} {r.stack:<8} {r.cycles:>7} {r.rate:>7.0f} "
              f"{spread:>13} {_ms(r.latencies, 0.5):>7} {_ms(r.latencies, 0.99):>7} "
              f"{r.errors:>6} {ratio:>12}{flag}")
    ratios = [by[(r.loop, r.mode, "utcp")].rate / r.rate for r in results
              if r.stack == "asyncio" and r.rate and (r.loop, r.mode, "utcp") in by]
    if ratios:
        print(f"geometric mean of utcp/asyncio: {statistics.geometric_mean(ratios):.2f}")

    utcp_runs = [r for r in runs if r.stack == "utcp"]
    if not utcp_runs:
        return
    print()
    print("utcp client endpoint at the end of each median run (TIME-WAIT lasts 2 MSL = 60 s):")
    print(f"{'loop':<8} {'workload':<14} {'table':>6} {'RSS growth':>11} {'per entry':>10}  states")
    for r in results:
        if r.stack != "utcp":
            continue
        per = f"{r.rss_growth / r.table / 1024:.1f} KiB" if r.table else "-"
        print(f"{r.loop:<8} {_workload(r):<14} {r.table!s:>6} "
              f"{r.rss_growth / 2**20:>7.1f} MiB {per:>10}  {r.states}")
    rtx = sum(r.stats["client"]["retransmissions"] + r.stats["server"]["retransmissions"]
              for r in utcp_runs)
    drops: dict[str, int] = {}
    for r in utcp_runs:
        for side in ("client", "server"):
            for cause, n in r.stats[side]["drops"].items():
                drops[f"{side} {cause}"] = drops.get(f"{side} {cause}", 0) + n
    print(f"all utcp runs: {rtx} retransmissions (client and server), "
          f"drops {drops or 'none'}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=2000,
                    help="connection cycles per case (default 2000)")
    ap.add_argument("--concurrency", type=int, default=16,
                    help="clients in the concurrent workload (default 16; 0 skips it)")
    ap.add_argument("--uvloop", action="store_true",
                    help="also run every case on uvloop")
    ap.add_argument("--duration", type=float, default=20.0,
                    help="time limit per case in seconds (default 20)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of every case, interleaved; the table shows the median "
                         "(default 3)")
    ap.add_argument("--cold-malloc", action="store_true",
                    help="skip the allocator warm-up (see the README: asyncio's datagram "
                         "transport then pays an mmap per datagram until something "
                         "raises glibc's mmap threshold)")
    ap.add_argument("--only", choices=("asyncio", "utcp"),
                    help="run one stack only (for profiling)")
    ap.add_argument("--sequential-only", action="store_true",
                    help="skip the concurrent workload")
    args = ap.parse_args(argv)
    if args.count < 1 or args.concurrency < 0 or args.duration <= 0 or args.repeat < 1:
        ap.error("--count and --repeat must be >= 1, --concurrency >= 0, --duration > 0")
    if not args.cold_malloc:
        warm_malloc()

    loops = ["asyncio"] + (["uvloop"] if args.uvloop else [])
    stacks = [args.only] if args.only else ["asyncio", "utcp"]
    modes = [("sequential", 1)]
    if args.concurrency and not args.sequential_only:
        modes.append(("concurrent", args.concurrency))
    print(f"bench_connect: {args.count} cycles per case, limit {args.duration:g} s, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    results = []
    for rep in range(args.repeat):
        for loop_name in loops:
            for mode, conc in modes:
                for stack in stacks:
                    r = run_case(stack, mode, args.count, conc, args.duration, loop_name)
                    print(f"  run {rep + 1}: {loop_name:<8} {mode:<10} x{conc:<3} {stack:<8} "
                          f"{r.cycles:>6} cycles in {r.elapsed:6.2f} s = {r.rate:7.0f} conn/s",
                          flush=True)
                    results.append(r)
    report(results)
    if "utcp" in stacks:
        entries, per = run_on(_time_wait_memory(300), "asyncio")
        print(f"memory per utcp TIME-WAIT entry (tracemalloc, {entries} entries): {per} bytes")
        print("the table keeps each entry 2 MSL = 60 s, so at R conn/s it holds up to 60*R "
              "entries; 4-tuples in TIME-WAIT are not reused, so past 28232 cycles toward one "
              "server within 60 s, open_connection fails with EADDRNOTAVAIL")


if __name__ == "__main__":
    main()
