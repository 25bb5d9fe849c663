"""Helpers for sans-I/O connection tests, after smoltcp's tcp.rs tests.

``seg(...)`` builds a segment from the peer with defaults; ``out(...)`` one from us;
``send(conn, s, at=t)`` feeds it; ``expect(conn, [...])`` asserts exactly what
came back; ``expect_nothing(conn)`` asserts silence. Each ``conn_<state>(**options)``
returns a connection already in that state with nothing left to send (at time 0,
so the handshake's RTT sample is 0 and the RTO is the 200 ms floor); ``observer=``
passes an observer through.
"""

from __future__ import annotations

from utcp.core.config import Options
from utcp.core.connection import Connection
from utcp.core.events import Event, FinAcked
from utcp.core.seq import add
from utcp.core.state import State
from utcp.core.wire import ACK, FIN, MSS, NOP, SACK_PERMITTED, SYN, TIMESTAMPS, WSCALE, Segment

LOCAL_PORT = 49152
REMOTE_PORT = 7007
LOCAL_ISS = 1000
REMOTE_ISS = 5000
SYN_WINDOW = 65535  # the default 256 KiB buffer, unscaled in a SYN
#: Our window-scale shift: 7, since the buffer may grow to rcv_buf_max (6 MiB).
SHIFT = 7
WINDOW = (256 * 1024) >> SHIFT  # the default 256 KiB buffer, scaled once synchronized
PEER_WINDOW = 65535
LOCAL_MSS = 1452


def seg(seq: int = 1, ack: int | None = 1, flags: int = ACK, window: int = PEER_WINDOW,
        payload: bytes = b"", options: tuple = (), *, raw_seq: int | None = None,
        raw_ack: int | None = None) -> Segment:
    """A segment from the peer; seq/ack are relative to the ISNs (REMOTE for seq)."""
    return Segment(
        REMOTE_PORT, LOCAL_PORT,
        raw_seq if raw_seq is not None else add(REMOTE_ISS, seq),
        raw_ack if raw_ack is not None else (add(LOCAL_ISS, ack) if ack is not None else 0),
        flags if ack is not None or raw_ack is not None else flags & ~ACK,
        window, 0, options, payload)


def out(seq: int = 1, ack: int | None = 1, flags: int = ACK, window: int = WINDOW,
        payload: bytes = b"", options: tuple = (), *, raw_seq: int | None = None,
        raw_ack: int | None = None) -> Segment:
    """A segment from us; seq/ack relative to the ISNs (LOCAL for seq)."""
    return Segment(
        LOCAL_PORT, REMOTE_PORT,
        raw_seq if raw_seq is not None else add(LOCAL_ISS, seq),
        raw_ack if raw_ack is not None else (add(REMOTE_ISS, ack) if ack is not None else 0),
        flags, window, 0, options, payload)


def send(conn: Connection, s: Segment, at: float = 0.0) -> None:
    conn.receive(s, at)


def expect(conn: Connection, segments: list[Segment]) -> None:
    got = conn.take_segments()
    assert got == segments, f"\n got: {got}\nwant: {segments}"


def expect_nothing(conn: Connection) -> None:
    got = conn.take_segments()
    assert got == [], f"expected nothing, got {got}"


def events(conn: Connection) -> list[Event]:
    return conn.take_events()


def tick(conn: Connection, at: float) -> None:
    """Run the connection's timers at time ``at``."""
    conn.handle_timer(at)


def fire(conn: Connection, at: float) -> float:
    """Assert that the next deadline is ``at`` (to float rounding) and run the timers then."""
    deadline = conn.next_deadline()
    assert deadline is not None and abs(deadline - at) < 1e-9, f"deadline {deadline}, not {at}"
    conn.handle_timer(deadline)
    return deadline


def make(observer=None, **opts) -> Connection:
    return Connection(LOCAL_PORT, REMOTE_PORT, iss=LOCAL_ISS, options=Options(**opts),
                      observer=observer)


SYN_OPTIONS = ((MSS, LOCAL_MSS), (WSCALE, SHIFT))
PEER_SYN_OPTIONS = ((MSS, 1452), (WSCALE, 0))


def _options(opts: dict) -> Options:
    return Options(**{k: v for k, v in opts.items() if k != "observer"})


