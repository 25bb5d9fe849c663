"""One connection as an :class:`asyncio.Transport`.

This adapter lets asyncio's own ``StreamReaderProtocol``, ``StreamReader`` and
``StreamWriter`` run on a utcp connection unchanged: core events become protocol
callbacks, and the connection's end becomes the exception asyncio users expect.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .core.connection import Connection, ConnectionStateError
from .core.events import (
    Closed,
    Connected,
    DataReceived,
    EndOfStream,
    Event,
    FinAcked,
    Reset,
    TimedOut,
    TimeoutReason,
    Unreachable,
    Writable,
)
from .core.stack import Address
from .core.state import State
from .datagram import WILDCARD_HOSTS

if TYPE_CHECKING:
    from .endpoint import Endpoint

# asyncio's defaults for a transport's write buffer.
DEFAULT_HIGH_WATER = 64 * 1024

_CLOSED = State.CLOSED  # (an Enum class lookup is slow in CPython 3.11)
_TIME_WAIT = State.TIME_WAIT
# States in which our FIN is sent (or queued) and not yet acknowledged.
_FIN_UNACKED = (State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK)

_TIMEOUT_MESSAGES = {
    TimeoutReason.SYN: "connection timed out: no answer to SYN",
    TimeoutReason.SYNACK: "connection timed out: no ACK for SYN-ACK",
    TimeoutReason.DATA: "connection timed out: data not acknowledged",
    TimeoutReason.FIN: "connection timed out: FIN not acknowledged",
    TimeoutReason.KEEPALIVE: "connection timed out: keepalive probes unanswered",
    TimeoutReason.PERSIST: "connection timed out: zero-window probes unanswered",
    TimeoutReason.FIN_WAIT_2: "connection timed out in FIN-WAIT-2",
    TimeoutReason.MEMORY: "connection timed out: received data went unread while memory "
                          "was short",
}


class ConnectionTransport(asyncio.Transport):
    """The asyncio face of one :class:`~utcp.core.connection.Connection`.

    ``accepted`` is True for a connection a listener accepted and False for an
    active open (``wait_connected()`` then waits for the handshake). The protocol
    is the one given to :meth:`set_protocol`, or else ``protocol_factory()``,
    made when the handshake completes; either is told ``connection_made`` then.
    ``on_end`` is called once the application is done with the connection.
    """

    # Slots, not a __dict__: a server holds one of these per connection.
    __slots__ = ("_buffered", "_closing", "_closing_wait", "_connected", "_endpoint", "_eof",
                 "_factory", "_high", "_loop", "_lost", "_low", "_made", "_on_end", "_protocol",
                 "_reset_after_fin", "_resume_handle", "_sockname_cache", "_writing_paused",
                 "conn")

    # asyncio's loop.start_tls() (and so StreamWriter.start_tls()) takes this transport.
    _start_tls_compatible = True

    def __init__(self, endpoint: Endpoint, conn: Connection, *, accepted: bool = False,
                 on_end: Callable[[ConnectionTransport], None] | None = None,
                 protocol_factory: Callable[[], asyncio.BaseProtocol] | None = None) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._loop = endpoint.loop
        self.conn = conn
        self._on_end = on_end
        self._sockname_cache: Address | None = None
        self._protocol: asyncio.BaseProtocol | None = None
        self._buffered = False  # the protocol is an asyncio.BufferedProtocol
        self._factory = protocol_factory
        self._connected: asyncio.Future[None] | None = (
            None if accepted else self._loop.create_future())
        self._closing = False
        self._closing_wait = False  # closed; connection_lost waits for the FIN's ACK
        # A RST that came after the peer's FIN, while data for the reader was held.
        self._reset_after_fin: ConnectionResetError | None = None
        self._eof = False
        self._made = False  # connection_made delivered
        self._lost = False  # connection_lost delivered (or due)
        self._high = DEFAULT_HIGH_WATER
        self._low = DEFAULT_HIGH_WATER // 4
        self._writing_paused = False
        self._resume_handle: asyncio.Handle | None = None  # resume_reading() due

    @property
    def remote_address(self) -> Address:
        """The peer's UDP address, as sent to (IPv6: with flowinfo and scope id):
        where it is now, if a NAT gave it a new one (see may_move_to)."""
        return self.conn.peer  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (f"<utcp transport {self.conn.local_port}>{self.remote_address[0]}:"
                f"{self.conn.remote_port} {self.conn.state}>")

    # ------------------------------------------------------- from the endpoint

    def handle_events(self, events: list[Event]) -> None:
        """The connection's events: protocol callbacks and the errors asyncio users expect.

        A protocol callback that raises is reported to the loop's exception
        handler and resets its connection, as asyncio's transports do; the
        endpoint and its other connections go on.
        """
        try:
            for ev in events:
                kind = type(ev)
                if kind is DataReceived:
                    if self._protocol is not None and not self._lost and not self._closing_wait:
                        if self._buffered:
                            self._fill_buffers(ev.data)  # type: ignore[attr-defined]
                        else:
                            self._protocol.data_received(ev.data)  # type: ignore[attr-defined]
                elif kind is Connected:
                    self._make_connection()
                    if self._connected is not None and not self._connected.done():
                        self._connected.set_result(None)
                elif kind is EndOfStream:
                    if self._protocol is not None and not self._lost and not self._closing_wait:
                        keep_open = self._protocol.eof_received()  # type: ignore[attr-defined]
                        if not keep_open:
                            self.close()
                elif kind is FinAcked:
                    if self._closing_wait:
                        self._closing_wait = False
                        self._lose(None)
                elif kind is Closed:
                    # Both directions are done and every byte was delivered: the connection
                    # has ended (what is left of it in TIME-WAIT is the stack's business),
                    # though the transport stays open until the application closes it.
                    self._ended()
                elif kind is Writable:
                    self._maybe_resume_writing()
                elif kind is Reset:
                    self._on_reset(ev)  # type: ignore[arg-type]
                elif kind is Unreachable:
                    code = errno.ENETUNREACH if ev.what == "network" else errno.EHOSTUNREACH
                    self._fail(OSError(code, f"{os.strerror(code)}: no route to "
                                             f"{self._peer_text()} (ICMP {ev.what} "
                                             f"unreachable)"))
                elif kind is TimedOut:
                    self._fail(TimeoutError(
                        errno.ETIMEDOUT,
                        f"{_TIMEOUT_MESSAGES.get(ev.reason, 'connection timed out')} "
                        f"({self._peer_text()})"))
        except Exception as exc:
            self._loop.call_exception_handler({
                "message": "Fatal error: protocol callback failed",
                "exception": exc, "transport": self, "protocol": self._protocol})
            self.abort()


    def _on_reset(self, ev: Reset) -> None:
        # With errno set, as the kernel's errors come: code that checks exc.errno
        # works the same on utcp.
        if ev.refused:
            self._fail(ConnectionRefusedError(
                errno.ECONNREFUSED, f"connection refused by {self._peer_text()}"))
            return
        exc = ConnectionResetError(errno.ECONNRESET, f"connection reset by {self._peer_text()}")
        if self._closing_wait:
            # Closed, waiting for the FIN's ACK: a reset after the peer's FIN fails
            # wait_closed() only if data of ours was still unacknowledged.
            self._closing_wait = False
            self._lose(None if ev.after_fin and not self.conn.send_buffered else exc)
        elif ev.after_fin and not self.conn.send_buffered:
            # The peer had finished and has everything of ours: as with the kernel's
            # TCP, the reader still gets all data and EOF; a later write fails
            # (drain() and wait_closed() raise), close() does not.
            self._reset_after_fin = exc
        else:
            self._fail(exc)

    def endpoint_closed(self) -> None:
        """The endpoint's socket closed under this connection."""
        if self.conn.state is _TIME_WAIT:
            self._lose(None)  # both sides had finished: all data and EOF were delivered
            return
        self._fail(ConnectionAbortedError(errno.ECONNABORTED, "the endpoint's socket was closed"))

    def _make_connection(self) -> None:
        if self._made:
            return
        if self._protocol is None and self._factory is not None:
            factory, self._factory = self._factory, None
            try:
                self.set_protocol(factory())
            except Exception as exc:
                self._factory_failed(exc)
                return
        if self._protocol is not None:
            self._made = True
            self._protocol.connection_made(self)

    def _factory_failed(self, exc: Exception) -> None:
        # As asyncio does: the error reaches create_connection()'s caller, or, for a
        # server, the loop's exception handler; the connection is reset.
        if self._connected is None:
            self._loop.call_exception_handler({
                "message": "protocol_factory raised for an accepted connection",
                "exception": exc, "transport": self})
        self.abort()
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(exc)

    def _fill_buffers(self, data: bytes) -> None:
        """Deliver ``data`` to a BufferedProtocol, in as many buffers as it takes."""
        protocol: asyncio.BufferedProtocol = self._protocol  # type: ignore[assignment]
        view = memoryview(data)
        while view and self._protocol is protocol and not self._lost:
            buf = protocol.get_buffer(len(view))
            n = min(len(buf), len(view))
            if not n:
                raise RuntimeError("get_buffer() returned an empty buffer")
            buf[:n] = view[:n]  # type: ignore[index]
            protocol.buffer_updated(n)
            view = view[n:]

    def _fail(self, exc: Exception) -> None:
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(exc)
            self._lost = True
            return
        self._lose(exc)

    def _lose(self, exc: Exception | None, *, soon: bool = False) -> None:
        """The application is done with the connection: tell its protocol (now or soon)."""
        if self._lost:
            return
        self._lost = True
        self._ended()
        protocol = self._protocol
        # The connection may linger (TIME-WAIT); the application's objects need not.
        self._protocol = None
        if protocol is not None and self._made:
            if soon:
                self._loop.call_soon(protocol.connection_lost, exc)
            else:
                protocol.connection_lost(exc)

    def _ended(self) -> None:
        """The connection is over for the application: tell ``on_end``, once."""
        on_end = self._on_end
        if on_end is not None:
            self._on_end = None
            on_end(self)

    def _peer_text(self) -> str:
        host = self.remote_address[0]
        return f"[{host}]:{self.conn.remote_port}" if ":" in host else \
            f"{host}:{self.conn.remote_port}"

    def _maybe_resume_writing(self) -> None:
        if not self._writing_paused:
            return
        if self.conn.unsent <= self._low:
            self._writing_paused = False
            self.conn.send_low_water = None
            if self._protocol is not None:
                self._protocol.resume_writing()
        else:
            # The connection says when enough of what it holds has left.
            self.conn.send_low_water = self._low

    async def wait_connected(self) -> None:
        """Wait for the handshake of an active open (its error if it fails)."""
        assert self._connected is not None
        try:
            await self._connected
        except asyncio.CancelledError:
            self.abort()
            raise

    @property
    def endpoint(self) -> Endpoint:
        """The endpoint (UDP socket) carrying this connection; see its ``statistics()``."""
        return self._endpoint

    # ------------------------------------------------------------ BaseTransport

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.remote_address
        if name == "sockname":
            return self._sockname()
        if name == "socket":
            tr = self._endpoint.transport
            return tr.get_extra_info("socket") if tr is not None else default
        if name == "utcp":
            info = self.conn.info()
            info["local_port"] = self.conn.local_port
            info["remote_port"] = self.conn.remote_port
            return info
        return default

    def _sockname(self) -> Address:
        """The local UDP address the peer sees, as the kernel's sockname would be."""
        if self._sockname_cache is None:
            base = self._endpoint.local_address
            host = base[0]
            via = self.conn.via
            if via is not None:
                host = via.host  # type: ignore[attr-defined]
            elif host in WILDCARD_HOSTS:
                # A socket bound to a wildcard address: ask the routing table which
                # address datagrams to the peer leave from (connect sends nothing).
                family = socket.AF_INET6 if len(base) > 2 else socket.AF_INET
                try:
                    with socket.socket(family, socket.SOCK_DGRAM) as probe:
                        probe.connect(self.remote_address)
                        host = probe.getsockname()[0]
                except OSError:
                    pass
            self._sockname_cache = (host, *base[1:])
        return self._sockname_cache

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def close(self) -> None:
        """Send what is buffered, then FIN; the connection finishes in the background."""
        if self._closing:
            return
        self._closing = True
        if self._resume_handle is not None:
            # Reading was resumed: that data belongs to the reader already, and
            # does not make close() a reset (see Connection.close).
            self._resume_handle.cancel()
            self._resume()
        conn = self.conn
        if conn.state is not _CLOSED:
            self._endpoint.close_connection(conn)
        if conn.state in _FIN_UNACKED:
            # wait_closed() resolves once the peer has everything, FIN included (the
            # FinAcked event), or with the error that ended the connection: a
            # connection cannot outlive its loop, so this is the program's one way
            # to know its data arrived before it exits.
            self._closing_wait = True
        else:
            self._lose(None, soon=True)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        self._buffered = isinstance(protocol, asyncio.BufferedProtocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[return-value]

    # ------------------------------------------------------------ ReadTransport

    def is_reading(self) -> bool:
        return self._resume_handle is not None or not self.conn.reading_paused

    def pause_reading(self) -> None:
        if self._resume_handle is not None:
            self._resume_handle.cancel()
            self._resume_handle = None
        self._endpoint.pause_reading(self.conn)

    def resume_reading(self) -> None:
        # Held data is delivered from the loop, not from within this call, as a
        # kernel socket's would be: asyncio's StreamReader resumes reading and only
        # then sets up the waiter that the data must wake (readexactly(n) with n
        # beyond twice its limit would otherwise pause again and wait for ever).
        if self.conn.reading_paused and self._resume_handle is None:
            self._resume_handle = self._loop.call_soon(self._resume)

    def _resume(self) -> None:
        self._resume_handle = None
        if self.conn.reading_paused and not self._lost:
            self._endpoint.resume_reading(self.conn)

    # ----------------------------------------------------------- WriteTransport

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` now, as far as the windows allow; the connection keeps the rest.

        As with asyncio's transports on the kernel's TCP with TCP_NODELAY, each
        write leaves at once (a small one as a segment of its own), or, in a turn
        several connections' events opened, with what the others send in that
        pass of the loop (see :meth:`Endpoint.flush`); ``drain()`` blocks while
        more than the high-water mark is written but not yet sent.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data or self._lost or self._closing:
            return  # like asyncio: writes after the connection is lost are dropped
        if self._reset_after_fin is not None:
            self._lose(self._reset_after_fin, soon=True)  # the peer reset after its FIN
            return
        conn = self.conn
        try:
            self._endpoint.send(conn, bytes(data))
        except ConnectionStateError:
            if self._reset_after_fin is not None:
                self._lose(self._reset_after_fin)  # writing after the peer's RST fails
            return  # the connection ended meanwhile; its error reaches drain()/read()
        # The whole send buffer bounds its unsent part: most writes are decided
        # without computing that part.
        if (not self._writing_paused and conn.send_buffered > self._high
                and conn.unsent > self._high):
            self._writing_paused = True
            conn.send_low_water = self._low
            if self._protocol is not None:
                self._protocol.pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        if self._eof:
            return
        self._eof = True
        if self.conn.state is not _CLOSED:
            self._endpoint.shutdown(self.conn)

    def can_write_eof(self) -> bool:
        return True

    def abort(self) -> None:
        """Reset the connection (RST) and drop anything unsent."""
        self._closing_wait = False  # our own reset: not the peer's, no error
        if self.conn.state is not _CLOSED:
            self._endpoint.abort(self.conn)
        self._closing = True
        self._lose(None, soon=True)

    def _force_close(self, exc: BaseException | None) -> None:
        # What asyncio's own transports offer their SSL protocol for a fatal error
        # (a failed TLS handshake): what was written (the TLS alert) goes, then
        # FIN, and the protocol is told of the error.
        if self._lost:
            return
        self._closing = True
        self._closing_wait = False
        if self.conn.state is not _CLOSED:
            self._endpoint.close_connection(self.conn)
        self._lose(exc, soon=True)  # type: ignore[arg-type]

    def get_write_buffer_size(self) -> int:
        """Bytes written and not yet sent once."""
        return self.conn.unsent

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        # As asyncio's transports do: the new limits apply to what is buffered now.
        conn = self.conn
        if not self._writing_paused and conn.unsent > high:
            self._writing_paused = True
            conn.send_low_water = low
            if self._protocol is not None:
                self._protocol.pause_writing()
        elif self._writing_paused:
            self._maybe_resume_writing()
