"""asyncio's echo example, on utcp: the only change is ``utcp.`` instead of ``asyncio.``.

    python examples/echo.py                        # server and client in one process
    python examples/echo.py server [PORT]          # or in two: the server here,
    python examples/echo.py client HOST PORT TEXT  # and the client there
"""

import asyncio
import sys

import utcp


async def handle_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = await reader.read(100)
    addr = writer.get_extra_info("peername")
    print(f"server: received {data.decode()!r} from {addr}")
    writer.write(data)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def echo_client(host: str, port: int, message: str) -> None:
    reader, writer = await utcp.open_connection(host, port)
    writer.write(message.encode())
    await writer.drain()
    data = await reader.read(100)
    print(f"client: received {data.decode()!r}")
    writer.close()
    await writer.wait_closed()


async def serve(port: int) -> None:
    server = await utcp.start_server(handle_echo, "0.0.0.0", port)
    print(f"server: echo on UDP port {server.port}", flush=True)
    async with server:
        await server.serve_forever()


async def main() -> None:
    server = await utcp.start_server(handle_echo, "127.0.0.1", 0)
    async with server:
        await echo_client("127.0.0.1", server.port, "Hello World!")


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        asyncio.run(main())
    elif args[0] == "server":
        asyncio.run(serve(int(args[1]) if len(args) > 1 else 8888))
    elif args[0] == "client" and len(args) == 4:
        asyncio.run(echo_client(args[1], int(args[2]), args[3]))
    else:
        sys.exit(__doc__)
