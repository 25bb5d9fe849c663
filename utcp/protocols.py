"""asyncio's Transport/Protocol API on utcp connections.

``create_connection`` and ``create_server`` take the arguments of the loop
methods of the same names and run any :class:`asyncio.Protocol` (or
:class:`asyncio.BufferedProtocol`) unchanged over a utcp connection, whose
transport is a :class:`~utcp.transport.ConnectionTransport`. The streams API
(:mod:`utcp.streams`) is built on them, as asyncio's is on the loop's.
Extra keyword arguments are connection options (see :class:`utcp.Options`).
"""

from __future__ import annotations

import asyncio
import socket
import ssl as _ssl
import weakref
from asyncio import sslproto
from collections.abc import Callable, Iterable
from typing import Any

from .core.buffers import ReceiveMemory
from .core.config import DEFAULT_MSS_IPV6, OPTION_NAMES, Options
from .core.connection import Connection
from .core.observer import Observer
from .core.stack import (
    MAX_RECEIVE_MEMORY,
    ZERO_WINDOW_TIMEOUT,
    Listener,
    check_zero_window_timeout,
)
from .endpoint import Endpoint, check_observer
from .transport import ConnectionTransport

#: A server's default limits: connections held at once, and from one IP address.
#: (About 600 MiB and 300 MiB of a server's memory at 2.4 KiB each; see
#: benchmarks/README.md.)
MAX_CONNECTIONS = 262_144
MAX_CONNECTIONS_PER_HOST = 131_072

ProtocolFactory = Callable[[], asyncio.BaseProtocol]

# Client connections of one loop share one endpoint (one UDP socket) per family.
_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, Endpoint]] = (
    weakref.WeakKeyDictionary())
# The task that closes an endpoint when its loop ends (see _keep).
_keepers: weakref.WeakKeyDictionary[Endpoint, asyncio.Task[None]] = weakref.WeakKeyDictionary()
# The task creating a loop's shared endpoint, while it runs.
_creating: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[Any, asyncio.Task[Endpoint]]] = weakref.WeakKeyDictionary()


_DEFAULTS = {socket.AF_INET: Options(), socket.AF_INET6: Options(mss=DEFAULT_MSS_IPV6)}


def _options(family: int, options: dict[str, Any]) -> Options:
    if not options:
        return _DEFAULTS.get(family, _DEFAULTS[socket.AF_INET])  # immutable: shared
    unknown = set(options) - OPTION_NAMES
    if unknown:
        raise TypeError(
            f"unexpected keyword argument(s): {', '.join(sorted(unknown))}; "
            f"connection options are: {', '.join(sorted(OPTION_NAMES))}")
    if family == socket.AF_INET6 and "mss" not in options:
        options = {"mss": DEFAULT_MSS_IPV6, **options}
    return Options(**options)


def _check_port(port: Any, *, allow_zero: bool) -> int:
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if not isinstance(port, int) or isinstance(port, bool) or \
            not (0 if allow_zero else 1) <= port <= 65535:
        raise ValueError(f"port must be an integer from {0 if allow_zero else 1} to 65535, "
                         f"got {port!r}")
    return port


def _check_unsupported(**args: Any) -> None:
    for name, value in args.items():
        if value:
            raise ValueError(f"{name} is not supported by utcp, got {value!r}")


def _check_tls(ssl: Any, server_hostname: str | None, handshake_timeout: float | None,
               shutdown_timeout: float | None, *, server: bool) -> _ssl.SSLContext | None:
    """The SSLContext for ``ssl=`` (None: no TLS), with asyncio's checks and errors."""
    if server and isinstance(ssl, bool):
        raise TypeError("ssl argument must be an SSLContext or None")
    if ssl is not None and ssl is not False and not isinstance(ssl, (bool, _ssl.SSLContext)):
        raise TypeError(f"ssl argument must be an SSLContext, a bool or None, got {ssl!r}")
    if not ssl:
        if server_hostname is not None:
            raise ValueError("server_hostname is only meaningful with ssl")
        if handshake_timeout is not None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if shutdown_timeout is not None:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        return None
    for name, value in (("ssl_handshake_timeout", handshake_timeout),
                        ("ssl_shutdown_timeout", shutdown_timeout)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} should be a positive number, got {value!r}")
    if ssl is True:
        # What asyncio uses for ssl=True: the system's CAs, hostname checked.
        return _ssl.create_default_context()
    return ssl  # type: ignore[no-any-return]


