"""asyncio's streams API on utcp connections.

``open_connection`` and ``start_server`` take the arguments asyncio's do and
return asyncio's own :class:`~asyncio.StreamReader` and
:class:`~asyncio.StreamWriter`, so code written for asyncio runs unchanged.
They are built on :func:`utcp.create_connection` and :func:`utcp.create_server`
as asyncio's are on the loop's methods. Extra keyword arguments are connection
options (see :class:`utcp.Options`).
"""

from __future__ import annotations

import asyncio
import socket
import ssl as _ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .core.observer import Observer
from .core.stack import MAX_RECEIVE_MEMORY, ZERO_WINDOW_TIMEOUT
from .protocols import (
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_HOST,
    Server,
    create_connection,
    create_server,
)

StreamReader = asyncio.StreamReader
StreamWriter = asyncio.StreamWriter
ClientConnectedCallback = Callable[[StreamReader, StreamWriter], "Awaitable[None] | None"]

_DEFAULT_LIMIT = 2**16  # asyncio's StreamReader default


def _check_limit(limit: Any) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")


async def open_connection(
    host: str | None = None,
    port: int | None = None,
    *,
    local_addr: tuple[str, int] | None = None,
    limit: int = _DEFAULT_LIMIT,
    family: int = socket.AF_UNSPEC,
    ssl: _ssl.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    observer: Observer | None = None,
    **options: Any,
) -> tuple[StreamReader, StreamWriter]:
    """Connect to a utcp server at ``host``:``port`` and return its streams.

    A name that resolves to several addresses is tried at each in turn, as
    asyncio does. Raises ``ConnectionRefusedError`` when a RST or an ICMP port
    unreachable answers the SYN and ``TimeoutError`` when the SYN retries run out
    (with several addresses, that error if all failed alike, else an ``OSError``
    naming each). Without ``local_addr`` the connection shares the loop's client
    socket for its address family. ``family`` (``AF_INET`` or ``AF_INET6``) limits
    the addresses tried. ``ssl`` and ``server_hostname`` add TLS as asyncio's do
    (see :func:`utcp.create_connection`).
    """
    _check_limit(limit)
    loop = asyncio.get_running_loop()
    reader = StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await create_connection(
        lambda: protocol, host, port, local_addr=local_addr, family=family, ssl=ssl,
        server_hostname=server_hostname, ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout, observer=observer, **options)
    return reader, StreamWriter(transport, protocol, reader, loop)


async def start_server(
    client_connected_cb: ClientConnectedCallback,
    host: str | Iterable[str] | None = None,
    port: int = 0,
    *,
    family: int = socket.AF_UNSPEC,
    backlog: int = 100,
    limit: int = _DEFAULT_LIMIT,
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
    """Listen on ``host``:``port`` (UDP and TCP port alike) and call
    ``client_connected_cb(reader, writer)`` for each connection.

    ``port=0`` picks a free port: read it from ``server.port``. ``host`` may be a
    name; the server listens on the first address it resolves to (of ``family``,
    if given). ``reuse_address`` is accepted for compatibility: a closed server's
    port is always free again at once, as with SO_REUSEADDR. ``ssl`` adds TLS
    as asyncio's does; ``max_connections``, ``max_connections_per_host``,
    ``syn_cookies``, ``max_receive_memory`` and ``zero_window_timeout`` guard what
    the server holds (see :func:`utcp.create_server`).
    """
    _check_limit(limit)
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.StreamReaderProtocol:
        reader = StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return await create_server(
        factory, host, port, family=family, backlog=backlog, start_serving=start_serving,
        reuse_address=reuse_address, reuse_port=reuse_port, ssl=ssl,
        ssl_handshake_timeout=ssl_handshake_timeout, ssl_shutdown_timeout=ssl_shutdown_timeout,
        observer=observer, max_connections=max_connections,
        max_connections_per_host=max_connections_per_host, syn_cookies=syn_cookies,
        max_receive_memory=max_receive_memory, zero_window_timeout=zero_window_timeout,
        **options)
