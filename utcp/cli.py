"""The ``utcp`` command: echo server and client, and a demo that draws TCP at work."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any

from . import Server, bench, open_connection, start_server
from .core.config import Options
from .core.connection import Connection
from .core.observer import NullObserver
from .core.state import State
from .core.wire import Segment
from .ladder import Ladder

DEFAULT_PORT = 7007
#: The streams' buffer limit (asyncio's default, which utcp keeps).
_READ_LIMIT = 64 * 1024


class CliError(Exception):
    """A failure to report as one plain line, without a traceback."""


# ------------------------------------------------------------------ stdout


class _Stdout:
    """Standard output, where a reader that has gone (``| head``) ends the command quietly.

    Every write to stdout goes through :meth:`write`. Many come from observers, which
    the TCP core calls in the middle of a state change: an exception there would break
    the connection, so a closed pipe never raises. Instead stdout is pointed at
    os.devnull, so that no later write or the flush at exit fails again, and the main
    task is cancelled; :func:`main` then exits with status 141, as for SIGPIPE.
    """

    def __init__(self) -> None:
        self.closed = False
        self.main_task: asyncio.Task[None] | None = None

    def write(self, data: str | bytes) -> None:
        """Write text or bytes to stdout and flush them, or stop the program quietly."""
        if self.closed:
            return
        try:
            if isinstance(data, str):
                sys.stdout.write(data)
                sys.stdout.flush()
            else:
                sys.stdout.flush()  # text written before these bytes goes out first
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
        except BrokenPipeError:
            self.reader_gone()

    def line(self, text: str = "") -> None:
        """Write ``text`` and a newline."""
        self.write(text + "\n")

    def reader_gone(self) -> None:
        """Point stdout at os.devnull and cancel the main task, if there is one."""
        self.closed = True
        # As the Python docs on SIGPIPE advise: anything still buffered, and the flush
        # at interpreter exit, must not fail with another BrokenPipeError.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass  # stdout is no file descriptor: nothing the OS can still fail on
        finally:
            os.close(devnull)
        task = self.main_task
        if task is not None and not task.done():
            task.cancel()


_stdout = _Stdout()


# ---------------------------------------------------------------- tracing


class _PerConnectionTrace(NullObserver):
    """Gives every connection of a listener or client its own live ladder."""

    def __init__(self, side: str) -> None:
        self._side = side
        self._ladders: dict[Connection, Any] = {}

    def _obs(self, conn: Connection) -> Any:
        obs = self._ladders.get(conn)
        if obs is None:
            _stdout.line(f"-- trace of connection {conn.local_port} <-> {conn.remote_port} --")
            ladder = Ladder("client", "server", live=_stdout.line)
            obs = self._ladders[conn] = ladder.observer(self._side)
        return obs

    def state_changed(self, conn: Connection, old: State, new: State, cause: str,
                      now: float) -> None:
        self._obs(conn).state_changed(conn, old, new, cause, now)
        if new is State.CLOSED:
            self._ladders.pop(conn, None)

    def segment_sent(self, conn: Connection, seg: Segment, now: float) -> None:
        self._obs(conn).segment_sent(conn, seg, now)

    def segment_received(self, conn: Connection, seg: Segment, now: float) -> None:
        self._obs(conn).segment_received(conn, seg, now)


# ------------------------------------------------------------- echo server


#: How long a stopping server waits for its clients to take the FIN and close.
STOP_GRACE = 1.0


class _ConnectionLog:
    """The echo server's line per connection event, on stderr.

    Past LIMIT lines in a second (a benchmark, say), further events of that second
    are counted and told in one line when the second is over.
    """

    LIMIT = 10

    def __init__(self) -> None:
        self._second = 0.0
        self._lines = 0
        self._held: Counter[str] = Counter()
        self._flush_handle: asyncio.TimerHandle | None = None

    def event(self, kind: str, writer: asyncio.StreamWriter, detail: str = "") -> None:
        """One event of ``writer``'s connection: ``kind`` is 'opened', 'closed' or 'lost'.

        The line is made only if it is printed: a busy server prints few.
        """
        now = time.monotonic()
        if now - self._second >= 1.0:
            self._second = now
            self._lines = 0
        self._lines += 1
        if self._lines <= self.LIMIT:
            peer = writer.get_extra_info("peername")
            conn = getattr(writer.transport, "conn", None)  # a utcp connection, or none
            who = _address_text(peer[0], peer[1]) + (
                f" (port {conn.remote_port})" if conn is not None else " (kernel TCP)")
            text = {"opened": f"connection from {who}", "closed": f"closed {who}"}.get(
                kind, f"{kind} {who}")
            print(text + detail, file=sys.stderr, flush=True)
            return
        self._held[kind] += 1
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(
                self._second + 1.0 - now, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        held, self._held = self._held, Counter()
        print("... and " + ", ".join(f"{n} more {kind}" for kind, n in sorted(held.items()))
              + " in that second", file=sys.stderr, flush=True)


def _echo_handler(clients: set[asyncio.StreamWriter], log: _ConnectionLog) -> Any:
    """The echo service, for utcp's streams and asyncio's alike."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        log.event("opened", writer)
        total = 0
        clients.add(writer)
        try:
            while data := await reader.read(65536):
                total += len(data)
                writer.write(data)
                await writer.drain()
            writer.close()
            await writer.wait_closed()
            log.event("closed", writer, f": echoed {total} bytes")
        except (ConnectionError, TimeoutError) as exc:
            log.event("lost", writer, f": {exc}")
            writer.transport.abort()
        except asyncio.CancelledError:
            # The program ends and asyncio.run() cancels what is left, such as a
            # connection accepted while the server stopped. Not re-raised: Python
            # 3.11's StreamReaderProtocol logs a cancelled handler with a traceback.
            writer.transport.abort()
        finally:
            clients.discard(writer)

    return handle


