"""Move a megabyte and print what the connection and the endpoint counted.

    python examples/stats.py
"""

import asyncio
import os
from pprint import pprint

import utcp


async def main() -> None:
    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        total = len(await reader.read())
        writer.write(str(total).encode())
        writer.close()
        await writer.wait_closed()

    server = await utcp.start_server(sink, "127.0.0.1", 0)
    reader, writer = await utcp.open_connection("127.0.0.1", server.port)
    writer.write(os.urandom(1_000_000))
    await writer.drain()
    writer.write_eof()
    print("server counted", (await reader.read()).decode(), "bytes")
    print("connection:")
    pprint(writer.get_extra_info("utcp"))
    writer.close()
    await writer.wait_closed()
    server.close()
    print("server endpoint:")
    pprint(server.statistics())


if __name__ == "__main__":
    asyncio.run(main())
