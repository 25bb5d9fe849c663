"""The datagram transport beneath the endpoint: a UDP socket read in batches.

asyncio's own datagram transport reads one datagram per turn of the event loop
(and into a 256 KiB buffer). Under load that makes the loop, not TCP, the
bottleneck. This transport registers the socket with ``loop.add_reader``, reads
up to :data:`BATCH` datagrams per wake-up and hands them to the protocol in one
call (``datagrams_received``), so that per-batch work, such as one ACK for many
segments, happens once; ``sendmany`` sends a batch the same way. It also offers
the part of :class:`asyncio.DatagramTransport` the endpoint uses, so asyncio's
transport (or a simulated link) can stand in for it.

On Linux it uses UDP segmentation offload both ways (udp(7)): ``sendmany`` sends
consecutive datagrams to one address, of one size (the last may be shorter), with
one ``sendmsg`` carrying ``UDP_SEGMENT`` (GSO), which the kernel splits into
datagrams; with ``UDP_GRO`` one ``recvmsg`` returns what one sender sent
together, coalesced, with the size to split it at. Each is found out once per
socket and left off where the kernel lacks it; ``UTCP_GSO=0`` and ``UTCP_GRO=0``
in the environment (or the ``gso``/``gro`` arguments) switch them off.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import sys
from asyncio import selector_events
from typing import Any

#: Most datagrams read per wake-up before the loop gets a turn (with GRO, counted
#: after splitting: one read may bring many).
BATCH = 64
#: After this many wake-ups in a row that each found one datagram and then
#: nothing, a wake-up reads one datagram and stops: the read that finds nothing
#: costs a system call and an exception, at every turn of request/response
#: traffic. The loop watches the socket level-triggered, so what is left is read
#: one datagram per turn, and all of it by the next wake-up that reads to the
#: end: after LONE_PROBE such single reads, one does; if it finds more than one
#: datagram, batches are back.
LONE_AFTER = 4
LONE_PROBE = 8
#: Largest datagram read: a UDP payload never exceeds 65507 bytes (nor does what
#: GRO coalesces).
MAX_DATAGRAM = 65536

# Linux UDP segmentation offload (udp(7); socket lacks the names before Python 3.12).
SOL_UDP = 17
UDP_SEGMENT = 103  # since Linux 4.18
UDP_GRO = 104  # since Linux 5.0
#: Most datagrams one GSO send carries (the kernel's UDP_MAX_SEGMENTS).
GSO_MAX_SEGMENTS = 64
#: Most bytes one GSO send carries: the largest UDP payload over IPv4.
GSO_MAX_BYTES = 65507
_GRO_SIZE = struct.Struct("=i")  # the UDP_GRO control message: the segment size
_GRO_SPACE = socket.CMSG_SPACE(_GRO_SIZE.size) if hasattr(socket, "CMSG_SPACE") else 0
#: A send with UDP_SEGMENT fails with these where the kernel will not segment for
#: that destination (a device without checksum offload, IPsec, a path MTU below
#: the segment size): those datagrams then go one by one.
_GSO_REFUSED = frozenset({errno.EIO, errno.EINVAL, errno.EMSGSIZE, errno.EOPNOTSUPP})
#: Most destinations a transport remembers refusing GSO (past this it starts again).
_GSO_REFUSED_CACHE = 1024

# Linux: ICMP errors for an unconnected UDP socket are queued on the socket only
# with IP_RECVERR / IPV6_RECVERR, and read with MSG_ERRQUEUE (see ip(7)).
_RECVERR = {socket.AF_INET: (socket.IPPROTO_IP, 11), socket.AF_INET6: (socket.IPPROTO_IPV6, 25)}
_MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0)
_RECVERR_CMSGS = frozenset(_RECVERR.values())  # the control messages carrying the error
# struct sock_extended_err: ee_errno, ee_origin, ee_type, ee_code, ...
_EE_ORIGIN_ICMP = 2
_EE_ORIGIN_ICMP6 = 3
#: A send that fails with these found no route to its destination.
_NO_ROUTE = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH})
#: What a pending ICMP error makes the next send on the socket fail with.
_ICMP_ERRNOS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH,
                          errno.EHOSTDOWN, errno.EPROTO})

# Linux: a socket bound to a wildcard address learns each datagram's destination
# address from IP_PKTINFO / IPV6_RECVPKTINFO, and sends from a chosen address with
# the same control message (ip(7), ipv6(7)). Python 3.11 lacks IP_PKTINFO's number.
_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_IN_PKTINFO = struct.Struct("=I4s4s")  # ipi_ifindex, ipi_spec_dst, ipi_addr
_IN6_PKTINFO = struct.Struct("=16sI")  # ipi6_addr, ipi6_ifindex
_PKTINFO_SPACE = socket.CMSG_SPACE(max(_IN_PKTINFO.size, _IN6_PKTINFO.size)) \
    if hasattr(socket, "CMSG_SPACE") else 0


#: The hosts a socket bound to any address reports as its own.
WILDCARD_HOSTS = ("0.0.0.0", "::")


def offload_wanted(name: str, value: bool | None = None) -> bool:
    """Whether GSO (``name`` "GSO") or GRO is wanted: ``value`` if given, else
    unless the environment's ``UTCP_<name>`` says 0, off, no or false."""
    if value is not None:
        return value
    return os.environ.get(f"UTCP_{name}", "").strip().lower() not in ("0", "off", "no", "false")


