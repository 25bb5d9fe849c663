"""asyncio's Transport/Protocol API on utcp: ``create_connection`` and ``create_server``.

Protocols written for asyncio's loop run unchanged: plain ones, buffered ones,
and third-party ones (aiohttp's HTTP server, h11's HTTP client), over real UDP
sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

import h11
import pytest
from aiohttp import web
from conftest import HOST, deadline

import utcp


class Recorder(asyncio.Protocol):
    """Records every callback, in order; echoes if asked to."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.calls: list[str] = []
        self.data = bytearray()
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[BaseException | None] = (
            asyncio.get_running_loop().create_future())
        self.eof = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.calls.append("connection_made")
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.calls or self.calls[-1] != "data_received":
            self.calls.append("data_received")
        self.data += data
        if self.echo:
            assert self.transport is not None
            self.transport.write(data)

    def eof_received(self) -> bool:
        self.calls.append("eof_received")
        self.eof.set()
        return False  # the transport closes: what was written is sent, then FIN

    def connection_lost(self, exc: BaseException | None) -> None:
        self.calls.append("connection_lost")
        if not self.lost.done():
            self.lost.set_result(exc)


async def test_a_plain_protocol_gets_asyncios_callbacks_in_order() -> None:
    servers: list[Recorder] = []

    def server_factory() -> Recorder:
        servers.append(Recorder(echo=True))
        return servers[-1]

    async with deadline(10):
        server = await utcp.create_server(server_factory, HOST, 0)
        async with server:
            transport, client = await utcp.create_connection(Recorder, HOST, server.port)
            assert isinstance(client, Recorder)
            assert isinstance(transport, utcp.ConnectionTransport)
            # As with the loop's method: connection_made has run when it returns.
            assert client.calls == ["connection_made"] and client.transport is transport
            assert transport.get_extra_info("peername")[1] == server.port
            assert transport.can_write_eof()

            transport.writelines([b"hello, ", b"protocol"])
            transport.write_eof()
            assert await client.lost is None
            assert bytes(client.data) == b"hello, protocol"
            assert client.calls == ["connection_made", "data_received", "eof_received",
                                    "connection_lost"]
            assert transport.is_closing()

            assert len(servers) == 1
            assert await servers[0].lost is None
            assert servers[0].calls == ["connection_made", "data_received", "eof_received",
                                        "connection_lost"]


async def test_a_server_makes_no_protocol_for_a_connection_it_refuses() -> None:
    made: list[Recorder] = []

    def factory() -> Recorder:
        made.append(Recorder())
        return made[-1]

    async with deadline(10):
        server = await utcp.create_server(factory, HOST, 0)
        port = server.port
        server.close()
        await server.wait_closed()
        with pytest.raises(ConnectionRefusedError):
            await utcp.create_connection(factory, HOST, port)
    assert made == []


class Collector(asyncio.BufferedProtocol):
    """A BufferedProtocol that hands out small buffers and hashes what fills them."""

    def __init__(self, size: int) -> None:
        self.buffer = bytearray(size)
        self.digest = hashlib.sha256()
        self.received = 0
        self.fills = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        pass

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buffer)

    def buffer_updated(self, nbytes: int) -> None:
        self.fills += 1
        self.received += nbytes
        self.digest.update(self.buffer[:nbytes])

    def eof_received(self) -> bool:
        self.done.set_result(None)
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("lost before EOF"))


async def test_a_buffered_protocol_is_filled_through_its_own_buffers() -> None:
    payload = os.urandom(300_000)
    collectors: list[Collector] = []

    def factory() -> Collector:
        collectors.append(Collector(1000))  # smaller than a segment: several fills each
        return collectors[-1]

    async with deadline(20):
        server = await utcp.create_server(factory, HOST, 0)
        async with server:
            _, writer = await utcp.open_connection(HOST, server.port)
            writer.write(payload)
            writer.write_eof()
            await writer.drain()
            assert len(collectors) == 1
            await collectors[0].done
            writer.close()
            await writer.wait_closed()
    assert collectors[0].received == len(payload)
    assert collectors[0].digest.hexdigest() == hashlib.sha256(payload).hexdigest()
    assert collectors[0].fills >= len(payload) // 1000


async def test_a_client_protocol_factory_that_raises_fails_the_call() -> None:
    class Broken(Exception):
        pass

    def factory() -> asyncio.Protocol:
        raise Broken("no protocol today")

    async with deadline(10):
        peer: list[Recorder] = []
        server = await utcp.create_server(lambda: peer.append(Recorder()) or peer[-1],
                                          HOST, 0)
        async with server:
            with pytest.raises(Broken, match="no protocol today"):
                await utcp.create_connection(factory, HOST, server.port)
            # The connection was reset, as asyncio closes the socket.
            while not peer:
                await asyncio.sleep(0.01)
            assert isinstance(await peer[0].lost, ConnectionResetError)