def _tls_factory(loop: asyncio.AbstractEventLoop, protocol_factory: ProtocolFactory,
                 context: _ssl.SSLContext, *, server_side: bool,
                 server_hostname: str | None, waiter: asyncio.Future[None] | None,
                 handshake_timeout: float | None,
                 shutdown_timeout: float | None) -> ProtocolFactory:
    """A factory of asyncio's SSL protocols, each over an application protocol."""

    def factory() -> asyncio.BaseProtocol:
        return sslproto.SSLProtocol(
            loop, protocol_factory(), context, waiter, server_side, server_hostname,
            ssl_handshake_timeout=handshake_timeout, ssl_shutdown_timeout=shutdown_timeout)

    return factory


def _check_family(family: Any) -> None:
    if family not in (socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6):
        raise ValueError(f"family must be AF_UNSPEC, AF_INET or AF_INET6, got {family!r}")


async def _resolve(loop: asyncio.AbstractEventLoop, host: str | None, port: int,
                   family: int = socket.AF_UNSPEC, *,
                   passive: bool = False) -> list[tuple[int, tuple[Any, ...]]]:
    """The (family, address) pairs ``host`` names, in the resolver's order."""
    _check_family(family)
    if host is not None and not isinstance(host, str):
        raise TypeError(f"host must be a string or None, got {host!r}")
    if host:
        # A numeric address needs no resolver (on asyncio's loop, getaddrinfo is a
        # round trip through a worker thread: most of a loopback connection's cost).
        for fam in (socket.AF_INET, socket.AF_INET6):
            if family not in (socket.AF_UNSPEC, fam):
                continue
            try:
                socket.inet_pton(fam, host)
            except (OSError, ValueError):
                continue
            return [(fam, (host, port) if fam == socket.AF_INET else (host, port, 0, 0))]
    infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM,
                                   flags=socket.AI_PASSIVE if passive else 0)
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    found: list[tuple[int, tuple[Any, ...]]] = []
    for family, _, _, _, addr in infos:
        if (family, addr) not in found:
            found.append((family, addr))
    return found


async def _new_endpoint(loop: asyncio.AbstractEventLoop, local_addr: tuple[str, int],
                        family: int = 0, *, server: bool = False) -> Endpoint:
    network = getattr(loop, "utcp_network", None)  # (a simulated one: seeded stacks)
    ep = await Endpoint.create(local_addr, loop=loop, family=family, server=server,
                               stack=network.new_stack() if network is not None else None)
    # When asyncio.run() ends it cancels every task: this one then closes the
    # socket, so no endpoint outlives its loop unclosed.
    _keepers[ep] = loop.create_task(_keep(ep), name=f"utcp endpoint {ep.local_address}")
    return ep


async def _keep(ep: Endpoint) -> None:
    try:
        await ep.wait_closed()
    finally:
        _keepers.pop(ep, None)
        # The loop is ending (or the socket went): a connection cannot outlive its
        # loop the way a kernel's outlives a process, so reset the ones still open
        # rather than leave their peers half-open until they time out.
        for conn in ep.stack.connections():
            owner = conn.owner
            if isinstance(owner, ConnectionTransport):
                owner.abort()
            elif ep.transport is not None:
                ep.abort(conn)
        ep.close()
        # The registry is keyed weakly by loop, but an endpoint refers to its loop:
        # drop the entry, or every loop that ever connected stays alive.
        eps = _shared.get(ep.loop)
        if eps is not None:
            for family, shared in list(eps.items()):
                if shared is ep:
                    del eps[family]
            if not eps:
                del _shared[ep.loop]


