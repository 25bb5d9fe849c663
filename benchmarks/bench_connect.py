"""Connections per second: utcp against asyncio over the kernel's TCP, side by side.

The server is ``utcp echo-server --kernel-port`` in a process of its own, serving
utcp and the kernel's TCP on the same event loop; this process is the client,
running ``utcp bench connect``'s workload (``utcp.bench.connect``): open a
connection, send 16 bytes, read the echo, close and wait until the server has
everything. Two workloads: sequential (one connection at a time) and
concurrent (``--concurrency`` in flight). Every case runs on asyncio's default
loop and, with ``--uvloop``, on uvloop (server and client alike), in rounds that
alternate the stacks, and the table shows the median round and the ratio.

"GC us" is the client's time in the cyclic garbage collector per connection.
``--calls N`` also counts Python function calls per connection (cProfile; client,
server and loop together, in one process) and segments per connection.
``--tw-memory N`` measures the bytes Python keeps per TIME-WAIT entry (tracemalloc).

The sequential workload also runs two floor cases: utcp's cycle without its TCP.
Raw UDP through asyncio's ``DatagramProtocol``, against a UDP peer process on the
same loop, exchanging the datagrams of utcp's cycle. "floor3" waits for three
round trips as utcp's cycle does (SYN and SYN-ACK; ACK, data and echo; FIN and
FIN; the last ACK sent after): no TCP carried in UDP by asyncio that makes those
three round trips (``wait_closed()`` waiting for the FIN's ACK, no data on the
SYN) can set up and close connections one at a time faster. "floor2" stops
waiting after the echo (its FIN is not answered), as if ``wait_closed()``
returned at once, as the kernel's does.

    python benchmarks/bench_connect.py --uvloop
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any

from harness import (
    HOST,
    EchoServer,
    UdpPeer,
    Waiter,
    build,
    calls_counted,
    medians,
    run_on,
    uvloop_available,
    warm_malloc,
)

import utcp
from utcp import bench

MESSAGE = b"ping-0123456789!"  # 16 bytes


@dataclass
class Result:
    stack: str
    loop: str
    concurrency: int
    conn_per_s: float = 0.0
    connections: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    gc_us: float = 0.0  # the client's time in the cyclic garbage collector, per connection


class GcTime:
    """Seconds this process spends in the cyclic garbage collector within the block."""

    def __enter__(self) -> GcTime:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


def run_case(server: EchoServer, peer: UdpPeer, stack: str, loop_name: str, concurrency: int,
             duration: float) -> Result:
    kernel = stack == "kernel"
    port = server.kernel_port if kernel else server.port
    with GcTime() as spent:
        if stack in FLOOR_CYCLES:
            r = run_on(udp_floor(FLOOR_CYCLES[stack], peer.port, duration), loop_name)
        else:
            r = run_on(bench.connect(HOST, port, duration=duration, concurrency=concurrency,
                                     kernel=kernel, progress=False), loop_name)
    return Result(stack, loop_name, concurrency, r["conn_per_s"], r["connections"],
                  r["failures"], r["latency_ms"],
                  spent.seconds / max(r["connections"], 1) * 1e6)


# utcp's sequential cycle, datagram for datagram, at their sizes (a 20-byte header,
# 12 of timestamps, 20 of SYN options, 16 bytes of data). The peer answers each but
# the ones that start with "."; the client sends the next when the answer is in.
FLOOR_CYCLES = {
    "floor3": ((b"?" * 52,), (b"." * 32, b"?" * 48), (b"?" * 32,), (b"." * 32,)),
    "floor2": ((b"?" * 52,), (b"." * 32, b"?" * 48), (b"." * 32,)),
}


async def udp_floor(cycle: tuple[tuple[bytes, ...], ...], port: int,
                    duration: float) -> dict[str, Any]:
    """Sequential ``cycle``s (of FLOOR_CYCLES), each wrapped as ``bench.connect`` wraps a
    connection; latency is the first round trip's (the handshake's)."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        Waiter, remote_addr=(HOST, port))

    async def one() -> None:
        for step, datagrams in enumerate(cycle):
            answered = datagrams[-1][:1] != b"."
            if answered:
                client.waiter = loop.create_future()
            for datagram in datagrams:
                transport.sendto(datagram)
            if answered:
                await client.waiter
            if step == 0:
                setup.append(time.perf_counter() - t0)

    setup: list[float] = []
    done = 0
    failures: dict[str, int] = {}
    start = time.perf_counter()
    stop_at = start + duration
    try:
        while (t0 := time.perf_counter()) < stop_at:
            try:
                await asyncio.wait_for(one(), bench.CYCLE_TIMEOUT)
            except TimeoutError:  # a datagram lost on the way: counted, as connect's
                failures["timed out"] = failures.get("timed out", 0) + 1
                continue
            done += 1
    finally:
        transport.close()
    elapsed = time.perf_counter() - start
    return {"conn_per_s": done / elapsed, "connections": done, "failures": failures,
            "latency_ms": bench.percentiles(setup)}