async def test_a_server_protocol_that_raises_resets_its_connection_only() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))

    class Fragile(Recorder):
        def data_received(self, data: bytes) -> None:
            if data == b"boom":
                raise ValueError("cannot take it")
            super().data_received(data)

    try:
        async with deadline(10):
            server = await utcp.create_server(lambda: Fragile(echo=True), HOST, 0)
            async with server:
                _, bad = await utcp.create_connection(Recorder, HOST, server.port)
                _, good = await utcp.create_connection(Recorder, HOST, server.port)
                assert isinstance(bad, Recorder) and isinstance(good, Recorder)
                assert bad.transport is not None and good.transport is not None
                bad.transport.write(b"boom")
                assert isinstance(await bad.lost, ConnectionResetError)
                good.transport.write(b"still here")
                while bytes(good.data) != b"still here":
                    await asyncio.sleep(0.01)
                good.transport.close()
                assert await good.lost is None
    finally:
        loop.set_exception_handler(None)
    assert len(reported) == 1
    assert isinstance(reported[0]["exception"], ValueError)
    assert "protocol callback failed" in reported[0]["message"]


async def test_write_buffer_limits_pause_and_resume_the_writer() -> None:
    class Writer(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.paused = 0
            self.resumed = asyncio.Event()

        def pause_writing(self) -> None:
            self.paused += 1

        def resume_writing(self) -> None:
            self.resumed.set()

    async with deadline(20):
        server = await utcp.create_server(Recorder, HOST, 0)
        async with server:
            transport, client = await utcp.create_connection(Writer, HOST, server.port)
            assert isinstance(client, Writer)
            assert transport.get_write_buffer_limits() == (16384, 65536)
            transport.set_write_buffer_limits(high=4096)
            assert transport.get_write_buffer_limits() == (1024, 4096)
            transport.write(b"x" * 500_000)  # beyond the peer's window: most stays here
            assert client.paused == 1
            assert transport.get_write_buffer_size() > 4096
            await client.resumed.wait()
            assert transport.get_write_buffer_size() <= 1024
            transport.close()
            assert await client.lost is None
    with pytest.raises(ValueError, match="must be >="):
        transport.set_write_buffer_limits(high=1, low=2)


# --------------------------------------------------------- third-party protocols


class HttpClient(asyncio.Protocol):
    """An HTTP/1.1 client on h11: one GET, the response's status and body."""

    def __init__(self, host: str, target: str) -> None:
        self.conn = h11.Connection(h11.CLIENT)
        self.request = h11.Request(method="GET", target=target,
                                   headers=[("Host", host), ("Connection", "close")])
        self.status = 0
        self.body = bytearray()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport.write(self.conn.send(self.request) + self.conn.send(h11.EndOfMessage()))

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self._events()

    def eof_received(self) -> bool:
        self.conn.receive_data(b"")
        self._events()
        return False

    def _events(self) -> None:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Response):
                self.status = event.status_code
            elif isinstance(event, h11.Data):
                self.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                if not self.done.done():
                    self.done.set_result(None)
                self.transport.close()
                return
            elif isinstance(event, h11.ConnectionClosed):
                return

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("closed before the response"))


async def test_aiohttp_server_serves_an_h11_client_over_utcp() -> None:
    blob = os.urandom(200_000)

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {request.match_info['name']}")

    async def data(request: web.Request) -> web.Response:
        return web.Response(body=blob, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/hello/{name}", hello)
    app.router.add_get("/data", data)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        async with deadline(20):
            # aiohttp's own request handler (an asyncio.Protocol), unchanged.
            server = await utcp.create_server(runner.server, HOST, 0)
            async with server:
                for target, want in (("/hello/utcp", b"hello utcp"), ("/data", blob),
                                     ("/hello/again", b"hello again")):
                    _, client = await utcp.create_connection(
                        lambda t=target: HttpClient(HOST, t), HOST, server.port)
                    assert isinstance(client, HttpClient)
                    await client.done
                    assert client.status == 200
                    assert hashlib.sha256(client.body).digest() == hashlib.sha256(want).digest()
                missing = HttpClient(HOST, "/nowhere")
                await utcp.create_connection(lambda: missing, HOST, server.port)
                await missing.done
                assert missing.status == 404
    finally:
        await runner.cleanup()


async def test_a_port_in_use_is_named_in_the_error() -> None:
    import errno
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((HOST, 0))
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=rf"error while attempting to bind on address "
                                          rf"\('127.0.0.1', {port}\): address already in use") \
                as caught:
            await utcp.create_server(Recorder, HOST, port)
        assert caught.value.errno == errno.EADDRINUSE


def test_rto_bounds_name_the_values_that_clash() -> None:
    with pytest.raises(ValueError, match=r"initial_rto \(1.0\) must be between min_rto \(2.0\) "
                                         r"and max_rto \(120.0\): when changing min_rto"):
        utcp.Options(min_rto=2.0)
    with pytest.raises(ValueError, match=r"min_rto \(5.0\) must be at most max_rto \(3.0\)"):
        utcp.Options(min_rto=5.0, max_rto=3.0, initial_rto=4.0)
    assert utcp.Options(min_rto=2.0, initial_rto=2.0).min_rto == 2.0
