"""A simulated network of sans-I/O stacks on virtual time.

Each :class:`Host` is a :class:`utcp.core.stack.Stack` at a datagram address;
the :class:`Network` carries what the stacks send over seeded, impaired links
(:class:`Link`) and moves the clock straight to the next arrival or deadline,
so an hour of TCP runs in milliseconds and every run repeats exactly.
Datagrams cross as bytes, so the wire codec is exercised too.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

from utcp.core.connection import Connection
from utcp.core.events import DataReceived, Event
from utcp.core.isn import IsnGenerator
from utcp.core.stack import Address, Stack


class Link:
    """One direction's impairments: delay, loss, duplication and reordering, seeded."""

    def __init__(self, *, delay: float = 0.01, loss: float = 0.0, dup: float = 0.0,
                 reorder: float = 0.0, seed: int | str = 1) -> None:
        self.delay, self.loss, self.dup, self.reorder = delay, loss, dup, reorder
        self.rng = random.Random(seed)

    def delays(self) -> list[float]:
        """When each copy of one datagram arrives, after it is sent ([] if lost)."""
        if self.rng.random() < self.loss:
            return []
        copies = 2 if self.rng.random() < self.dup else 1
        out = []
        for _ in range(copies):
            d = self.delay
            if self.rng.random() < self.reorder:
                d += self.rng.random() * self.delay * 3
            out.append(d)
        return out


class Host:
    """A stack at a datagram address, with what it reported so far."""

    def __init__(self, network: Network, address: Address, stack: Stack) -> None:
        self.network = network
        self.address = address
        self.stack = stack
        self.events: list[tuple[Connection, Event]] = []
        self.received: dict[Connection, bytearray] = {}

    def __repr__(self) -> str:
        return f"<Host {self.address}>"

    def collect(self) -> None:
        for conn, events in self.stack.take_events():
            for ev in events:
                self.events.append((conn, ev))
                if isinstance(ev, DataReceived):
                    self.received.setdefault(conn, bytearray()).extend(ev.data)

    def events_of(self, conn: Connection) -> list[Event]:
        return [ev for c, ev in self.events if c is conn]

    def connections(self) -> list[Connection]:
        """The connections an event was reported for, in order of their first event."""
        seen: dict[Connection, None] = {}
        for c, _ in self.events:
            seen.setdefault(c, None)
        return list(seen)


class Network:
    """Hosts joined by links; ``link(...)`` arguments set every direction's impairments."""

    def __init__(self, *, seed: int = 1, **link: Any) -> None:
        self.now = 0.0
        self.seed = seed
        self._link_args = link
        self.hosts: dict[Address, Host] = {}
        self._links: dict[tuple[Address, Address], Link] = {}
        self._queue: list[tuple[float, int, Address, Address, bytes]] = []
        self._n = 0
        self.sent = 0  # datagrams put on links
        #: Datagrams sent to an address with no host (answered with nothing).
        self.undeliverable = 0

    def add(self, address: Address, **stack_args: Any) -> Host:
        """A host with a new stack at ``address`` (a fixed ISN secret and port choice)."""
        stack_args.setdefault("isn", IsnGenerator(f"{address}".encode()[:32]))
        stack_args.setdefault("rng", random.Random(f"{self.seed}/{address}"))
        host = Host(self, address, Stack(address, **stack_args))
        self.hosts[address] = host
        return host

    def link(self, src: Address, dst: Address) -> Link:
        """The link from ``src`` to ``dst`` (made with the network's impairments)."""
        key = (src, dst)
        link = self._links.get(key)
        if link is None:
            link = self._links[key] = Link(seed=f"{self.seed}/{src}/{dst}", **self._link_args)
        return link

    def pump(self) -> None:
        """Put what every stack wants sent on the links, and collect events."""
        for host in self.hosts.values():
            for data, addr, _via in host.stack.datagrams_to_send():
                self.sent += 1
                for d in self.link(host.address, addr).delays():
                    self._n += 1
                    heapq.heappush(self._queue, (self.now + d, self._n, host.address, addr, data))
            host.collect()

    def next_time(self) -> float | None:
        times = [h.stack.next_deadline() for h in self.hosts.values()]
        times = [t for t in times if t is not None]
        if self._queue:
            times.append(self._queue[0][0])
        return min(times, default=None)

    def step(self) -> bool:
        """Advance to the next arrival or deadline and run it; False if nothing is left."""
        self.pump()
        t = self.next_time()
        if t is None:
            return False
        self.now = max(self.now, t)
        while self._queue and self._queue[0][0] <= self.now:
            _, _, src, dst, data = heapq.heappop(self._queue)
            host = self.hosts.get(dst)
            if host is None:
                self.undeliverable += 1
                continue
            host.stack.receive(data, src, self.now)
            host.stack.end_batch(self.now)
        for host in self.hosts.values():
            d = host.stack.next_deadline()
            if d is not None and d <= self.now:
                host.stack.handle_timer(self.now)
        self.pump()
        return True

    def run(self, until: float = 1e9, max_steps: int = 1_000_000,
            stop: Callable[[], bool] | None = None) -> None:
        """Run until ``stop()`` holds, the clock passes ``until`` or nothing is left."""
        for _ in range(max_steps):
            if stop is not None and stop():
                return
            t = self.next_time()
            if t is None or t > until:
                if until < 1e9:
                    self.now = max(self.now, until)
                return
            self.step()
        raise AssertionError("simulation did not settle")
