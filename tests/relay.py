"""An impairing UDP relay: the bad network between a utcp client and server.

The client connects to the relay's port; the relay forwards each datagram to the
server and the server's answers back to the client, delaying, dropping,
reordering, duplicating and corrupting them with a seeded :class:`random.Random`
per direction, so a run repeats its impairments.

A utcp client uses its destination UDP port as the TCP port too, so the relay
rewrites the segment's TCP port (destination on the way up, source on the way
down) and fixes the checksum, as a NAT would. Corruption happens after that, so a
corrupted datagram stays corrupted.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

from utcp.core.wire import checksum

Address = tuple[Any, ...]


@dataclass(frozen=True)
class Impairment:
    """What one direction of the link does to each datagram (probabilities in 0..1)."""

    delay: float = 0.0  # one-way delay, seconds
    jitter: float = 0.0  # plus a uniform 0..jitter (reorders datagrams close together)
    loss: float = 0.0
    duplicate: float = 0.0  # send a second copy (with its own delay)
    reorder: float = 0.0  # hold a datagram back by reorder_delay more
    reorder_delay: float = 0.005
    corrupt: float = 0.0  # change one byte of a delivered copy


@dataclass
class LinkStats:
    """What one direction did."""

    received: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0  # corrupted copies sent on
    delivered: int = 0  # copies sent on, corrupted ones included


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Any) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # a port unreachable from either side is the link's business, not ours


def _set_port(data: bytes, offset: int, old: int, new: int) -> bytes:
    """``data`` with the 16-bit port at ``offset`` changed from ``old`` to ``new``."""
    if len(data) < 20 or int.from_bytes(data[offset:offset + 2], "big") != old:
        return data
    seg = bytearray(data)
    seg[offset:offset + 2] = new.to_bytes(2, "big")
    seg[16:18] = b"\0\0"
    seg[16:18] = checksum(bytes(seg)).to_bytes(2, "big")
    return bytes(seg)


class Relay:
    """Client <-> relay (front socket | back socket) <-> server.

    The first address that sends to the front socket is the client (a utcp client's
    connections all share one socket, so one client address carries them all).
    """

    def __init__(self, server: Address, *, upstream: Impairment = Impairment(),
                 downstream: Impairment = Impairment(), seed: int = 0) -> None:
        self.server = server
        self.upstream, self.downstream = upstream, downstream
        self.up, self.down = LinkStats(), LinkStats()
        self._rng_up = random.Random(f"{seed}/up")
        self._rng_down = random.Random(f"{seed}/down")
        self._front: _Socket | None = None
        self._back: _Socket | None = None
        self.client: Address | None = None
        self.strangers = 0  # datagrams from neither the client nor the server
        self._pending: set[asyncio.TimerHandle] = set()

    async def start(self, host: str = "127.0.0.1") -> Relay:
        loop = asyncio.get_running_loop()
        _, self._front = await loop.create_datagram_endpoint(
            lambda: _Socket(self._from_client), local_addr=(host, 0))
        _, self._back = await loop.create_datagram_endpoint(
            lambda: _Socket(self._from_server), local_addr=(host, 0))
        return self

    @property
    def port(self) -> int:
        """The port clients connect to."""
        assert self._front is not None and self._front.transport is not None
        return self._front.transport.get_extra_info("sockname")[1]

    @property
    def idle(self) -> bool:
        """No datagram is waiting out its delay."""
        return not self._pending

    def close(self) -> None:
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        for sock in (self._front, self._back):
            if sock is not None and sock.transport is not None:
                sock.transport.close()

    async def __aenter__(self) -> Relay:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- forwarding

    def _from_client(self, data: bytes, addr: Address) -> None:
        if self.client is None:
            self.client = addr
        elif addr != self.client:
            self.strangers += 1
            return
        data = _set_port(data, 2, self.port, self.server[1])
        self._impair(data, self._back, self.server, self.upstream, self.up, self._rng_up)

    def _from_server(self, data: bytes, addr: Address) -> None:
        if addr[:2] != self.server[:2] or self.client is None:
            self.strangers += 1
            return
        data = _set_port(data, 0, self.server[1], self.port)
        self._impair(data, self._front, self.client, self.downstream, self.down,
                     self._rng_down)

    def _impair(self, data: bytes, out: _Socket | None, to: Address, imp: Impairment,
                stats: LinkStats, rng: random.Random) -> None:
        stats.received += 1
        if rng.random() < imp.loss:
            stats.dropped += 1
            return
        copies = 1
        if rng.random() < imp.duplicate:
            stats.duplicated += 1
            copies = 2
        loop = asyncio.get_running_loop()
        for _ in range(copies):
            copy = data
            if data and rng.random() < imp.corrupt:
                stats.corrupted += 1
                buf = bytearray(data)
                buf[rng.randrange(len(buf))] ^= rng.randrange(1, 256)
                copy = bytes(buf)
            delay = imp.delay + rng.uniform(0, imp.jitter)
            if rng.random() < imp.reorder:
                stats.reordered += 1
                delay += imp.reorder_delay
            stats.delivered += 1
            box: list[asyncio.TimerHandle] = []
            box.append(loop.call_later(delay, self._send, out, copy, to, box))
            self._pending.add(box[0])

    def _send(self, out: _Socket | None, data: bytes, to: Address,
              box: list[asyncio.TimerHandle]) -> None:
        self._pending.discard(box[0])
        if out is not None and out.transport is not None and not out.transport.is_closing():
            out.transport.sendto(data, to)
