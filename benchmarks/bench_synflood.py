"""Real clients against a spoofed-SYN flood: their success rate and setup latency.

``utcp echo-server`` (backlog 100) runs in a process of its own; a flooder
process sends it SYNs from 127.0.0.2 (a source that never answers, as a spoofed
one would not) at each rate in turn, while this process measures whole
connections (connect, 16-byte echo, close; 8 in flight) as ``utcp bench
connect`` does. Each rate runs with SYN cookies (the default) and without.

    python benchmarks/bench_synflood.py [--rates 0 1000 10000 max] [--duration 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from harness import HOST, EchoServer, run_on, warm_malloc

from utcp import bench

# The flooder: SYNs to argv[1]:argv[2] at argv[3] per second (0: as fast as it
# can), from 127.0.0.2, until stdin closes; prints how many it sent.
FLOODER = """
import os, socket, sys, threading, time
from utcp.core.wire import SYN, Segment, encode
host, port, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.2", 0))
sock.setblocking(False)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
syns = [encode(Segment(1024 + i % 60000, port, i * 7919, 0, SYN, 65535)) for i in range(60000)]
sent, t0 = 0, time.perf_counter()
print("ready", flush=True)
while not stop.is_set():
    if rate and sent >= rate * (time.perf_counter() - t0):
        time.sleep(0.0005)
        continue
    try:
        sock.sendto(syns[sent % 60000], (host, port))
        sent += 1
    except BlockingIOError:
        time.sleep(0.0001)
print(sent / (time.perf_counter() - t0), flush=True)
"""


def segments_in(port: int) -> int:
    """What the server has read so far, from ``utcp stat``."""
    out = subprocess.run([sys.executable, "-m", "utcp", "stat", str(port), "--json"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return json.loads(out)["servers"][0]["statistics"]["segments_in"]


def measure(rate: float, cookies: bool, duration: float, fill: float) -> dict:
    extra = () if cookies else ("--no-syn-cookies",)
    with EchoServer("asyncio", *extra) as server:
        read_from = segments_in(server.port)
        t0 = time.perf_counter()
        flooder = None
        if rate != 0:
            flooder = subprocess.Popen(
                [sys.executable, "-c", FLOODER, HOST, str(server.port),
                 str(0 if rate < 0 else rate)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert flooder.stdout is not None
            flooder.stdout.readline()
            time.sleep(fill)  # let the backlog fill
        try:
            result = run_on(bench.connect(HOST, server.port, duration=duration,
                                          concurrency=8, progress=False), "asyncio")
        finally:
            read = (segments_in(server.port) - read_from) / (time.perf_counter() - t0)
            achieved = 0.0
            if flooder is not None:
                out, _ = flooder.communicate(input="", timeout=30)
                achieved = float(out.strip() or 0)
    result["flood_rate"] = achieved
    result["read_rate"] = read  # segments a second the server read: flood and clients
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", nargs="+",
                    default=["0", "1000", "10000", "30000", "60000", "max"],
                    help="spoofed SYNs per second ('max': as fast as one process can)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per case")
    ap.add_argument("--cookies", choices=("both", "on", "off"), default="both",
                    help="run with SYN cookies, without, or both (default)")
    ap.add_argument("--fill", type=float, default=1.0,
                    help="seconds of flood before measuring (default 1)")
    args = ap.parse_args(argv)
    warm_malloc()
    print(f"bench_synflood: utcp echo-server, backlog 100; clients 8 in flight; Python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}")
    print("| flood SYN/s | server read/s | SYN cookies | connections | success | "
          "setup p50 ms | p99 ms | failures |")
    print("|---:|---:|---|---:|---:|---:|---:|---|")
    for text in args.rates:
        rate = -1.0 if text == "max" else float(text)
        for cookies in {"both": (True, False), "on": (True,), "off": (False,)}[args.cookies]:
            r = measure(rate, cookies, args.duration, args.fill)
            failed = sum(r["failures"].values())
            done = r["connections"]
            ok = done / (done + failed) if done + failed else 0.0
            lat = r["latency_ms"]
            p50 = "-" if lat["p50"] is None else f"{lat['p50']:.2f}"
            p99 = "-" if lat["p99"] is None else f"{lat['p99']:.2f}"
            print(f"| {r['flood_rate']:.0f} | {r['read_rate']:.0f} | "
                  f"{'on' if cookies else 'off'} | {done} | "
                  f"{ok:.1%} | {p50} | {p99} | {r['failures'] or 'none'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
