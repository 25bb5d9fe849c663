"""What the benchmark scripts share: an echo server in its own process, a raw UDP
peer in its own process, running a case on a fresh loop, the allocator warm-up,
and picking the median of repeated runs."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any, TypeVar

import utcp
from utcp import bench

R = TypeVar("R")

HOST = "127.0.0.1"

#: Where this process's utcp was imported from. A helper process started with
#: ``python -m utcp`` or ``python -c`` runs in this directory, so that it imports
#: the same utcp, the same build (pure Python or compiled), wherever the benchmark
#: was started: from the repository root, ``-m`` would find the source tree first.
UTCP_HOME = os.path.dirname(os.path.dirname(os.path.abspath(utcp.__file__)))


def build() -> str:
    """Which utcp runs, for a benchmark's first line: pure Python or compiled."""
    return "utcp core compiled with mypyc" if utcp.compiled else "utcp pure Python"


def run_on(coro: Any, loop_name: str) -> Any:
    """Run ``coro`` on a fresh loop (asyncio's default or uvloop) and close the loop.

    Like ``asyncio.run`` (tasks still pending are cancelled, which closes utcp's
    endpoints), but with a choice of loop on Python 3.10 too.
    """
    if loop_name == "uvloop":
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def calls_counted(profile: Any) -> int:
    """Every Python function call a ``cProfile.Profile`` counted.

    Counted per code object: ``pstats`` files them under (file, line, name),
    and the ``__init__`` methods that ``dataclasses`` generates all have the
    same one, so there one class's calls hide another's.
    """
    return sum(entry.callcount for entry in profile.getstats())


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def warm_malloc() -> None:
    """Put glibc's allocator in the state a long-running process reaches anyway.

    asyncio's selector datagram transport reads with ``recvfrom(256 KiB)``. Until
    a block that large has been freed once, glibc serves such a buffer with mmap
    and munmap, about 15 us per datagram; afterwards its dynamic mmap threshold
    is higher and the buffer comes from the heap. Which case a benchmark sees
    would otherwise depend on what ran before it; freeing one 1 MiB block first
    makes every case see the same allocator.
    """
    block = bytearray(1 << 20)
    del block


