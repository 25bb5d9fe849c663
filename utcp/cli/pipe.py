"""``utcp connect`` and ``utcp listen``: a connection joined to stdin and stdout,
or to a program, both ways at once, as nc and socat do."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shlex
import socket
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

from ..bench import Progress
from ..protocols import Server
from ..streams import open_connection, start_server
from .output import (
    CliError,
    Observing,
    address_text,
    error_line,
    reason,
    stdout,
)
from .stat import StatChannel, snapshot_of

#: Bytes read from stdin (or the network) at a time.
CHUNK = 64 * 1024


async def stdin_chunks() -> AsyncIterator[bytes]:
    """Standard input as it arrives, in chunks of bytes, read without blocking the loop.

    A daemon thread reads file descriptor 0 with os.read (a file, a pipe or a
    terminal alike): unlike a thread of the loop's executor, which asyncio.run()
    joins at exit, it cannot keep Ctrl-C from ending the program while it waits
    for input. It reads ahead by at most a few chunks, so a fast stdin and a slow
    connection hold bounded memory.
    """
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=4)

    def read() -> None:
        while True:
            try:
                chunk = os.read(0, CHUNK)
            except OSError:
                chunk = b""
            try:
                asyncio.run_coroutine_threadsafe(chunks.put(chunk), loop).result()
            except (RuntimeError, concurrent.futures.CancelledError):
                return  # the loop is closed: the program is ending
            if not chunk:
                return

    threading.Thread(target=read, name="utcp stdin", daemon=True).start()
    while chunk := await chunks.get():
        yield chunk


async def connect(host: str, port: int, observing: Observing, options: dict[str, Any],
                  what: str = "a utcp server") -> tuple[asyncio.StreamReader,
                                                        asyncio.StreamWriter]:
    """Open a connection, or fail with one plain line saying why."""
    where = address_text(host, port)
    try:
        return await open_connection(
            host, port, observer=observing.observer("client"), **options)
    except socket.gaierror as exc:
        raise CliError(f"cannot resolve {host!r}: {exc.strerror}") from None
    except ConnectionRefusedError:
        raise CliError(f"connection refused by {where} (nothing listens on that port)") \
            from None
    except TimeoutError:
        raise CliError(f"no answer from {where}: is {what} running there, and does UDP "
                       "reach it?") from None
    except OSError as exc:
        raise CliError(f"cannot connect to {where}: {reason(exc)}") from None


def transfer_progress() -> bool:
    """Whether to show a progress line: on a terminal's stderr, unless a person is
    typing and reading on that terminal too (as with nc, a chat needs no meter)."""
    try:
        return sys.stderr.isatty() and not (sys.stdin.isatty() and sys.stdout.isatty())
    except (AttributeError, ValueError):
        return False


class Totals:
    """Bytes each way on one connection."""

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0

    def describe(self, elapsed: float) -> str:
        """The progress line (shown on a terminal only)."""
        rate = (self.sent + self.received) / max(elapsed, 1e-9) / 1e6
        return (f"sent {self.sent / 1e6:.1f} MB, received {self.received / 1e6:.1f} MB "
                f"({rate:.1f} MB/s)")


async def send_all(chunks: AsyncIterator[bytes], writer: asyncio.StreamWriter,
                   totals: Totals) -> None:
    """Write every chunk as it comes, then half-close."""
    async for chunk in chunks:
        writer.write(chunk)
        totals.sent += len(chunk)
        await writer.drain()
    if not writer.is_closing():
        writer.write_eof()


async def receive_all(reader: asyncio.StreamReader, totals: Totals) -> None:
    """Copy everything the peer sends to stdout, until its FIN."""
    while data := await reader.read(CHUNK):
        totals.received += len(data)
        stdout.write(data)


async def join(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               chunks: AsyncIterator[bytes], totals: Totals) -> None:
    """Both ways at once: ``chunks`` to the peer, the peer to stdout.

    The end of ``chunks`` half-closes the connection (as ``nc -N`` does) and the
    peer's FIN ends what it sends; this returns once both directions are done,
    and raises the connection's error if it fails first.
    """
    tasks = [asyncio.ensure_future(send_all(chunks, writer, totals)),
             asyncio.ensure_future(receive_all(reader, totals))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    writer.close()
    await writer.wait_closed()


async def connect_command(host: str, port: int, observing: Observing,
                          options: dict[str, Any]) -> None:
    """``utcp connect``: stdin to the connection and the connection to stdout."""
    reader, writer = await connect(host, port, observing, options)
    totals = Totals()
    try:
        with Progress(totals.describe, transfer_progress()):
            await join(reader, writer, stdin_chunks(), totals)
    except (ConnectionError, TimeoutError) as exc:
        raise CliError(f"connection to {address_text(host, port)} failed: {exc}") from None


async def listen_command(host: str, port: int, command: str | None, observing: Observing,
                         options: dict[str, Any]) -> None:
    """``utcp listen``: one connection joined to stdin and stdout, or, with
    ``command``, every connection joined to a run of that program."""
    argv = shlex.split(command) if command is not None else None
    if argv is not None and not argv:
        raise CliError("--exec needs a command")
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    handlers: set[asyncio.Task[Any]] = set()

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        who = address_text(peer[0], peer[1])
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            if argv is None:
                server.close()  # like nc -l: this one connection, then the command ends
                error_line(f"utcp: connection from {who}")
                totals = Totals()
                with Progress(totals.describe, transfer_progress()):
                    await join(reader, writer, stdin_chunks(), totals)
            else:
                error_line(f"utcp: connection from {who}: running {shlex.join(argv)}")
                await run_program(argv, reader, writer)
        except (ConnectionError, TimeoutError) as exc:
            error_line(f"utcp: connection from {who} failed: {exc}")
            writer.transport.abort()
            if argv is None and not done.done():
                done.set_exception(CliError(f"connection from {who} failed: {exc}"))
        finally:
            handlers.discard(asyncio.current_task())  # type: ignore[arg-type]
            if argv is None and not done.done():
                done.set_result(None)

    try:
        server: Server = await start_server(
            one, host, port, observer=observing.observer("server"), **options)
    except OSError as exc:
        raise CliError(f"cannot listen on {address_text(host, port)}: "
                       f"{reason(exc)}") from None
    channel = StatChannel(server.port, lambda: snapshot_of("listen", [("listen", server)]))
    await channel.open()
    error_line(f"utcp: listening on {address_text(host, server.port)}")
    try:
        await done
    finally:
        await stop_serving(server, channel, handlers)


async def stop_serving(server: Any, channel: StatChannel | None,
                       handlers: set[asyncio.Task[Any]]) -> None:
    """Stop accepting and answering ``utcp stat``; end the connections being
    served (each handler resets its own), waiting a second at most."""
    if channel is not None:
        channel.close()
    server.close()
    for task in list(handlers):
        task.cancel()
    if handlers:
        await asyncio.wait(handlers, timeout=1.0)


async def run_program(argv: list[str], reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
    """Run ``argv`` with the connection as its stdin and stdout, until both ends close."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    except OSError as exc:
        writer.transport.abort()
        raise CliError(f"cannot run {argv[0]!r}: {reason(exc)}") from None
    assert proc.stdin is not None and proc.stdout is not None
    to_program, from_program = proc.stdin, proc.stdout

    async def inbound() -> None:
        try:
            while data := await reader.read(CHUNK):
                to_program.write(data)
                await to_program.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the program stopped reading: what it sends back still counts
        finally:
            to_program.close()

    async def outbound() -> None:
        while data := await from_program.read(CHUNK):
            writer.write(data)
            await writer.drain()
        writer.write_eof()

    tasks = [asyncio.ensure_future(inbound()), asyncio.ensure_future(outbound())]
    try:
        await asyncio.gather(*tasks)
        await proc.wait()
        writer.close()
        await writer.wait_closed()
    finally:
        for task in tasks:
            task.cancel()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