#: The socket buffer asked for each way: room for several windows' bursts.
SOCKET_BUFFER = 4 * 1024 * 1024
# Linux's SO_RCVBUFFORCE and SO_SNDBUFFORCE (socket(7)); None elsewhere.
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33 if sys.platform == "linux" else None)
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32 if sys.platform == "linux" else None)


def enlarge_buffers(sock: Any, size: int = SOCKET_BUFFER) -> int:
    """Ask for ``size`` bytes of socket buffer each way, past net.core.rmem_max and
    wmem_max where the process may (CAP_NET_ADMIN), as QUIC stacks do, else
    within them; return the receive buffer the kernel granted (0: unknown). The
    kernel counts its own overhead in it: it grants twice what is asked, up to
    twice the limit (208 KiB on a stock Linux)."""
    for opt, force in ((socket.SO_RCVBUF, _SO_RCVBUFFORCE), (socket.SO_SNDBUF, _SO_SNDBUFFORCE)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except (OSError, TypeError):  # (TypeError: no such option here)
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, size)
            except OSError:
                pass
    try:
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    except OSError:
        return 0
    return granted if isinstance(granted, int) and granted > 0 else 0


def _udp_socket(sock: socket.socket) -> bool:
    return sys.platform == "linux" and sock.type == socket.SOCK_DGRAM and \
        sock.family in (socket.AF_INET, socket.AF_INET6) and hasattr(sock, "sendmsg")


def _udp_option(sock: socket.socket, option: int, value: int | None = None) -> bool:
    """Read (or, with ``value``, set) a UDP-level option of ``sock``: False where
    the socket is no UDP one or the kernel does not know the option."""
    if not _udp_socket(sock):
        return False
    try:
        if value is None:
            sock.getsockopt(SOL_UDP, option)
        else:
            sock.setsockopt(SOL_UDP, option, value)
    except OSError:
        return False
    return True


def gso_supported(sock: socket.socket) -> bool:
    """Whether the kernel segments a UDP send for ``sock`` (Linux 4.18 and later
    know the option; older ones refuse to read it)."""
    return _udp_option(sock, UDP_SEGMENT)


def gro_supported(sock: socket.socket) -> bool:
    """Whether the kernel can coalesce what arrives for ``sock`` (Linux 5.0 and later)."""
    return bool(_GRO_SPACE) and _udp_option(sock, UDP_GRO)


def _enable_gro(sock: socket.socket) -> bool:
    """Have the kernel coalesce what arrives for ``sock``; False where it cannot."""
    return bool(_GRO_SPACE) and _udp_option(sock, UDP_GRO, 1)