def _address_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def echo_server(host: str, port: int, trace: bool, options: dict[str, Any],
                      kernel_port: int | None = None) -> None:
    """Echo every byte back to each client until the task is cancelled (Ctrl-C).

    Next to the echo port, port + 1 discards and port + 2 sends without end, for
    ``utcp bench throughput``; with ``kernel_port`` the same three services run
    over the kernel's TCP too, for ``utcp bench --kernel``.
    """
    clients: set[asyncio.StreamWriter] = set()
    log = _ConnectionLog()
    handle = _echo_handler(clients, log)
    try:
        server = await start_server(
            handle, host, port, observer=_PerConnectionTrace("server") if trace else None,
            **options)
    except OSError as exc:
        raise CliError(f"cannot listen on {_address_text(host, port)}: "
                       f"{exc.strerror or exc}") from None
    servers: list[Any] = [server]
    listening = [f"echo on {_address_text(host, server.port)} (UDP)"]
    missing = []
    try:
        for offset, name, service in ((1, "discard", bench.discard),
                                      (2, "source", bench.source)):
            try:
                servers.append(await start_server(service, host, server.port + offset,
                                                  **options))
                listening.append(f"{name} on port {server.port + offset}")
            except OSError as exc:
                missing.append(f"utcp: no {name} service for 'utcp bench throughput': "
                               f"port {server.port + offset}: {exc.strerror or exc}")
        if kernel_port is not None:
            kernel_services = ((0, "echo", handle), (1, "discard", bench.discard),
                               (2, "source", bench.source))
            for offset, name, service in kernel_services:
                try:
                    servers.append(await asyncio.start_server(service, host,
                                                              kernel_port + offset))
                except OSError as exc:
                    raise CliError(f"cannot listen on kernel TCP port {kernel_port + offset} "
                                   f"({name}): {exc.strerror or exc}") from None
            listening.append(f"kernel TCP echo, discard, source on ports "
                             f"{kernel_port}-{kernel_port + 2}")
        print("utcp echo server listening: " + "; ".join(listening), file=sys.stderr,
              flush=True)
        for line in missing:
            print(line, file=sys.stderr, flush=True)
        # Not server.serve_forever(): cancelled, it waits for every connection to end,
        # which a client that stays connected never does, and Ctrl-C would be swallowed.
        await asyncio.get_running_loop().create_future()
    finally:
        for other in servers[1:]:
            other.close()
        await _stop_server(server, clients)


