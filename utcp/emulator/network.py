"""A simulated network on virtual time, where utcp's public API runs unchanged.

A :class:`VirtualNetwork` holds hosts (IP addresses) and the paths between them
(:class:`~utcp.emulator.impairments.ImpairedPath`, one per direction). Its
:meth:`~VirtualNetwork.run` runs a coroutine on a :class:`VirtualTimeLoop`: an
asyncio loop whose clock jumps to the next timer whenever nothing is ready, so
a two-hour keepalive takes milliseconds, and a seed makes every run the same.
On that loop, the UDP sockets under utcp's endpoints are the network's:
``utcp.open_connection``, ``utcp.start_server`` and the rest work as they are.

Code runs "on" a host: :meth:`Host.run` runs a coroutine with that host as the
one whose sockets it opens (a client's socket is bound to its host's address).
A datagram to a port with no socket draws an ICMP port unreachable, as from a
real host.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import hashlib
import ipaddress
import random
import selectors
import socket
from collections import Counter
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..core.isn import IsnGenerator
from ..core.stack import Stack
from .impairments import ImpairedPath, Impairments

T = TypeVar("T")

#: The host whose sockets the running code opens (see Host.run).
_current_host: contextvars.ContextVar[Host | None] = contextvars.ContextVar(
    "utcp_virtual_host", default=None)

#: Where a host's ephemeral UDP ports start.
_FIRST_EPHEMERAL = 49152


class _VirtualSelector(selectors.DefaultSelector):
    """A selector that, when no descriptor is ready, moves the clock on by the time
    the loop would have waited, instead of waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if ready:
            return ready
        if timeout is None:
            # Nothing is scheduled: only another thread can wake the loop.
            return super().select(None)
        self.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on virtual time, carrying ``network``'s datagrams.

    ``loop.time()`` starts at 0 and moves only to the next timer when nothing is
    ready to run. Names are resolved by the network, numeric addresses at once,
    so that no worker thread runs while virtual time jumps.
    """

    def __init__(self, network: VirtualNetwork) -> None:
        self._vselector = _VirtualSelector()
        super().__init__(selector=self._vselector)
        #: The network whose sockets utcp's endpoints open on this loop.
        self.utcp_network = network

    def time(self) -> float:
        return self._vselector.now

    async def getaddrinfo(self, host: Any, port: Any, *, family: int = 0, type: int = 0,
                          proto: int = 0, flags: int = 0) -> list[Any]:
        return self.utcp_network.getaddrinfo(host, port, family, type, proto)


class Host:
    """One address on a :class:`VirtualNetwork`, with its UDP sockets."""

    def __init__(self, network: VirtualNetwork, address: str, name: str | None) -> None:
        self.network = network
        self.address = address
        self.name = name
        self.family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.sockets: dict[int, VirtualDatagramTransport] = {}
        self._next_port = _FIRST_EPHEMERAL
        # After rebind(): the host sits behind a NAT, each socket's port seen from
        # outside as another (internal -> external, and back).
        self._nat_out: dict[int, int] = {}
        self._nat_in: dict[int, int] = {}
        self._nat_next = 20000
        #: Behind a NAT that forgets a socket's mapping after this many seconds
        #: without a datagram out of it (None: no such NAT).
        self.nat_timeout: float | None = None
        self._last_out: dict[int, float] = {}

    def __repr__(self) -> str:
        return f"<Host {self.address}{' ' + self.name if self.name else ''}>"

    def run(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coro`` as a task on this host: the sockets it opens are this host's."""
        ctx = contextvars.copy_context()
        ctx.run(_current_host.set, self)
        return ctx.run(asyncio.get_running_loop().create_task, coro)

    def rebind(self, port: int | None = None) -> None:
        """As a home router does when a mapping expires: from now on, every socket
        of this host (or the one at ``port``) is seen from outside at a new port;
        datagrams sent to the old ones are dropped (counted ``nat-stale``), with
        no ICMP error."""
        for inside in self.sockets if port is None else [port]:
            old = self._nat_out.get(inside)
            if old is not None:
                del self._nat_in[old]
            self._nat_next += 1
            self._nat_out[inside] = self._nat_next
            self._nat_in[self._nat_next] = inside

    def _port(self, port: int) -> int:
        if port:
            if port in self.sockets:
                raise OSError(errno.EADDRINUSE, f"error while attempting to bind on address "
                              f"({self.address!r}, {port}): address already in use")
            return port
        for _ in range(65536 - _FIRST_EPHEMERAL):
            p = self._next_port
            self._next_port = p + 1 if p < 65535 else _FIRST_EPHEMERAL
            if p not in self.sockets:
                return p
        raise OSError(errno.EADDRINUSE, f"no free UDP port left on {self.address}")


