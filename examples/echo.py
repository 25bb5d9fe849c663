"""asyncio's echo example, on utcp: the only change is ``utcp.`` instead of ``asyncio.``.

    python examples/echo.py
"""

import asyncio

import utcp


async def handle_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = await reader.read(100)
    addr = writer.get_extra_info("peername")
    print(f"server: received {data.decode()!r} from {addr}")
    writer.write(data)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def main() -> None:
    server = await utcp.start_server(handle_echo, "127.0.0.1", 0)
    async with server:
        reader, writer = await utcp.open_connection("127.0.0.1", server.port)
        writer.write(b"Hello World!")
        await writer.drain()
        data = await reader.read(100)
        print(f"client: received {data.decode()!r}")
        writer.close()
        await writer.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
