"""The datagram transport beneath the endpoint: a UDP socket read in batches.

asyncio's own datagram transport reads one datagram per turn of the event loop
(and into a 256 KiB buffer). Under load that makes the loop, not TCP, the
bottleneck. This transport registers the socket with ``loop.add_reader`` and
reads up to :data:`BATCH` datagrams per wake-up, then tells the protocol the
batch is over (``batch_done``), so that per-batch work, such as one ACK for
many segments, happens once. It offers the part of
:class:`asyncio.DatagramTransport` the endpoint uses, so asyncio's transport
(or a simulated link) can stand in for it.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
from asyncio import selector_events
from typing import Any

#: Most datagrams read per wake-up before the loop gets a turn.
BATCH = 64
#: Largest datagram read: a UDP payload never exceeds 65507 bytes.
MAX_DATAGRAM = 65536

# Linux: ICMP errors for an unconnected UDP socket are queued on the socket only
# with IP_RECVERR / IPV6_RECVERR, and read with MSG_ERRQUEUE (see ip(7)).
_RECVERR = {socket.AF_INET: (socket.IPPROTO_IP, 11), socket.AF_INET6: (socket.IPPROTO_IPV6, 25)}
_MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0)
# struct sock_extended_err: ee_errno, ee_origin, ee_type, ee_code, ...
_EE_ORIGIN_ICMP = 2
_EE_ORIGIN_ICMP6 = 3
#: What a pending ICMP error makes the next send on the socket fail with.
_ICMP_ERRNOS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH,
                          errno.EHOSTDOWN, errno.EPROTO})


def _enable_recverr(sock: socket.socket, loop: asyncio.AbstractEventLoop) -> bool:
    """Ask the kernel to queue ICMP errors on ``sock``; False where it cannot.

    Only a selector loop keeps reading a socket whose error queue is not empty:
    libuv (uvloop) stops polling a descriptor that reports an error, so there the
    socket goes without ICMP errors and a refused SYN times out instead.
    """
    if not isinstance(loop, selector_events.BaseSelectorEventLoop):
        return False
    level_opt = _RECVERR.get(sock.family)
    if level_opt is None or not _MSG_ERRQUEUE or not hasattr(sock, "recvmsg"):
        return False
    try:
        sock.setsockopt(level_opt[0], level_opt[1], 1)
    except OSError:
        return False
    return True


class BatchedDatagramTransport:
    """A non-blocking UDP socket driven by ``loop.add_reader``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol: asyncio.DatagramProtocol) -> None:
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._closed = False
        self.send_errors = 0  # datagrams the kernel refused (a full socket buffer)
        sock.setblocking(False)
        self._recverr = _enable_recverr(sock, loop)
        self._extra = {"socket": sock, "sockname": sock.getsockname()}
        self._batch_done = getattr(protocol, "batch_done", None)
        loop.add_reader(sock.fileno(), self._read_ready)
        protocol.connection_made(self)  # type: ignore[arg-type]

    def _read_ready(self) -> None:
        recvfrom = self._sock.recvfrom
        received = self._protocol.datagram_received
        for _ in range(BATCH):
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if self._recverr:
                    self._read_errors()  # the error came from the queue: read it there
                    continue
                self._protocol.error_received(exc)
                break
            received(data, addr)
        if self._batch_done is not None:
            self._batch_done()

    def _read_errors(self) -> None:
        """Hand each queued ICMP error, with the datagram it quotes, to the protocol."""
        unreachable = getattr(self._protocol, "unreachable", None)
        for _ in range(BATCH):
            try:
                data, ancdata, _, addr = self._sock.recvmsg(MAX_DATAGRAM, 512, _MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            for _level, _type, info in ancdata:
                if len(info) < 8:
                    continue
                err, origin, icmp_type, icmp_code = struct.unpack_from("=IBBB", info)
                if origin in (_EE_ORIGIN_ICMP, _EE_ORIGIN_ICMP6) and unreachable is not None:
                    unreachable(data, addr, err)
                else:
                    self._protocol.error_received(OSError(err, os.strerror(err)))

    def sendto(self, data: bytes, addr: Any = None) -> None:
        """Send one datagram now; if the kernel has no room, drop it as a full link would."""
        if self._closed:
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.send_errors += 1  # TCP retransmits it like any lost segment
        except OSError as exc:
            if not (self._recverr and exc.errno in _ICMP_ERRNOS):
                self._protocol.error_received(exc)
                return
            # An ICMP error about some earlier datagram, to any peer, surfaced
            # here and this datagram did not leave: read the error, send again.
            self._read_errors()
            try:
                self._sock.sendto(data, addr)
            except OSError:
                self.send_errors += 1  # TCP retransmits it like any lost segment

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._loop.call_soon(self._finish_close)

    def abort(self) -> None:
        self.close()

    def _finish_close(self) -> None:
        try:
            self._protocol.connection_lost(None)
        finally:
            self._sock.close()


async def open_datagram_socket(
    loop: asyncio.AbstractEventLoop, protocol: asyncio.DatagramProtocol,
    local_addr: tuple[Any, ...], family: int = 0,
) -> Any:
    """Bind a UDP socket at ``local_addr`` and connect ``protocol`` to it.

    Uses :class:`BatchedDatagramTransport` where the loop supports ``add_reader``
    and asyncio's datagram transport elsewhere (such as Windows' proactor loop).
    """
    infos = await loop.getaddrinfo(local_addr[0], local_addr[1], family=family,
                                   type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    if not infos:
        raise OSError(f"cannot resolve {local_addr[0]!r}")
    fam, _, proto, _, addr = infos[0]
    sock = socket.socket(fam, socket.SOCK_DGRAM, proto)
    try:
        sock.bind(addr)
        try:
            return BatchedDatagramTransport(loop, sock, protocol)
        except NotImplementedError:
            transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
            return transport
    except BaseException:
        sock.close()
        raise
