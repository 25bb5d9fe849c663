"""``utcp bench``: connection rate, round trips and throughput against an echo server.

The client side measures; the server side is ``utcp echo-server``, which echoes
on its port, discards what arrives on port + 1 (RFC 863) and sends without end
on port + 2 (a source, like RFC 864's chargen), for ``bench throughput``. With
``--kernel`` the same workload runs over the kernel's TCP, against the kernel
TCP services ``utcp echo-server --kernel-port`` opens, so that one command line
compares utcp with the kernel's TCP between the same two machines.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from . import streams

#: Bytes of one write in ``bench throughput``, and of the source service.
CHUNK = 64 * 1024
#: Longest one cycle of ``bench connect`` may take before it counts as timed out.
CYCLE_TIMEOUT = 10.0
#: How often the progress line is redrawn, in seconds.
PROGRESS_INTERVAL = 0.5

OpenConnection = Callable[..., Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def opener(kernel: bool, observer: Any = None) -> OpenConnection:
    """``open_connection`` of the stack measured: asyncio's (the kernel's TCP) or utcp's
    (with ``observer`` on each connection, a capture say)."""
    if kernel:
        return asyncio.open_connection
    if observer is None:
        return streams.open_connection
    return functools.partial(streams.open_connection, observer=observer)


def failure_cause(exc: BaseException) -> str:
    """The name a failed connection is counted under."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timed out"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "closed early"
    if isinstance(exc, OSError) and exc.errno == errno.EADDRNOTAVAIL:
        return "no free port"
    if isinstance(exc, OSError):
        return f"error: {exc.strerror or exc}"
    return f"error: {type(exc).__name__}"


def percentiles(samples: list[float]) -> dict[str, float | None]:
    """p50, p90, p99 and max of ``samples`` (seconds), in milliseconds (None without
    samples: JSON has no NaN)."""
    if not samples:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    s = sorted(samples)

    def at(q: float) -> float:
        return s[min(len(s) - 1, int(q * len(s)))] * 1000

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": s[-1] * 1000}


class Progress:
    """A live line on stderr while a benchmark runs; nothing when stderr is no terminal."""

    def __init__(self, describe: Callable[[float], str], enabled: bool | None = None, *,
                 interval: float = PROGRESS_INTERVAL) -> None:
        self._describe = describe
        self._enabled = sys.stderr.isatty() if enabled is None else enabled
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._start = time.perf_counter()

    def __enter__(self) -> Progress:
        if self._enabled:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self._draw()

    def _draw(self) -> None:
        sys.stderr.write("\r\x1b[K" + self._describe(time.perf_counter() - self._start))
        sys.stderr.flush()


# ------------------------------------------------------------------ connect


