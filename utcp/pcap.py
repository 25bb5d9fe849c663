"""Captures of utcp connections as ordinary TCP, for Wireshark and tshark.

:class:`PcapWriter` is an observer: give it as ``observer=`` to
``open_connection``, ``start_server``, ``create_connection`` or
``create_server`` (or to a :class:`~utcp.Stack` call) and it writes every
segment sent and received to a pcap file, wrapped in an IPv4 or IPv6 header
whose addresses are the UDP addresses the segment travelled between, with the
TCP checksum over the IP pseudo-header that utcp's own checksum leaves out.
What Wireshark shows is then plain TCP, and its TCP analysis (sequence
numbers, retransmissions, RTT, stream graphs) works on it.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import IO, Any

from .core.connection import Connection
from .core.observer import NullObserver
from .core.state import State
from .core.wire import Segment, checksum, encode

__all__ = ["PcapWriter", "Tee"]

_LINKTYPE_RAW = 101  # raw IPv4 or IPv6, told apart by the version nibble
_SNAPLEN = 262144
_TCP = 6


class PcapWriter(NullObserver):
    """Writes every segment of the connections it observes to a pcap file.

    ``target`` is a path (the file is created or truncated) or a binary file
    object opened for writing. Use it as a context manager, or call
    :meth:`close`; each record is flushed as it is written, so a capture that
    is never closed is still whole up to its last segment.
    """

    def __init__(self, target: str | IO[bytes]) -> None:
        if isinstance(target, str):
            self._file: IO[bytes] = open(target, "wb")  # noqa: SIM115
            self._owned = True
        else:
            self._file = target
            self._owned = False
        self._file.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, _SNAPLEN,
                                     _LINKTYPE_RAW))
        self._file.flush()
        self._clock: float | None = None  # wall-clock time minus the connection's clock
        self._local: dict[Connection, str] = {}
        self._ip_id = 0
        #: Segments written so far.
        self.segments = 0

    # ------------------------------------------------------------ observer

    def segment_sent(self, conn: Connection, seg: Segment, now: float) -> None:
        peer = conn.peer
        if peer is not None:
            self._write(self._local_host(conn), peer[0], seg, now)

    def segment_received(self, conn: Connection, seg: Segment, now: float) -> None:
        peer = conn.peer
        if peer is not None:
            self._write(peer[0], self._local_host(conn), seg, now)

    def state_changed(self, conn: Connection, old: State, new: State, cause: str,
                      now: float) -> None:
        if new is State.CLOSED:
            self._local.pop(conn, None)

    # --------------------------------------------------------------- file

    def close(self) -> None:
        """Flush and close the file (a file object passed in is left open)."""
        if self._file.closed:
            return
        self._file.flush()
        if self._owned:
            self._file.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------- internals

    def _local_host(self, conn: Connection) -> str:
        host = self._local.get(conn)
        if host is None:
            via = conn.via
            if via is not None:
                host = via.host  # the address a wildcard server was reached at
            else:
                # The address the kernel sends from toward the peer (connect sends
                # nothing on a UDP socket).
                peer = conn.peer
                family = socket.AF_INET6 if ":" in peer[0] else socket.AF_INET
                host = "::" if family == socket.AF_INET6 else "0.0.0.0"
                try:
                    with socket.socket(family, socket.SOCK_DGRAM) as probe:
                        probe.connect(peer)
                        host = probe.getsockname()[0]
                except OSError:
                    pass
            self._local[conn] = host
        return host

    def _write(self, src: str, dst: str, seg: Segment, now: float) -> None:
        if self._file.closed:
            return
        if self._clock is None:
            self._clock = time.time() - now
        tcp = bytearray(encode(seg))
        tcp[16:18] = b"\0\0"
        if ":" in src:
            s, d = socket.inet_pton(socket.AF_INET6, src.split("%")[0]), \
                socket.inet_pton(socket.AF_INET6, dst.split("%")[0])
            pseudo = s + d + struct.pack("!IxxxB", len(tcp), _TCP)
            tcp[16:18] = struct.pack("!H", checksum(pseudo + tcp))
            ip = struct.pack("!IHBB", 6 << 28, len(tcp), _TCP, 64) + s + d
        else:
            s, d = socket.inet_aton(src), socket.inet_aton(dst)
            pseudo = s + d + struct.pack("!xBH", _TCP, len(tcp))
            tcp[16:18] = struct.pack("!H", checksum(pseudo + tcp))
            self._ip_id = (self._ip_id + 1) & 0xFFFF
            header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(tcp), self._ip_id, 0x4000, 64,
                                 _TCP, 0) + s + d
            ip = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
        packet = ip + tcp
        stamp = self._clock + now
        seconds = int(stamp)
        record = struct.pack("<IIII", seconds, int((stamp - seconds) * 1e6), len(packet),
                             len(packet))
        self._file.write(record + packet)
        self._file.flush()
        self.segments += 1


class Tee(NullObserver):
    """Passes every observer call on to each of ``observers`` in turn."""

    def __init__(self, *observers: Any) -> None:
        self.observers = [o for o in observers if o is not None]

    def state_changed(self, conn: Connection, old: State, new: State, cause: str,
                      now: float) -> None:
        for o in self.observers:
            o.state_changed(conn, old, new, cause, now)

    def segment_sent(self, conn: Connection, seg: Segment, now: float) -> None:
        for o in self.observers:
            o.segment_sent(conn, seg, now)

    def segment_received(self, conn: Connection, seg: Segment, now: float) -> None:
        for o in self.observers:
            o.segment_received(conn, seg, now)