class LocalAddress:
    """The address a datagram arrived at, on a socket bound to a wildcard address.

    TCP answers from the address the peer sent to; the kernel's choice of source
    address for a wildcard socket may be another one (a second address on the
    interface, another link-local address), whose replies the peer cannot match.
    """

    __slots__ = ("host", "ancillary")

    def __init__(self, host: str, ancillary: tuple[int, int, bytes]) -> None:
        self.host = host
        #: The control message that makes sendmsg() send from ``host``.
        self.ancillary = ancillary

    def __repr__(self) -> str:
        return f"LocalAddress({self.host!r})"


def _enable_pktinfo(sock: socket.socket) -> bool:
    """Ask the kernel for each datagram's destination address; False where it cannot."""
    if sys.platform != "linux" or not _PKTINFO_SPACE or \
            sock.getsockname()[0] not in WILDCARD_HOSTS:
        return False
    try:
        if sock.family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
        elif sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        else:
            return False
    except (OSError, AttributeError):
        return False
    return True


def _local_address(ancdata: list[tuple[int, int, bytes]]) -> LocalAddress | None:
    for level, kind, info in ancdata:
        if level == socket.IPPROTO_IP and kind == _IP_PKTINFO and len(info) >= 12:
            _, _, dst = _IN_PKTINFO.unpack_from(info)
            return LocalAddress(socket.inet_ntop(socket.AF_INET, dst), (
                socket.IPPROTO_IP, _IP_PKTINFO, _IN_PKTINFO.pack(0, dst, bytes(4))))
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(info) >= 20:
            dst, ifindex = _IN6_PKTINFO.unpack_from(info)
            if dst[:12] == b"\0" * 10 + b"\xff\xff":
                return None  # IPv4-mapped on a dual-stack socket: the kernel's choice
            return LocalAddress(socket.inet_ntop(socket.AF_INET6, dst), (
                socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, _IN6_PKTINFO.pack(dst, ifindex)))
    return None


#: Most control messages a transport remembers the LocalAddress of (a host has
#: few addresses and interfaces; past this the cache starts again).
_LOCAL_CACHE = 256


