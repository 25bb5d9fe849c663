"""Shared helpers for the asyncio tests that run utcp over real UDP sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import pytest

import utcp
from utcp.core.wire import MalformedSegment, Segment, decode, encode

HOST = "127.0.0.1"

T = TypeVar("T")


# ------------------------------------------------------------------ Python 3.10


def deadline(seconds: float) -> AbstractAsyncContextManager[None]:
    """``asyncio.timeout(seconds)``, with an equivalent on Python 3.10.

    The body is cancelled once ``seconds`` have passed and the block raises the
    builtin ``TimeoutError`` (as ``asyncio.timeout`` does on 3.11 and later).
    """
    if sys.version_info >= (3, 11):
        return asyncio.timeout(seconds)
    return _Deadline(seconds)  # pragma: no cover - Python 3.10


class _Deadline:  # pragma: no cover - Python 3.10
    """``asyncio.timeout`` for Python 3.10: cancel the task on expiry, raise TimeoutError.

    (3.10 has no ``Task.uncancel``: a cancellation from elsewhere that lands at
    the very moment the deadline expires is reported as the timeout.)
    """

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._handle: asyncio.TimerHandle | None = None
        self._expired = False

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("deadline() must be used inside a task")
        self._handle = asyncio.get_running_loop().call_later(self._seconds, self._expire, task)

    def _expire(self, task: asyncio.Task[Any]) -> None:
        self._expired = True
        task.cancel()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: object) -> None:
        assert self._handle is not None
        self._handle.cancel()
        if self._expired and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc


def run_on_loop(loop_factory: Callable[[], asyncio.AbstractEventLoop],
                coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.Runner(loop_factory=loop_factory).run(coro)``, also on Python 3.10."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(coro)
    return _run_on_new_loop(loop_factory(), coro)  # pragma: no cover - Python 3.10


def _run_on_new_loop(loop: asyncio.AbstractEventLoop,
                     coro: Coroutine[Any, Any, T]) -> T:  # pragma: no cover - Python 3.10
    """Run ``coro`` on ``loop``, then clean up and close it as ``asyncio.Runner`` does."""
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            # Cancel what is left (utcp's endpoint keepers close their sockets then).
            tasks = asyncio.all_tasks(loop)
            if tasks:
                for task in tasks:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                for task in tasks:
                    if not task.cancelled() and task.exception() is not None:
                        loop.call_exception_handler({
                            "message": "unhandled exception during run_on_loop() shutdown",
                            "exception": task.exception(), "task": task})
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


# ------------------------------------------------------------------ handlers


async def echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo everything until EOF, then close. A connection error ends it quietly."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()


async def read_all(reader: asyncio.StreamReader, chunk: int = 1 << 20) -> bytes:
    """Everything up to EOF (``reader.read()`` does the same; this reads in bounded pieces)."""
    parts = []
    while data := await reader.read(chunk):
        parts.append(data)
    return b"".join(parts)


async def send_all(writer: asyncio.StreamWriter, data: bytes, chunk: int = 65536) -> None:
    """Write ``data`` in chunks, honouring flow control, then half-close."""
    for i in range(0, len(data), chunk):
        writer.write(data[i:i + chunk])
        await writer.drain()
    writer.write_eof()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def echo_once(port: int, message: bytes, **options: Any) -> bytes:
    """Connect, send ``message`` and EOF while reading the echo to EOF, close."""
    reader, writer = await utcp.open_connection(HOST, port, **options)
    try:
        _, echoed = await asyncio.gather(send_all(writer, message), read_all(reader))
    finally:
        writer.close()
    return echoed


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0,
                     interval: float = 0.002) -> None:
    """Poll ``predicate`` until it holds; TimeoutError after ``timeout`` seconds."""
    async with deadline(timeout):
        while not predicate():
            await asyncio.sleep(interval)


# ------------------------------------------------------------------ raw sockets


class RawSocket(asyncio.DatagramProtocol):
    """A plain UDP socket for speaking (or not speaking) segments by hand."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received: asyncio.Queue[tuple[bytes, tuple[Any, ...], float]] = asyncio.Queue()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.received.put_nowait((data, addr, asyncio.get_running_loop().time()))

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable and the like: nothing to do

    @property
    def port(self) -> int:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[1]

    def send(self, data: bytes | Segment, addr: tuple[Any, ...]) -> None:
        assert self.transport is not None
        self.transport.sendto(encode(data) if isinstance(data, Segment) else data, addr)

    async def recv(self, timeout: float = 2.0) -> tuple[Segment, tuple[Any, ...], float]:
        """The next datagram, decoded as a segment, with its sender and arrival time."""
        data, addr, at = await asyncio.wait_for(self.received.get(), timeout)
        return decode(data), addr, at

    async def collect(self, duration: float) -> list[Segment]:
        """Every well-formed segment that arrives within ``duration`` seconds."""
        await asyncio.sleep(duration)
        out = []
        while not self.received.empty():
            data, _, _ = self.received.get_nowait()
            try:
                out.append(decode(data))
            except MalformedSegment:
                pass
        return out

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# ------------------------------------------------------------------ fixtures


@pytest.fixture
async def loop_errors() -> Any:
    """Fail the test if anything reaches the loop's exception handler."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield errors
    loop.set_exception_handler(None)
    assert not errors, f"the event loop reported errors: {errors}"


@pytest.fixture
async def make_server() -> Any:
    """``await make_server(handler=echo_handler, **options)`` -> a utcp.Server on 127.0.0.1.

    Every server started is closed (and its socket shut) when the test ends.
    """
    servers: list[utcp.Server] = []

    async def start(handler: Callable[..., Awaitable[None]] = echo_handler,
                    **kwargs: Any) -> utcp.Server:
        server = await utcp.start_server(handler, HOST, 0, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
        server._endpoint.close()
        await asyncio.wait_for(server._endpoint.wait_closed(), 5)


@pytest.fixture
async def raw_socket() -> Any:
    """``await raw_socket()`` -> a bound RawSocket on 127.0.0.1, closed when the test ends."""
    socks: list[RawSocket] = []

    async def make() -> RawSocket:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(RawSocket, local_addr=(HOST, 0))
        socks.append(proto)
        return proto

    yield make
    for s in socks:
        s.close()


@pytest.fixture(scope="session", autouse=True)
def _private_control_sockets(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The servers the tests start put their ``utcp stat`` sockets in a directory of
    the test run's own, not in the user's."""
    import os

    os.environ["XDG_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("runtime"))