async def _stop_server(server: Server, clients: set[asyncio.StreamWriter]) -> None:
    """Close the server and its connections: a FIN each, then a RST for those that
    have not closed within STOP_GRACE seconds."""
    server.close()  # accept no more connections
    writers = list(clients)
    for writer in writers:
        writer.close()

    async def closed(writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):  # ended by an error: closed all the same
            await writer.wait_closed()

    waits = {asyncio.ensure_future(closed(writer)): writer for writer in writers}
    if waits:
        _, lingering = await asyncio.wait(waits, timeout=STOP_GRACE)
        for wait in lingering:
            wait.cancel()
            waits[wait].transport.abort()


# ------------------------------------------------------------- echo client


async def echo_client(host: str, port: int, message: str | None, count: int, trace: bool,
                      options: dict[str, Any]) -> None:
    """Send ``message`` ``count`` times, or the lines of stdin, and print each echo."""
    try:
        reader, writer = await open_connection(
            host, port, observer=_PerConnectionTrace("client") if trace else None, **options)
    except socket.gaierror as exc:
        raise CliError(f"cannot resolve {host!r}: {exc.strerror}") from None
    except ConnectionRefusedError:
        raise CliError(f"connection refused by {host}:{port} "
                       "(nothing listens on that port)") from None
    except TimeoutError:
        raise CliError(f"no answer from {host}:{port}: is 'utcp echo-server' running there, "
                       "and does UDP reach it?") from None
    except OSError as exc:
        raise CliError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None

    async def lines() -> Any:
        # Bytes, not text: whatever stdin holds goes to the server and back unchanged.
        if message is not None:
            line = os.fsencode(message) + b"\n"  # the bytes of the argument as given
            for _ in range(count):
                yield line
            return
        async for line in _stdin_lines():
            yield line if line.endswith(b"\n") else line + b"\n"

    try:
        async for line in lines():
            writer.write(line)
            # The echo is exactly what was sent: read that many bytes (readline fails on
            # a line longer than its limit), while the line goes out, so that neither
            # side's buffers fill up and stall the other; printed piece by piece.
            left = len(line)
            while left:
                echo = await reader.readexactly(min(left, _READ_LIMIT))
                left -= len(echo)
                _stdout.write(echo)
            await writer.drain()
        writer.write_eof()
        rest = await reader.read()
        if rest:
            _stdout.write(rest)
        writer.close()
        await writer.wait_closed()
    except asyncio.IncompleteReadError:
        raise CliError("the server closed the connection") from None
    except (ConnectionError, TimeoutError) as exc:
        raise CliError(f"connection to {host}:{port} failed: {exc}") from None


async def _stdin_lines() -> Any:
    """The lines of standard input, as bytes, read without blocking the loop.

    A daemon thread reads file descriptor 0 with os.read: unlike a thread of the
    loop's executor, which asyncio.run() joins at exit, it cannot keep Ctrl-C from
    ending the program while it waits for input; and unlike sys.stdin's buffer, a
    bare file descriptor has no lock for the interpreter's exit to trip over.
    """
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue()

    def read() -> None:
        while True:
            try:
                chunk = os.read(0, 65536)
            except OSError:
                chunk = b""
            try:
                loop.call_soon_threadsafe(chunks.put_nowait, chunk)
            except RuntimeError:
                return  # the loop is closed: the program is ending
            if not chunk:
                return

    threading.Thread(target=read, name="utcp stdin", daemon=True).start()
    pending = b""
    while True:
        chunk = await chunks.get()
        if not chunk:
            if pending:
                yield pending
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line + b"\n"


# ------------------------------------------------------------------- bench


async def run_bench(args: argparse.Namespace, options: dict[str, Any]) -> None:
    """``utcp bench TEST``: measure, then print the summary or one JSON object."""
    common = {"duration": args.duration, "kernel": args.kernel}
    where = _address_text(args.host, args.port)
    try:
        if args.test == "connect":
            result = await bench.connect(args.host, args.port, concurrency=args.concurrency,
                                         message_size=args.message_size, **common)
        elif args.test == "rr":
            result = await bench.request_response(args.host, args.port, **common)
        else:
            result = await bench.throughput(args.host, args.port, reverse=args.reverse,
                                            **common)
    except socket.gaierror as exc:
        raise CliError(f"cannot resolve {args.host!r}: {exc.strerror}") from None
    except (OSError, asyncio.IncompleteReadError) as exc:
        raise CliError(f"bench {args.test} against {where} failed: "
                       f"{bench.failure_cause(exc)}") from None
    _stdout.line(json.dumps(result) if args.json else bench.summary(result))


