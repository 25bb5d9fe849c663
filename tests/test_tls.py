"""TLS over utcp, as asyncio does it: ``ssl=`` and ``server_hostname=`` on the four
calls, and ``StreamWriter.start_tls()``, through the standard library's ``ssl``.

Certificates come from a CA made for each test run (trustme).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl

import pytest
import trustme
from conftest import HOST, deadline

import utcp


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", HOST).configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(ctx)
    return ctx


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def test_streams_carry_tls_and_verify_the_server(server_ctx: ssl.SSLContext,
                                                       client_ctx: ssl.SSLContext) -> None:
    payload = os.urandom(500_000)
    async with deadline(20):
        server = await utcp.start_server(echo, HOST, 0, ssl=server_ctx)
        async with server:
            reader, writer = await utcp.open_connection(HOST, server.port, ssl=client_ctx)
            tls = writer.get_extra_info("ssl_object")
            assert isinstance(tls, ssl.SSLObject)
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            assert writer.get_extra_info("peercert")["subjectAltName"] == (
                ("DNS", "localhost"), ("IP Address", HOST))
            assert writer.get_extra_info("peername")[1] == server.port
            writer.write(payload)
            writer.write_eof() if writer.can_write_eof() else None
            got = await reader.readexactly(len(payload))
            assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
            writer.close()
            await writer.wait_closed()
        # What crossed the wire was not the plaintext: the server's endpoint
        # counted more bytes in than were written (TLS records and handshake).
        stats = server.statistics()
        assert stats["connection_totals"]["bytes_in"] > len(payload)


async def test_server_hostname_is_the_name_checked(server_ctx: ssl.SSLContext,
                                                   client_ctx: ssl.SSLContext) -> None:
    async with deadline(20):
        server = await utcp.start_server(echo, HOST, 0, ssl=server_ctx)
        async with server:
            # The certificate names "localhost": connecting by address, that name
            # passes, and another fails verification.
            reader, writer = await utcp.open_connection(HOST, server.port, ssl=client_ctx,
                                                        server_hostname="localhost")
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            writer.close()
            await writer.wait_closed()
            with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
                await utcp.open_connection(HOST, server.port, ssl=client_ctx,
                                           server_hostname="example.org")


async def test_an_untrusted_certificate_fails_and_the_server_goes_on(
        server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> None:
    stranger = ssl.create_default_context()
    trustme.CA().configure_trust(stranger)  # trusts some other CA only
    handled: list[str] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handled.append("made")
        await echo(reader, writer)

    async with deadline(20):
        server = await utcp.start_server(handler, HOST, 0, ssl=server_ctx)
        async with server:
            with pytest.raises(ssl.SSLCertVerificationError,
                               match="certificate verify failed"):
                await utcp.open_connection(HOST, server.port, ssl=stranger)
            # A failed handshake never reaches the application, and leaves the
            # server serving.
            reader, writer = await utcp.open_connection(HOST, server.port, ssl=client_ctx)
            writer.write(b"after")
            assert await reader.readexactly(5) == b"after"
            writer.close()
            await writer.wait_closed()
            assert handled == ["made"]
            # Neither connection is left behind half-done on the server.
            while set(server.statistics()["connections"]) - {"TIME-WAIT"}:
                await asyncio.sleep(0.01)
                await asyncio.sleep(0.01)


async def test_a_plaintext_client_never_reaches_a_tls_application(
        server_ctx: ssl.SSLContext) -> None:
    handled: list[str] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handled.append("made")
        writer.close()

    async with deadline(20):
        server = await utcp.start_server(handler, HOST, 0, ssl=server_ctx)
        async with server:
            reader, writer = await utcp.open_connection(HOST, server.port)
            writer.write(b"GET / HTTP/1.0\r\n\r\n")
            # The server's TLS ends the connection; whatever comes back is no answer.
            try:
                rest = await reader.read()
            except ConnectionResetError:
                rest = b""
            assert b"HTTP" not in rest
            writer.close()
    assert handled == []


async def test_protocols_carry_tls(server_ctx: ssl.SSLContext,
                                   client_ctx: ssl.SSLContext) -> None:
    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]
            assert transport.get_extra_info("ssl_object") is not None

        def data_received(self, data: bytes) -> None:
            self.transport.write(data.upper())

    class Client(asyncio.Protocol):
        def __init__(self) -> None:
            self.got = bytearray()
            self.done = asyncio.get_running_loop().create_future()

        def data_received(self, data: bytes) -> None:
            self.got += data
            if self.got.endswith(b"!") and not self.done.done():
                self.done.set_result(None)

    async with deadline(20):
        server = await utcp.create_server(Echo, HOST, 0, ssl=server_ctx)
        async with server:
            transport, client = await utcp.create_connection(
                Client, HOST, server.port, ssl=client_ctx, server_hostname="localhost")
            assert isinstance(client, Client)
            assert not isinstance(transport, utcp.ConnectionTransport)  # TLS's own
            transport.write(b"secret hello!")
            await client.done
            assert bytes(client.got) == b"SECRET HELLO!"
            transport.close()


async def test_start_tls_upgrades_a_plaintext_stream(server_ctx: ssl.SSLContext,
                                                     client_ctx: ssl.SSLContext) -> None:
    if not isinstance(asyncio.get_running_loop(), asyncio.BaseEventLoop):
        pytest.skip("StreamWriter.start_tls() needs asyncio's own loop (uvloop's "
                    "start_tls takes only its own transports)")

    async def starttls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"OK\n")
        await writer.drain()
        await writer.start_tls(server_ctx)
        await echo(reader, writer)

    async with deadline(20):
        server = await utcp.start_server(starttls, HOST, 0)
        async with server:
            reader, writer = await utcp.open_connection(HOST, server.port)
            assert writer.get_extra_info("ssl_object") is None
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"OK\n"
            await writer.start_tls(client_ctx, server_hostname="localhost")
            assert writer.get_extra_info("ssl_object") is not None
            writer.write(b"now private")
            assert await reader.readexactly(11) == b"now private"
            writer.close()
            await writer.wait_closed()