async def _client_endpoint(loop: asyncio.AbstractEventLoop, family: int) -> Endpoint:
    eps = _shared.setdefault(loop, {})
    key: Any = family
    network = getattr(loop, "utcp_network", None)
    if network is not None:
        # One loop carries every host of a simulated network: one shared socket
        # per host, as on real machines.
        key = network.shared_key(family)
    ep = eps.get(key)
    if ep is not None and ep.transport is not None:
        return ep
    # Concurrent first connections all wait for one endpoint, created by one task
    # (which none of them cancels by being cancelled), and all resume together.
    creating = _creating.setdefault(loop, {})
    task = creating.get(key)
    if task is None:
        any_addr = "::" if family == socket.AF_INET6 else "0.0.0.0"
        task = loop.create_task(_new_endpoint(loop, (any_addr, 0), family))
        creating[key] = task

        def created(t: asyncio.Task[Endpoint]) -> None:
            if creating.get(key) is t:
                del creating[key]
            if not t.cancelled() and t.exception() is None:
                eps[key] = t.result()

        task.add_done_callback(created)
    return await asyncio.shield(task)


async def create_connection(
    protocol_factory: ProtocolFactory,
    host: str | None = None,
    port: int | None = None,
    *,
    local_addr: tuple[str, int] | None = None,
    family: int = socket.AF_UNSPEC,
    ssl: _ssl.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    observer: Observer | None = None,
    **options: Any,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Connect to a utcp server at ``host``:``port``; return ``(transport, protocol)``.

    As ``loop.create_connection()``: ``protocol_factory()`` makes the protocol
    once the handshake completes, and its ``connection_made()`` has been called
    when this returns. A name that resolves to several addresses is tried at
    each in turn. Raises ``ConnectionRefusedError`` when a RST or an ICMP port
    unreachable answers the SYN and ``TimeoutError`` when the SYN retries run
    out (with several addresses, that error if all failed alike, else an
    ``OSError`` naming each). Without ``local_addr`` the connection shares the
    loop's client socket for its address family. ``family`` (``AF_INET`` or
    ``AF_INET6``) limits the addresses tried.

    With ``ssl`` (an :class:`ssl.SSLContext`, or True for the default one) the
    connection carries TLS, through asyncio's own SSL protocol: this returns
    once the TLS handshake is done too, or raises its error (an
    ``ssl.SSLCertVerificationError`` for a certificate that fails to verify).
    ``server_hostname`` (default: ``host``) is the name the certificate must match.
    """
    loop = asyncio.get_running_loop()
    port = _check_port(port, allow_zero=False)
    if not callable(protocol_factory):
        raise TypeError(f"protocol_factory must be callable, got {protocol_factory!r}")
    check_observer(observer)
    context = _check_tls(ssl, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout,
                         server=False)
    waiter: asyncio.Future[None] | None = None
    if context is not None:
        if server_hostname is None:
            if not host:
                raise ValueError("You must set server_hostname when using ssl without a host")
            server_hostname = host
        waiter = loop.create_future()
        protocol_factory = _tls_factory(
            loop, protocol_factory, context, server_side=False,
            server_hostname=server_hostname, waiter=waiter,
            handshake_timeout=ssl_handshake_timeout, shutdown_timeout=ssl_shutdown_timeout)
    addresses = await _resolve(loop, host, port, family)
    # Like asyncio: each address the name resolves to in turn, until one connects.
    for family, _ in addresses:
        _options(family, options)  # bad options fail once, before any attempt
    errors: list[OSError] = []
    for family, addr in addresses:
        try:
            tr = await _connect_to(loop, family, addr, port, local_addr, protocol_factory,
                                   observer, options)
        except OSError as exc:
            errors.append(exc)
        else:
            protocol = tr.get_protocol()
            if waiter is None:
                return tr, protocol
            assert isinstance(protocol, sslproto.SSLProtocol)
            try:
                await waiter  # the TLS handshake
            except BaseException:
                tr.close()
                raise
            return protocol._app_transport, protocol._app_protocol
    if len(errors) == 1 or all(str(e) == str(errors[0]) for e in errors):
        raise errors[0]
    raise OSError("multiple exceptions: " + ", ".join(str(e) for e in errors))


async def _connect_to(loop: asyncio.AbstractEventLoop, family: int, addr: tuple[Any, ...],
                      port: int, local_addr: tuple[str, int] | None,
                      protocol_factory: ProtocolFactory, observer: Observer | None,
                      options: dict[str, Any]) -> ConnectionTransport:
    opts = _options(family, options)
    if local_addr is not None:
        ep = await _new_endpoint(loop, local_addr, family)
    else:
        ep = await _client_endpoint(loop, family)

    def make_transport(conn: Connection) -> ConnectionTransport:
        return ConnectionTransport(ep, conn, protocol_factory=protocol_factory)

    try:
        tr = ep.connect(addr, port, opts, make_transport, observer)
    finally:
        if local_addr is not None:
            ep.close_when_idle()  # a socket of its own: gone with its connection
    assert isinstance(tr, ConnectionTransport)
    await tr.wait_connected()
    return tr


class Server:
    """A utcp server, with the interface of :class:`asyncio.Server`."""

    def __init__(self, endpoint: Endpoint, listen: Callable[[Server], Listener],
                 port: int) -> None:
        self._endpoint = endpoint
        self._listen = listen
        self._listener: Listener | None = None
        # Accepted connections the application has not yet seen end.
        self._connections: set[ConnectionTransport] = set()
        self._emptied: list[asyncio.Future[None]] = []
        self._loop = endpoint.loop
        self._serving_forever: asyncio.Future[None] | None = None
        self._port = port
        self._closed = self._loop.create_future()

    def __repr__(self) -> str:
        return f"<utcp.Server {self._endpoint.local_address} serving={self.is_serving()}>"

    @property
    def sockets(self) -> tuple[Any, ...]:
        tr = self._endpoint.transport
        sock = tr.get_extra_info("socket") if tr is not None else None
        return (sock,) if sock is not None and not self._closed.done() else ()

    @property
    def port(self) -> int:
        """The port clients connect to."""
        return self._port

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._listener is not None

    async def start_serving(self) -> None:
        """Start accepting connections (at once unless ``start_serving=False`` was given)."""
        if self._closed.done():
            raise RuntimeError(f"server {self!r} is closed")
        if self._listener is None:
            self._listener = self._listen(self)

    def close(self) -> None:
        """Stop accepting connections; connections already accepted go on."""
        if self._closed.done():
            return
        if self._listener is not None:
            self._endpoint.stop_listening(self._listener)
            self._listener = None
        self._endpoint.close_when_idle(time_wait_holds=False)
        if self._serving_forever is not None and not self._serving_forever.done():
            self._serving_forever.cancel()
        self._closed.set_result(None)

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every accepted connection has ended."""
        await asyncio.shield(self._closed)
        while self._connections:
            f = self._loop.create_future()
            self._emptied.append(f)
            await f

    def connection_accepted(self, tr: ConnectionTransport) -> None:
        """``tr`` was accepted; :meth:`wait_closed` waits for it to end."""
        self._connections.add(tr)

    def connection_ended(self, tr: ConnectionTransport) -> None:
        """The application is done with the accepted connection ``tr``."""
        self._connections.discard(tr)
        if not self._connections:
            for f in self._emptied:
                if not f.done():
                    f.set_result(None)
            self._emptied.clear()

    async def serve_forever(self) -> None:
        if self._serving_forever is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        await self.start_serving()
        self._serving_forever = self._loop.create_future()
        try:
            await self._serving_forever
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever = None

    def statistics(self) -> dict[str, Any]:
        """The endpoint's counters: segments, retransmissions, drops, connections by state."""
        return self._endpoint.statistics()

    def connection_table(self) -> list[dict[str, Any]]:
        """Each connection's state, peer, RTT, RTO, windows, queues and counters,
        as ``ss -ti`` lists them (see ``utcp stat``)."""
        return self._endpoint.stack.connection_table()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