async def connect(host: str, port: int, *, duration: float = 10.0, concurrency: int = 64,
                  message_size: int = 16, kernel: bool = False,
                  progress: bool | None = None, observer: Any = None) -> dict[str, Any]:
    """Whole connections, ``concurrency`` at a time, for ``duration`` seconds.

    Each opens a connection, sends ``message_size`` bytes, reads the echo and
    closes (waiting until the server has everything, FIN included). Latency is
    the setup: from the call until the connection is established.
    """
    open_connection = opener(kernel, observer)
    message = bytes(range(256)) * (message_size // 256) + bytes(range(message_size % 256))
    setup: list[float] = []
    failures: Counter[str] = Counter()
    done = 0
    start = time.perf_counter()
    stop_at = start + duration
    recent = [(start, 0)]

    async def one() -> None:
        nonlocal done
        t0 = time.perf_counter()
        reader, writer = await open_connection(host, port)
        setup.append(time.perf_counter() - t0)
        try:
            writer.write(message)
            await reader.readexactly(message_size)
        finally:
            writer.close()
        await writer.wait_closed()
        done += 1

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            try:
                await asyncio.wait_for(one(), CYCLE_TIMEOUT)
            except Exception as exc:
                failures[failure_cause(exc)] += 1

    def describe(elapsed: float) -> str:
        now = time.perf_counter()
        recent.append((now, done))
        while len(recent) > 2 and now - recent[0][0] > 2.0:
            recent.pop(0)
        (t0, n0), (t1, n1) = recent[0], recent[-1]
        rate = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
        return (f"connect: {done} connections in {elapsed:.0f} s, {rate:.0f}/s now, "
                f"{sum(failures.values())} failed")

    with Progress(describe, progress):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {
        "test": "connect", "stack": "kernel" if kernel else "utcp", "loop": _loop_name(),
        "concurrency": concurrency, "message_size": message_size,
        "seconds": elapsed, "connections": done, "failures": dict(failures),
        "conn_per_s": done / elapsed if elapsed > 0 else 0.0,
        "latency_ms": percentiles(setup),
    }


# ----------------------------------------------------------- request/response


async def request_response(host: str, port: int, *, duration: float = 10.0,
                           kernel: bool = False, progress: bool | None = None,
                           observer: Any = None) -> dict[str, Any]:
    """One byte each way on one connection, one request outstanding, for ``duration`` s."""
    reader, writer = await opener(kernel, observer)(host, port)
    samples: list[float] = []
    start = time.perf_counter()
    stop_at = start + duration

    def describe(elapsed: float) -> str:
        return f"rr: {len(samples)} round trips in {elapsed:.0f} s"

    try:
        with Progress(describe, progress):
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    break
                writer.write(b"x")
                await reader.readexactly(1)
                samples.append(time.perf_counter() - t0)
    finally:
        writer.close()
    await writer.wait_closed()
    elapsed = time.perf_counter() - start
    return {
        "test": "rr", "stack": "kernel" if kernel else "utcp", "loop": _loop_name(),
        "seconds": elapsed, "round_trips": len(samples),
        "rtt_per_s": len(samples) / elapsed if elapsed > 0 else 0.0,
        "latency_ms": percentiles(samples),
    }


# ---------------------------------------------------------------- throughput


async def throughput(host: str, port: int, *, duration: float = 10.0, reverse: bool = False,
                     kernel: bool = False, progress: bool | None = None,
                     observer: Any = None) -> dict[str, Any]:
    """Bytes one way for ``duration`` seconds: to the discard service on ``port + 1``,
    or with ``reverse`` from the source service on ``port + 2``."""
    reader, writer = await opener(kernel, observer)(host, port + (2 if reverse else 1))
    moved = 0
    start = time.perf_counter()
    stop_at = start + duration

    def describe(elapsed: float) -> str:
        return f"throughput: {moved / 1e6:.1f} MB in {elapsed:.0f} s, " \
               f"{moved / 1e6 / max(elapsed, 1e-9):.1f} MB/s"

    with Progress(describe, progress):
        if reverse:
            try:
                while time.perf_counter() < stop_at:
                    data = await reader.read(CHUNK)
                    if not data:
                        raise ConnectionError("the source service closed the connection")
                    moved += len(data)
            finally:
                writer.transport.abort()  # unread data in flight: a reset ends it at once
            elapsed = time.perf_counter() - start
        else:
            chunk = bytes(CHUNK)
            while time.perf_counter() < stop_at:
                writer.write(chunk)
                await writer.drain()
                moved += len(chunk)
            writer.write_eof()
            # The discard service closes once it has read everything: then it all arrived.
            await reader.read()
            writer.close()
            await writer.wait_closed()
            elapsed = time.perf_counter() - start
    return {
        "test": "throughput", "stack": "kernel" if kernel else "utcp", "loop": _loop_name(),
        "direction": "from server" if reverse else "to server",
        "seconds": elapsed, "bytes": moved,
        "mb_per_s": moved / 1e6 / elapsed if elapsed > 0 else 0.0,
    }


# ------------------------------------------------------------ the services


async def discard(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """RFC 863: read everything, answer nothing, close at the end."""
    try:
        while await reader.read(CHUNK):
            pass
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()


async def source(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send zeros for as long as the client reads them."""
    chunk = bytes(CHUNK)
    try:
        while not writer.is_closing():
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.transport.abort()


# --------------------------------------------------------------- reporting


def summary(result: dict[str, Any]) -> str:
    """A few lines for a person to read."""
    who = f"{result['stack']} on {result['loop']}"
    lat = result.get("latency_ms")
    if lat and lat["p50"] is not None:
        lat_text = (f"p50 {lat['p50']:.2f}  p90 {lat['p90']:.2f}  p99 {lat['p99']:.2f}  "
                    f"max {lat['max']:.2f} ms")
    else:
        lat_text = "none measured"
    if result["test"] == "connect":
        failures = result["failures"]
        failed = ", ".join(f"{n} {cause}" for cause, n in sorted(failures.items())) or "none"
        return (f"connect ({who}, {result['concurrency']} at a time, "
                f"{result['message_size']}-byte echo):\n"
                f"  {result['connections']} connections in {result['seconds']:.1f} s = "
                f"{result['conn_per_s']:.0f} conn/s\n"
                f"  setup latency: {lat_text}\n"
                f"  failures: {failed}")
    if result["test"] == "rr":
        return (f"request/response ({who}, 1 byte each way):\n"
                f"  {result['round_trips']} round trips in {result['seconds']:.1f} s = "
                f"{result['rtt_per_s']:.0f}/s\n"
                f"  latency: {lat_text}")
    return (f"throughput ({who}, {result['direction']}):\n"
            f"  {result['bytes'] / 1e6:.1f} MB in {result['seconds']:.2f} s = "
            f"{result['mb_per_s']:.1f} MB/s")


def _loop_name() -> str:
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
