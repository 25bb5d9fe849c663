"""asyncio's protocol-based echo example, on utcp: ``utcp.create_server`` and
``utcp.create_connection`` instead of the loop's methods; the protocols are unchanged.

    python examples/echo_protocol.py
"""

import asyncio

import utcp


class EchoServerProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        print(f"server: connection from {transport.get_extra_info('peername')}")
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        print(f"server: received {data.decode()!r}")
        self.transport.write(data)
        self.transport.close()


class EchoClientProtocol(asyncio.Protocol):
    def __init__(self, message: str, on_con_lost: asyncio.Future[bool]) -> None:
        self.message = message
        self.on_con_lost = on_con_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.message.encode())  # type: ignore[attr-defined]
        print(f"client: sent {self.message!r}")

    def data_received(self, data: bytes) -> None:
        print(f"client: received {data.decode()!r}")

    def connection_lost(self, exc: Exception | None) -> None:
        print("client: the server closed the connection")
        self.on_con_lost.set_result(True)


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await utcp.create_server(EchoServerProtocol, "127.0.0.1", 0)
    async with server:
        on_con_lost = loop.create_future()
        transport, _ = await utcp.create_connection(
            lambda: EchoClientProtocol("Hello World!", on_con_lost), "127.0.0.1", server.port)
        try:
            await on_con_lost
        finally:
            transport.close()


asyncio.run(main())
