"""The stack's receive-memory budget: what all connections may hold for applications
that do not read and ahead of holes, the windows that shrink before it runs out,
and the connections reclaimed when memory stays short.

On the virtual-time network of tests/netsim.py: a server host whose applications
pause reading, and clients that send more than the budget can hold.
"""

from __future__ import annotations

import hashlib

import pytest
from netsim import Network

from utcp.core.config import Options
from utcp.core.events import TimedOut
from utcp.core.stack import Stack
from utcp.core.state import State
from utcp.core.wire import ACK, Segment, decode, encode

SERVER = ("10.0.0.1", 7007)
RCV_BUF = 65536
OPTS = Options(rcv_buf=RCV_BUF)
#: The window is offered in units of 1 << wscale bytes (128: the scale covers
#: rcv_buf_max, 6 MiB), and an edge once offered stands: a paused reader's
#: buffer fills to within a unit past RCV_BUF (see Connection._make).
UNIT = 1 << OPTS.wscale


def setup(n_clients: int, limit: int | None, **stack_args):
    """A server stack whose limit is ``limit``, and ``n_clients`` connected clients,
    each with its server side paused (its application does not read)."""
    net = Network(delay=0.005)
    server = net.add(SERVER, max_receive_memory=limit, **stack_args)
    server.stack.listen(7007, 100, OPTS)
    pairs = []
    for i in range(n_clients):
        client = net.add((f"10.0.1.{i + 1}", 5000))
        conn = client.stack.connect(SERVER, 7007, OPTS, net.now)
        net.run(stop=lambda n=i + 1: len(server.connections()) == n)
        accepted = server.connections()[i]
        server.stack.pause_reading(accepted)
        net.run(stop=lambda c=conn: c.state is State.ESTABLISHED)
        pairs.append((client, conn, accepted))
    return net, server, pairs


