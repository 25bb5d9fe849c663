"""Bulk transfer: utcp against the kernel's TCP and against a bare UDP socket.

Three cases, side by side in one run, all on 127.0.0.1, sender and receiver in
this one process or (``--processes 2``) the receiver in a process of its own:

* ``tcp``: asyncio streams over the kernel's TCP. The client writes ``--size``
  bytes in 64 KiB chunks, awaiting ``drain()`` after each; the server reads and
  counts. Time runs from the first write until the server has counted every byte
  (with two processes: until the client reads the one byte the server writes
  back then).
* ``utcp``: the same code on ``utcp.open_connection`` / ``utcp.start_server``.
  ``--offload both`` adds ``utcp-off``: the same with UDP GSO and GRO switched off.
* ``udp``: the ceiling for a user-space TCP over asyncio: a ``DatagramProtocol``
  sends datagrams of 1472 bytes (a full utcp segment: 20-byte header and 1452
  bytes of payload) as fast as the loop lets it to a receiving
  ``DatagramProtocol``, which counts them. There are no ACKs; to keep the kernel
  from dropping datagrams the sender holds at most ``--udp-window`` datagrams
  unreceived (in one process it sees the receiver's count; with two processes
  the receiver sends its count back every quarter window, in a datagram of 8
  bytes). It sends one datagram per ``sendto``, without GSO.
  Its MB/s counts the 1452 payload bytes of each datagram, the same bytes the
  TCP cases count.

MB is 10**6 bytes. ``--uvloop`` runs every case on uvloop as well.

    python benchmarks/bench_bulk.py --size 50 --uvloop
    python benchmarks/bench_bulk.py --processes 2 --offload both --uvloop
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from harness import build, calls_counted, medians, run_on, uvloop_available, warm_malloc

import utcp
from utcp.datagram import enlarge_buffers

HOST = "127.0.0.1"
CHUNK = 64 * 1024
SEGMENT = 1472  # 20-byte TCP header + 1452-byte payload, utcp's default full segment
PAYLOAD = SEGMENT - 20
_COUNT = struct.Struct("!Q")  # the two-process UDP receiver's count, sent back
_DONE = b"!"  # what a two-process stream receiver writes back once all arrived
CASES = ("udp", "tcp", "utcp", "utcp-off")


@dataclass
class Result:
    case: str
    loop: str
    nbytes: int = 0  # payload bytes that arrived
    elapsed: float = 0.0
    complete: bool = True
    stalled: float | None = None  # incomplete: seconds nothing more arrived (else the limit)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mbps(self) -> float:
        return self.nbytes / self.elapsed / 1e6 if self.elapsed > 0 else 0.0


@contextlib.contextmanager
def offload_env(case: str, no_gso: bool, no_gro: bool) -> Iterator[dict[str, str]]:
    """The environment a case runs in: ``utcp-off`` (or ``--no-gso``, ``--no-gro``)
    switches utcp's UDP GSO and GRO off (see utcp.datagram), here and in a child."""
    env = {}
    if case == "utcp-off" or no_gso:
        env["UTCP_GSO"] = "0"
    if case == "utcp-off" or no_gro:
        env["UTCP_GRO"] = "0"
    saved = {k: os.environ.get(k) for k in ("UTCP_GSO", "UTCP_GRO")}
    for k in saved:
        os.environ.pop(k, None)
    os.environ.update(env)
    try:
        yield dict(os.environ)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _Measure:
    """The CPU time this process spends in part of a run, and with ``profile`` the
    Python calls it makes there (cProfile)."""

    def __init__(self, profile: bool = False) -> None:
        self.profile = cProfile.Profile() if profile else None
        self.calls = 0
        self.cpu = 0.0

    def __enter__(self) -> _Measure:
        if self.profile is not None:
            self.profile.enable()
        self._cpu0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu += time.process_time() - self._cpu0
        if self.profile is not None:
            self.profile.disable()
            self.calls = calls_counted(self.profile)


# ------------------------------------------------------------------ TCP and utcp

