"""``utcp echo-server`` and ``utcp echo-client``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from .. import bench
from ..protocols import Server
from ..streams import start_server
from .output import (
    CliError,
    Observing,
    address_text,
    error_line,
    reason,
)
from .pipe import Totals, connect, receive_all, send_all, stdin_chunks
from .stat import StatChannel, snapshot_of

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
            who = address_text(peer[0], peer[1]) + (
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


async def echo_server(host: str, port: int, observing: Observing, options: dict[str, Any],
                      kernel_port: int | None = None) -> None:
    """Echo every byte back to each client until the task is cancelled (Ctrl-C, SIGTERM).

    Next to the echo port, port + 1 discards and port + 2 sends without end, for
    ``utcp bench throughput``; with ``kernel_port`` the same three services run
    over the kernel's TCP too, for ``utcp bench --kernel``.
    """
    clients: set[asyncio.StreamWriter] = set()
    log = _ConnectionLog()
    handle = _echo_handler(clients, log)
    try:
        server = await start_server(
            handle, host, port, observer=observing.observer("server"),
            **options)
    except OSError as exc:
        raise CliError(f"cannot listen on {address_text(host, port)}: "
                       f"{reason(exc)}") from None
    servers: list[Any] = [server]
    channel: StatChannel | None = None
    listening = [f"echo on {address_text(host, server.port)} (UDP)"]
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
                               f"port {server.port + offset}: {reason(exc)}")
        if kernel_port is not None:
            kernel_services = ((0, "echo", handle), (1, "discard", bench.discard),
                               (2, "source", bench.source))
            for offset, name, service in kernel_services:
                try:
                    servers.append(await asyncio.start_server(service, host,
                                                              kernel_port + offset))
                except OSError as exc:
                    raise CliError(f"cannot listen on kernel TCP port {kernel_port + offset} "
                                   f"({name}): {reason(exc)}") from None
            listening.append(f"kernel TCP echo, discard, source on ports "
                             f"{kernel_port}-{kernel_port + 2}")
        names = ("echo", "discard", "source")
        utcp_servers = [s for s in servers if isinstance(s, Server)]
        channel = StatChannel(server.port, lambda: snapshot_of(
            "echo-server", list(zip(names, utcp_servers, strict=False))))
        await channel.open()
        print("utcp echo server listening: " + "; ".join(listening), file=sys.stderr,
              flush=True)
        for line in missing:
            print(line, file=sys.stderr, flush=True)
        # Not server.serve_forever(): cancelled, it waits for every connection to end,
        # which a client that stays connected never does, and Ctrl-C would be swallowed.
        await asyncio.get_running_loop().create_future()
    finally:
        if channel is not None:
            channel.close()
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


async def echo_client(host: str, port: int, message: str | None, count: int,
                      observing: Observing, options: dict[str, Any]) -> None:
    """Send stdin (or ``message`` and a newline, ``count`` times) as it is read, print
    the echo as it arrives, and report on stderr what went and came back."""
    reader, writer = await connect(host, port, observing, options, "'utcp echo-server'")

    async def repeat(line: bytes) -> AsyncIterator[bytes]:
        for _ in range(count):
            yield line

    chunks = stdin_chunks() if message is None else repeat(os.fsencode(message) + b"\n")
    totals = Totals()
    sending = asyncio.ensure_future(send_all(chunks, writer, totals))
    where = address_text(host, port)
    try:
        await receive_all(reader, totals)
        if not sending.done():
            # The server closed before we had sent everything: what is left would
            # never come back.
            sending.cancel()
            raise CliError(f"{where} closed the connection after echoing "
                           f"{totals.received} of the {totals.sent} bytes sent so far")
        await sending
        writer.close()
        await writer.wait_closed()
    except (ConnectionError, TimeoutError) as exc:
        raise CliError(f"connection to {where} failed: {exc}") from None
    finally:
        if not sending.done():
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sending
    if totals.received != totals.sent:
        raise CliError(f"sent {totals.sent} bytes, but {totals.received} came back")
    error_line(f"utcp: sent {totals.sent} bytes, received {totals.received} back")
