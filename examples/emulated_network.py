"""Your asyncio code over a bad network, on virtual time: no sockets, no waiting.

A client uploads 2 MB to a server across a 10 Mbit/s bottleneck with a
25-packet queue, 15 ms each way, losing 2 % of datagrams in bursts. The code
is ordinary utcp streams code; only ``VirtualNetwork.run`` and ``Host.run`` say
where it runs. It takes seconds of virtual time and a fraction of one of real
time, and with the same seed every run is the same to the microsecond.

    python examples/emulated_network.py
"""

import asyncio
import hashlib
import time

import utcp
from utcp.emulator import Impairments, VirtualNetwork


async def checksum(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read everything, answer with its sha256."""
    writer.write(hashlib.sha256(await reader.read()).digest())
    await writer.drain()
    writer.close()


async def upload(data: bytes) -> tuple[float, bytes]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader, writer = await utcp.open_connection("server", 7000)
    writer.write(data)
    writer.write_eof()
    digest = await reader.read()
    writer.close()
    await writer.wait_closed()
    return loop.time() - started, digest


def main() -> None:
    net = VirtualNetwork(seed=7)
    server = net.add_host("10.0.0.1", "server")
    client = net.add_host("10.0.0.2", "client")
    net.set_path("10.0.0.1", "10.0.0.2",
                 Impairments(delay=0.015, rate=10e6, queue=25, loss=0.02, burst=3))
    data = bytes(range(256)) * 8192  # 2 MiB

    async def scenario() -> tuple[float, bytes]:
        await server.run(utcp.start_server(checksum, "0.0.0.0", 7000))
        return await client.run(upload(data))

    wall = time.perf_counter()
    took, digest = net.run(scenario())
    wall = time.perf_counter() - wall
    up = net.path("10.0.0.2", "10.0.0.1").counters
    print(f"uploaded {len(data)} bytes in {took:.2f} s of virtual time "
          f"({len(data) * 8 / took / 1e6:.1f} Mbit/s), {wall:.2f} s of real time")
    print(f"the path lost {up['lost']} and dropped {up['queue-full']} of {up['sent']} "
          f"datagrams on the way up")
    print("sha256 matches" if digest == hashlib.sha256(data).digest() else "sha256 DIFFERS")


if __name__ == "__main__":
    main()