class VirtualDatagramTransport(asyncio.DatagramTransport):
    """A UDP socket of a virtual host: what it sends crosses the network's paths."""

    def __init__(self, host: Host, port: int, protocol: asyncio.DatagramProtocol) -> None:
        super().__init__()
        self._host = host
        self._port = port
        self._protocol = protocol
        self._closed = False
        addr: tuple[Any, ...] = (host.address, port)
        if host.family == socket.AF_INET6:
            addr += (0, 0)
        self._sockname = addr
        host.sockets[port] = self

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closed:
            return
        self._host.network._send(self._host, self._port, bytes(data), addr)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._sockname if name == "sockname" else default

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._host.sockets.get(self._port) is self:
            del self._host.sockets[self._port]
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def _receive(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if not self._closed:
            self._protocol.datagram_received(data, addr)

    def _unreachable(self, data: bytes, addr: tuple[Any, ...]) -> None:
        unreachable = getattr(self._protocol, "unreachable", None)
        if not self._closed:
            if unreachable is not None:
                unreachable(data, addr, errno.ECONNREFUSED)
            else:
                self._protocol.error_received(ConnectionRefusedError(
                    errno.ECONNREFUSED, "ICMP port unreachable"))


class VirtualNetwork:
    """Hosts and the impaired paths between them, on virtual time.

    ``default`` is what a path between two hosts does until :meth:`set_path`
    says otherwise (by default 1 ms each way and nothing else). ``seed`` seeds
    every path (each from the seed and its two ends), so a run repeats exactly.
    """

    def __init__(self, *, seed: int = 1, default: Impairments | None = None) -> None:
        self.seed = seed
        self.default = default if default is not None else Impairments(delay=0.001)
        self.hosts: dict[str, Host] = {}
        self._names: dict[str, str] = {}
        self._paths: dict[tuple[str, str], ImpairedPath] = {}
        #: What the network did with datagrams it could not deliver.
        self.counters: Counter[str] = Counter()
        self._stacks = 0

    # -------------------------------------------------------------- building

    def add_host(self, address: str, name: str | None = None) -> Host:
        """A host at ``address`` (IPv4 or IPv6), known as ``name`` too if given."""
        address = str(ipaddress.ip_address(address))
        if address in self.hosts:
            raise ValueError(f"{address} is already a host of this network")
        host = self.hosts[address] = Host(self, address, name)
        if name is not None:
            self._names[name] = address
        return host

    def set_path(self, a: str, b: str, impairments: Impairments, *,
                 both_ways: bool = True) -> None:
        """What the path from ``a`` to ``b`` does (and from ``b`` to ``a``, unless
        ``both_ways`` is False): it starts afresh, with its own seeded generator."""
        pairs = [(a, b), (b, a)] if both_ways else [(a, b)]
        for src, dst in pairs:
            self._paths[(src, dst)] = ImpairedPath(impairments, seed=f"{self.seed}/{src}/{dst}")

    def path(self, src: str, dst: str) -> ImpairedPath:
        """The path from ``src`` to ``dst``, with its counters."""
        path = self._paths.get((src, dst))
        if path is None:
            path = self._paths[(src, dst)] = ImpairedPath(
                self.default, seed=f"{self.seed}/{src}/{dst}")
        return path

    # ---------------------------------------------------------------- running

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run ``main`` to completion on a new :class:`VirtualTimeLoop`, as
        :func:`asyncio.run` does (tasks left over are cancelled, the loop closed)."""
        loop = VirtualTimeLoop(self)
        try:
            asyncio.set_event_loop(loop)
            return loop.run_until_complete(main)
        finally:
            try:
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    # ------------------------------------------------- what the loop asks for

    def bind(self, protocol: asyncio.DatagramProtocol,
             local_addr: tuple[Any, ...]) -> VirtualDatagramTransport:
        """A socket at ``local_addr`` on the host it names (a wildcard: the host
        the running code is on), connected to ``protocol``."""
        want, port = local_addr[0], int(local_addr[1])
        if want in ("", "0.0.0.0", "::", None):
            host = _current_host.get()
            if host is None or host.network is not self:
                if len(self.hosts) != 1:
                    raise OSError(errno.EADDRNOTAVAIL, "which virtual host? Run the code "
                                  "that opens it with Host.run(), or bind a host's address")
                host = next(iter(self.hosts.values()))
        else:
            address = self._names.get(want, want)
            host = self.hosts.get(str(ipaddress.ip_address(address)))
            if host is None:
                raise OSError(errno.EADDRNOTAVAIL, f"error while attempting to bind on "
                              f"address ({want!r}, {port}): no such virtual host")
        transport = VirtualDatagramTransport(host, host._port(port), protocol)
        protocol.connection_made(transport)
        return transport

    def new_stack(self) -> Stack:
        """The TCP stack of an endpoint opened on this network: its ISN secret and
        its choice of ports come from the seed, so that a run repeats exactly."""
        self._stacks += 1
        seed = f"{self.seed}/stack {self._stacks}"
        return Stack(isn=IsnGenerator(hashlib.sha256(seed.encode()).digest()),
                     rng=random.Random(seed))

    def shared_key(self, family: int) -> Any:
        """What tells apart the client sockets utcp shares: the family and the host
        the running code is on."""
        host = _current_host.get()
        return (family, host.address if host is not None else None)

    def getaddrinfo(self, host: Any, port: Any, family: int, type: int,
                    proto: int) -> list[Any]:
        """Resolve ``host`` among the network's names and addresses."""
        if isinstance(host, bytes):
            host = host.decode()
        if host in (None, ""):
            candidates = ["::" if family == socket.AF_INET6 else "0.0.0.0"]
        else:
            candidates = [self._names.get(host, host)]
        out = []
        for address in candidates:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                raise socket.gaierror(socket.EAI_NONAME, f"unknown virtual host {host!r}") \
                    from None
            fam = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            if family not in (0, fam):
                continue
            addr = (str(ip), int(port or 0)) if fam == socket.AF_INET \
                else (str(ip), int(port or 0), 0, 0)
            out.append((fam, type or socket.SOCK_DGRAM, proto, "", addr))
        if not out:
            raise socket.gaierror(socket.EAI_ADDRFAMILY, f"{host!r} has no address of that family")
        return out

    def _send(self, src: Host, src_port: int, data: bytes, addr: tuple[Any, ...]) -> None:
        loop = asyncio.get_running_loop()
        dst = str(addr[0])
        if src.nat_timeout is not None:
            last = src._last_out.get(src_port)
            now = loop.time()
            if last is None or now - last > src.nat_timeout:
                src.rebind(src_port)  # a new mapping (the old one, if any, expired)
            src._last_out[src_port] = now
        src_addr: tuple[Any, ...] = (src.address, src._nat_out.get(src_port, src_port))
        if src.family == socket.AF_INET6:
            src_addr += (0, 0)
        if dst not in self.hosts:
            self.counters["no-such-host"] += 1
            return
        for at, copy in self.path(src.address, dst).send(data, loop.time()):
            loop.call_at(at, self._arrive, dst, int(addr[1]), copy, src_addr, src, src_port)

    def _arrive(self, dst: str, port: int, data: bytes, src_addr: tuple[Any, ...],
                src: Host, src_port: int) -> None:
        host = self.hosts[dst]
        if host._nat_out:
            inside = host._nat_in.get(port)
            if inside is None:
                self.counters["nat-stale"] += 1  # a mapping the NAT has forgotten
                return
            port = inside
        sock = host.sockets.get(port)
        if sock is not None:
            sock._receive(data, src_addr)
            return
        # Nobody there: the host answers ICMP port unreachable, quoting the datagram.
        self.counters["port-unreachable"] += 1
        back = self.path(dst, src.address).impairments.delay
        sender = src.sockets.get(src_port)
        if sender is not None:
            to: tuple[Any, ...] = (dst, port) if src.family == socket.AF_INET \
                else (dst, port, 0, 0)
            asyncio.get_running_loop().call_later(back, sender._unreachable, data[:64], to)
