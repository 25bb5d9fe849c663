"""Bulk transfer: utcp against the kernel's TCP and against a bare UDP socket.

Three cases, side by side in one run, all on 127.0.0.1 in this one process:

* ``tcp``: asyncio streams over the kernel's TCP. The client writes ``--size``
  bytes in 64 KiB chunks, awaiting ``drain()`` after each; the server reads and
  counts. Time runs from the first write until the server has counted every byte.
* ``utcp``: the same code on ``utcp.open_connection`` / ``utcp.start_server``.
* ``udp``: the ceiling for a user-space TCP over asyncio: a ``DatagramProtocol``
  sends datagrams of 1472 bytes (a full utcp segment: 20-byte header and 1452
  bytes of payload) as fast as the loop lets it to a receiving
  ``DatagramProtocol``, which counts them. There are no ACKs; to keep the kernel
  from dropping datagrams the sender holds at most ``--udp-window`` datagrams
  unreceived (the two share the process, so this costs no packets).
  Its MB/s counts the 1452 payload bytes of each datagram, the same bytes the
  TCP cases count.

MB is 10**6 bytes. ``--uvloop`` runs every case on uvloop as well.

    python benchmarks/bench_bulk.py --size 50 --uvloop
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from harness import medians, run_on, uvloop_available, warm_malloc

import utcp

HOST = "127.0.0.1"
CHUNK = 64 * 1024
SEGMENT = 1472  # 20-byte TCP header + 1452-byte payload, utcp's default full segment
PAYLOAD = SEGMENT - 20
SOCKET_BUFFER = 4 * 1024 * 1024  # what utcp's endpoint asks for


@dataclass
class Result:
    case: str
    loop: str
    nbytes: int = 0  # payload bytes that arrived
    elapsed: float = 0.0
    complete: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mbps(self) -> float:
        return self.nbytes / self.elapsed / 1e6 if self.elapsed > 0 else 0.0


# ------------------------------------------------------------------ TCP and utcp

async def _stream_case(case: str, size: int, limit: float, loop_name: str) -> Result:
    loop = asyncio.get_running_loop()
    res = Result(case, loop_name)
    done: asyncio.Future[int] = loop.create_future()
    received = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                received += len(data)
                if received >= size and not done.done():
                    done.set_result(received)
        except ConnectionError as exc:
            if not done.done():
                done.set_exception(exc)
        finally:
            writer.close()

    if case == "utcp":
        server: Any = await utcp.start_server(serve, HOST, 0)
        port = server.port
        reader, writer = await utcp.open_connection(HOST, port)
    else:
        server = await asyncio.start_server(serve, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(HOST, port)

    chunk = b"\xa5" * CHUNK

    async def send() -> None:
        left = size
        while left > 0:
            n = min(CHUNK, left)
            writer.write(chunk if n == CHUNK else chunk[:n])
            await writer.drain()
            left -= n

    t0 = time.perf_counter()
    sender = asyncio.ensure_future(send())
    try:
        await asyncio.wait_for(asyncio.shield(done), limit)
    except asyncio.TimeoutError:
        res.complete = False
        done.cancel()  # the server's reset on abort() below is expected, not an error
    res.elapsed = time.perf_counter() - t0
    res.nbytes = received
    sender.cancel()
    try:
        await sender
    except (asyncio.CancelledError, ConnectionError):
        pass

    if case == "utcp":
        info = writer.get_extra_info("utcp")
        res.extra = {
            "retransmissions": info["retransmissions"],
            "segments_out": info["segments_out"],
            "server": server.statistics(),
            "srtt_ms": (info["srtt"] or 0) * 1e3,
            "cwnd": info["cwnd"],
        }
    if res.complete:
        writer.close()
    else:
        writer.transport.abort()
    try:
        await asyncio.wait_for(writer.wait_closed(), 5)
    except (asyncio.TimeoutError, ConnectionError):
        pass
    server.close()
    try:
        await asyncio.wait_for(server.wait_closed(), 5)
    except asyncio.TimeoutError:
        pass
    return res


# -------------------------------------------------------------- the UDP baseline

class _Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.count = 0
        self.nbytes = 0
        self.target = 0
        self.done: asyncio.Future[None] | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.count += 1
        self.nbytes += len(data)
        if self.count >= self.target and self.done is not None and not self.done.done():
            self.done.set_result(None)


class _Sender(asyncio.DatagramProtocol):
    paused = False

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False


def _big_buffers(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
            except OSError:
                pass


async def _udp_case(size: int, limit: float, window: int, loop_name: str) -> Result:
    loop = asyncio.get_running_loop()
    res = Result("udp", loop_name)
    rx_tr, rx = await loop.create_datagram_endpoint(_Receiver, local_addr=(HOST, 0))
    addr = rx_tr.get_extra_info("sockname")
    tx_tr, tx = await loop.create_datagram_endpoint(_Sender, local_addr=(HOST, 0))
    _big_buffers(rx_tr)
    _big_buffers(tx_tr)
    datagram = b"\x5a" * SEGMENT
    target = -(-size // PAYLOAD)
    rx.target = target
    rx.done = loop.create_future()
    sent = 0
    sendto = tx_tr.sendto
    call_soon = loop.call_soon

    def pump() -> None:
        # Send what the window allows, then yield to the loop (and so to the receiver).
        nonlocal sent
        n = min(window - (sent - rx.count), target - sent)
        if not tx.paused:
            for _ in range(n):
                sendto(datagram, addr)
            sent += max(n, 0)
        if sent < target and not rx.done.done():
            call_soon(pump)

    t0 = time.perf_counter()
    call_soon(pump)
    try:
        await asyncio.wait_for(asyncio.shield(rx.done), limit)
    except asyncio.TimeoutError:
        # Datagrams lost (should not happen within the window) or time is up.
        res.complete = False
    res.elapsed = time.perf_counter() - t0
    res.nbytes = rx.count * PAYLOAD
    res.extra = {"datagrams": rx.count, "sent": sent, "lost": sent - rx.count}
    tx_tr.close()
    rx_tr.close()
    return res


# ------------------------------------------------------------------------ driver

def run_case(case: str, size: int, limit: float, window: int, loop_name: str) -> Result:
    if case == "udp":
        return run_on(_udp_case(size, limit, window, loop_name), loop_name)
    return run_on(_stream_case(case, size, limit, loop_name), loop_name)


def _median_runs(runs: list[Result]) -> list[Result]:
    """One result per case: the run with the median rate, noting the spread."""
    out = []
    for med, rs in medians(runs, lambda r: (r.loop, r.case), lambda r: r.mbps):
        med.extra["spread"] = (rs[0].mbps, rs[-1].mbps)
        med.extra["all_retransmissions"] = sum(r.extra.get("retransmissions", 0) for r in rs)
        out.append(med)
    return out


def report(runs: list[Result]) -> None:
    results = _median_runs(runs)
    by = {(r.loop, r.case): r for r in results}
    repeats = len(runs) // max(len(results), 1)
    print()
    if repeats > 1:
        print(f"median of {repeats} runs per row, the slowest and fastest run in brackets; "
              f"notes are from the median run")
    print(f"{'loop':<8} {'case':<5} {'MB':>6} {'seconds':>7} {'MB/s':>7} {'(min-max)':>13} "
          f"{'utcp/udp':>8} {'utcp/tcp':>8}  notes")
    for r in results:
        ratios = ["", ""]
        notes = "" if r.complete else "INCOMPLETE (time limit) "
        if r.case == "utcp":
            for i, base in enumerate(("udp", "tcp")):
                b = by.get((r.loop, base))
                if b is not None and b.mbps:
                    ratios[i] = f"{r.mbps / b.mbps:.2f}"
            srv = r.extra["server"]
            notes += (f"retransmissions {r.extra['retransmissions']}, segments out "
                      f"{r.extra['segments_out']}, srtt {r.extra['srtt_ms']:.1f} ms, "
                      f"cwnd {r.extra['cwnd']}, server drops {srv['drops'] or 0}")
        elif r.case == "udp":
            lost = "in flight when stopped" if not r.complete else "lost"
            notes += (f"{r.extra['datagrams']} datagrams received "
                      f"({r.extra['datagrams'] / r.elapsed:.0f}/s), {lost} {r.extra['lost']}")
        lo, hi = r.extra["spread"]
        spread = f"({lo:.1f}-{hi:.1f})"
        print(f"{r.loop:<8} {r.case:<5} {r.nbytes / 1e6:>6.1f} {r.elapsed:>7.2f} "
              f"{r.mbps:>7.1f} {spread:>13} {ratios[0]:>8} {ratios[1]:>8}  {notes}")
    total = sum(r.extra["all_retransmissions"] for r in results if r.case == "utcp")
    if any(r.case == "utcp" for r in results):
        print(f"utcp retransmissions over all runs: {total}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=float, default=50,
                    help="megabytes (10**6 bytes) to transfer per case (default 50)")
    ap.add_argument("--uvloop", action="store_true", help="also run every case on uvloop")
    ap.add_argument("--duration", type=float, default=60.0,
                    help="time limit per case in seconds (default 60); a case cut short "
                         "reports the rate of what arrived")
    ap.add_argument("--udp-window", type=int, default=256,
                    help="datagrams the UDP baseline keeps unreceived at most (default 256)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of every case, interleaved; the table shows the median "
                         "(default 3)")
    ap.add_argument("--cold-malloc", action="store_true",
                    help="skip the allocator warm-up (see warm_malloc and the README)")
    ap.add_argument("--only", choices=("tcp", "utcp", "udp"), action="append",
                    help="run only this case (repeatable; for profiling)")
    args = ap.parse_args(argv)
    size = int(args.size * 1e6)
    if size <= 0 or args.duration <= 0 or args.udp_window < 1 or args.repeat < 1:
        ap.error("--size and --duration must be positive, --udp-window and --repeat "
                 "at least 1")
    if args.uvloop and not uvloop_available():
        ap.error("--uvloop: uvloop is not installed (pip install 'utcp[uvloop]')")
    if not args.cold_malloc:
        warm_malloc()
    loops = ["asyncio"] + (["uvloop"] if args.uvloop else [])
    cases = args.only or ["udp", "tcp", "utcp"]
    print(f"bench_bulk: {size / 1e6:g} MB per case, limit {args.duration:g} s, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    results = []
    for rep in range(args.repeat):
        for loop_name in loops:
            for case in cases:
                r = run_case(case, size, args.duration, args.udp_window, loop_name)
                print(f"  run {rep + 1}: {loop_name:<8} {case:<5} {r.nbytes / 1e6:7.1f} MB in "
                      f"{r.elapsed:6.2f} s = {r.mbps:7.1f} MB/s", flush=True)
                results.append(r)
    report(results)


if __name__ == "__main__":
    main()
