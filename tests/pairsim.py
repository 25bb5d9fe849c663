"""Two sans-I/O connections joined by a simulated link, on virtual time.

The connection-level sibling of tests/netsim.py (whose stacks demultiplex many
connections); both use netsim's seeded :class:`~netsim.Link`.
"""

from __future__ import annotations

import heapq

from netsim import Link

from utcp.core.config import Options
from utcp.core.connection import Connection
from utcp.core.events import DataReceived, Event
from utcp.core.observer import Observer
from utcp.core.wire import decode, encode
from utcp.emulator import ImpairedPath, Impairments


class Pair:
    """A client and a server connection and the link between them.

    The link delays each segment by ``delay`` seconds and drops, duplicates or
    reorders it with the given probabilities (seeded, so runs repeat). Given
    ``impairments``, each direction is instead an :class:`ImpairedPath` of the
    emulator (a rate and a queue: a bottleneck). Segments cross as encoded bytes,
    so the wire codec is exercised too.
    """

    def __init__(self, *, client_opts: Options | None = None, server_opts: Options | None = None,
                 delay: float = 0.01, loss: float = 0.0, dup: float = 0.0,
                 reorder: float = 0.0, seed: int = 1,
                 client_observer: Observer | None = None,
                 server_observer: Observer | None = None,
                 client_iss: int = 100, server_iss: int = 300,
                 impairments: Impairments | None = None, encode_runs: bool = False) -> None:
        self.now = 0.0
        self.client = Connection(40000, 7007, iss=client_iss, options=client_opts,
                                 observer=client_observer)
        self.server = Connection(7007, 40000, iss=server_iss, options=server_opts,
                                 observer=server_observer)
        self.client.encode_runs = self.server.encode_runs = encode_runs
        #: Every datagram sent, as (time, from the client, bytes), and how many of
        #: them came already encoded (Connection.encode_runs).
        self.wire: list[tuple[float, bool, bytes]] = []
        self.preencoded = 0
        self.server.listen()
        self.links = {
            self.client: Link(delay=delay, loss=loss, dup=dup, reorder=reorder,
                              seed=f"{seed}/up"),
            self.server: Link(delay=delay, loss=loss, dup=dup, reorder=reorder,
                              seed=f"{seed}/down"),
        }
        self.paths: dict[Connection, ImpairedPath] = {} if impairments is None else {
            self.client: ImpairedPath(impairments, seed=f"{seed}/up"),
            self.server: ImpairedPath(impairments, seed=f"{seed}/down"),
        }
        self._q: list[tuple[float, int, Connection, bytes]] = []
        self._n = 0
        self.events: dict[Connection, list[Event]] = {self.client: [], self.server: []}
        self.received: dict[Connection, bytearray] = {self.client: bytearray(),
                                                      self.server: bytearray()}
        self.sent_segments = 0

    def _peer(self, c: Connection) -> Connection:
        return self.server if c is self.client else self.client

    def pump(self) -> None:
        """Move queued segments onto the link and collect events."""
        for c in (self.client, self.server):
            for s in c.take_segments():
                self.sent_segments += 1
                if type(s) is bytes:
                    self.preencoded += 1
                    data = s
                else:
                    data = encode(s)
                self.wire.append((self.now, c is self.client, data))
                path = self.paths.get(c)
                if path is not None:
                    arrivals = path.send(data, self.now)
                else:
                    arrivals = [(self.now + d, data) for d in self.links[c].delays()]
                for at, data in arrivals:
                    self._n += 1
                    heapq.heappush(self._q, (at, self._n, self._peer(c), data))
            for e in c.take_events():
                self.events[c].append(e)
                if isinstance(e, DataReceived):
                    self.received[c] += e.data
    def step(self) -> bool:
        """Advance to the next arrival or deadline; False when nothing is left."""
        self.pump()
        deadlines = [(c.next_deadline(), c) for c in (self.client, self.server)
                     if c.next_deadline() is not None]
        t_link = self._q[0][0] if self._q else None
        t_timer = min((d for d, _ in deadlines), default=None)
        if t_link is None and t_timer is None:
            return False
        if t_timer is None or (t_link is not None and t_link <= t_timer):
            self.now, _, dst, data = heapq.heappop(self._q)
            dst.receive(decode(data), self.now)
        else:
            self.now = t_timer
            for d, c in deadlines:
                if d <= self.now:
                    c.handle_timer(self.now)
        self.pump()
        return True

    def run(self, until: float = 1e9, max_steps: int = 1_000_000, stop=None) -> None:
        for _ in range(max_steps):
            if self.now > until or (stop is not None and stop()):
                return
            if not self.step():
                return
        raise AssertionError("simulation did not settle")