def syn_window(**opts) -> int:
    """The window our SYN or SYN-ACK carries with these options (never scaled)."""
    return min(_options(opts).rcv_buf, 0xFFFF)


def window(**opts) -> int:
    """The window field we advertise once synchronized, with an empty receive buffer."""
    o = _options(opts)
    return min(o.rcv_buf >> o.wscale, 0xFFFF)


def syn_options(tsval: int = 0, tsecr: int = 0, **opts) -> tuple:
    """The options of our SYN with these connection options, sent at ``tsval`` ms
    (a SYN-ACK's to a SYN that offered timestamps and window scaling: ``tsecr``)."""
    o = _options(opts)
    if not o.timestamps:
        if o.sack:  # Linux's layout too
            return ((MSS, o.mss), (NOP, None), (NOP, None), (SACK_PERMITTED, None),
                    (NOP, None), (WSCALE, o.wscale))
        return ((MSS, o.mss), (WSCALE, o.wscale))
    if o.sack:
        return ((MSS, o.mss), (SACK_PERMITTED, None), (TIMESTAMPS, (tsval, tsecr)),
                (NOP, None), (WSCALE, o.wscale))
    return ((MSS, o.mss), (NOP, None), (NOP, None), (TIMESTAMPS, (tsval, tsecr)),
            (NOP, None), (WSCALE, o.wscale))


def synack_options(**opts) -> tuple:
    """The options of our SYN-ACK to a SYN with PEER_SYN_OPTIONS (no timestamps)."""
    o = _options(opts)
    return ((MSS, o.mss), (WSCALE, o.wscale))


def ts(tsval: int, tsecr: int) -> tuple:
    """The options of a segment carrying timestamps, laid out as utcp and Linux do."""
    return ((NOP, None), (NOP, None), (TIMESTAMPS, (tsval, tsecr)))


def conn_syn_sent(**opts) -> Connection:
    c = make(**opts)
    c.connect(0.0)
    expect(c, [out(0, None, SYN, syn_window(**opts), options=syn_options(**opts))])
    return c


def conn_listen(**opts) -> Connection:
    c = make(**opts)
    c.listen()
    return c


def conn_syn_received(**opts) -> Connection:
    c = conn_listen(**opts)
    send(c, seg(0, None, SYN, options=PEER_SYN_OPTIONS))
    expect(c, [out(0, 1, SYN | ACK, syn_window(**opts), options=synack_options(**opts))])
    return c


def conn_established(**opts) -> Connection:
    c = conn_syn_sent(**opts)
    send(c, seg(0, 1, SYN | ACK, options=PEER_SYN_OPTIONS))
    expect(c, [out(1, 1, window=window(**opts))])
    assert c.state is State.ESTABLISHED
    c.take_events()
    return c


def conn_fin_wait_1(**opts) -> Connection:
    c = conn_established(**opts)
    c.shutdown(0.0)
    expect(c, [out(1, 1, FIN | ACK, window(**opts))])
    assert c.state is State.FIN_WAIT_1
    return c


def conn_fin_wait_2(**opts) -> Connection:
    c = conn_fin_wait_1(**opts)
    send(c, seg(1, 2))
    expect_nothing(c)
    assert c.state is State.FIN_WAIT_2
    assert c.take_events() == [FinAcked()]
    return c


def conn_close_wait(**opts) -> Connection:
    c = conn_established(**opts)
    send(c, seg(1, 1, FIN | ACK))
    expect(c, [out(1, 2, window=window(**opts))])
    assert c.state is State.CLOSE_WAIT
    c.take_events()
    return c


def conn_last_ack(**opts) -> Connection:
    c = conn_close_wait(**opts)
    c.shutdown(0.0)
    expect(c, [out(1, 2, FIN | ACK, window(**opts))])
    assert c.state is State.LAST_ACK
    return c


def conn_closing(**opts) -> Connection:
    c = conn_fin_wait_1(**opts)
    send(c, seg(1, 1, FIN | ACK))
    expect(c, [out(2, 2, window=window(**opts))])
    assert c.state is State.CLOSING
    c.take_events()
    return c


def conn_time_wait(**opts) -> Connection:
    c = conn_fin_wait_2(**opts)
    send(c, seg(1, 2, FIN | ACK))
    expect(c, [out(2, 2, window=window(**opts))])
    assert c.state is State.TIME_WAIT
    c.take_events()
    return c