def payload(i: int, n: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * (n // 32)


def offered(conn) -> int:
    """The window the connection's peer may still fill (RCV.ADV - RCV.NXT)."""
    return (conn._rcv_adv - conn.rcv_nxt) & 0xFFFFFFFF


def unread(conn) -> int:
    return conn.info()["unread"]


def test_memory_held_never_passes_the_limit_and_no_byte_is_lost():
    limit = 4 * RCV_BUF
    net, server, pairs = setup(8, limit)
    data = [payload(i, 512 * 1024) for i in range(len(pairs))]
    for (client, conn, _), d in zip(pairs, data, strict=True):
        client.stack.send(conn, d, net.now)
    most = 0

    def watch() -> bool:
        nonlocal most
        most = max(most, server.stack.memory.held)
        return False

    net.run(until=net.now + 30, stop=watch)
    mem = server.stack.memory
    assert most <= limit
    assert mem.held > limit * 3 // 4  # it did fill up: memory is short
    # Every connection holding data now offers no more than it holds room for:
    # the peers' windows shrank, rather than the budget running out under them.
    for _, _, accepted in pairs:
        assert offered(accepted) < max(0, RCV_BUF - unread(accepted)) + UNIT
    # Eight windows of 64 KiB were open when memory grew short: what arrived past
    # the limit was dropped unacknowledged, and counted.
    held = [unread(a) for _, _, a in pairs]
    assert sum(held) == mem.held and max(held) < RCV_BUF + UNIT
    # Their applications took nothing: no buffer grew.
    assert [a.rcv_buf for _, _, a in pairs] == [RCV_BUF] * len(pairs)
    assert server.stack.statistics()["drops"]["receive-memory"] > 0
    # The applications read at last: everything arrives, intact and in order.
    for _, _, accepted in pairs:
        server.stack.resume_reading(accepted, net.now)
    net.run(until=net.now + 300,
            stop=lambda: all(len(server.received.get(a, b"")) == len(d)
                             for (_, _, a), d in zip(pairs, data, strict=True)))
    for (_, _, accepted), d in zip(pairs, data, strict=True):
        assert bytes(server.received[accepted]) == d
    assert mem.held == 0 and not mem.holders


def test_without_pressure_windows_are_not_clamped():
    net, server, pairs = setup(2, 16 * RCV_BUF)
    for client, conn, _ in pairs:
        client.stack.send(conn, payload(0, 256 * 1024), net.now)
    net.run(until=net.now + 10)
    assert all(RCV_BUF <= unread(a) < RCV_BUF + UNIT and a.rcv_buf == RCV_BUF
               for _, _, a in pairs)
    assert not server.stack.memory.under_pressure
    assert server.stack.statistics()["drops"].get("receive-memory", 0) == 0


def test_a_connection_that_never_reads_is_reset_while_memory_is_short():
    # Two paused readers fill 128 KiB: past three quarters of 160 KiB.
    net, server, pairs = setup(2, 160 * 1024, zero_window_timeout=20.0)
    reader_client = net.add(("10.0.2.1", 5000))
    rconn = reader_client.stack.connect(SERVER, 7007, OPTS, net.now)
    net.run(stop=lambda: rconn.state is State.ESTABLISHED)
    for client, conn, _ in pairs:
        client.stack.send(conn, payload(1, 128 * 1024), net.now)
    net.run(until=net.now + 2)
    assert server.stack.memory.under_pressure
    full_at = net.now
    # A connection whose application reads goes on meanwhile.
    reader_client.stack.send(rconn, b"still here", net.now)
    net.run(until=full_at + 19)
    assert all(a.state is State.ESTABLISHED for _, _, a in pairs)
    net.run(until=full_at + 23)
    for _, conn, accepted in pairs:
        assert accepted.state is State.CLOSED
        assert TimedOut("memory") in server.events_of(accepted)
        assert conn.state is State.CLOSED  # the peer was told with a RST
    assert server.stack.memory.held == 0
    assert server.stack.statistics()["drops"]["memory-reclaimed"] == 2
    [served] = [c for c in server.connections() if c.remote_port == rconn.local_port
                and c.peer == reader_client.address]
    assert bytes(server.received[served]) == b"still here"
    assert served.state is State.ESTABLISHED


def test_a_paused_reader_is_left_alone_while_memory_is_plentiful():
    net, server, pairs = setup(1, 16 * RCV_BUF, zero_window_timeout=5.0)
    client, conn, accepted = pairs[0]
    client.stack.send(conn, payload(2, 128 * 1024), net.now)
    net.run(until=net.now + 600)
    assert accepted.state is State.ESTABLISHED
    assert RCV_BUF <= unread(accepted) < RCV_BUF + UNIT
    # (The sender probes the zero window meanwhile and is answered.)
    assert conn.state is State.ESTABLISHED


def test_segments_ahead_of_a_hole_never_filled_are_dropped_while_memory_is_short():
    stack = Stack(SERVER, max_receive_memory=4 * RCV_BUF, zero_window_timeout=8.0)
    stack.listen(7007, 100, Options(rcv_buf=RCV_BUF, timestamps=False))
    peers = [(f"10.0.3.{i}", 5000) for i in range(1, 5)]
    conns = []
    for peer in peers:
        # A handshake by hand, then segments past a one-byte hole.
        stack.receive(encode(Segment(4000, 7007, 100, 0, 0x02, 65535)), peer, 0.0)
        [synack] = [decode(d) for d, _, _ in stack.datagrams_to_send()]
        stack.receive(encode(Segment(4000, 7007, 101, synack.seq + 1, ACK, 65535)), peer, 0.0)
        [conn] = [c for c in stack.connections() if c.peer == peer]
        for off in range(0, 50000, 1000):
            stack.receive(encode(Segment(4000, 7007, 102 + off, synack.seq + 1, ACK, 65535,
                                         payload=bytes(1000))), peer, 0.0)
        conns.append(conn)
        stack.datagrams_to_send()
    mem = stack.memory
    assert mem.under_pressure
    assert mem.held <= mem.limit
    assert mem.held == sum(mem.holders.values())
    assert all(unread(c) for c in conns)
    t = 0.0
    while t < 8.0 + 2:
        t = stack.next_deadline()
        assert t is not None
        stack.handle_timer(t)
    # The holes were never filled: what waited behind them is gone, the
    # connections stay (their peers send it all again), and so does the count.
    assert mem.held == 0
    assert all(c.state is State.ESTABLISHED for c in conns)
    assert stack.statistics()["connection_totals"]["ooo_dropped"] == 4 * 50000
    assert not any(unread(c) for c in conns)


def test_held_memory_is_given_back_when_a_connection_ends():
    net, server, pairs = setup(1, None)
    client, conn, accepted = pairs[0]
    client.stack.send(conn, payload(3, 32 * 1024), net.now)
    net.run(until=net.now + 1)
    assert server.stack.memory.held == 32 * 1024
    server.stack.abort(accepted, net.now)
    assert server.stack.memory.held == 0 and not server.stack.memory.holders


@pytest.mark.parametrize("args, message", [
    ({"max_receive_memory": -1}, "max_receive_memory must be >= 0"),
    ({"zero_window_timeout": 0}, "zero_window_timeout must be > 0"),
])
def test_bad_limits_are_refused_with_a_clear_message(args, message):
    with pytest.raises(ValueError, match=message):
        Stack(SERVER, **args)


def test_windows_shrink_to_four_segments_for_newcomers_while_memory_is_short():
    net, server, pairs = setup(2, 160 * 1024)
    for client, conn, _ in pairs:
        client.stack.send(conn, payload(4, 128 * 1024), net.now)
    net.run(until=net.now + 2)
    assert server.stack.memory.under_pressure
    late = net.add(("10.0.2.9", 5000))
    lconn = late.stack.connect(SERVER, 7007, OPTS, net.now)
    net.run(stop=lambda: lconn.state is State.ESTABLISHED)
    four = 4 * OPTS.mss
    assert lconn.snd_wnd <= four  # the SYN-ACK offered four segments, not 64 KiB
    data = payload(5, 256 * 1024)
    late.stack.send(lconn, data, net.now)
    windows = []
    net.run(until=net.now + 60, stop=lambda: windows.append(lconn.snd_wnd) or
            lconn.unacked_data + lconn.unsent == 0)
    [served] = [c for c in server.connections() if c.peer == late.address]
    assert bytes(server.received[served]) == data  # it reads: its data flows, slower
    assert max(windows) <= four
    # Memory comes back: the windows open again.
    server.stack.resume_reading(pairs[0][2], net.now)
    assert not server.stack.memory.under_pressure
    late.stack.send(lconn, b"x", net.now)
    net.run(until=net.now + 1)
    assert lconn.snd_wnd > four