async def _start_sink(case: str, size: int, done: asyncio.Future[int], reply: bool,
                      ended: asyncio.Future[None] | None = None) -> tuple[Any, int, list[int]]:
    """A server that reads and counts; ``done`` gets the count once ``size`` arrived
    (and with ``reply`` the client gets one byte then), ``ended`` a result when the
    client has closed. Returns the server, its port and a one-element list holding
    the count."""
    received = [0]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                received[0] += len(data)
                if received[0] >= size and not done.done():
                    done.set_result(received[0])
                    if reply:
                        writer.write(_DONE)
        except ConnectionError as exc:
            if not done.done():
                done.set_exception(exc)
        finally:
            writer.close()
            if ended is not None and not ended.done():
                ended.set_result(None)

    if case.startswith("utcp"):
        server: Any = await utcp.start_server(serve, HOST, 0)
        port = server.port
    else:
        server = await asyncio.start_server(serve, HOST, 0)
        port = server.sockets[0].getsockname()[1]
    return server, port, received


async def _close_server(server: Any) -> None:
    server.close()
    try:
        await asyncio.wait_for(server.wait_closed(), 5)
    except asyncio.TimeoutError:
        pass


async def _stream_case(case: str, size: int, limit: float, loop_name: str,
                       child: Receiver | None = None, profile: bool = False) -> Result:
    """Send ``size`` bytes to a sink in this process, or in ``child`` (its port)."""
    loop = asyncio.get_running_loop()
    res = Result(case, loop_name)
    done: asyncio.Future[int] = loop.create_future()
    server: Any = None
    if child is None:
        server, port, received = await _start_sink(case, size, done, reply=False)
    else:
        port = child.port
    if case.startswith("utcp"):
        reader, writer = await utcp.open_connection(HOST, port)
    else:
        reader, writer = await asyncio.open_connection(HOST, port)

    chunk = b"\xa5" * CHUNK

    async def send() -> None:
        left = size
        while left > 0:
            n = min(CHUNK, left)
            writer.write(chunk if n == CHUNK else chunk[:n])
            await writer.drain()
            left -= n

    async def confirmed() -> None:
        if await reader.read(1) == _DONE:
            done.set_result(size)

    waiter = asyncio.ensure_future(confirmed()) if child is not None else None
    with _Measure(profile) as prof:
        t0 = time.perf_counter()
        sender = asyncio.ensure_future(send())
        try:
            await asyncio.wait_for(asyncio.shield(done), limit)
        except asyncio.TimeoutError:
            res.complete = False
            done.cancel()  # the server's reset on abort() below is expected, not an error
        except ConnectionError:
            res.complete = False
        res.elapsed = time.perf_counter() - t0
    if child is None:
        res.nbytes = received[0]
    else:
        res.nbytes = size if res.complete else 0
    sender.cancel()
    for task in (sender, waiter):
        if task is None:
            continue
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, ConnectionError):
            pass

    if case.startswith("utcp"):
        info = writer.get_extra_info("utcp")
        res.extra = {
            "retransmissions": info["retransmissions"],
            "segments_out": info["segments_out"],
            "server": server.statistics() if server is not None else {},
            "srtt_ms": (info["srtt"] or 0) * 1e3,
            "cwnd": info["cwnd"],
        }
    res.extra["cpu"] = prof.cpu
    if prof.profile is not None:
        res.extra["calls"] = prof.calls
    if res.complete:
        writer.close()
    else:
        writer.transport.abort()
    try:
        await asyncio.wait_for(writer.wait_closed(), 5)
    except (asyncio.TimeoutError, ConnectionError):
        pass
    if server is not None:
        await _close_server(server)
    return res


# -------------------------------------------------------------- the UDP baseline

class _Receiver(asyncio.DatagramProtocol):
    """Counts datagrams; with ``report`` set, sends the count back every ``report``
    datagrams and at the end (the two-process sender's flow control)."""

    def __init__(self, report: int = 0) -> None:
        self.count = 0
        self.nbytes = 0
        self.target = 0
        self.report = report
        self.done: asyncio.Future[None] | None = None
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.count += 1
        self.nbytes += len(data)
        count = self.count
        if self.report and (count % self.report == 0 or count >= self.target):
            self.transport.sendto(_COUNT.pack(count), addr)
        if count >= self.target and self.done is not None and not self.done.done():
            self.done.set_result(None)


class _Sender(asyncio.DatagramProtocol):
    paused = False
    acked = 0  # what the receiver in another process says it has
    pump: Any = None

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.pump is not None:
            self.pump()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        (count,) = _COUNT.unpack(data)
        if count > self.acked:
            self.acked = count
            if self.pump is not None:
                self.pump()


def _big_buffers(transport: asyncio.BaseTransport) -> None:
    # What utcp's endpoint asks for its own socket.
    sock = transport.get_extra_info("socket")
    if sock is not None:
        enlarge_buffers(sock)


