"""Request/response: round trips per second of 1 byte each way on one connection.

Four stacks, side by side, client and server in two processes:

* utcp, against ``utcp echo-server``;
* the kernel's TCP through asyncio, against the same server's ``--kernel-port``;
* raw UDP ping-pong through asyncio's ``DatagramProtocol``: the floor under any
  TCP carried in UDP datagrams by asyncio (a server process that echoes each
  datagram, a client that sends the next one when the last comes back);
* "core": utcp's sans-I/O stack (``utcp.core.stack.Stack``) behind the thinnest
  shell there is, on both sides: the loop's own datagram transport, the echo
  written from within the callback that delivered the request, no streams, no
  tasks, no timers. What utcp would reach if its asyncio shell cost nothing.

One request is outstanding at a time, so each round trip is two trips through
the loopback and two wake-ups of each process. Every case runs on asyncio's
loop and, with ``--uvloop``, on uvloop, in rounds that alternate the stacks.

    python benchmarks/bench_rr.py --uvloop

``--cpu`` instead runs client and server of each stack in this one process, on
one loop, and reports the CPU time a round trip costs both sides together, and
for utcp the Python calls it makes (cProfile). CPU time in one process holds
steady on a busy machine, where round trips across two processes do not: it is
the figure to compare two versions of the code by.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import statistics
import sys
import time
from typing import Any

from harness import (
    HOST,
    EchoServer,
    Helper,
    UdpPeer,
    Waiter,
    build,
    calls_counted,
    medians,
    run_on,
    timed_round_trips,
    uvloop_available,
    warm_malloc,
)

from utcp import bench
from utcp.core.config import Options
from utcp.core.events import Connected, DataReceived
from utcp.core.stack import Stack

#: Seconds past its duration a raw case may take before it counts as stuck.
CASE_GRACE = 10.0


async def udp_ping_pong(port: int, duration: float) -> dict[str, Any]:
    # Each round trip waits as utcp's and the kernel's clients do, with no timer of
    # its own; the case as a whole has one, for a datagram lost on the way.
    return await asyncio.wait_for(_udp_ping_pong(port, duration), duration + CASE_GRACE)


async def _udp_ping_pong(port: int, duration: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    transport, pinger = await loop.create_datagram_endpoint(Waiter, remote_addr=(HOST, port))

    async def round_trip() -> None:
        pinger.waiter = loop.create_future()
        transport.sendto(b"x")
        await pinger.waiter

    try:
        return await timed_round_trips(round_trip, duration)
    finally:
        transport.close()


# ------------------------------------------ the core alone, with the thinnest shell


class _CoreShell(asyncio.DatagramProtocol):
    """A Stack behind the loop's datagram transport and nothing else: what it
    queues is sent at once, and ``on_events`` gets what it delivers. (No timers:
    on loopback, with one request outstanding, nothing needs resending.)"""

    def __init__(self, stack: Stack, on_events: Any) -> None:
        self.stack = stack
        self.on_events = on_events
        self.loop = asyncio.get_running_loop()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.stack.receive_batch([(data, addr)], self.loop.time())
        self.flush()

    def flush(self) -> None:
        while True:
            datagrams, delivery = self.stack.take_output()
            for data, addr, _ in datagrams:
                self.transport.sendto(data, addr)
            if not delivery:
                return
            self.on_events(delivery)


async def core_server(port: int) -> None:
    """Echo every byte on every connection to TCP (and UDP) ``port``, until killed."""
    loop = asyncio.get_running_loop()
    stack = Stack((HOST, port))
    stack.listen(port, 128, Options())

    def on_events(delivery: list[tuple[Any, list[Any]]]) -> None:
        for conn, events in delivery:
            for event in events:
                if type(event) is DataReceived:
                    stack.send(conn, event.data, loop.time())

    await loop.create_datagram_endpoint(lambda: _CoreShell(stack, on_events),
                                        local_addr=(HOST, port))
    print("ready", flush=True)
    await loop.create_future()


async def core_ping_pong(port: int, duration: float) -> dict[str, Any]:
    return await asyncio.wait_for(_core_ping_pong(port, duration), duration + CASE_GRACE)


async def _core_ping_pong(port: int, duration: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stack = Stack((HOST, 0))
    waiter: list[asyncio.Future[None]] = [loop.create_future()]

    def on_events(delivery: list[tuple[Any, list[Any]]]) -> None:
        # The handshake's end, then each echo; nothing else ends a wait.
        if waiter[0].done():
            return
        for _, events in delivery:
            if any(type(e) in (Connected, DataReceived) for e in events):
                waiter[0].set_result(None)
                return

    transport, shell = await loop.create_datagram_endpoint(
        lambda: _CoreShell(stack, on_events), local_addr=(HOST, 0))
    stack.local_address = transport.get_extra_info("sockname")

    async def round_trip() -> None:
        waiter[0] = loop.create_future()
        stack.send(conn, b"x", loop.time())
        shell.flush()
        await waiter[0]

    try:
        conn = stack.connect((HOST, port), port, Options(), loop.time())
        shell.flush()
        await waiter[0]  # Connected
        return await timed_round_trips(round_trip, duration)
    finally:
        transport.close()


class CoreServer(Helper):
    """:func:`core_server` in a process of its own (this script, ``--core-server``)."""

    def __init__(self, loop_name: str) -> None:
        argv = [sys.executable, os.path.abspath(__file__)]
        if loop_name == "uvloop":
            argv.append("--uvloop")
        super().__init__("the core's echo server", [*argv, "--core-server"])


# ------------------------------------------------- --cpu: both sides in one process


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1024):
            writer.write(data)
    finally:
        writer.close()


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


async def cpu_per_round_trip(stack: str, n: int, calls: int = 0) -> dict[str, Any]:
    """CPU seconds per round trip, client and server on this loop; with ``calls``,
    also Python calls per round trip over that many more."""
    loop = asyncio.get_running_loop()
    closers: list[Any] = []
    if stack == "udp":
        server, _ = await loop.create_datagram_endpoint(_UdpEcho, local_addr=(HOST, 0))
        transport, pinger = await loop.create_datagram_endpoint(
            Waiter, remote_addr=server.get_extra_info("sockname"))
        closers += [transport.close, server.close]

        async def round_trip() -> None:
            pinger.waiter = loop.create_future()
            transport.sendto(b"x")
            await pinger.waiter
    else:
        import utcp
        module: Any = utcp if stack == "utcp" else asyncio
        srv = await module.start_server(_echo, HOST, 0)
        port = srv.port if stack == "utcp" else srv.sockets[0].getsockname()[1]
        reader, writer = await module.open_connection(HOST, port)
        closers += [writer.close, srv.close]

        async def round_trip() -> None:
            writer.write(b"x")
            await reader.readexactly(1)
    try:
        for _ in range(min(n, 500)):
            await round_trip()
        t0 = time.process_time()
        for _ in range(n):
            await round_trip()
        result: dict[str, Any] = {"stack": stack, "cpu_us": (time.process_time() - t0) / n * 1e6}
        if calls:
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(calls):
                await round_trip()
            profile.disable()
            result["calls"] = calls_counted(profile) / calls
        return result
    finally:
        for close in closers:
            close()
        await asyncio.sleep(0.01)


def cpu_main(loops: list[str], n: int, repeat: int, calls: int) -> None:
    print(f"bench_rr --cpu: {n} round trips per case, client and server in one process, "
          f"Python {sys.version.split()[0]}, {build()}, {time.strftime('%Y-%m-%d %H:%M')}")
    stacks = ["udp", "kernel", "utcp"]
    results = []
    for rnd in range(repeat):
        for loop_name in loops:
            for stack in (stacks if rnd % 2 == 0 else stacks[::-1]):
                r = run_on(cpu_per_round_trip(stack, n, calls if stack == "utcp" and rnd == 0
                                              else 0), loop_name)
                r["loop"] = loop_name
                results.append(r)
    picked = {(med["loop"], med["stack"]): (med, rs)
              for med, rs in medians(results, lambda r: (r["loop"], r["stack"]),
                                     lambda r: -r["cpu_us"])}
    print(f"\n{'loop':<8} {'stack':<7} {'CPU us/round trip':>17} {'(min-max)':>13} "
          f"{'utcp/udp':>9} {'utcp/kernel':>11} {'Python calls':>12}")
    for loop_name in loops:
        for stack in stacks:
            r, rs = picked[(loop_name, stack)]
            q_udp = q_kernel = ncalls = ""
            if stack == "utcp":
                # As rates (round trips per CPU second): above 1 would be faster.
                q_udp = f"{picked[(loop_name, 'udp')][0]['cpu_us'] / r['cpu_us']:.2f}"
                q_kernel = f"{picked[(loop_name, 'kernel')][0]['cpu_us'] / r['cpu_us']:.2f}"
                counted = [x["calls"] for x in rs if "calls" in x]
                ncalls = f"{counted[0]:.0f}" if counted else ""
            spread = f"({rs[-1]['cpu_us']:.1f}-{rs[0]['cpu_us']:.1f})"
            print(f"{loop_name:<8} {stack:<7} {r['cpu_us']:>17.1f} {spread:>13} {q_udp:>9} "
                  f"{q_kernel:>11} {ncalls:>12}")


def run_case(stack: str, loop_name: str, ports: dict[str, int],
             duration: float) -> dict[str, Any]:
    cpu = time.process_time()
    if stack == "udp":
        r = run_on(udp_ping_pong(ports["udp"], duration), loop_name)
    elif stack == "core":
        r = run_on(core_ping_pong(ports["core"], duration), loop_name)
    else:
        r = run_on(bench.request_response(HOST, ports[stack], duration=duration,
                                          kernel=stack == "kernel", progress=False), loop_name)
    r["stack"], r["loop"] = stack, loop_name
    # This process's CPU time (user and system) per round trip: the client's side.
    r["client_cpu_us"] = (time.process_time() - cpu) / max(r["round_trips"], 1) * 1e6
    return r


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per case (default 3)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the median is shown")
    ap.add_argument("--uvloop", action="store_true", help="also run every case on uvloop")
    ap.add_argument("--cpu", type=int, default=0, metavar="N",
                    help="instead: CPU time per round trip over N round trips, client and "
                         "server in this process (see above)")
    ap.add_argument("--calls", type=int, default=1000, metavar="N",
                    help="with --cpu: count utcp's Python calls over N more round trips "
                         "(default 1000; 0: do not count)")
    ap.add_argument("--core-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.core_server:  # (the helper process of the "core" case)
        warm_malloc()
        run_on(core_server(args.core_server), "uvloop" if args.uvloop else "asyncio")
        return
    if args.duration <= 0 or args.repeat < 1 or args.cpu < 0 or args.calls < 0:
        ap.error("--duration must be > 0, --repeat >= 1, --cpu and --calls >= 0")
    if args.uvloop and not uvloop_available():
        ap.error("--uvloop: uvloop is not installed (pip install 'utcp[uvloop]')")
    warm_malloc()
    loops = ["asyncio"] + (["uvloop"] if args.uvloop else [])
    if args.cpu:
        cpu_main(loops, args.cpu, args.repeat, args.calls)
        return
    stacks = ["udp", "kernel", "core", "utcp"]
    print(f"bench_rr: {args.duration:g} s per case, client and server in two processes, "
          f"Python {sys.version.split()[0]}, {build()}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    results = []
    for loop_name in loops:
        with UdpPeer(loop_name) as udp, EchoServer(loop_name) as server, \
                CoreServer(loop_name) as core:
            ports = {"udp": udp.port, "kernel": server.kernel_port, "utcp": server.port,
                     "core": core.port}
            for rnd in range(args.repeat):
                for stack in (stacks if rnd % 2 == 0 else stacks[::-1]):
                    r = run_case(stack, loop_name, ports, args.duration)
                    print(f"  round {rnd + 1}: {loop_name:<8} {stack:<7} "
                          f"{r['rtt_per_s']:7.0f} round trips/s", flush=True)
                    results.append(r)
    picked = {(med["loop"], med["stack"]): (med, rs)
              for med, rs in medians(results, lambda r: (r["loop"], r["stack"]),
                                     lambda r: r["rtt_per_s"])}
    print()
    print(f"{'loop':<8} {'stack':<7} {'round trips/s':>13} {'(min-max)':>15} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'/udp':>6} {'/kernel':>8} {'client CPU us':>13}")
    ratios = []
    for loop_name in loops:
        for stack in stacks:
            r, rs = picked[(loop_name, stack)]
            q_udp = q_kernel = ""
            if stack in ("utcp", "core"):
                q = r["rtt_per_s"] / picked[(loop_name, "udp")][0]["rtt_per_s"]
                if stack == "utcp":
                    ratios.append(q)
                q_udp = f"{q:.2f}"
                q_kernel = f"{r['rtt_per_s'] / picked[(loop_name, 'kernel')][0]['rtt_per_s']:.2f}"
            spread = f"({rs[0]['rtt_per_s']:.0f}-{rs[-1]['rtt_per_s']:.0f})"
            print(f"{loop_name:<8} {stack:<7} {r['rtt_per_s']:>13.0f} {spread:>15} "
                  f"{r['latency_ms']['p50']:>7.3f} {r['latency_ms']['p99']:>7.3f} "
                  f"{q_udp:>6} {q_kernel:>8} {r['client_cpu_us']:>13.1f}")
    if ratios:
        print(f"geometric mean of utcp/udp: {statistics.geometric_mean(ratios):.2f}")


if __name__ == "__main__":
    main()