# -------------------------------------------------------------------- demo


async def demo(msl: float, trace: bool, options: dict[str, Any]) -> None:
    """Run a server and a client over loopback and print the ladder of their exchange."""
    ladder = Ladder("client", "server", live=_stdout.line if trace else None)
    done = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.read()  # everything up to the client's FIN
        writer.write(request.upper())  # the half-closed client still receives this
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        done.set_result(None)

    opts = {"msl": msl, **options}
    server = await start_server(handle, "127.0.0.1", 0, observer=ladder.observer("server"),
                                **opts)
    _stdout.line(f"A server listens on 127.0.0.1:{server.port}. A client connects, sends "
                 "'hello'\nand half-closes; the server answers 'HELLO' to the half-closed "
                 "client and\ncloses. Sequence numbers are relative to each side's ISN.\n")
    watch = _TimeWaitWatch(ladder.observer("client"))
    reader, writer = await open_connection("127.0.0.1", server.port, observer=watch, **opts)
    writer.write(b"hello")
    writer.write_eof()
    reply = await reader.read()
    writer.close()
    await writer.wait_closed()
    await done
    waited = await watch.closed
    server.close()
    await server.wait_closed()
    if trace:
        _stdout.line("\nThe same exchange, with each state on the row of its cause:\n")
    _stdout.line(ladder.render())
    _stdout.line(f"\nclient received {reply!r}; TIME-WAIT lasted {waited:.2f} s "
                 f"(2 x MSL = {2 * msl:g} s), then CLOSED.")


class _TimeWaitWatch(NullObserver):
    """Passes a connection's events on, and measures how long its TIME-WAIT lasts."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._entered = 0.0
        self.closed: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def state_changed(self, conn: Connection, old: State, new: State, cause: str,
                      now: float) -> None:
        self._inner.state_changed(conn, old, new, cause, now)
        if new is State.TIME_WAIT:
            self._entered = now
        elif new is State.CLOSED and old is State.TIME_WAIT and not self.closed.done():
            self.closed.set_result(now - self._entered)

    def segment_sent(self, conn: Connection, seg: Segment, now: float) -> None:
        self._inner.segment_sent(conn, seg, now)

    def segment_received(self, conn: Connection, seg: Segment, now: float) -> None:
        self._inner.segment_received(conn, seg, now)


# ------------------------------------------------------------------- main


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {port}")
    return port


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="utcp", description=(
        "TCP in user space over UDP: an echo server and client, and a demo that "
        "draws the handshake and the close as a ladder diagram."))
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--uvloop", action="store_true", help="run on uvloop")
        sp.add_argument("--msl", type=_positive, default=None,
                        help="maximum segment lifetime in seconds (TIME-WAIT = 2 x MSL)")

    s = sub.add_parser("echo-server", help="echo every byte back to each client")
    s.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    s.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help=f"UDP and TCP port (default {DEFAULT_PORT})")
    s.add_argument("--trace", action="store_true", help="print each connection's ladder live")
    s.add_argument("--kernel-port", type=_port, default=None, metavar="N",
                   help="also serve the kernel's TCP on ports N (echo), N+1 (discard) and "
                        "N+2 (source), for 'utcp bench --kernel'")
    common(s)

    c = sub.add_parser("echo-client", help="send lines to an echo server, print the echoes")
    c.add_argument("host", help="server host name or address")
    c.add_argument("port", type=_port, nargs="?", default=DEFAULT_PORT,
                   help=f"server port (default {DEFAULT_PORT})")
    c.add_argument("--message", help="send this text instead of reading lines from stdin")
    c.add_argument("--count", type=_count, default=1, help="how often to send --message")
    c.add_argument("--syn-retries", type=_count, default=3,
                   help="SYN retransmissions before giving up (default 3: about 15 s)")
    c.add_argument("--trace", action="store_true", help="print the connection's ladder live")
    common(c)

    b = sub.add_parser("bench", help="measure a path to an echo server: connections per "
                                     "second, round trips, throughput")
    bsub = b.add_subparsers(dest="test", metavar="TEST", required=True)

    def bench_common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("host", help="host of a running 'utcp echo-server'")
        sp.add_argument("port", type=_port, nargs="?", default=DEFAULT_PORT,
                        help=f"its echo port (default {DEFAULT_PORT})")
        sp.add_argument("--duration", type=_positive, default=10.0,
                        help="seconds to run (default 10)")
        sp.add_argument("--kernel", action="store_true",
                        help="the same over the kernel's TCP, to 'utcp echo-server "
                             "--kernel-port' (PORT is then that port)")
        sp.add_argument("--json", action="store_true",
                        help="print one JSON object instead of the summary")
        common(sp)

    bc = bsub.add_parser("connect", help="whole connections per second (open, echo, close)")
    bench_common(bc)
    bc.add_argument("--concurrency", type=_count, default=64,
                    help="connections in flight at once (default 64)")
    bc.add_argument("--message-size", type=_count, default=16,
                    help="bytes echoed on each connection (default 16)")
    br = bsub.add_parser("rr", help="round trips per second of a 1-byte request/response")
    bench_common(br)
    bt = bsub.add_parser("throughput", help="MB/s one way (to the server's discard port)")
    bench_common(bt)
    bt.add_argument("--reverse", action="store_true",
                    help="from the server (its source port) instead")

    d = sub.add_parser("demo", help="client and server in one process, drawn as a ladder")
    d.add_argument("--trace", action="store_true",
                   help="also print the ladder live, row by row, as it happens")
    common(d)
    return p


async def _as_main_task(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` as the task a closed stdout cancels; that cancellation ends it
    normally."""
    _stdout.main_task = asyncio.current_task()
    try:
        await coro
    except asyncio.CancelledError:
        if not _stdout.closed:
            raise  # Ctrl-C: asyncio turns this into KeyboardInterrupt
    finally:
        _stdout.main_task = None


