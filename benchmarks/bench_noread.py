"""Peers that write and never read, against an echo server: what it holds, and
what its other clients notice.

``utcp echo-server`` runs in a process of its own. Attackers connect and write
as fast as they may, never reading: the server's echo then waits on their
closed windows, stops reading, and its receive buffers fill. One well-behaved
client meanwhile sends a line every 20 ms and times its echo. Each case runs
with the receive-memory limit given, and once without one (a limit far above
what the attack can reach), for comparison.

    python benchmarks/bench_noread.py [--attackers 40] [--limit 4194304]
        [--timeout 5] [--duration 12]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

from harness import HOST, EchoServer, rss_bytes, run_on, warm_malloc

import utcp


def held(port: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "utcp", "stat", str(port), "--json"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return json.loads(out)["servers"][0]["statistics"]


async def attack(port: int, attackers: int, duration: float, server_pid: int) -> dict:
    resets = 0
    reset_at: list[float] = []
    t0 = time.perf_counter()

    async def attacker() -> None:
        nonlocal resets
        try:
            _, writer = await utcp.open_connection(HOST, port)
        except OSError:
            return
        chunk = bytes(65536)
        try:
            while time.perf_counter() - t0 < duration:
                writer.write(chunk)
                left = duration - (time.perf_counter() - t0)
                await asyncio.wait_for(writer.drain(), max(left, 0.01))
        except ConnectionResetError:
            resets += 1  # the server reclaimed this connection
            reset_at.append(time.perf_counter() - t0)
        except (OSError, asyncio.TimeoutError):
            pass  # the case ended with the window still shut
        writer.transport.abort()

    latencies: list[float] = []
    failures = 0

    async def client() -> None:
        nonlocal failures
        reader, writer = await utcp.open_connection(HOST, port)
        while time.perf_counter() - t0 < duration:
            start = time.perf_counter()
            writer.write(b"ping\n")
            try:
                await asyncio.wait_for(reader.readline(), 2.0)
                latencies.append((time.perf_counter() - start) * 1000)
            except TimeoutError:
                failures += 1
            await asyncio.sleep(0.02)
        writer.close()

    samples: list[tuple[float, int, int]] = []

    async def sample() -> None:
        while time.perf_counter() - t0 < duration:
            stats = await asyncio.to_thread(held, port)
            samples.append((time.perf_counter() - t0, stats["receive_memory"]["held"],
                            rss_bytes(server_pid)))
            await asyncio.sleep(0.5)

    rss0 = rss_bytes(server_pid)
    await asyncio.gather(client(), sample(), *[attacker() for _ in range(attackers)])
    stats = held(port)
    latencies.sort()
    return {
        "peak_held": max(h for _, h, _ in samples),
        "rss_growth": max(r for _, _, r in samples) - rss0,
        "reclaimed": stats["drops"].get("memory-reclaimed", 0),
        "resets": resets,  # as the attackers saw them
        "last_reset_s": max(reset_at) if reset_at else None,
        "p50": statistics.median(latencies) if latencies else None,
        "p99": latencies[int(len(latencies) * 0.99)] if latencies else None,
        "failures": failures,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--attackers", type=int, default=40)
    ap.add_argument("--limit", type=int, default=4 * 1024 * 1024,
                    help="--max-receive-memory for the server, bytes (default 4 MiB)")
    ap.add_argument("--timeout", type=float, default=5.0,
                    help="--zero-window-timeout for the server, seconds (default 5)")
    ap.add_argument("--duration", type=float, default=12.0, help="seconds per case")
    args = ap.parse_args(argv)
    warm_malloc()
    print(f"bench_noread: utcp echo-server; {args.attackers} peers that never read, one "
          f"client pinging every 20 ms; Python {sys.version.split()[0]}, {os.cpu_count()} "
          f"CPUs, {time.strftime('%Y-%m-%d %H:%M')}")
    print("| receive-memory limit | peak held | server RSS growth | reclaimed | "
          "last reset s | ping p50 ms | p99 ms | ping failures |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for limit in (args.limit, 1 << 40):
        with EchoServer("asyncio", "--max-receive-memory", str(limit),
                        "--zero-window-timeout", str(args.timeout)) as server:
            r = run_on(attack(server.port, args.attackers, args.duration, server.pid),
                       "asyncio")
        shown = f"{limit / 2**20:.0f} MiB" if limit < 1 << 40 else "none"
        last = "-" if r["last_reset_s"] is None else f"{r['last_reset_s']:.1f}"
        p50 = "-" if r["p50"] is None else f"{r['p50']:.2f}"
        p99 = "-" if r["p99"] is None else f"{r['p99']:.2f}"
        print(f"| {shown} | {r['peak_held'] / 2**20:.1f} MiB | "
              f"{r['rss_growth'] / 2**20:.1f} MiB | {r['reclaimed']} | {last} | {p50} | "
              f"{p99} | {r['failures']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
