"""Request/response: round trips per second of 1 byte each way on one connection.

Three stacks, side by side, client and server in two processes:

* utcp, against ``utcp echo-server``;
* the kernel's TCP through asyncio, against the same server's ``--kernel-port``;
* raw UDP ping-pong through asyncio's ``DatagramProtocol``: the floor under any
  TCP carried in UDP datagrams by asyncio (a server process that echoes each
  datagram, a client that sends the next one when the last comes back).

One request is outstanding at a time, so each round trip is two trips through
the loopback and two wake-ups of each process. Every case runs on asyncio's
loop and, with ``--uvloop``, on uvloop, in rounds that alternate the stacks.

    python benchmarks/bench_rr.py --uvloop
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

from harness import (
    HOST,
    EchoServer,
    build,
    free_ports,
    medians,
    run_on,
    uvloop_available,
    warm_malloc,
)

from utcp import bench

# A UDP echo server on the loop named by argv[1], port argv[2]: what the raw case talks to.
UDP_ECHO = """
import asyncio, sys
class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport): self.transport = transport
    def datagram_received(self, data, addr): self.transport.sendto(data, addr)
async def main():
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", int(sys.argv[2])))
    print("ready", flush=True)
    await loop.create_future()
if sys.argv[1] == "uvloop":
    import uvloop
    uvloop.install()
asyncio.run(main())
"""


class _Pinger(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


async def udp_ping_pong(port: int, duration: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    transport, pinger = await loop.create_datagram_endpoint(
        _Pinger, remote_addr=(HOST, port))
    samples = []
    start = time.perf_counter()
    stop_at = start + duration
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                break
            pinger.waiter = loop.create_future()
            transport.sendto(b"x")
            await asyncio.wait_for(pinger.waiter, 5)
            samples.append(time.perf_counter() - t0)
    finally:
        transport.close()
    elapsed = time.perf_counter() - start
    return {"round_trips": len(samples), "rtt_per_s": len(samples) / elapsed,
            "latency_ms": bench.percentiles(samples)}


def run_case(stack: str, loop_name: str, ports: dict[str, int],
             duration: float) -> dict[str, Any]:
    if stack == "udp":
        r = run_on(udp_ping_pong(ports["udp"], duration), loop_name)
    else:
        r = run_on(bench.request_response(HOST, ports[stack], duration=duration,
                                          kernel=stack == "kernel", progress=False), loop_name)
    r["stack"], r["loop"] = stack, loop_name
    return r


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per case (default 3)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the median is shown")
    ap.add_argument("--uvloop", action="store_true", help="also run every case on uvloop")
    args = ap.parse_args(argv)
    if args.duration <= 0 or args.repeat < 1:
        ap.error("--duration must be > 0 and --repeat >= 1")
    if args.uvloop and not uvloop_available():
        ap.error("--uvloop: uvloop is not installed (pip install 'utcp[uvloop]')")
    warm_malloc()
    loops = ["asyncio"] + (["uvloop"] if args.uvloop else [])
    stacks = ["udp", "kernel", "utcp"]
    print(f"bench_rr: {args.duration:g} s per case, client and server in two processes, "
          f"Python {sys.version.split()[0]}, {build()}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    results = []
    for loop_name in loops:
        udp_port = free_ports(socket.SOCK_DGRAM, 1)
        udp = subprocess.Popen([sys.executable, "-c", UDP_ECHO, loop_name, str(udp_port)],
                               stdout=subprocess.PIPE, text=True)
        try:
            assert udp.stdout is not None and udp.stdout.readline().strip() == "ready"
            with EchoServer(loop_name) as server:
                ports = {"udp": udp_port, "kernel": server.kernel_port, "utcp": server.port}
                for rnd in range(args.repeat):
                    for stack in (stacks if rnd % 2 == 0 else stacks[::-1]):
                        r = run_case(stack, loop_name, ports, args.duration)
                        print(f"  round {rnd + 1}: {loop_name:<8} {stack:<7} "
                              f"{r['rtt_per_s']:7.0f} round trips/s", flush=True)
                        results.append(r)
        finally:
            udp.kill()
            udp.communicate()
    picked = {(med["loop"], med["stack"]): (med, rs)
              for med, rs in medians(results, lambda r: (r["loop"], r["stack"]),
                                     lambda r: r["rtt_per_s"])}
    print()
    print(f"{'loop':<8} {'stack':<7} {'round trips/s':>13} {'(min-max)':>15} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'utcp/udp':>9} {'utcp/kernel':>11}")
    ratios = []
    for loop_name in loops:
        for stack in stacks:
            r, rs = picked[(loop_name, stack)]
            q_udp = q_kernel = ""
            if stack == "utcp":
                q = r["rtt_per_s"] / picked[(loop_name, "udp")][0]["rtt_per_s"]
                ratios.append(q)
                q_udp = f"{q:.2f}"
                q_kernel = f"{r['rtt_per_s'] / picked[(loop_name, 'kernel')][0]['rtt_per_s']:.2f}"
            spread = f"({rs[0]['rtt_per_s']:.0f}-{rs[-1]['rtt_per_s']:.0f})"
            print(f"{loop_name:<8} {stack:<7} {r['rtt_per_s']:>13.0f} {spread:>15} "
                  f"{r['latency_ms']['p50']:>7.3f} {r['latency_ms']['p99']:>7.3f} "
                  f"{q_udp:>9} {q_kernel:>11}")
    if ratios:
        print(f"geometric mean of utcp/udp: {statistics.geometric_mean(ratios):.2f}")


if __name__ == "__main__":
    main()
