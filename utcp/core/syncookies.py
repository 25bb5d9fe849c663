"""SYN cookies (RFC 4987): a listener whose queue of half-open connections is full
answers a SYN without keeping anything, and recognises the final ACK.

The state is carried as Linux carries it (net/ipv4/syncookies.c):

- The SYN-ACK's initial sequence number is
  ``H1 + (count << 24) + ((H2 + mss_index) mod 2**24)`` (mod 2**32), where
  ``count`` numbers 64-second periods (8 bits), ``H1`` is a keyed hash of the
  4-tuple and the peer's ISN, and ``H2`` one of those, the period and what the
  cookie binds besides (below). ``H1`` hides the period from anyone who did
  not see the SYN-ACK. An ACK is taken when its acknowledgment, less one, is a
  cookie of this period or the one before (so a cookie lives 64 to 128 s) whose
  low 24 bits, less ``H2``, leave a valid MSS index.
- The MSS index is 2 bits: a table of four MSS values, as Linux's since 2013
  ("reduce mss table to four values", to make blind guessing twice as hard).
  Ours are chosen for utcp's own peers rather than Ethernet's: 1452 and 1432,
  the defaults over a 1500-byte path for IPv4 and IPv6 (each carried exactly);
  1212, what a path of IPv6's minimum MTU (1280) carries over UDP, so that
  tunnels and small-MTU paths keep most of theirs; and 536, the default for a
  SYN that names none. A peer's MSS is rounded down to the table: one between
  1213 and 1431 loses up to 15 %, where a third bit would cost guess resistance.
- With timestamps in use, the low 6 bits of the SYN-ACK's TSval carry the
  rest, in Linux's layout: the peer's window scale (bits 0-3, 15 for none),
  SACK-permitted (bit 4) and ECN (bit 5). The TSval is our timestamp clock
  rounded *down* to hold them (up to 63 ticks, 63 ms), so it never runs ahead of
  the clock the connection goes on with, and the peer's PAWS sees our
  timestamps only grow. The final ACK's TSecr echoes the bits back. (Its RTT
  sample then reads up to 63 ms long; Linux's does too.) We negotiate neither
  SACK nor ECN yet: no SYN-ACK offers them, so both bits are always 0 today;
  SACK-permitted is decoded (the wire reads the option) so a connection can
  take it up once SACK is implemented, and the ECN bit is reserved.
- Without timestamps there is nowhere else to put them, and the cookie keeps
  only the MSS: its SYN-ACK offers no window scale, and the connection runs
  unscaled both ways (its window at most 64 KiB), as Linux's does.

What ``H2`` binds besides the period: the 6 TSval bits (or that there were no
timestamps) and our own window scale when the SYN-ACK offered one. Linux binds
neither; here a TSecr that does not echo the cookie's bits, or an ACK without
timestamps for a cookie with them, fails the check instead of making a
connection with a wrong window scale. And since our scale comes from the
listener's receive buffer, a cookie sent by a listener since replaced by one
with another buffer (another scale) fails too, rather than the new listener
scaling its windows by a shift the peer was never told. (Linux recomputes its
scale from the current settings and takes that risk.) A cookie that fails is
answered as any stray ACK, with a RST.

A blind guess of a final ACK (any 32-bit acknowledgment number, any TSecr) is
taken once in 2**29 (2 periods of 256, times 4 MSS indexes of 2**24); one who
somehow had the top byte right still needs 4 in 2**24, once in 2**22.
"""

from __future__ import annotations

from typing import NamedTuple

from .isn import IsnGenerator

#: How long one period of cookies lasts, in seconds.
PERIOD = 64.0
#: The MSS values a cookie can carry: the largest not above the peer's is chosen.
MSS_TABLE = (536, 1212, 1432, 1452)
#: How many low bits of the cookie SYN-ACK's TSval carry options (Linux's TSBITS).
TS_BITS = 6
_TS_MASK = (1 << TS_BITS) - 1
_TS_NO_WSCALE = 0xF  # Linux's TS_OPT_WSCALE_MASK: the peer offered no window scale
_TS_SACK = 1 << 4
_TS_ECN = 1 << 5  # reserved: we negotiate no ECN
_NO_TIMESTAMPS = 1 << TS_BITS  # what H2 binds for a cookie without timestamps
_NO_WSCALE = 15  # what H2 binds for our scale when the SYN-ACK offered none
_COOKIE_MASK = 0xFFFFFF
_MASK = 0xFFFFFFFF
# A cookie of this period or the one before is taken (Linux's MAX_SYNCOOKIE_AGE).
_MAX_AGE = 2