def workload(concurrency: int) -> str:
    return "sequential" if concurrency == 1 else f"{concurrency} in flight"


def report(results: list[Result]) -> None:
    picked = {}
    for med, rs in medians(results, lambda r: (r.loop, r.concurrency, r.stack),
                           lambda r: r.conn_per_s):
        picked[(med.loop, med.concurrency, med.stack)] = (med, rs)
    print()
    print(f"{'loop':<8} {'workload':<13} {'stack':<7} {'conn/s':>7} {'(min-max)':>13} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'failed':>6} {'GC us':>6} {'/kernel':>7}")
    ratios = []
    for (loop, conc, stack), (r, rs) in sorted(picked.items(),
                                               key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        ratio = ""
        base = picked.get((loop, conc, "kernel"))
        if stack != "kernel" and base is not None and base[0].conn_per_s:
            q = r.conn_per_s / base[0].conn_per_s
            if stack == "utcp":
                ratios.append(q)
            ratio = f"{q:.2f}"
        spread = f"({rs[0].conn_per_s:.0f}-{rs[-1].conn_per_s:.0f})"
        print(f"{loop:<8} {workload(conc):<13} {stack:<7} {r.conn_per_s:>7.0f} {spread:>13} "
              f"{r.latency_ms['p50']:>7.2f} {r.latency_ms['p99']:>7.2f} "
              f"{sum(r.failures.values()):>6} {r.gc_us:>6.1f} {ratio:>7}")
    for (loop, conc, stack), (r, _) in sorted(picked.items()):
        floor = picked.get((loop, conc, "floor3"))
        if stack == "utcp" and floor is not None and floor[0].conn_per_s:
            print(f"{loop} {workload(conc)}: utcp/floor3 {r.conn_per_s / floor[0].conn_per_s:.2f}")
    if ratios:
        print(f"geometric mean of utcp/kernel: {statistics.geometric_mean(ratios):.2f}")
    failed = {f"{r.stack}/{r.loop}/{workload(r.concurrency)}": r.failures
              for r in results if r.failures}
    if failed:
        print(f"failures: {failed}")


# ---------------------------------------------------------------- calls per cycle


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        writer.write(await reader.readexactly(len(MESSAGE)))
        await reader.read()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _cycle(open_connection: Any, port: int) -> None:
    reader, writer = await open_connection(HOST, port)
    try:
        writer.write(MESSAGE)
        await reader.readexactly(len(MESSAGE))
    finally:
        writer.close()
    await writer.wait_closed()


async def _calls(stack: str, n: int) -> tuple[float, float | None]:
    """Python calls per connection (client, server and loop in this one process),
    and segments per connection (utcp)."""
    if stack == "utcp":
        server: Any = await utcp.start_server(_serve, HOST, 0)
        port = server.port
        open_connection = utcp.open_connection
    else:
        server = await asyncio.start_server(_serve, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        open_connection = asyncio.open_connection
    for _ in range(50):  # warm-up: the client endpoint, imports, caches
        await _cycle(open_connection, port)
    await asyncio.sleep(0.3)
    before = server.statistics() if stack == "utcp" else None
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(n):
        await _cycle(open_connection, port)
    await asyncio.sleep(0.1)  # the server's side of the last close
    profile.disable()
    calls = calls_counted(profile) / n
    segments = None
    if before is not None:
        after = server.statistics()
        segments = (after["segments_in"] - before["segments_in"]
                    + after["segments_out"] - before["segments_out"]) / n
    server.close()
    return calls, segments


# ---------------------------------------------------------------- TIME-WAIT memory


async def _time_wait_memory(n: int) -> tuple[int, float]:
    """Bytes Python keeps per connection the client holds in TIME-WAIT."""
    server = await utcp.start_server(_serve, HOST, 0)
    reader, writer = await utcp.open_connection(HOST, server.port)
    stack = writer.transport.endpoint.stack
    writer.write(MESSAGE)
    await reader.readexactly(len(MESSAGE))
    writer.close()
    await writer.wait_closed()
    del reader, writer
    await asyncio.sleep(0.1)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    entries0 = len(stack)
    for _ in range(n):
        await _cycle(utcp.open_connection, server.port)
    await asyncio.sleep(0.2)  # the last closes finish; the server forgets its side
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    entries = len(stack) - entries0
    server.close()
    await server.wait_closed()
    return entries, (after - before) / max(entries, 1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0,
                    help="seconds per case (default 5)")
    ap.add_argument("--concurrency", type=int, default=64,
                    help="connections in flight in the concurrent workload (default 64; "
                         "0 skips it)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds, alternating the stacks; the table shows the median "
                         "(default 3)")
    ap.add_argument("--uvloop", action="store_true", help="also run every case on uvloop")
    ap.add_argument("--only", choices=("kernel", "utcp"), help="run one stack only")
    ap.add_argument("--calls", type=int, default=0, metavar="N",
                    help="also count Python calls per connection over N connections")
    ap.add_argument("--tw-memory", type=int, default=0, metavar="N",
                    help="also measure bytes per TIME-WAIT entry over N connections")
    args = ap.parse_args(argv)
    if args.duration <= 0 or args.repeat < 1 or args.concurrency < 0:
        ap.error("--duration must be > 0, --repeat >= 1, --concurrency >= 0")
    if args.uvloop and not uvloop_available():
        ap.error("--uvloop: uvloop is not installed (pip install 'utcp[uvloop]')")
    warm_malloc()
    loops = ["asyncio"] + (["uvloop"] if args.uvloop else [])
    stacks = [args.only] if args.only else ["kernel", "utcp"]
    # The floors under utcp's sequential cycle (see above), beside the others.
    floor = [] if args.only else list(FLOOR_CYCLES)
    concurrencies = [1] + ([args.concurrency] if args.concurrency > 1 else [])
    print(f"bench_connect: {args.duration:g} s per case, client and server in two processes, "
          f"Python {sys.version.split()[0]}, {build()}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    results = []
    for loop_name in loops:
        with EchoServer(loop_name) as server, UdpPeer(loop_name) as peer:
            for rnd in range(args.repeat):
                for conc in concurrencies:
                    order = stacks + (floor if conc == 1 else [])
                    for stack in (order if rnd % 2 == 0 else order[::-1]):
                        r = run_case(server, peer, stack, loop_name, conc, args.duration)
                        print(f"  round {rnd + 1}: {loop_name:<8} {workload(conc):<13} "
                              f"{stack:<7} {r.conn_per_s:7.0f} conn/s", flush=True)
                        results.append(r)
    report(results)
    if args.calls:
        print()
        for stack in stacks:
            calls, segments = run_on(_calls(stack, args.calls), "asyncio")
            seg = f", {segments:.1f} segments" if segments is not None else ""
            print(f"{stack}: {calls:.0f} Python calls per connection (client, server and "
                  f"loop, cProfile, {args.calls} connections){seg}")
    if args.tw_memory:
        entries, per = run_on(_time_wait_memory(args.tw_memory), "asyncio")
        print(f"\nmemory per utcp TIME-WAIT entry: {per:.0f} bytes "
              f"(tracemalloc, {entries} entries)")


if __name__ == "__main__":
    main()
