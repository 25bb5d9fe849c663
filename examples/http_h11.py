"""HTTP/1.1 over utcp, with h11 doing HTTP on both sides (pip install h11).

    python examples/http_h11.py server [PORT]      # serves this directory's files
    python examples/http_h11.py get HOST PORT PATH # prints the response body

With no arguments it runs a server and fetches one of its pages in this one
process.
"""

from __future__ import annotations

import asyncio
import mimetypes
import pathlib
import sys

import h11

import utcp

ROOT = pathlib.Path(__file__).resolve().parent


async def send(writer: asyncio.StreamWriter, conn: h11.Connection, *events: object) -> None:
    for event in events:
        data = conn.send(event)  # type: ignore[arg-type]
        if data:
            writer.write(data)
    await writer.drain()


async def next_event(reader: asyncio.StreamReader, conn: h11.Connection) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await reader.read(65536))


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One request per connection: the file named by the path, or 404."""
    conn = h11.Connection(h11.SERVER)
    try:
        request = await next_event(reader, conn)
        if not isinstance(request, h11.Request):
            return
        while not isinstance(await next_event(reader, conn), h11.EndOfMessage):
            pass
        path = (ROOT / request.target.decode().lstrip("/")).resolve()
        if path.is_file() and ROOT in path.parents:
            body = path.read_bytes()
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            status, headers = 200, [("Content-Type", kind)]
        else:
            body, status, headers = b"not found\n", 404, [("Content-Type", "text/plain")]
        headers += [("Content-Length", str(len(body))), ("Connection", "close")]
        await send(writer, conn, h11.Response(status_code=status, headers=headers),
                   h11.Data(data=body), h11.EndOfMessage())
    except (h11.RemoteProtocolError, ConnectionError):
        pass
    finally:
        writer.close()


async def get(host: str, port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await utcp.open_connection(host, port)
    conn = h11.Connection(h11.CLIENT)
    await send(writer, conn,
               h11.Request(method="GET", target=path,
                           headers=[("Host", host), ("Connection", "close")]),
               h11.EndOfMessage())
    response = await next_event(reader, conn)
    assert isinstance(response, h11.Response)
    body = bytearray()
    while isinstance(event := await next_event(reader, conn), h11.Data):
        body += event.data
    writer.close()
    await writer.wait_closed()
    return response.status_code, bytes(body)


async def serve(port: int) -> None:
    server = await utcp.start_server(handle, "0.0.0.0", port)
    print(f"HTTP over utcp on UDP port {server.port}, serving {ROOT}", flush=True)
    async with server:
        await server.serve_forever()


async def demo() -> None:
    server = await utcp.start_server(handle, "127.0.0.1", 0)
    async with server:
        status, body = await get("127.0.0.1", server.port, "/http_h11.py")
        print(f"GET /http_h11.py: {status}, {len(body)} bytes, "
              f"first line {body.splitlines()[0].decode()!r}")
        status, body = await get("127.0.0.1", server.port, "/nothing-here")
        print(f"GET /nothing-here: {status} {body.decode().strip()}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        asyncio.run(demo())
    elif args[0] == "server":
        asyncio.run(serve(int(args[1]) if len(args) > 1 else 8080))
    elif args[0] == "get" and len(args) == 4:
        code, data = asyncio.run(get(args[1], int(args[2]), args[3]))
        sys.stdout.buffer.write(data)
        sys.exit(0 if code == 200 else 1)
    else:
        sys.exit(__doc__)