async def create_server(
    protocol_factory: ProtocolFactory,
    host: str | Iterable[str] | None = None,
    port: int = 0,
    *,
    family: int = socket.AF_UNSPEC,
    backlog: int = 100,
    start_serving: bool = True,
    reuse_address: bool | None = None,
    reuse_port: bool | None = None,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    observer: Observer | None = None,
    max_connections: int | None = MAX_CONNECTIONS,
    max_connections_per_host: int | None = MAX_CONNECTIONS_PER_HOST,
    syn_cookies: bool = True,
    max_receive_memory: int | None = MAX_RECEIVE_MEMORY,
    zero_window_timeout: float = ZERO_WINDOW_TIMEOUT,
    **options: Any,
) -> Server:
    """Listen on ``host``:``port`` (UDP and TCP port alike); run ``protocol_factory()``
    for each connection, as ``loop.create_server()`` does.

    The protocol is made, and told ``connection_made()``, when a connection's
    handshake completes; half-open connections make none. ``port=0`` picks a
    free port: read it from ``server.port``. ``host`` may be a name; the server
    listens on the first address it resolves to (of ``family``, if given).
    ``reuse_address`` is accepted for compatibility: a closed server's port is
    always free again at once, as with SO_REUSEADDR.

    ``max_connections`` bounds the connections the server holds at once
    (half-open and established; TIME-WAIT is kept apart, compactly), and
    ``max_connections_per_host`` those from one IP address: a SYN beyond either
    is dropped and counted (``connection-limit``, ``host-limit``). None lifts a
    limit. Once ``backlog`` connections are half-open, further SYNs are answered
    with SYN cookies, keeping nothing, as Linux does; with ``syn_cookies=False``
    they are dropped (``backlog-full``) and their peers retry.

    ``max_receive_memory`` bounds the bytes all the server's connections hold,
    received and not yet read by an application that paused reading, or held
    ahead of a hole (default 128 MiB; None: no bound). From three quarters of it,
    memory is short: windows shrink (a connection holding data offers no new
    window, others four segments), data past the bound is dropped unacknowledged
    (``receive-memory``), and a connection whose application has not read for
    ``zero_window_timeout`` seconds while nothing more could arrive is reset
    (``memory-reclaimed``; its application gets :class:`TimeoutError`).

    With ``ssl`` (an :class:`ssl.SSLContext` holding the server's certificate)
    each connection carries TLS, through asyncio's own SSL protocol; the
    application's protocol is told ``connection_made()`` once the TLS handshake
    is done, and a connection whose handshake fails never reaches it.
    """
    loop = asyncio.get_running_loop()
    if not callable(protocol_factory):
        raise TypeError(f"protocol_factory must be callable, got {protocol_factory!r}")
    context = _check_tls(ssl, None, ssl_handshake_timeout, ssl_shutdown_timeout, server=True)
    if context is not None:
        protocol_factory = _tls_factory(
            loop, protocol_factory, context, server_side=True, server_hostname=None,
            waiter=None, handshake_timeout=ssl_handshake_timeout,
            shutdown_timeout=ssl_shutdown_timeout)
    port = _check_port(port, allow_zero=True)
    if not isinstance(backlog, int) or isinstance(backlog, bool) or backlog < 1:
        raise ValueError(f"backlog must be a positive integer, got {backlog!r}")
    for name, limit in (("max_connections", max_connections),
                        ("max_connections_per_host", max_connections_per_host)):
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)
                                  or limit < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {limit!r}")
    check_observer(observer)
    check_zero_window_timeout(zero_window_timeout)
    ReceiveMemory(max_receive_memory)  # (a ValueError for a bad limit, before binding)
    _check_unsupported(reuse_port=reuse_port)
    if isinstance(host, (list, tuple, set, frozenset)):
        hosts = list(host)
        if len(hosts) != 1:
            raise ValueError("utcp servers listen on one host address")
        host = hosts[0]
    if host is None:
        # Like a kernel socket bound to INADDR_ANY: IPv4 only unless family says
        # otherwise (or host is "::").
        _check_family(family)
        if family == socket.AF_INET6:
            addr: tuple[Any, ...] = ("::", port, 0, 0)
        else:
            family, addr = socket.AF_INET, ("0.0.0.0", port)
    else:
        family, addr = (await _resolve(loop, host, port, family, passive=True))[0]
    opts = _options(family, options)
    ep = await _new_endpoint(loop, addr, family, server=True)
    ep.stack.syn_cookies = syn_cookies
    ep.stack.memory.set_limit(max_receive_memory)
    ep.stack.zero_window_timeout = zero_window_timeout

    def listen(server: Server) -> Listener:
        ended = server.connection_ended
        accepted = server.connection_accepted

        def accept(conn: Connection) -> ConnectionTransport:
            tr = ConnectionTransport(ep, conn, accepted=True, on_end=ended,
                                     protocol_factory=protocol_factory)
            accepted(tr)
            return tr

        return ep.listen(local_port, backlog, opts, accept, observer,
                         max_connections=max_connections,
                         max_per_host=max_connections_per_host)

    local_port = ep.local_address[1]
    server = Server(ep, listen, local_port)
    if start_serving:
        await server.start_serving()
    return server