#: Seconds without a datagram more after which the UDP baseline stops waiting.
STALL = 0.5


async def _udp_case(size: int, limit: float, window: int, loop_name: str,
                    child: Receiver | None = None) -> Result:
    loop = asyncio.get_running_loop()
    res = Result("udp", loop_name)
    target = -(-size // PAYLOAD)
    tx_tr, tx = await loop.create_datagram_endpoint(_Sender, local_addr=(HOST, 0))
    _big_buffers(tx_tr)
    rx_tr: Any = None
    if child is None:
        rx_tr, rx = await loop.create_datagram_endpoint(_Receiver, local_addr=(HOST, 0))
        _big_buffers(rx_tr)
        addr = rx_tr.get_extra_info("sockname")
        rx.target = target
        done = rx.done = loop.create_future()
    else:
        addr = (HOST, child.port)
        done = loop.create_future()
    datagram = b"\x5a" * SEGMENT
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
        if sent < target and not done.done():
            call_soon(pump)

    def pump_child() -> None:
        # Send what the receiver's last count allows; its next count calls again.
        nonlocal sent
        if tx.acked >= target:
            if not done.done():
                done.set_result(None)
            return
        n = min(window - (sent - tx.acked), target - sent)
        for _ in range(n):
            if tx.paused:
                break
            sendto(datagram, addr)
            sent += 1

    with _Measure() as measure:
        t0 = time.perf_counter()
        if child is None:
            call_soon(pump)
        else:
            tx.pump = pump_child
            call_soon(pump_child)
        # Until all arrived, the time is up, or nothing more arrives for a while:
        # datagrams the kernel dropped (a socket buffer smaller than the window)
        # are not resent, and would hold the window shut until the time limit.
        progress, stalled_at = -1, t0
        while not done.done():
            try:
                await asyncio.wait_for(asyncio.shield(done), STALL)
            except asyncio.TimeoutError:
                now = time.perf_counter()
                count = rx.count if child is None else tx.acked
                if count != progress:
                    progress, stalled_at = count, now
                elif now - stalled_at >= STALL or now - t0 >= limit:
                    res.complete = False
                    if now - t0 < limit:
                        res.stalled = STALL
                    break
        res.elapsed = time.perf_counter() - t0
    count = rx.count if child is None else tx.acked
    res.nbytes = count * PAYLOAD
    res.extra = {"datagrams": count, "sent": sent, "lost": sent - count, "cpu": measure.cpu}
    tx.pump = None
    tx_tr.close()
    if rx_tr is not None:
        rx_tr.close()
    return res


# ----------------------------------------------------- the receiving process

class Receiver:
    """This script in another process (``--serve``), receiving one case's transfer."""

    def __init__(self, case: str, loop_name: str, size: int, window: int, profile: bool,
                 env: dict[str, str]) -> None:
        args = [sys.executable, os.path.abspath(__file__), "--serve", case,
                "--serve-loop", loop_name, "--size", str(size / 1e6),
                "--udp-window", str(window)]
        if profile:
            args.append("--profile")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            self.proc.kill()
            raise RuntimeError(f"the receiving process did not start: {line!r}")
        self.port = int(line.split()[1])

    def finish(self, timeout: float = 10) -> dict[str, Any]:
        """Wait for the receiver to end; what it reported (nothing if it had to be killed)."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return {}
        for line in out.splitlines():
            if line.startswith("stats "):
                return json.loads(line[6:])  # type: ignore[no-any-return]
        return {}


async def _serve(case: str, size: int, window: int, profile: bool) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stats: dict[str, Any] = {}
    prof = _Measure(profile)
    if case == "udp":
        rx_tr, rx = await loop.create_datagram_endpoint(
            lambda: _Receiver(report=max(window // 4, 1)), local_addr=(HOST, 0))
        _big_buffers(rx_tr)
        rx.target = -(-size // PAYLOAD)
        rx.done = loop.create_future()
        print(f"port {rx_tr.get_extra_info('sockname')[1]}", flush=True)
        with prof:
            await rx.done
        stats["datagrams"] = rx.count
        await asyncio.sleep(0.05)  # the last count on its way
        rx_tr.close()
    else:
        done: asyncio.Future[int] = loop.create_future()
        ended: asyncio.Future[None] = loop.create_future()
        with prof:
            server, port, _ = await _start_sink(case, size, done, reply=True, ended=ended)
            print(f"port {port}", flush=True)
            await done
        # The sender closes (or aborts) once it has the reply.
        try:
            await asyncio.wait_for(ended, 5)
        except asyncio.TimeoutError:
            pass
        if case.startswith("utcp"):
            stats["server"] = server.statistics()
        await _close_server(server)
    stats["calls"] = prof.calls
    stats["cpu"] = prof.cpu
    return stats


def serve_main(case: str, loop_name: str, size: int, window: int, profile: bool) -> None:
    warm_malloc()
    stats = run_on(_serve(case, size, window, profile), loop_name)
    print("stats " + json.dumps(stats, default=str), flush=True)


# ------------------------------------------------------------------------ driver

def run_case(case: str, size: int, limit: float, window: int, loop_name: str,
             processes: int = 1, profile: bool = False, no_gso: bool = False,
             no_gro: bool = False) -> Result:
    with offload_env(case, no_gso, no_gro) as env:
        child = Receiver(case, loop_name, size, window, profile, env) \
            if processes == 2 else None
        try:
            if case == "udp":
                res = run_on(_udp_case(size, limit, window, loop_name, child), loop_name)
            else:
                res = run_on(_stream_case(case, size, limit, loop_name, child, profile),
                             loop_name)
        except BaseException:
            if child is not None:
                child.finish(timeout=0)
            raise
    if child is not None:
        # (A receiver still waiting for what never came is killed.)
        stats = child.finish(timeout=10 if res.complete else 0.5)
        if case.startswith("utcp"):
            res.extra["server"] = stats.get("server", {})
        if profile:
            res.extra["receiver_calls"] = stats.get("calls")
        res.extra["receiver_cpu"] = stats.get("cpu")
    return res


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
    w = max(5, *(len(r.case) for r in results))
    print(f"{'loop':<8} {'case':<{w}} {'MB':>6} {'seconds':>7} {'MB/s':>7} {'(min-max)':>13} "
          f"{'utcp/udp':>8} {'utcp/tcp':>8}  notes")
    for r in results:
        ratios = ["", ""]
        notes = "" if r.complete else ("INCOMPLETE (time limit) " if r.stalled is None else
                                       f"INCOMPLETE (nothing more arrived for {r.stalled:g} s) ")
        if r.case.startswith("utcp"):
            for i, base in enumerate(("udp", "tcp")):
                b = by.get((r.loop, base))
                if b is not None and b.mbps:
                    ratios[i] = f"{r.mbps / b.mbps:.2f}"
            srv = r.extra["server"]
            notes += (f"retransmissions {r.extra['retransmissions']}, segments out "
                      f"{r.extra['segments_out']}, srtt {r.extra['srtt_ms']:.1f} ms, "
                      f"cwnd {r.extra['cwnd']}, server drops {srv.get('drops') or 0}")
            if "calls" in r.extra:
                segs = r.extra["segments_out"] or 1
                if r.extra.get("receiver_calls") is not None:
                    notes += (f", calls/segment sender {r.extra['calls'] / segs:.1f} "
                              f"receiver {r.extra['receiver_calls'] / segs:.1f}")
                else:  # (one process: both sides, and the loop)
                    notes += f", calls/segment {r.extra['calls'] / segs:.1f}"
        elif r.case == "udp":
            lost = "in flight when stopped" if not r.complete else "lost"
            notes += (f"{r.extra['datagrams']} datagrams received "
                      f"({r.extra['datagrams'] / r.elapsed:.0f}/s), {lost} {r.extra['lost']}")
        lo, hi = r.extra["spread"]
        spread = f"({lo:.1f}-{hi:.1f})"
        print(f"{r.loop:<8} {r.case:<{w}} {r.nbytes / 1e6:>6.1f} {r.elapsed:>7.2f} "
              f"{r.mbps:>7.1f} {spread:>13} {ratios[0]:>8} {ratios[1]:>8}  {notes}")
    total = sum(r.extra["all_retransmissions"] for r in results if r.case.startswith("utcp"))
    if any(r.case.startswith("utcp") for r in results):
        print(f"utcp retransmissions over all runs: {total}")
    if any(r.extra.get("receiver_cpu") for r in runs):
        report_cpu(runs, w)


def report_cpu(runs: list[Result], w: int) -> None:
    """With two processes: the CPU time each side spent, and the rate the busier of
    the two would allow were it never to wait (MB per CPU-second). It moves much
    less from run to run than MB/s, which depends on where the scheduler puts the
    two processes and on how long waking one takes."""
    rows: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for r in runs:
        rx = r.extra.get("receiver_cpu")
        if r.complete and rx and r.extra.get("cpu"):
            tx = r.extra["cpu"]
            rows.setdefault((r.loop, r.case), []).append((tx, rx, r.nbytes / max(tx, rx) / 1e6))
    if not rows:
        return
    print()
    print("CPU seconds of each side (medians); MB/cpu-s: MB over the busier side's CPU time")
    print(f"{'loop':<8} {'case':<{w}} {'sender s':>8} {'receiver s':>10} {'MB/cpu-s':>8} "
          f"{'(min-max)':>13} {'utcp/udp':>8}")
    med = {}
    for key, vals in rows.items():
        rates = sorted(v[2] for v in vals)
        mid = len(vals) // 2
        med[key] = rates[(len(rates) - 1) // 2]
        tx = sorted(v[0] for v in vals)[mid if len(vals) % 2 else mid - 1]
        rx = sorted(v[1] for v in vals)[mid if len(vals) % 2 else mid - 1]
        ratio = ""
        base = med.get((key[0], "udp"))
        if key[1].startswith("utcp") and base:
            ratio = f"{med[key] / base:.2f}"
        spread = f"({rates[0]:.1f}-{rates[-1]:.1f})"
        print(f"{key[0]:<8} {key[1]:<{w}} {tx:>8.2f} {rx:>10.2f} {med[key]:>8.1f} "
              f"{spread:>13} {ratio:>8}")


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
    ap.add_argument("--processes", type=int, choices=(1, 2), default=1,
                    help="1: sender and receiver share this process (the default); 2: the "
                         "receiver runs in a process of its own")
    ap.add_argument("--offload", choices=("on", "off", "both"), default="on",
                    help="utcp's UDP GSO and GRO: on where the kernel has them (the "
                         "default), off, or both (the utcp-off case with them off too)")
    ap.add_argument("--no-gso", action="store_true",
                    help="switch GSO off in the utcp case (UTCP_GSO=0)")
    ap.add_argument("--no-gro", action="store_true",
                    help="switch GRO off in the utcp case (UTCP_GRO=0)")
    ap.add_argument("--profile", action="store_true",
                    help="run the utcp cases under cProfile and note Python calls per "
                         "segment sent (slows them: their MB/s mean nothing then)")
    ap.add_argument("--cold-malloc", action="store_true",
                    help="skip the allocator warm-up (see warm_malloc and the README)")
    ap.add_argument("--only", choices=CASES, action="append",
                    help="run only this case (repeatable; for profiling)")
    ap.add_argument("--serve", choices=CASES, help=argparse.SUPPRESS)
    ap.add_argument("--serve-loop", default="asyncio", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    size = int(args.size * 1e6)
    if size <= 0 or args.duration <= 0 or args.udp_window < 1 or args.repeat < 1:
        ap.error("--size and --duration must be positive, --udp-window and --repeat "
                 "at least 1")
    if args.serve:
        serve_main(args.serve, args.serve_loop, size, args.udp_window, args.profile)
        return
    if args.uvloop and not uvloop_available():
        ap.error("--uvloop: uvloop is not installed (pip install 'utcp[uvloop]')")
    if not args.cold_malloc:
        warm_malloc()
    loops = ["asyncio"] + (["uvloop"] if args.uvloop else [])
    utcp_cases = {"on": ["utcp"], "off": ["utcp-off"], "both": ["utcp", "utcp-off"]}
    cases = args.only or ["udp", "tcp", *utcp_cases[args.offload]]
    print(f"bench_bulk: {size / 1e6:g} MB per case, limit {args.duration:g} s, "
          f"{'sender and receiver in two processes' if args.processes == 2 else 'one process'}"
          f", Python {sys.version.split()[0]}, {build()}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    results = []
    for rep in range(args.repeat):
        for loop_name in loops:
            for case in cases:
                r = run_case(case, size, args.duration, args.udp_window, loop_name,
                             args.processes, args.profile and case.startswith("utcp"),
                             args.no_gso, args.no_gro)
                print(f"  run {rep + 1}: {loop_name:<8} {case:<8} {r.nbytes / 1e6:7.1f} MB in "
                      f"{r.elapsed:6.2f} s = {r.mbps:7.1f} MB/s", flush=True)
                results.append(r)
    report(results)


if __name__ == "__main__":
    main()