class CookieState(NamedTuple):
    """What a cookie remembers of the SYN."""

    mss: int
    wscale: int | None  # the peer's window scale, None if its SYN offered none
    timestamps: bool
    sack: bool = False  # SACK-permitted, offered by the peer and answered by us


def kept(state: CookieState) -> CookieState:
    """What a cookie made from ``state`` keeps, and so what its SYN-ACK may offer:
    the MSS rounded down to the table (to its least, below it); without timestamps
    no window scale and no SACK; a window scale above 14 taken as 14 (RFC 7323
    2.3)."""
    mss = MSS_TABLE[_mss_index(state.mss)]
    if not state.timestamps:
        return CookieState(mss, None, False, False)
    wscale = None if state.wscale is None else min(state.wscale, 14)
    return CookieState(mss, wscale, True, bool(state.sack))


def make_cookie(isn: IsnGenerator, remote: object, local_port: int, remote_port: int,
                irs: int, now: float, state: CookieState, own_wscale: int) -> int:
    """The initial sequence number of a cookie SYN-ACK answering a SYN numbered
    ``irs``. ``own_wscale`` is the window scale the SYN-ACK offers (bound to the
    cookie if it offers one at all: see the module's docstring)."""
    state = kept(state)
    count = int(now // PERIOD) & 0xFF
    h1 = isn.syn_cookie_hash(remote, local_port, remote_port, irs)
    h2 = isn.syn_cookie_hash(remote, local_port, remote_port, irs, count,
                             *_bound(state, own_wscale))
    return (h1 + (count << 24) + ((h2 + _mss_index(state.mss)) & _COOKIE_MASK)) & _MASK


def cookie_tsval(tsval: int, state: CookieState) -> int:
    """The TSval of a cookie SYN-ACK sent when the connection's timestamp clock
    reads ``tsval``: rounded down (never up, so the clock that follows never goes
    back) to the nearest value whose low bits carry ``state``'s options."""
    bits = _ts_bits(kept(state))
    ts = tsval & ~_TS_MASK | bits
    if bits > tsval & _TS_MASK:
        ts -= 1 << TS_BITS  # (mod 2**32: the clock may have just wrapped)
    return ts & _MASK


def check_cookie(isn: IsnGenerator, remote: object, local_port: int, remote_port: int,
                 irs: int, cookie: int, tsecr: int | None, own_wscale: int,
                 now: float) -> CookieState | None:
    """What ``cookie`` says of the SYN, if it is one we made lately for this 4-tuple
    and peer ISN; None otherwise. ``tsecr`` is the final ACK's TSecr, None if it
    carries no timestamps; ``own_wscale`` the window scale our SYN-ACK would offer
    now."""
    if tsecr is None:
        state = CookieState(0, None, False, False)
    else:
        bits = tsecr & _TS_MASK
        ws = bits & 0xF
        if bits & _TS_ECN:
            return None  # reserved: never set by us
        state = CookieState(0, None if ws == _TS_NO_WSCALE else ws, True,
                            bool(bits & _TS_SACK))
    h1 = isn.syn_cookie_hash(remote, local_port, remote_port, irs)
    count = ((cookie - h1) & _MASK) >> 24
    if (int(now // PERIOD) - count) & 0xFF >= _MAX_AGE:
        return None  # from longer ago than the period before (or forged)
    h2 = isn.syn_cookie_hash(remote, local_port, remote_port, irs, count,
                             *_bound(state, own_wscale))
    index = (cookie - h1 - h2) & _COOKIE_MASK
    if index >= len(MSS_TABLE):
        return None
    return state._replace(mss=MSS_TABLE[index])


def _mss_index(mss: int) -> int:
    """The index of the largest table MSS not above ``mss`` (0 below them all)."""
    for i in range(len(MSS_TABLE) - 1, 0, -1):
        if mss >= MSS_TABLE[i]:
            return i
    return 0


def _ts_bits(state: CookieState) -> int:
    """The low TSval bits that carry ``state``'s options (Linux's layout)."""
    bits = _TS_NO_WSCALE if state.wscale is None else state.wscale
    return bits | (_TS_SACK if state.sack else 0)


def _bound(state: CookieState, own_wscale: int) -> tuple[int, int]:
    """What H2 binds besides the period: the TSval bits (or that there were no
    timestamps), and our window scale if the SYN-ACK offered one."""
    if not state.timestamps:
        return _NO_TIMESTAMPS, _NO_WSCALE
    return _ts_bits(state), _NO_WSCALE if state.wscale is None else own_wscale
