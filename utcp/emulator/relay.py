"""A UDP relay that applies :class:`Impairments` to real traffic: ``utcp impair``.

Clients send to the relay's address instead of the target's. As a NAT does, the
relay gives each client address its own upstream socket toward the target, so
the target sees one source port per client and its replies go back to the
right client; a mapping idle for ``idle_timeout`` (nothing from its client) is
dropped and its socket closed, and the client's next datagram gets a new one,
as after a NAT rebinding. At most ``max_clients`` mappings are held: while the
table is full, a datagram from a new client is dropped and counted
(``table-full``), so a flood of spoofed sources costs a bounded number of
sockets.

Each direction crosses one :class:`ImpairedPath` shared by all clients, seeded
from ``seed`` and the direction, and each copy it lets through is sent when the
path says it arrives (``loop.call_at``), in that order.

A utcp client uses the UDP port it sends to as its TCP destination port. When the
relay listens on another port than the target's, it rewrites that TCP port in
each segment (the destination on the way up, the source on the way down) and
updates the checksum to match, before the path can corrupt the datagram. The
update is incremental (RFC 1624), so a segment that arrived corrupted stays so.
Relaying another protocol than utcp, turn this off (``rewrite_ports=False``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

from .impairments import ImpairedPath, Impairments

Address = tuple[Any, ...]

#: What an :class:`ImpairedPath` counts, in the order a summary shows them.
PATH_COUNTERS = ("sent", "delivered", "lost", "queue-full", "too-big", "blackout",
                 "duplicated", "corrupted", "reordered")
#: What the relay counts besides: clients seen (mappings made), mappings expired,
#: datagrams to an upstream socket from anyone but the target, upstream sockets
#: that could not be opened (their client's datagrams are dropped).
RELAY_COUNTERS = ("clients", "expired", "rebound", "strangers", "socket-errors", "table-full")
#: Datagrams a new mapping holds while its socket opens; more are dropped.
_BACKLOG = 256


def _ones_add(a: int, b: int) -> int:
    s = a + b
    return (s & 0xFFFF) + (s >> 16)


def rewrite_port(data: bytes, offset: int, old: int, new: int) -> bytes:
    """``data`` with the TCP port at ``offset`` (0: source, 2: destination) changed
    from ``old`` to ``new``, and the checksum updated as RFC 1624 does it
    (HC' = ~(~HC + ~m + m')): a valid segment stays valid, a corrupt one corrupt.
    Anything else (too short for a TCP header, another port there) is returned as is."""
    if len(data) < 20 or int.from_bytes(data[offset:offset + 2], "big") != old:
        return data
    hc = int.from_bytes(data[16:18], "big")
    hc = ~_ones_add(_ones_add(~hc & 0xFFFF, ~old & 0xFFFF), new) & 0xFFFF
    seg = bytearray(data)
    seg[offset:offset + 2] = new.to_bytes(2, "big")
    seg[16:18] = hc.to_bytes(2, "big")
    return bytes(seg)


class _Direction:
    """One direction: its path, and the copies waiting to arrive, sent in order of
    arrival (ties in the order they were sent) from one timer."""

    def __init__(self, path: ImpairedPath) -> None:
        self.path = path
        self._loop: asyncio.AbstractEventLoop | None = None
        self._epoch = 0.0
        self._waiting: list[tuple[float, int, bytes, Callable[[bytes], None]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def start(self, loop: asyncio.AbstractEventLoop, epoch: float) -> None:
        self._loop, self._epoch = loop, epoch

    @property
    def idle(self) -> bool:
        return not self._waiting

    def forward(self, data: bytes, deliver: Callable[[bytes], None]) -> None:
        """``data`` enters the path now; ``deliver`` gets each copy when it arrives.
        Path time starts at the relay's start, so that blackouts start with it."""
        assert self._loop is not None
        now = self._loop.time()
        for at, copy in self.path.send(data, now - self._epoch):
            when = self._epoch + at
            if when <= now and not self._waiting:
                deliver(copy)  # a clean path: no need to wait for the next loop turn
            else:
                heapq.heappush(self._waiting, (when, next(self._order), copy, deliver))
        self._arm()

    def _arm(self) -> None:
        if not self._waiting:
            return
        first = self._waiting[0][0]
        if self._timer is not None:
            if self._timer_at <= first:
                return
            self._timer.cancel()
        assert self._loop is not None
        self._timer, self._timer_at = self._loop.call_at(first, self._due), first

    def _due(self) -> None:
        assert self._loop is not None
        # The loop runs a timer a clock resolution early: what it was set for is due.
        now = max(self._loop.time(), self._timer_at)
        self._timer = None
        while self._waiting and self._waiting[0][0] <= now:
            _, _, copy, deliver = heapq.heappop(self._waiting)
            deliver(copy)
        self._arm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting.clear()


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.relay._from_client(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error about a client is the path's business


class _Mapping(asyncio.DatagramProtocol):
    """One client's upstream socket, as a NAT mapping."""

    def __init__(self, relay: Relay, client: Address, now: float) -> None:
        self.relay = relay
        self.client = client
        self.last_out = now  # when the client last sent: what keeps the mapping
        self.transport: asyncio.DatagramTransport | None = None
        self.backlog: list[bytes] | None = []  # while the socket opens
        self.closed = False
        self.expiry: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.closed:
            transport.close()
            return
        backlog, self.backlog = self.backlog or [], None
        for data in backlog:
            self.send(data)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.relay._from_target(self, data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # the target's port unreachable: the client finds out as it would anyway

    def send(self, data: bytes) -> None:
        """Send ``data`` to the target, or hold it while the socket opens."""
        if self.closed:
            return
        if self.transport is None:
            if self.backlog is not None and len(self.backlog) < _BACKLOG:
                self.backlog.append(data)
        elif not self.transport.is_closing():
            self.transport.sendto(data, self.relay.target)

    @property
    def port(self) -> int | None:
        if self.transport is None:
            return None
        return self.transport.get_extra_info("sockname")[1]

    def close(self) -> None:
        self.closed = True
        self.backlog = None
        if self.expiry is not None:
            self.expiry.cancel()
        if self.transport is not None:
            self.transport.close()


class Relay:
    """Relays UDP between clients and ``target`` through impaired paths.

    ``up`` impairs what clients send to the target, ``down`` what the target sends
    back (each ``None``: a clean path). The relay listens on ``listen`` (port 0:
    any free one); each client address gets its own upstream socket, dropped after
    ``idle_timeout`` seconds without a datagram from the client (``None``: never).
    At most ``max_clients`` clients have a mapping at once; a new client's
    datagrams are dropped (counted ``table-full``) while that many do.
    Use it as an async context manager, or :meth:`start` and :meth:`close`.

    ``up`` and ``down`` are then the two :class:`ImpairedPath` objects, with their
    ``counters``; :attr:`counters` holds the relay's own (see ``RELAY_COUNTERS``);
    :meth:`statistics` returns all of them.
    """

    def __init__(self, target: Address, *, listen: Address = ("127.0.0.1", 0),
                 up: Impairments | None = None, down: Impairments | None = None,
                 seed: int | str = 1, idle_timeout: float | None = 120.0,
                 max_clients: int = 1024, rewrite_ports: bool = True) -> None:
        if idle_timeout is not None and not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be above 0 seconds, not {idle_timeout!r}")
        if isinstance(max_clients, bool) or not isinstance(max_clients, int) \
                or max_clients < 1:
            raise ValueError(f"max_clients must be an int of 1 or more, not {max_clients!r}")
        self.max_clients = max_clients
        self._target_spec = target
        self._listen_spec = listen
        self.seed = seed
        self.idle_timeout = idle_timeout
        self.rewrite_ports = rewrite_ports
        self.up = ImpairedPath(up, seed=f"{seed}/up")
        self.down = ImpairedPath(down, seed=f"{seed}/down")
        self._up = _Direction(self.up)
        self._down = _Direction(self.down)
        self.counters: Counter[str] = Counter(dict.fromkeys(RELAY_COUNTERS, 0))
        self._mappings: dict[Address, _Mapping] = {}
        self._opening: set[asyncio.Task[Any]] = set()
        self._listener: asyncio.DatagramTransport | None = None
        self._target: Address | None = None
        self._upstream_host = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started_at = 0.0

    # ------------------------------------------------------------ life cycle

    async def start(self) -> Relay:
        """Resolve the target and listen; raises OSError (socket.gaierror for a
        name that does not resolve) if either fails."""
        loop = self._loop = asyncio.get_running_loop()
        host, port = self._target_spec[0], self._target_spec[1]
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, _, _, _, target = infos[0]
        self._target = target
        # The upstream sockets are bound to the address the kernel would send from
        # toward the target (loopback for a target on this host), not to every
        # interface. Connecting a UDP socket sends nothing.
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect(target)
                self._upstream_host = probe.getsockname()[0]
            except OSError:
                self._upstream_host = "::" if family == socket.AF_INET6 else "0.0.0.0"
        self._listener, _ = await loop.create_datagram_endpoint(
            lambda: _Listener(self), local_addr=tuple(self._listen_spec[:2]))
        self.started_at = loop.time()
        self._up.start(loop, self.started_at)
        self._down.start(loop, self.started_at)
        return self

    def close(self) -> None:
        """Stop relaying: the listening and upstream sockets close, copies still
        on their way are dropped."""
        for task in self._opening:
            task.cancel()
        self._opening.clear()
        for mapping in self._mappings.values():
            mapping.close()
        self._mappings.clear()
        self._up.close()
        self._down.close()
        if self._listener is not None:
            self._listener.close()

    async def __aenter__(self) -> Relay:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ properties

    @property
    def address(self) -> Address:
        """The address clients send to (the socket's name: host, port)."""
        assert self._listener is not None, "the relay has not started"
        return self._listener.get_extra_info("sockname")

    @property
    def port(self) -> int:
        """The port clients send to."""
        return self.address[1]

    @property
    def target(self) -> Address:
        """The target's address, resolved."""
        assert self._target is not None, "the relay has not started"
        return self._target

    @property
    def idle(self) -> bool:
        """No datagram is waiting out its delay, either way."""
        return self._up.idle and self._down.idle

    def mappings(self) -> dict[Address, int | None]:
        """Each client with a mapping, and the port its upstream socket sends from
        (None while the socket opens)."""
        return {client: m.port for client, m in self._mappings.items()}

    def rebind(self, client: Address | None = None) -> None:
        """Forget the mapping of ``client`` (of every client, by default) as a home
        router does when one expires: its next datagram opens a new one, and the
        target sees it from a new port; what the target sends to the old one is
        lost. (``idle_timeout`` does the same after silence.)"""
        for mapping in list(self._mappings.values()):
            if client is None or mapping.client == client:
                self.counters["rebound"] += 1
                self._drop(mapping)

    def statistics(self) -> dict[str, Any]:
        """The counters of both paths and the relay's, and the mappings open now."""
        return {"up": {name: self.up.counters[name] for name in PATH_COUNTERS},
                "down": {name: self.down.counters[name] for name in PATH_COUNTERS},
                **{name: self.counters[name] for name in RELAY_COUNTERS},
                "mappings": len(self._mappings)}

    # ------------------------------------------------------------ forwarding

    def _from_client(self, data: bytes, addr: Address) -> None:
        assert self._loop is not None
        now = self._loop.time()
        mapping = self._mappings.get(addr)
        if mapping is None:
            if len(self._mappings) >= self.max_clients:
                self.counters["table-full"] += 1
                return
            mapping = self._open(addr, now)
        mapping.last_out = now
        if self.rewrite_ports:
            data = rewrite_port(data, 2, self.port, self.target[1])
        self._up.forward(data, mapping.send)

    def _from_target(self, mapping: _Mapping, data: bytes, addr: Address) -> None:
        if mapping.closed:
            return
        if addr[:2] != self.target[:2]:
            self.counters["strangers"] += 1
            return
        if self.rewrite_ports:
            data = rewrite_port(data, 0, self.target[1], self.port)
        self._down.forward(data, lambda copy: self._to_client(copy, mapping.client))

    def _to_client(self, data: bytes, client: Address) -> None:
        listener = self._listener
        if listener is not None and not listener.is_closing():
            listener.sendto(data, client)

    # -------------------------------------------------------------- mappings

    def _open(self, client: Address, now: float) -> _Mapping:
        assert self._loop is not None
        loop = self._loop
        mapping = self._mappings[client] = _Mapping(self, client, now)
        self.counters["clients"] += 1
        if self.idle_timeout is not None:
            mapping.expiry = loop.call_at(now + self.idle_timeout, self._check, mapping)
        task = loop.create_task(loop.create_datagram_endpoint(
            lambda: mapping, local_addr=(self._upstream_host, 0)))
        self._opening.add(task)

        def opened(task: asyncio.Task[Any]) -> None:
            self._opening.discard(task)
            if task.cancelled():
                return
            if task.exception() is not None:  # out of sockets or ports, say
                self.counters["socket-errors"] += 1
                self._drop(mapping)

        task.add_done_callback(opened)
        return mapping

    def _check(self, mapping: _Mapping) -> None:
        """The mapping's timer: drop it if its client has been quiet for
        ``idle_timeout``, else look again when it would have been."""
        assert self._loop is not None and self.idle_timeout is not None
        expires = mapping.last_out + self.idle_timeout
        if self._loop.time() >= expires - 0.001:  # the loop runs timers a little early
            self.counters["expired"] += 1
            self._drop(mapping)
        else:
            mapping.expiry = self._loop.call_at(expires, self._check, mapping)

    def _drop(self, mapping: _Mapping) -> None:
        mapping.close()
        if self._mappings.get(mapping.client) is mapping:
            del self._mappings[mapping.client]
