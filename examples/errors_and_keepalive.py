"""The errors a utcp program meets, as the asyncio exceptions it already handles,
and keepalive finding a peer whose path broke.

    python examples/errors_and_keepalive.py

Each case prints what happened and the exception it raised.
"""

from __future__ import annotations

import asyncio
import socket

import utcp


async def refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # a UDP port with nobody on it once closed
    try:
        await utcp.open_connection("127.0.0.1", port)
    except ConnectionRefusedError as exc:
        print(f"nobody listening:      ConnectionRefusedError: {exc}")


async def silent_host() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        try:
            await utcp.open_connection("127.0.0.1", silent.getsockname()[1], syn_retries=1,
                                       initial_rto=0.2, min_rto=0.2)
        except TimeoutError as exc:
            print(f"a host that never answers: TimeoutError: {exc}")


async def reset_by_peer() -> None:
    async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.transport.abort()  # RST

    server = await utcp.start_server(rude, "127.0.0.1", 0)
    async with server:
        reader, writer = await utcp.open_connection("127.0.0.1", server.port)
        writer.write(b"hello?\n")
        try:
            await reader.read()
        except ConnectionResetError as exc:
            print(f"the peer reset:        ConnectionResetError: {exc}")
        writer.close()


async def short_read() -> None:
    async def brief(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"only 5")
        writer.close()

    server = await utcp.start_server(brief, "127.0.0.1", 0)
    async with server:
        reader, writer = await utcp.open_connection("127.0.0.1", server.port)
        try:
            await reader.readexactly(100)
        except asyncio.IncompleteReadError as exc:
            print(f"the peer closed early: IncompleteReadError: got {exc.partial!r} of "
                  f"{exc.expected}")
        writer.close()
        await writer.wait_closed()


class Cable(asyncio.DatagramProtocol):
    """A UDP relay between one client and a server, which can be unplugged."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.client: tuple[str, int] | None = None
        self.plugged = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.plugged:
            return  # the cable is out: everything is lost, silently
        if addr == self.server:
            if self.client is not None:
                self.transport.sendto(data, self.client)
        else:
            self.client = addr
            self.transport.sendto(data, self.server)


async def vanished_peer() -> None:
    # The path to an idle peer breaks without a word (a cable pulled, a host that
    # lost power): only keepalive probes can tell.
    async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    loop = asyncio.get_running_loop()
    server = await utcp.start_server(idle, "127.0.0.1", 0)
    async with server:
        # The relay on another loopback address, at the server's port: the TCP port
        # in the segments is the port the client dials.
        relay, cable = await loop.create_datagram_endpoint(
            lambda: Cable(("127.0.0.1", server.port)), local_addr=("127.0.0.2", server.port))
        reader, writer = await utcp.open_connection(
            "127.0.0.2", server.port, keepalive=True,
            keepalive_idle=0.5, keepalive_interval=0.2, keepalive_count=3)
        cable.plugged = False
        t0 = loop.time()
        try:
            await reader.read()
        except TimeoutError as exc:
            print(f"a path that broke:     TimeoutError after {loop.time() - t0:.1f} s "
                  f"(idle 0.5 s + 3 probes x 0.2 s): {exc}")
        writer.close()
        relay.close()
        server.close()


async def main() -> None:
    for case in (refused, silent_host, reset_by_peer, short_read, vanished_peer):
        await case()


asyncio.run(main())