def run(coro: Coroutine[Any, Any, None], use_uvloop: bool) -> None:
    """Run ``coro`` on asyncio's default loop or on uvloop."""
    if not use_uvloop:
        asyncio.run(_as_main_task(coro))
        return
    try:
        import uvloop
    except ImportError:
        coro.close()
        raise CliError("uvloop is not installed: pip install 'utcp[uvloop]'") from None
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_as_main_task(coro))
    else:  # pragma: no cover - Python 3.10
        uvloop.install()
        asyncio.run(_as_main_task(coro))


def main(argv: list[str] | None = None) -> int:
    """The ``utcp`` command; returns its exit status."""
    try:
        return _main(argv)
    except BrokenPipeError:  # a write not made through _stdout, outside any observer
        _stdout.reader_gone()
        return 141


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    options: dict[str, Any] = {}
    if args.msl is not None:
        options["msl"] = args.msl
    if args.command == "echo-client":
        options["syn_retries"] = args.syn_retries
    try:
        Options(**options)  # out-of-range values are usage errors, not tracebacks
    except ValueError as exc:
        parser.error(str(exc))
    try:
        if args.command == "echo-server":
            run(echo_server(args.host, args.port, args.trace, options, args.kernel_port),
                args.uvloop)
        elif args.command == "bench":
            if args.port == 0:
                raise CliError("the server port must not be 0")
            if args.test == "connect" and args.concurrency == 0:
                parser.error("--concurrency must be at least 1")
            run(run_bench(args, options), args.uvloop)
        elif args.command == "echo-client":
            if args.port == 0:
                raise CliError("the server port must not be 0")
            run(echo_client(args.host, args.port, args.message, args.count, args.trace,
                            options), args.uvloop)
        else:
            run(demo(options.pop("msl", 0.5), args.trace, options), args.uvloop)
    except CliError as exc:
        print(f"utcp: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("utcp: interrupted", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        # stdout closed by the coroutine's last write: the task was cancelled as it
        # returned, too late for _as_main_task to see.
        if not _stdout.closed:
            raise
    # 141 = 128 + SIGPIPE: what a shell reports for a command stopped by a closed pipe.
    return 141 if _stdout.closed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
