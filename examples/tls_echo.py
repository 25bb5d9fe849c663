"""TLS over utcp, as asyncio does it: ``ssl=`` on both ends (pip install trustme,
which makes the example's throwaway certificate authority).

    python examples/tls_echo.py

A server with a certificate for "localhost", a client that checks it, and a
client that trusts another authority and is turned away.
"""

from __future__ import annotations

import asyncio
import ssl

import trustme

import utcp


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def main() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    server = await utcp.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
    async with server:
        reader, writer = await utcp.open_connection("127.0.0.1", server.port, ssl=client_ctx,
                                                    server_hostname="localhost")
        tls = writer.get_extra_info("ssl_object")
        print(f"client: {tls.version()}, cipher {tls.cipher()[0]}, server certificate for "
              f"{writer.get_extra_info('peercert')['subjectAltName'][0][1]!r}")
        writer.write(b"secret message")  # (TLS has no half-close: no write_eof here)
        print(f"client: echoed {await reader.readexactly(14)!r}")
        writer.close()
        await writer.wait_closed()

        stranger = ssl.create_default_context()
        trustme.CA().configure_trust(stranger)  # trusts some other authority only
        try:
            await utcp.open_connection("127.0.0.1", server.port, ssl=stranger,
                                       server_hostname="localhost")
        except ssl.SSLCertVerificationError as exc:
            print(f"untrusting client: {type(exc).__name__}: {exc.verify_message}")


asyncio.run(main())
