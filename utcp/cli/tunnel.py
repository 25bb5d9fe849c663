"""``utcp tunnel``: kernel TCP carried over utcp and back, one connection for each.

    utcp tunnel tcp:127.0.0.1:8080 utcp:HOST:7100     # here: TCP in, utcp out
    utcp tunnel utcp:0.0.0.0:7100 tcp:127.0.0.1:80     # there: utcp in, TCP out

Each connection accepted on the first address gets its own connection to the
second. Bytes are copied both ways at once; a FIN (half-close) and a RST are
passed on as such.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

from ..bench import Progress
from ..streams import open_connection, start_server
from .output import CliError, Observing, address_text, error_line, reason
from .pipe import stop_serving
from .stat import StatChannel, snapshot_of

#: Bytes copied at a time.
CHUNK = 64 * 1024


def parse_address(text: str, *, listening: bool) -> tuple[str, str, int]:
    """``tcp:HOST:PORT`` or ``utcp:HOST:PORT`` (IPv6 in brackets) as (kind, host, port)."""
    kind, sep, rest = text.partition(":")
    if not sep or kind not in ("tcp", "utcp"):
        raise CliError(f"{text!r}: give tcp:HOST:PORT or utcp:HOST:PORT")
    host, sep, port_text = rest.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not (
            (0 if listening else 1) <= int(port_text) <= 65535):
        raise CliError(f"{text!r}: give {kind}:HOST:PORT, with a port from "
                       f"{0 if listening else 1} to 65535")
    return kind, host, int(port_text)


def _reset(writer: asyncio.StreamWriter) -> None:
    """End the connection with a RST, on the kernel's TCP as on utcp."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.type == socket.SOCK_STREAM:
        # The kernel sends a RST for a socket closed with a zero linger time.
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class Counts:
    """What a tunnel has carried, for its progress line."""

    def __init__(self) -> None:
        self.open = 0
        self.total = 0
        self.bytes = 0

    def describe(self, elapsed: float) -> str:
        return (f"{self.open} connections open, {self.total} in all, "
                f"{self.bytes / 1e6:.1f} MB carried")


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                counts: Counts | None = None) -> None:
    """One direction: every byte, then the FIN as a half-close."""
    while data := await reader.read(CHUNK):
        writer.write(data)
        if counts is not None:
            counts.bytes += len(data)
        await writer.drain()
    if writer.can_write_eof() and not writer.is_closing():
        writer.write_eof()


async def relay(a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                b: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                counts: Counts | None = None) -> None:
    """Join two connections until both directions have ended; a reset (or any
    error) on either resets the other."""
    tasks = [asyncio.ensure_future(_copy(a[0], b[1], counts)),
             asyncio.ensure_future(_copy(b[0], a[1], counts))]
    try:
        await asyncio.gather(*tasks)
    except (ConnectionError, TimeoutError, OSError):
        for task in tasks:
            task.cancel()
        _reset(a[1])
        _reset(b[1])
        return
    finally:
        for task in tasks:
            task.cancel()
    for writer in (a[1], b[1]):
        writer.close()
    for writer in (a[1], b[1]):
        try:
            await writer.wait_closed()
        except (ConnectionError, TimeoutError, OSError):
            pass


async def tunnel(source: str, target: str, observing: Observing,
                 options: dict[str, Any]) -> None:
    """Accept on ``source``; carry each connection to ``target``, until cancelled."""
    in_kind, in_host, in_port = parse_address(source, listening=True)
    out_kind, out_host, out_port = parse_address(target, listening=False)
    if in_kind == out_kind:
        raise CliError("a tunnel joins tcp: to utcp: or utcp: to tcp:")
    to = address_text(out_host, out_port)
    handlers: set[asyncio.Task[Any]] = set()
    counts = Counts()

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            try:
                if out_kind == "utcp":
                    far = await open_connection(out_host, out_port,
                                                observer=observing.observer("client"),
                                                **options)
                else:
                    far = await asyncio.open_connection(out_host, out_port)
            except OSError as exc:
                error_line(f"utcp: tunnel to {to} ({out_kind}): {reason(exc)}")
                _reset(writer)  # as a proxy that cannot connect: the client sees a reset
                return
            counts.open += 1
            counts.total += 1
            try:
                await relay((reader, writer), far, counts)
            finally:
                counts.open -= 1
        except asyncio.CancelledError:
            _reset(writer)
            raise
        finally:
            handlers.discard(task)

    try:
        if in_kind == "utcp":
            server: Any = await start_server(one, in_host, in_port,
                                             observer=observing.observer("server"), **options)
            port = server.port
        else:
            server = await asyncio.start_server(one, in_host, in_port)
            port = server.sockets[0].getsockname()[1]
    except OSError as exc:
        raise CliError(f"cannot listen on {in_kind}:{address_text(in_host, in_port)}: "
                       f"{reason(exc)}") from None
    channel: StatChannel | None = None
    if in_kind == "utcp":
        channel = StatChannel(port, lambda: snapshot_of("tunnel", [("tunnel", server)]))
        await channel.open()
    error_line(f"utcp: tunnel from {in_kind}:{address_text(in_host, port)} to "
               f"{out_kind}:{to}")
    try:
        with Progress(counts.describe):  # on a terminal only
            await asyncio.get_running_loop().create_future()  # until Ctrl-C or SIGTERM
    finally:
        await stop_serving(server, channel, handlers)
