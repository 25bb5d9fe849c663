"""Draw one connection's life as a ladder diagram, with a short TIME-WAIT.

    python examples/trace_handshake.py
"""

import asyncio

import utcp


async def main() -> None:
    ladder = utcp.Ladder("client", "server")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(4))
        await writer.drain()
        await reader.read()  # wait for the client's FIN
        writer.close()
        await writer.wait_closed()

    server = await utcp.start_server(handle, "127.0.0.1", 0, msl=0.1,
                                     observer=ladder.observer("server"))
    reader, writer = await utcp.open_connection("127.0.0.1", server.port, msl=0.1,
                                                observer=ladder.observer("client"))
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.5)  # let the close finish and TIME-WAIT (0.2 s) expire
    server.close()
    await server.wait_closed()
    print(ladder.render())


if __name__ == "__main__":
    asyncio.run(main())
