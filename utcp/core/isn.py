"""Initial sequence numbers, as RFC 6528 recommends, and timestamp clock offsets.

ISN = M + F(localip, localport, remoteip, remoteport, secretkey), where M is a
clock ticking every microsecond and F a keyed hash. The clock value is passed
in by the caller (the core never reads a clock), and the secret is drawn once
per generator from the operating system's random source.
"""

from __future__ import annotations

import hashlib
import os

from .seq import MASK

# Most addresses whose repr an IsnGenerator keeps (a client mostly talks to a few).
_REPRS = 1024


class IsnGenerator:
    """Produces RFC 6528 initial sequence numbers for 4-tuples."""

    __slots__ = ("_secret", "_keyed", "_reprs")

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else os.urandom(16)
        if not 1 <= len(self._secret) <= 32:
            raise ValueError("ISN secret must be 1 to 32 bytes long")
        # The hash keyed with the secret, copied for each ISN (keying it costs
        # more than hashing a 4-tuple), and the reprs of the addresses seen last.
        self._keyed = hashlib.blake2s(key=self._secret, digest_size=4)
        self._reprs: dict[object, str] = {}

    def _new_repr(self, addr: object) -> str:
        """The repr of an address not among those remembered, remembered now."""
        reprs = self._reprs
        if len(reprs) >= _REPRS:
            reprs.clear()
        text = reprs[addr] = repr(addr)
        return text

    def __call__(
        self, local: object, local_port: int, remote: object, remote_port: int, now: float
    ) -> int:
        """Return the ISN for the connection identified by the arguments at time ``now``.

        ``local`` and ``remote`` identify the UDP addresses (any hashable value
        whose ``repr`` is stable and the same for equal values, as an address
        tuple's is); ``now`` is in seconds.
        """
        reprs = self._reprs
        h = self._keyed.copy()
        h.update(f"{reprs.get(local) or self._new_repr(local)}|{local_port}|"
                 f"{reprs.get(remote) or self._new_repr(remote)}|{remote_port}".encode())
        m = int(now * 1_000_000)  # RFC 6528: a timer ticking roughly every microsecond
        return (m + int.from_bytes(h.digest(), "big")) & MASK

    def timestamp_offset(self, local: object, remote: object) -> int:
        """The offset added to the timestamp clock of connections from ``local`` to
        ``remote`` (RFC 7323 7.1: not the bare clock, which would tell an observer
        the host's uptime).

        The ports are left out, as Linux leaves them out: every connection between
        the same two hosts sees one clock, which only moves forward, so a new
        connection's timestamps are newer than anything an old one sent on the
        same 4-tuple (what TIME-WAIT reuse and RFC 6191 rely on).
        """
        h = hashlib.blake2s(f"ts|{local!r}|{remote!r}".encode(), key=self._secret,
                            digest_size=4).digest()
        return int.from_bytes(h, "big")

    def syn_cookie_hash(self, remote: object, local_port: int, remote_port: int, irs: int,
                        *more: int) -> int:
        """A keyed 32-bit hash binding a SYN cookie to its 4-tuple, the peer's ISN and
        ``more`` (the cookie's period and the options it binds; see
        :mod:`utcp.core.syncookies`)."""
        h = hashlib.blake2s(
            f"syn|{remote!r}|{local_port}|{remote_port}|{irs}|{more}".encode(),
            key=self._secret, digest_size=4).digest()
        return int.from_bytes(h, "big")
