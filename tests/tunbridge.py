"""A bridge between utcp's UDP datagrams and real IPv4/TCP packets on a TUN device.

utcp puts exactly one TCP segment in each UDP datagram, laid out as RFC 9293
section 3.1 says; the only difference from a segment inside an IP packet is the
checksum, which utcp computes over the segment alone, without the IP
pseudo-header. So turning utcp's traffic into traffic the Linux kernel takes for
TCP is a matter of:

    utcp -> kernel   UDP payload = TCP segment
                     -> check its checksum (segment alone, as utcp computed it)
                     -> recompute it WITH the pseudo-header (RFC 9293 3.1)
                     -> prepend an IPv4 header (src UTCP_IP, dst KERNEL_IP, proto 6)
                     -> write the packet to the TUN device: the kernel receives it

    kernel -> utcp   read an IPv4 packet from the TUN device (the kernel routes
                     everything for UTCP_IP there); ignore anything but TCP
                     -> check its checksum (with the pseudo-header)
                     -> strip the IP header
                     -> recompute the checksum over the segment alone
                     -> send the segment as one UDP datagram to utcp

Ports pass through untouched. A utcp client uses its destination UDP port as the
TCP port too, so the bridge listens for UDP on the very numbers of the kernel's
TCP ports (UDP 127.0.0.1:7100 fronts the kernel's TCP port 7100). Which UDP
address a segment from the kernel goes to is learned from utcp's own datagrams
(utcp's TCP port -> its UDP address). A segment for a utcp TCP port not seen yet
(a kernel client's SYN) goes to UDP port = TCP port, where a utcp server listens.

Segment headers are parsed here independently of utcp's codec, so the log of
what crossed the bridge is a second opinion on what utcp sent and received.

Use it as a library (``await Bridge.start(...)`` on a running loop, inside the
network namespace that owns the TUN device), or on its own:

    ip netns exec NS python tests/tunbridge.py --tun utun0 --port 7100
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import itertools
import os
import socket
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KERNEL_IP = "169.254.88.1"  # the TUN device's own address: the kernel's end
UTCP_IP = "169.254.88.2"  # the address utcp appears at, routed into the TUN
PREFIX = 24
UDP_HOST = "127.0.0.1"  # where utcp's datagrams and the bridge meet

IPPROTO_TCP = 6

# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000  # no 4-byte packet-information prefix: reads and writes are bare IP
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)

FLAG_NAMES = ((0x02, "SYN"), (0x01, "FIN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"),
              (0x20, "URG"), (0x40, "ECE"), (0x80, "CWR"))
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
# TCP option kinds (IANA)
EOL, NOP, MSS, WSCALE, SACK_PERMITTED, SACK, TIMESTAMPS = 0, 1, 2, 3, 4, 5, 8

Address = tuple[Any, ...]


# ------------------------------------------------------------------ checksums


def internet_checksum(data: bytes) -> int:
    """RFC 1071: one's complement of the one's-complement sum of 16-bit words.

    Written plainly (not as utcp's ``wire.checksum``) so that it checks utcp's
    arithmetic rather than repeating it. Over data that includes a valid checksum
    field, the result is 0.
    """
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo_header(src: str, dst: str, tcp_length: int) -> bytes:
    """The IPv4 pseudo-header of RFC 9293 section 3.1 (covered by the TCP checksum)."""
    return (socket.inet_aton(src) + socket.inet_aton(dst)
            + struct.pack("!BBH", 0, IPPROTO_TCP, tcp_length))


def with_checksum(segment: bytes, prefix: bytes = b"") -> bytes:
    """``segment`` with its checksum field (bytes 16-17) recomputed over ``prefix + segment``."""
    seg = bytearray(segment)
    seg[16:18] = b"\0\0"
    seg[16:18] = struct.pack("!H", internet_checksum(prefix + bytes(seg)))
    return bytes(seg)


# ------------------------------------------------------------------ IPv4


_ip_ids = itertools.count(1)


def ipv4_packet(src: str, dst: str, segment: bytes) -> bytes:
    """An IPv4 packet carrying ``segment`` (its checksum must already be the IP one)."""
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,  # version 4, header length 5 words (no IP options)
        0,  # DSCP/ECN
        20 + len(segment),  # total length
        next(_ip_ids) & 0xFFFF,  # identification
        0x4000,  # flags: Don't Fragment, offset 0
        64,  # TTL
        IPPROTO_TCP,
        0,  # header checksum, filled in below
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:] + segment


def parse_ipv4_tcp(packet: bytes) -> tuple[str, str, bytes] | None:
    """``(src, dst, segment)`` of an unfragmented IPv4 packet carrying TCP, else None."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None  # not IPv4 (the kernel also sends IPv6 router solicitations and such)
    ihl = (packet[0] & 0x0F) * 4
    total = struct.unpack_from("!H", packet, 2)[0]
    frag = struct.unpack_from("!H", packet, 6)[0]
    if packet[9] != IPPROTO_TCP or frag & 0x3FFF or ihl < 20 or total > len(packet):
        return None
    src, dst = socket.inet_ntoa(packet[12:16]), socket.inet_ntoa(packet[16:20])
    return src, dst, packet[ihl:total]


# ------------------------------------------------------------------ TCP headers


@dataclass(frozen=True)
class Header:
    """The header of one TCP segment, as this module reads it (payload left out)."""

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int
    options: tuple[tuple[int, bytes], ...]  # (kind, raw value), NOPs left out
    payload_len: int

    @property
    def flag_names(self) -> str:
        return ",".join(name for bit, name in FLAG_NAMES if self.flags & bit)

    def option(self, kind: int) -> bytes | None:
        for k, v in self.options:
            if k == kind:
                return v
        return None

    @property
    def mss(self) -> int | None:
        v = self.option(MSS)
        return struct.unpack("!H", v)[0] if v is not None and len(v) == 2 else None

    @property
    def wscale(self) -> int | None:
        v = self.option(WSCALE)
        return v[0] if v is not None and len(v) == 1 else None

    def __str__(self) -> str:
        names = {MSS: "mss", WSCALE: "wscale", SACK_PERMITTED: "sackOK", SACK: "sack",
                 TIMESTAMPS: "ts"}
        opts = " ".join(names.get(k, str(k)) + (f"={int.from_bytes(v, 'big')}"
                                                if k in (MSS, WSCALE) else "")
                        for k, v in self.options)
        return (f"{self.src_port}>{self.dst_port} [{self.flag_names}] seq={self.seq} "
                f"ack={self.ack} win={self.window} len={self.payload_len}"
                + (f" <{opts}>" if opts else ""))


def parse_tcp(segment: bytes) -> Header:
    """Read a TCP header (RFC 9293 3.1). Raises ValueError if it is not well formed."""
    if len(segment) < 20:
        raise ValueError(f"{len(segment)} bytes is shorter than a TCP header")
    src, dst, seq, ack, off_flags, window = struct.unpack_from("!HHIIHH", segment)
    offset = (off_flags >> 12) * 4
    if not 20 <= offset <= len(segment):
        raise ValueError(f"bad data offset {offset}")
    opts: list[tuple[int, bytes]] = []
    raw, i = segment[20:offset], 0
    while i < len(raw):
        kind = raw[i]
        if kind == EOL:
            break
        if kind == NOP:
            i += 1
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2 or i + raw[i + 1] > len(raw):
            raise ValueError(f"bad length for option {kind}")
        opts.append((kind, bytes(raw[i + 2:i + raw[i + 1]])))
        i += raw[i + 1]
    return Header(src, dst, seq, ack, off_flags & 0xFF, window, tuple(opts),
                  len(segment) - offset)


# ------------------------------------------------------------------ the TUN device


def open_tun(name: str) -> int:
    """Create TUN device ``name`` in the calling thread's network namespace; its fd.

    The device lives as long as the fd stays open (it is not persistent).
    """
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        ifr = struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
    except BaseException:
        os.close(fd)
        raise
    return fd


def configure_tun(name: str, address: str = KERNEL_IP, prefix: int = PREFIX,
                  netns: str | None = None) -> None:
    """Give the TUN device its address and bring it (and loopback) up, with iproute2.

    The connected route for ``address/prefix`` sends UTCP_IP into the TUN device.
    """
    ip = ["ip"] + (["-n", netns] if netns else [])
    for args in (["addr", "add", f"{address}/{prefix}", "dev", name],
                 ["link", "set", "lo", "up"],
                 ["link", "set", name, "up"]):
        subprocess.run(ip + args, check=True, capture_output=True, timeout=10)


# ------------------------------------------------------------------ the bridge


@dataclass
class BridgeStats:
    to_kernel: int = 0  # utcp datagrams written to the TUN device as IP packets
    to_utcp: int = 0  # kernel TCP segments sent to utcp as datagrams
    bad_utcp_checksum: int = 0  # utcp datagrams whose segment-only checksum failed
    bad_kernel_checksum: int = 0  # kernel packets whose pseudo-header checksum failed
    malformed: int = 0  # datagrams or packets whose TCP header did not parse
    ignored: int = 0  # packets from the TUN device that are not IPv4/TCP to utcp
    dropped: int = 0  # segments the ``drop`` hook threw away (a lossy link, on purpose)
    log: list[tuple[str, Header]] = field(default_factory=list)  # ("out"|"in", header)

    def sent_by_utcp(self) -> list[Header]:
        return [h for d, h in self.log if d == "out"]

    def sent_by_kernel(self) -> list[Header]:
        return [h for d, h in self.log if d == "in"]


class _UdpSide(asyncio.DatagramProtocol):
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        assert self.transport is not None
        self.bridge.from_utcp(data, addr, self.transport)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable from loopback: utcp is gone; nothing to do


class Bridge:
    """Forwards between UDP sockets on ``UDP_HOST`` and a TUN device; see the module doc."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tun_fd: int, *,
                 kernel_ip: str = KERNEL_IP, utcp_ip: str = UTCP_IP,
                 udp_host: str = UDP_HOST, rcvbuf: int = 8 * 1024 * 1024,
                 drop: Callable[[str, Header], bool] | None = None) -> None:
        """``rcvbuf``: the UDP sockets' receive buffer. utcp may send a whole congestion
        window in one go; the default buffer (about 200 KiB) would overflow and lose
        datagrams. ``drop(direction, header)`` (direction "out": utcp to kernel, "in":
        kernel to utcp) returning True loses that segment on the way.
        """
        self.loop = loop
        self.tun_fd = tun_fd
        self.kernel_ip = kernel_ip
        self.utcp_ip = utcp_ip
        self.udp_host = udp_host
        self.sockets: list[asyncio.DatagramTransport] = []
        # (utcp's TCP port, kernel's TCP port) -> (our UDP socket, utcp's UDP address)
        self.routes: dict[tuple[int, int], tuple[asyncio.DatagramTransport, Address]] = {}
        self.rcvbuf = rcvbuf
        self.drop = drop
        self.stats = BridgeStats()
        self.log_limit = 100_000
        # UDP sockets a rebind() left behind: what utcp still sends to them is
        # lost, as at a NAT mapping that expired.
        self.dead: set[asyncio.DatagramTransport] = set()

    @classmethod
    async def start(cls, tun_fd: int, udp_ports: list[int], **kwargs: Any) -> Bridge:
        """Listen for utcp on each of ``udp_ports`` and for the kernel on ``tun_fd``."""
        bridge = cls(asyncio.get_running_loop(), tun_fd, **kwargs)
        for port in udp_ports:
            transport, _ = await bridge.loop.create_datagram_endpoint(
                lambda: _UdpSide(bridge), local_addr=(bridge.udp_host, port))
            bridge.sockets.append(transport)
            sock = transport.get_extra_info("socket")
            try:  # beyond net.core.rmem_max: needs CAP_NET_ADMIN, which root has
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, bridge.rcvbuf)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bridge.rcvbuf)
        bridge.loop.add_reader(tun_fd, bridge._tun_readable)
        return bridge

    async def rebind(self) -> int:
        """Carry every connection's kernel segments from a new UDP port, and lose
        what utcp sends to the old ones: the kernel's side seen from behind a NAT
        that gave it a new mapping. Returns the new port."""
        transport, _ = await self.loop.create_datagram_endpoint(
            lambda: _UdpSide(self), local_addr=(self.udp_host, 0))
        self.sockets.append(transport)
        for key, (old, addr) in list(self.routes.items()):
            self.dead.add(old)
            self.routes[key] = (transport, addr)
        return int(transport.get_extra_info("sockname")[1])

    def close(self) -> None:
        self.loop.remove_reader(self.tun_fd)
        for transport in self.sockets:
            transport.close()

    def _log(self, direction: str, header: Header) -> None:
        if len(self.stats.log) < self.log_limit:
            self.stats.log.append((direction, header))

    # utcp -> kernel
    def from_utcp(self, data: bytes, addr: Address,
                  transport: asyncio.DatagramTransport) -> None:
        if transport in self.dead:
            self.stats.dropped += 1
            return
        if internet_checksum(data) != 0:
            self.stats.bad_utcp_checksum += 1
            return
        try:
            header = parse_tcp(data)
        except ValueError:
            self.stats.malformed += 1
            return
        self._log("out", header)
        if self.drop is not None and self.drop("out", header):
            self.stats.dropped += 1
            return
        self.routes[(header.src_port, header.dst_port)] = (transport, addr)
        segment = with_checksum(data, pseudo_header(self.utcp_ip, self.kernel_ip, len(data)))
        try:
            os.write(self.tun_fd, ipv4_packet(self.utcp_ip, self.kernel_ip, segment))
        except BlockingIOError:
            return  # the device queue is full: a lost packet, as on any link
        self.stats.to_kernel += 1

    # kernel -> utcp
    def _tun_readable(self) -> None:
        for _ in range(64):
            try:
                packet = os.read(self.tun_fd, 65536)
            except BlockingIOError:
                return
            self.from_kernel(packet)

    def from_kernel(self, packet: bytes) -> None:
        parsed = parse_ipv4_tcp(packet)
        if parsed is None or parsed[1] != self.utcp_ip:
            self.stats.ignored += 1
            return
        src, dst, segment = parsed
        if internet_checksum(pseudo_header(src, dst, len(segment)) + segment) != 0:
            self.stats.bad_kernel_checksum += 1
            return
        try:
            header = parse_tcp(segment)
        except ValueError:
            self.stats.malformed += 1
            return
        self._log("in", header)
        if self.drop is not None and self.drop("in", header):
            self.stats.dropped += 1
            return
        route = self.routes.get((header.dst_port, header.src_port))
        if route is None:
            # Nothing from this utcp port yet: a new connection from the kernel.
            # A utcp server's UDP port is its TCP port.
            route = (self.sockets[0], (self.udp_host, header.dst_port))
        transport, addr = route
        transport.sendto(with_checksum(segment), addr)
        self.stats.to_utcp += 1


# ------------------------------------------------------------------ standalone


async def _serve(tun: str, ports: list[int], seconds: float | None) -> None:
    fd = open_tun(tun)
    try:
        configure_tun(tun)
        bridge = await Bridge.start(fd, ports)
        print(f"bridging UDP {UDP_HOST}:{ports} <-> {tun} "
              f"({UTCP_IP} <-> {KERNEL_IP}/{PREFIX})", flush=True)
        try:
            await asyncio.sleep(seconds if seconds is not None else float("inf"))
        finally:
            bridge.close()
            for direction, header in bridge.stats.log[-20:]:
                print("utcp->kernel" if direction == "out" else "kernel->utcp", header)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tun", default="utun0")
    parser.add_argument("--port", type=int, action="append", required=True,
                        help="UDP port on 127.0.0.1 fronting the kernel's TCP port of "
                             "the same number (repeatable)")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.tun, args.port, args.seconds))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
