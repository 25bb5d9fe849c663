"""SYN cookies (RFC 4987): a listener whose queue of half-open connections is full
answers a SYN without keeping anything, and recognises the final ACK.

The SYN-ACK's initial sequence number carries what the connection needs from the
SYN, as Linux's cookies do: the MSS (as an index in a table), the window scale,
and whether timestamps are in use. Its top 8 bits count 64-second periods; the
low 24 bits are a keyed hash of the 4-tuple, the peer's ISN and the period, plus
those 8 bits of state. An ACK is taken when its acknowledgment, less one, is a
cookie of this period or the one before (so a cookie lives 64 to 128 seconds)
whose hash matches with state below 256: a blind guess succeeds once in 65,536.
"""

from __future__ import annotations

from typing import NamedTuple

from .isn import IsnGenerator

#: How long one period of cookies lasts, in seconds.
PERIOD = 64.0
#: The MSS values a cookie can carry: the largest not above the peer's is chosen.
MSS_TABLE = (536, 1000, 1220, 1300, 1400, 1432, 1452, 1460)
_NO_WSCALE = 15


class CookieState(NamedTuple):
    """What a cookie remembers of the SYN."""

    mss: int
    wscale: int | None  # the peer's window scale, None if its SYN offered none
    timestamps: bool


def make_cookie(isn: IsnGenerator, remote: object, local_port: int, remote_port: int,
                irs: int, now: float, state: CookieState) -> int:
    """The initial sequence number of a cookie SYN-ACK answering a SYN numbered ``irs``."""
    count = int(now // PERIOD) & 0xFF
    mss_index = max(i for i, m in enumerate(MSS_TABLE) if m <= max(state.mss, MSS_TABLE[0]))
    wscale = _NO_WSCALE if state.wscale is None else min(state.wscale, 14)
    data = mss_index | wscale << 3 | int(state.timestamps) << 7
    h = isn.syn_cookie_hash(remote, local_port, remote_port, irs, count)
    return count << 24 | (h + data) & 0xFFFFFF


def check_cookie(isn: IsnGenerator, remote: object, local_port: int, remote_port: int,
                 irs: int, cookie: int, now: float) -> CookieState | None:
    """What ``cookie`` says of the SYN, if it is one we made lately for this 4-tuple
    and peer ISN; None otherwise."""
    count = cookie >> 24
    if (int(now // PERIOD) - count) & 0xFF > 1:
        return None  # from longer ago than the period before (or forged)
    data = (cookie - isn.syn_cookie_hash(remote, local_port, remote_port, irs, count)) \
        & 0xFFFFFF
    if data >= 256:
        return None
    wscale = data >> 3 & 0xF
    return CookieState(MSS_TABLE[data & 7], None if wscale == _NO_WSCALE else wscale,
                       bool(data >> 7))
