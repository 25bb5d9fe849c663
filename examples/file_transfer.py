"""Send a file over utcp, with a progress bar and a SHA-256 check at the end.

    python examples/file_transfer.py receive PORT OUTFILE   # on one host
    python examples/file_transfer.py send HOST PORT FILE    # on the other

The sender sends a header (size and name), the file, then its SHA-256; the
receiver writes the file, checks the digest and answers OK or BAD before both
close. The progress bar shows on a terminal only. With no arguments it sends
a few megabytes of random bytes to itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import sys
import tempfile
import time

import utcp

CHUNK = 256 * 1024
HEADER = struct.Struct("!QH")  # file size, name length


class Progress:
    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self.start = time.monotonic()
        self.shown = 0.0
        self.tty = sys.stderr.isatty()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.tty or (now - self.shown < 0.1 and done < self.total):
            return
        self.shown = now
        frac = done / self.total if self.total else 1.0
        rate = done / max(now - self.start, 1e-6) / 1e6
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {frac:6.1%} {rate:7.1f} MB/s")
        if done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


async def send(host: str, port: int, path: str) -> bool:
    size = os.path.getsize(path)
    name = os.path.basename(path).encode()
    reader, writer = await utcp.open_connection(host, port)
    writer.write(HEADER.pack(size, len(name)) + name)
    digest = hashlib.sha256()
    progress = Progress(size, f"send {os.path.basename(path)}")
    sent = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            writer.write(chunk)
            digest.update(chunk)
            sent += len(chunk)
            await writer.drain()  # back-pressure: memory stays bounded
            progress.update(sent)
    progress.update(size)
    writer.write(digest.digest())
    writer.write_eof()
    verdict = await reader.read()
    writer.close()
    await writer.wait_closed()
    print(f"sent {sent} bytes, sha256 {digest.hexdigest()}: receiver says "
          f"{verdict.decode().strip()}")
    return verdict == b"OK\n"


async def receive_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      out: str) -> bool:
    size, name_len = HEADER.unpack(await reader.readexactly(HEADER.size))
    name = (await reader.readexactly(name_len)).decode()
    digest = hashlib.sha256()
    progress = Progress(size, f"receive {name}")
    left = size
    with open(out, "wb") as f:
        while left:
            chunk = await reader.read(min(CHUNK, left))
            if not chunk:
                raise asyncio.IncompleteReadError(b"", left)
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
            progress.update(size - left)
    progress.update(size)
    ok = await reader.readexactly(32) == digest.digest()
    writer.write(b"OK\n" if ok else b"BAD\n")
    writer.close()
    await writer.wait_closed()
    print(f"received {name!r}: {size} bytes into {out}, sha256 {digest.hexdigest()} "
          f"{'matches' if ok else 'DOES NOT MATCH'}")
    return ok


async def receive(port: int, out: str) -> bool:
    done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            done.set_result(await receive_one(reader, writer, out))
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError) as exc:
            done.set_exception(exc)

    server = await utcp.start_server(handle, "0.0.0.0", port)
    print(f"waiting for a file on UDP port {server.port}", flush=True)
    async with server:
        return await done


async def demo() -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "random.bin"), os.path.join(tmp, "copy.bin")
        with open(src, "wb") as f:
            f.write(os.urandom(5_000_000))
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            done.set_result(await receive_one(reader, writer, dst))

        server = await utcp.start_server(handle, "127.0.0.1", 0)
        async with server:
            sent_ok = await send("127.0.0.1", server.port, src)
            return sent_ok and await done


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        ok = asyncio.run(demo())
    elif args[0] == "send" and len(args) == 4:
        ok = asyncio.run(send(args[1], int(args[2]), args[3]))
    elif args[0] == "receive" and len(args) == 3:
        ok = asyncio.run(receive(int(args[1]), args[2]))
    else:
        sys.exit(__doc__)
    sys.exit(0 if ok else 1)