def medians(runs: Iterable[R], group: Callable[[R], Hashable],
            rate: Callable[[R], float]) -> list[tuple[R, list[R]]]:
    """Per group, the run with the median ``rate`` and all the group's runs sorted by it."""
    groups: dict[Hashable, list[R]] = {}
    for r in runs:
        groups.setdefault(group(r), []).append(r)
    out = []
    for rs in groups.values():
        rs = sorted(rs, key=rate)
        out.append((rs[(len(rs) - 1) // 2], rs))
    return out


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process, from /proc (0 where unavailable)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def free_ports(kind: int, n: int = 3) -> int:
    """A port P on 127.0.0.1 such that P .. P + n - 1 are free (UDP or TCP, by ``kind``).

    Drawn below Linux's ephemeral range (32768-60999), where the clients' ports
    and a TCP benchmark's thousands of sockets in TIME-WAIT are; TCP ports are
    probed with SO_REUSEADDR, as asyncio's servers bind them.
    """
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(10000, 32000)
        socks = []
        try:
            for p in range(port, port + n):
                s = socket.socket(socket.AF_INET, kind)
                socks.append(s)
                if kind == socket.SOCK_STREAM:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((HOST, p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return port
    raise RuntimeError(f"no {n} adjacent free ports")


# An echo server built on protocols rather than streams: utcp.create_server on UDP
# port argv[2] and the loop's create_server on TCP port argv[3], on loop argv[4].
PROTOCOL_ECHO = """
import asyncio, signal, sys, utcp

class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(data)
    def eof_received(self):
        return False

async def main(host, port, kernel_port):
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGINT, stop.set_result, None)
    server = await utcp.create_server(Echo, host, port, backlog=1000)
    kernel = await loop.create_server(Echo, host, kernel_port, backlog=1000)
    print(f"listening on {host}:{port}", file=sys.stderr, flush=True)
    await stop
    server.close()
    kernel.close()

if sys.argv[4] == "uvloop":
    import uvloop
    uvloop.install()
asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


class EchoServer:
    """``utcp echo-server`` in a process of its own, with the kernel TCP services too.

    ``port`` is utcp's echo port (discard and source follow it), ``kernel_port``
    the kernel's. With ``protocol=True``, an echo server on asyncio protocols
    instead of streams (echo only, on both). Used as a context manager; stopped
    with SIGINT, as Ctrl-C would.
    """

    def __init__(self, loop_name: str = "asyncio", *extra: str, protocol: bool = False) -> None:
        self.port = free_ports(socket.SOCK_DGRAM)
        self.kernel_port = free_ports(socket.SOCK_STREAM)
        if protocol:
            args = [sys.executable, "-c", PROTOCOL_ECHO, HOST, str(self.port),
                    str(self.kernel_port), loop_name]
        else:
            args = [sys.executable, "-m", "utcp", "echo-server", "--host", HOST,
                    "--port", str(self.port), "--kernel-port", str(self.kernel_port), *extra]
            if loop_name == "uvloop":
                args.append("--uvloop")
        # SIGINT as Ctrl-C delivers it, even where this runs as a background job (whose
        # children a shell starts with SIGINT ignored): that is how it is stopped.
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, preexec_fn=_sigint_default, cwd=UTCP_HOME)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        if "listening" not in line:
            self.proc.kill()
            raise RuntimeError(f"the echo server did not start: {line}")
        # Keep reading its log, or a long run fills the pipe and stops the server.
        self.log: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log = (self.log + [line])[-20:]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def __enter__(self) -> EchoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        # (Waited for, not communicated with: the drain thread is stderr's one reader.)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# A raw UDP peer on the loop named by argv[1], port argv[2]: it answers each datagram
# with the same bytes, except one that starts with "." (which it only reads).
UDP_PEER = """
import asyncio, sys
class Peer(asyncio.DatagramProtocol):
    def connection_made(self, transport): self.transport = transport
    def datagram_received(self, data, addr):
        if data[:1] != b".": self.transport.sendto(data, addr)
async def main():
    loop = asyncio.get_running_loop()
    block = bytearray(1 << 20)  # freed once, as warm_malloc() above does: then no
    del block                   # mmap and munmap for every datagram asyncio reads
    await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", int(sys.argv[2])))
    print("ready", flush=True)
    await loop.create_future()
if sys.argv[1] == "uvloop":
    import uvloop
    uvloop.install()
asyncio.run(main())
"""


class Helper:
    """A helper process on a free UDP ``port``: ``argv`` (with the port appended)
    run in UTCP_HOME, ready once it prints "ready". Used as a context manager:
    killed at the end."""

    def __init__(self, what: str, argv: list[str]) -> None:
        self.port = free_ports(socket.SOCK_DGRAM, 1)
        self.proc = subprocess.Popen([*argv, str(self.port)], stdout=subprocess.PIPE,
                                     text=True, cwd=UTCP_HOME)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            self.proc.communicate()
            raise RuntimeError(f"{what} did not start")

    def __enter__(self) -> Helper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.communicate()


class UdpPeer(Helper):
    """A raw UDP echo in a process of its own, on ``loop_name``: the other end of the
    benchmarks' raw-UDP cases, which carry no TCP at all. A datagram that starts
    with "." is read and not answered."""

    def __init__(self, loop_name: str = "asyncio") -> None:
        super().__init__("the UDP peer", [sys.executable, "-c", UDP_PEER, loop_name])


class Waiter(asyncio.DatagramProtocol):
    """A raw UDP client's protocol: any datagram received completes ``waiter``."""

    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


async def timed_round_trips(round_trip: Callable[[], Awaitable[None]],
                            duration: float) -> dict[str, Any]:
    """``round_trip()`` again and again for ``duration`` seconds: how many, how
    many a second, and their latency."""
    samples = []
    start = time.perf_counter()
    stop_at = start + duration
    while (t0 := time.perf_counter()) < stop_at:
        await round_trip()
        samples.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    return {"round_trips": len(samples), "rtt_per_s": len(samples) / elapsed,
            "latency_ms": bench.percentiles(samples)}


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
