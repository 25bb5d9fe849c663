"""A chat server and its clients over utcp: every line a client sends goes to all.

    python examples/chat.py server [PORT]          # one terminal
    python examples/chat.py client HOST PORT NAME  # a terminal per person

With no arguments it runs a server and two clients in this one process and
prints what each client saw.
"""

from __future__ import annotations

import asyncio
import sys

import utcp


class ChatServer:
    def __init__(self) -> None:
        self.members: dict[asyncio.StreamWriter, str] = {}

    def broadcast(self, line: str) -> None:
        for writer in self.members:
            writer.write(line.encode() + b"\n")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        name = (await reader.readline()).decode().strip() or "anonymous"
        self.members[writer] = name
        self.broadcast(f"* {name} joined")
        try:
            while line := await reader.readline():
                self.broadcast(f"<{name}> {line.decode().rstrip()}")
        except (ConnectionError, TimeoutError):
            pass  # a member vanished: the others go on
        finally:
            del self.members[writer]
            self.broadcast(f"* {name} left")
            writer.close()


async def serve(port: int) -> None:
    chat = ChatServer()
    server = await utcp.start_server(chat.handle, "0.0.0.0", port)
    print(f"chat server on UDP port {server.port}", flush=True)
    async with server:
        await server.serve_forever()


async def client(host: str, port: int, name: str) -> None:
    reader, writer = await utcp.open_connection(host, port)
    writer.write(name.encode() + b"\n")
    loop = asyncio.get_running_loop()

    async def show() -> None:
        while line := await reader.readline():
            print(line.decode(), end="", flush=True)

    showing = asyncio.ensure_future(show())
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        writer.write(line.encode())
    writer.write_eof()
    await showing
    writer.close()
    await writer.wait_closed()


async def demo() -> None:
    chat = ChatServer()
    server = await utcp.start_server(chat.handle, "127.0.0.1", 0)
    async with server:
        async def member(name: str, lines: list[str]) -> list[str]:
            reader, writer = await utcp.open_connection("127.0.0.1", server.port)
            writer.write(name.encode() + b"\n")
            seen = [(await reader.readline()).decode().rstrip()]  # our own "joined"
            for text in lines:
                await asyncio.sleep(0.05)
                writer.write(text.encode() + b"\n")
            await asyncio.sleep(0.2)
            writer.write_eof()
            while line := await reader.readline():
                seen.append(line.decode().rstrip())
            writer.close()
            await writer.wait_closed()
            return seen

        ada, bob = await asyncio.gather(member("ada", ["hello, bob"]),
                                        member("bob", ["hi ada!"]))
    for name, seen in (("ada", ada), ("bob", bob)):
        print(f"{name} saw:")
        for line in seen:
            print(f"  {line}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        asyncio.run(demo())
    elif args[0] == "server":
        asyncio.run(serve(int(args[1]) if len(args) > 1 else 7070))
    elif args[0] == "client" and len(args) == 4:
        asyncio.run(client(args[1], int(args[2]), args[3]))
    else:
        sys.exit(__doc__)
