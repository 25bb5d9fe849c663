"""One server holding many idle connections, and still accepting at full rate.

``utcp echo-server`` runs in a process of its own. ``--clients`` client
processes open ``--connections`` connections to it between them and keep them
open and idle (each process has one UDP socket, so at most 28232 connections
toward one server port: hence several processes). The server's resident memory
growth divided by the connections is its memory per idle connection, its
handler task and streams included; with ``--protocol`` the server is an echo
``asyncio.Protocol`` on ``utcp.create_server`` (and the loop's, for
``--kernel``), which has neither.

Before the clients connect and while they hold their connections, this process
measures the server's connection rate (``utcp bench connect``'s workload, 64 in
flight), so the two show whether a full table slows the server down.

    python benchmarks/bench_scale.py --connections 100000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from harness import HOST, UTCP_HOME, EchoServer, rss_bytes, run_on, warm_malloc

from utcp import bench

# A client process: open argv[3] connections to argv[1]:argv[2], argv[4] at a time,
# over utcp or (argv[5] == "kernel") the kernel's TCP from address argv[6], print
# "ready OPEN FAILED", hold them until stdin closes, then reset them all.
HOLDER = """
import asyncio, functools, sys, utcp

if sys.argv[5] == "kernel":
    open_connection = functools.partial(asyncio.open_connection, local_addr=(sys.argv[6], 0))
else:
    open_connection = utcp.open_connection

async def main(host, port, n, at_once):
    loop = asyncio.get_running_loop()
    held, failed = [], 0
    gate = asyncio.Semaphore(at_once)

    async def one():
        nonlocal failed
        async with gate:
            try:
                held.append(await open_connection(host, port))
            except OSError:
                failed += 1

    await asyncio.gather(*(one() for _ in range(n)))
    print(f"ready {len(held)} {failed}", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    for _, writer in held:
        writer.transport.abort()
    await asyncio.sleep(0.5)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
"""


def rate(port: int, duration: float, kernel: bool) -> dict:
    return run_on(bench.connect(HOST, port, duration=duration, concurrency=64, kernel=kernel,
                                progress=False), "asyncio")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=100_000,
                    help="idle connections to hold (default 100000)")
    ap.add_argument("--clients", type=int, default=0,
                    help="client processes (default: enough for 25000 each)")
    ap.add_argument("--at-once", type=int, default=32,
                    help="handshakes each client keeps in flight while opening (default 32)")
    ap.add_argument("--duration", type=float, default=5.0,
                    help="seconds of each connection-rate measurement (default 5)")
    ap.add_argument("--protocol", action="store_true",
                    help="serve with an echo asyncio.Protocol (utcp.create_server) instead "
                         "of `utcp echo-server`'s streams handler: utcp's own cost per "
                         "connection, without a task and streams for each")
    ap.add_argument("--kernel", action="store_true",
                    help="the same over the kernel's TCP, to the server's kernel port "
                         "(its RSS does not count the kernel's own socket memory)")
    args = ap.parse_args(argv)
    clients = args.clients or max(1, -(-args.connections // 25_000))
    if args.connections < 1 or clients < 1 or args.connections / clients > 28_000:
        ap.error("at most 28000 connections per client process (its ports toward the server)")
    warm_malloc()
    print(f"bench_scale: {args.connections} idle connections from {clients} client processes, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    stack = "kernel" if args.kernel else "utcp"
    with EchoServer("asyncio", protocol=args.protocol) as server:
        port = server.kernel_port if args.kernel else server.port
        empty = rate(port, args.duration, args.kernel)
        time.sleep(1.0)
        rss0 = rss_bytes(server.pid)
        share = [args.connections // clients + (i < args.connections % clients)
                 for i in range(clients)]
        t0 = time.perf_counter()
        # Kernel TCP clients each from an address of their own (127.0.0.2, ...): from
        # 127.0.0.1, their connections would take the ports the measuring client
        # needs toward the same server port.
        procs = [subprocess.Popen([sys.executable, "-c", HOLDER, HOST, str(port),
                                   str(n), str(args.at_once), stack, f"127.0.0.{i + 2}"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  cwd=UTCP_HOME)
                 for i, n in enumerate(share)]
        opened = failed = 0
        try:
            for p in procs:
                assert p.stdout is not None
                _, n_open, n_failed = p.stdout.readline().split()
                opened += int(n_open)
                failed += int(n_failed)
            took = time.perf_counter() - t0
            time.sleep(1.0)
            rss1 = rss_bytes(server.pid)
            loaded = rate(port, args.duration, args.kernel)
        finally:
            for p in procs:
                p.communicate(input="", timeout=120)
    per = (rss1 - rss0) / max(opened, 1)
    print(f"{stack}, {'protocol' if args.protocol else 'streams'} server: opened {opened} "
          f"connections in {took:.1f} s ({failed} failed)")
    print(f"server RSS: {rss0 / 2**20:.1f} MiB empty, {rss1 / 2**20:.1f} MiB holding them: "
          f"{per:.0f} bytes ({per / 1024:.2f} KiB) per idle connection")
    print(f"connection rate, 64 in flight: {empty['conn_per_s']:.0f} conn/s with the server "
          f"empty, {loaded['conn_per_s']:.0f} conn/s while it holds {opened} "
          f"({loaded['conn_per_s'] / empty['conn_per_s']:.2f} of it); failures "
          f"{empty['failures'] or 'none'} / {loaded['failures'] or 'none'}")
    return 0 if not failed and not loaded["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