class _LocalAddresses(dict):  # type: ignore[type-arg]
    """The LocalAddress of each control message seen, by its bytes.

    Every datagram to one address on one interface carries the same control
    message: one dict lookup then stands for unpacking it, formatting the address
    and making a new object, and the connections made at that address share one.
    """

    __slots__ = ()

    def __missing__(self, cmsg: tuple[int, int, bytes]) -> LocalAddress | None:
        if len(self) >= _LOCAL_CACHE:
            self.clear()
        local = self[cmsg] = _local_address([cmsg])
        return local


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
                 protocol: asyncio.DatagramProtocol, *, pktinfo: bool = False,
                 gso: bool | None = None, gro: bool | None = None) -> None:
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._closed = False
        self.send_errors = 0  # datagrams the kernel refused (a full buffer, no route)
        sock.setblocking(False)
        self._recverr = _enable_recverr(sock, loop)
        #: Whether datagrams arrive with the address they were sent to (LocalAddress),
        #: on a socket bound to a wildcard address: the endpoint asks for it (see
        #: Endpoint.create) to match each connection's local address.
        self.pktinfo = pktinfo and _enable_pktinfo(sock)
        #: Whether sendmany() sends runs of datagrams to one address with UDP GSO
        #: (None or True: where the kernel can and UTCP_GSO does not say 0).
        self.gso = offload_wanted("GSO", gso) and gso_supported(sock)
        #: Whether the kernel coalesces arrivals (UDP GRO), split again here.
        self.gro = offload_wanted("GRO", gro) and _enable_gro(sock)
        self._gso_refused: set[Any] = set()  # destinations the kernel would not segment for
        self._gso_sizes: dict[int, bytes] = {}  # UDP_SEGMENT control data by segment size
        self._locals = _LocalAddresses()
        self._extra = {"socket": sock, "sockname": sock.getsockname()}
        # Wake-ups in a row that found a lone datagram (see LONE_AFTER); from
        # LONE_AFTER on, also the wake-ups since the last that read to the end.
        self._lone = 0
        if self.gro:
            self._cmsg_space = _GRO_SPACE + (_PKTINFO_SPACE if self.pktinfo else 0)
            reader = self._read_ready_gro
        else:
            reader = self._read_ready_pktinfo if self.pktinfo else self._read_ready
        try:
            loop.add_reader(sock.fileno(), reader)
        except BaseException:
            if self.gro:  # (the loop's own transport may read this socket instead)
                sock.setsockopt(SOL_UDP, UDP_GRO, 0)
            raise
        protocol.connection_made(self)  # type: ignore[arg-type]

    def _read_ready_gro(self) -> None:
        """As :meth:`_read_ready` (or :meth:`_read_ready_pktinfo`), on a socket where
        the kernel coalesces datagrams: one read may bring many from one sender, all
        of the size its UDP_GRO control message gives (the last may be shorter),
        split here into the datagrams that were sent."""
        recvmsg = self._sock.recvmsg
        space = self._cmsg_space
        locals_ = self._locals if self.pktinfo else None
        batch: list[tuple[Any, ...]] = []
        append = batch.append
        extend = batch.extend
        limit = self._read_limit()
        n = 0
        while n < limit:
            try:
                data, ancdata, _flags, addr = recvmsg(MAX_DATAGRAM, space)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if self._recverr:
                    self._read_errors()
                    continue
                self._protocol.error_received(exc)
                break
            size = 0
            local = None
            for cmsg in ancdata:
                if cmsg[0] == SOL_UDP:  # UDP_GRO: the one control message at this level
                    size = _GRO_SIZE.unpack_from(cmsg[2])[0]
                elif locals_ is not None:
                    local = locals_[cmsg]
            if size > 0 and len(data) > size:
                # (Slices of bytes are bytes: each datagram its own, as the stack keeps
                # payloads, and the coalesced buffer is not held by any of them.)
                length = len(data)
                if locals_ is None:
                    extend([(data[i:i + size], addr) for i in range(0, length, size)])
                else:
                    extend([(data[i:i + size], addr, local) for i in range(0, length, size)])
                n += -(-length // size)
            else:
                append((data, addr) if locals_ is None else (data, addr, local))
                n += 1
        if batch:
            self._read_count(n, limit)
            self._protocol.datagrams_received(batch)  # type: ignore[attr-defined]

    def _read_ready_pktinfo(self) -> None:
        """As :meth:`_read_ready`, each datagram with the local address it reached:
        the batch holds ``(data, addr, local)``."""
        recvmsg = self._sock.recvmsg
        locals_ = self._locals
        batch: list[tuple[Any, ...]] = []
        append = batch.append
        limit = self._read_limit()
        for _ in range(limit):
            try:
                data, ancdata, _flags, addr = recvmsg(MAX_DATAGRAM, _PKTINFO_SPACE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if self._recverr:
                    self._read_errors()
                    continue
                self._protocol.error_received(exc)
                break
            # One control message, the pktinfo (errors come with MSG_ERRQUEUE only);
            # none if the kernel had no room for it.
            append((data, addr, locals_[ancdata[0]] if ancdata else None))
        if batch:
            self._read_count(len(batch), limit)
            self._protocol.datagrams_received(batch)  # type: ignore[attr-defined]

    def _read_ready(self) -> None:
        """Read up to BATCH datagrams (one, after lone ones: see LONE_AFTER) and hand
        them over as ``(data, addr)`` pairs."""
        recvfrom = self._sock.recvfrom
        batch: list[tuple[Any, ...]] = []
        append = batch.append
        limit = self._read_limit()
        for _ in range(limit):
            try:
                append(recvfrom(MAX_DATAGRAM))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if self._recverr:
                    self._read_errors()  # the error came from the queue: read it there
                    continue
                self._protocol.error_received(exc)
                break
        if batch:
            self._read_count(len(batch), limit)
            self._protocol.datagrams_received(batch)  # type: ignore[attr-defined]

    def _read_limit(self) -> int:
        """How many datagrams this wake-up may read (see LONE_AFTER)."""
        lone = self._lone
        if lone < LONE_AFTER or lone >= LONE_AFTER + LONE_PROBE:
            return BATCH
        self._lone = lone + 1
        return 1

    def _read_count(self, n: int, limit: int) -> None:
        """A wake-up allowed ``limit`` datagrams read ``n`` (at least one)."""
        if n > 1:
            self._lone = 0  # (with GRO, one read may bring many: a burst all the same)
        elif limit > 1:  # one datagram, and then nothing (or an error) to read
            lone = self._lone
            self._lone = lone + 1 if lone < LONE_AFTER else LONE_AFTER

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
            for level, kind, info in ancdata:
                if (level, kind) not in _RECVERR_CMSGS or len(info) < 8:
                    continue  # (IP_PKTINFO comes along when it is enabled)
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
                self._send_failed(data, addr, exc)
                return
            # An ICMP error about some earlier datagram, to any peer, surfaced
            # here and this datagram did not leave: read the error, send again.
            self._read_errors()
            try:
                self._sock.sendto(data, addr)
            except OSError as again:
                self._send_failed(data, addr, again)

    def _send_failed(self, data: bytes, addr: Any, exc: OSError) -> None:
        """``data`` did not leave for ``addr``. No route to it fails that datagram's
        connection as an ICMP error would; otherwise TCP retransmits it like any
        lost segment."""
        self.send_errors += 1
        unreachable = getattr(self._protocol, "unreachable", None)
        if exc.errno in _NO_ROUTE and unreachable is not None:
            unreachable(data, addr, exc.errno)
        else:
            self._protocol.error_received(exc)

    def sendmany(self, datagrams: list[tuple[bytes, Any, Any]]) -> None:
        """Send ``(data, addr, local)`` datagrams in order (``local`` None: from the
        address the kernel picks), each as :meth:`sendto` or :meth:`sendto_from` would.

        With :attr:`gso`, each run of datagrams to one address from one local
        address, all of one size but the last (which may be shorter), goes in one
        system call (up to GSO_MAX_SEGMENTS datagrams, GSO_MAX_BYTES bytes)."""
        if self._closed:
            return
        sendto = self._sock.sendto
        sendmsg = self._sock.sendmsg
        if not self.gso:
            for data, addr, local in datagrams:
                try:
                    if local is None:
                        sendto(data, addr)
                    else:
                        sendmsg([data], [local.ancillary], 0, addr)
                except (BlockingIOError, InterruptedError):
                    self.send_errors += 1  # TCP retransmits it like any lost segment
                except OSError as exc:
                    # An ICMP error, or worse (for sendmsg, the address may be gone): as
                    # sendto() deals with it, from the address the kernel picks.
                    self._send_failed_once(data, addr, exc)
            return
        refused = self._gso_refused
        n = len(datagrams)
        i = 0
        while i < n:
            data, addr, local = datagrams[i]
            j = i + 1
            if j < n and not (refused and addr in refused):
                size = total = len(data)
                end = i + GSO_MAX_SEGMENTS
                while j < n and j < end:
                    d, a, v = datagrams[j]
                    k = len(d)
                    if k > size or v is not local or total + k > GSO_MAX_BYTES or \
                            (a is not addr and a != addr):
                        break
                    total += k
                    j += 1
                    if k < size:
                        break  # a shorter datagram ends the run
            if j - i == 1:
                # Alone: as without GSO (written out: connection setup sends many such).
                try:
                    if local is None:
                        sendto(data, addr)
                    else:
                        sendmsg([data], [local.ancillary], 0, addr)
                except (BlockingIOError, InterruptedError):
                    self.send_errors += 1
                except OSError as exc:
                    self._send_failed_once(data, addr, exc)
                i = j
                continue
            seg = self._gso_sizes.get(size)
            if seg is None:
                seg = self._gso_sizes[size] = struct.pack("=H", size)
            ancillary = [(SOL_UDP, UDP_SEGMENT, seg)]
            if local is not None:
                ancillary.append(local.ancillary)
            try:
                sendmsg([d for d, _, _ in datagrams[i:j]], ancillary, 0, addr)
            except (BlockingIOError, InterruptedError):
                self.send_errors += j - i  # TCP retransmits them like any lost segments
            except OSError as exc:
                if self._recverr and exc.errno in _ICMP_ERRNOS:
                    self._read_errors()  # (see _send_failed_once)
                elif exc.errno in _GSO_REFUSED:
                    # Not for this destination (see _GSO_REFUSED): from now on one by one.
                    if len(refused) >= _GSO_REFUSED_CACHE:
                        refused.clear()
                    refused.add(addr)
                # (The ICMP error read or the refusal noted, or a failure each
                # datagram would meet alike: each goes as it would without GSO.)
                for d, a, v in datagrams[i:j]:
                    self._send_one(d, a, v)
            i = j

    def _send_one(self, data: bytes, addr: Any, local: Any) -> None:
        """One datagram of sendmany() without GSO."""
        try:
            if local is None:
                self._sock.sendto(data, addr)
            else:
                self._sock.sendmsg([data], [local.ancillary], 0, addr)
        except (BlockingIOError, InterruptedError):
            self.send_errors += 1
        except OSError as exc:
            self._send_failed_once(data, addr, exc)

    def _send_failed_once(self, data: bytes, addr: Any, exc: OSError) -> None:
        """A send of sendmany() failed with ``exc``: read the ICMP error it met, if
        that is what it was (the failed send took the error's errno off the
        socket, and the retry succeeds: the error would stay queued unread), then
        send again as :meth:`sendto`."""
        if self._recverr and exc.errno in _ICMP_ERRNOS:
            self._read_errors()
        self.sendto(data, addr)

    def sendto_from(self, data: bytes, addr: Any, local: LocalAddress) -> None:
        """Send one datagram from the local address ``local`` (see :attr:`pktinfo`)."""
        if self._closed:
            return
        try:
            self._sock.sendmsg([data], [local.ancillary], 0, addr)
        except (BlockingIOError, InterruptedError):
            self.send_errors += 1
        except OSError as exc:
            # That address is gone (or the error is an ICMP one for another peer):
            # let sendto() deal with it, from the address the kernel picks.
            self._send_failed_once(data, addr, exc)

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
    local_addr: tuple[Any, ...], family: int = 0, *, pktinfo: bool = False,
    gso: bool | None = None, gro: bool | None = None,
) -> Any:
    """Bind a UDP socket at ``local_addr`` and connect ``protocol`` to it.

    With ``pktinfo``, a socket on a wildcard address hands each datagram to the
    protocol with the address it was sent to (see :class:`LocalAddress`).
    ``gso`` and ``gro`` switch UDP segmentation offload off (False) or leave it
    to the kernel and the environment (None, see :func:`offload_wanted`).

    On asyncio's selector loops this is a :class:`BatchedDatagramTransport`. On
    other loops it is the loop's own datagram transport (uvloop's, written in C,
    reads and sends with less Python work than any transport written here), but
    for ``pktinfo``, which needs ``recvmsg``, and where the kernel offers GSO or
    GRO (one system call for many datagrams beats any number of calls in C), where
    the loop supports ``add_reader``. On a virtual-time loop (:mod:`utcp.emulator`)
    it is a socket of the loop's simulated network.
    """
    network = getattr(loop, "utcp_network", None)
    if network is not None:
        return network.bind(protocol, local_addr)
    infos = await loop.getaddrinfo(local_addr[0], local_addr[1], family=family,
                                   type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    if not infos:
        raise OSError(f"cannot resolve {local_addr[0]!r}")
    fam, _, proto, _, addr = infos[0]
    sock = socket.socket(fam, socket.SOCK_DGRAM, proto)
    try:
        try:
            sock.bind(addr)
        except OSError as exc:
            # As asyncio words it: the address is part of the message.
            raise OSError(exc.errno, f"error while attempting to bind on address "
                                     f"{addr!r}: {(exc.strerror or str(exc)).lower()}") \
                from None
        if not (pktinfo or isinstance(loop, selector_events.BaseSelectorEventLoop)
                or (offload_wanted("GSO", gso) and gso_supported(sock))
                or (offload_wanted("GRO", gro) and gro_supported(sock))):
            transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
            return transport
        try:
            return BatchedDatagramTransport(loop, sock, protocol, pktinfo=pktinfo,
                                            gso=gso, gro=gro)
        except NotImplementedError:
            transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
            return transport
    except BaseException:
        sock.close()
        raise
