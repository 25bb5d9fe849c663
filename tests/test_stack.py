"""The sans-I/O stack: demultiplexing, listeners, resets, ports and timers.

Most tests run stacks on tests/netsim.py's virtual-time network; a few feed one
stack datagrams by hand and read back exactly what it sends.
"""

from __future__ import annotations

import errno
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netsim import Network

from utcp.core.config import Options
from utcp.core.connection import PATH_GUESSES
from utcp.core.events import (
    Closed,
    Connected,
    DataReceived,
    EndOfStream,
    FinAcked,
    Reset,
    Unreachable,
)
from utcp.core.isn import IsnGenerator
from utcp.core.stack import Stack
from utcp.core.state import State
from utcp.core.wire import ACK, FIN, NOP_OPTION, RST, SYN, Segment, decode, encode

SERVER = ("10.0.0.1", 7007)
CLIENT = ("10.0.0.2", 5000)
OTHER = ("10.0.0.3", 5000)
PLAIN = Options(timestamps=False)


def network(**link) -> tuple[Network, object, object]:
    """A network with a listening server host and a client host."""
    net = Network(**link)
    server = net.add(SERVER)
    server.stack.listen(7007, 100, Options())
    client = net.add(CLIENT)
    return net, server, client


def connect(net: Network, client, options: Options | None = None):
    conn = client.stack.connect(SERVER, 7007, options or Options(), net.now)
    net.run(stop=lambda: conn.state is not State.SYN_SENT)
    return conn


def lone_stack(**kw) -> Stack:
    kw.setdefault("isn", IsnGenerator(b"fixed"))
    kw.setdefault("rng", random.Random(1))
    return Stack(SERVER, **kw)


def sent(stack: Stack) -> list[tuple[Segment, tuple]]:
    return [(decode(data), addr) for data, addr, _ in stack.datagrams_to_send()]


# ------------------------------------------------------------------ handshake


def test_handshake_and_echo_between_two_stacks():
    net, server, client = network()
    conn = connect(net, client)
    assert conn.state is State.ESTABLISHED
    client.stack.send(conn, b"hello", net.now)
    net.run(stop=lambda: server.received)
    [accepted] = server.connections()
    assert bytes(server.received[accepted]) == b"hello"
    assert server.events_of(accepted)[:2] == [Connected(), DataReceived(b"hello")]
    assert accepted.listener is server.stack.listeners[7007]
    assert accepted.peer == CLIENT and accepted.remote_port == conn.local_port


def test_whole_life_leaves_nothing_but_time_wait_then_nothing():
    net, server, client = network()
    conn = connect(net, client, Options(msl=1.0))
    client.stack.send(conn, b"x", net.now)
    client.stack.close(conn, net.now)
    net.run(stop=lambda: server.events and server.events[-1][1] == EndOfStream())
    [accepted] = server.connections()
    server.stack.close(accepted, net.now)
    net.run(stop=lambda: conn.state is State.TIME_WAIT)
    assert client.events_of(conn) == [Connected(), FinAcked(), EndOfStream(), Closed()]
    entered = net.now
    net.run(stop=lambda: accepted.state is State.CLOSED)
    assert server.events_of(accepted)[-2:] == [FinAcked(), Closed()]
    assert len(server.stack) == 0  # LAST-ACK ended in CLOSED: forgotten
    assert client.stack.statistics()["connections"] == {"TIME-WAIT": 1}
    net.run()
    assert len(client.stack) == 0
    assert net.now == pytest.approx(entered + 2.0, abs=0.002)  # 2 MSL, to the millisecond


def test_two_clients_with_the_same_port_are_two_connections():
    # Demultiplexing is by (remote address, local port, remote port): the same
    # TCP ports from two addresses are two connections.
    net = Network()
    server = net.add(SERVER)
    server.stack.listen(7007, 100, Options())
    a = net.add(CLIENT, ephemeral_ports=range(40000, 40001))
    b = net.add(OTHER, ephemeral_ports=range(40000, 40001))
    ca = a.stack.connect(SERVER, 7007, Options(), 0.0)
    cb = b.stack.connect(SERVER, 7007, Options(), 0.0)
    net.run(stop=lambda: ca.state is cb.state is State.ESTABLISHED)
    a.stack.send(ca, b"from a", net.now)
    b.stack.send(cb, b"from b", net.now)
    net.run(stop=lambda: len(server.received) == 2)
    assert sorted(bytes(v) for v in server.received.values()) == [b"from a", b"from b"]
    assert {c.peer for c in server.received} == {CLIENT, OTHER}


def test_syn_retransmitted_with_backoff_until_silence_times_out():
    stack = lone_stack()
    conn = stack.connect(OTHER, 7007, Options(syn_retries=2), 0.0)
    now, sends = 0.0, []
    while conn.state is State.SYN_SENT:
        sends += [(now, s.flags) for s, _ in sent(stack)]
        now = stack.next_deadline()
        stack.handle_timer(now)
    assert sends == [(0.0, SYN), (1.0, SYN), (3.0, SYN)]  # then after 1 s and 2 s more
    assert now == 7.0
    [(_, [timed_out])] = stack.take_events()
    assert timed_out.reason == "syn"
    assert len(stack) == 0


# ---------------------------------------------------------- no connection


def test_segment_for_no_connection_draws_a_reset():
    stack = lone_stack()
    stack.receive(encode(Segment(5000, 9999, 100, 200, ACK)), CLIENT, 0.0)
    assert sent(stack) == [(Segment(9999, 5000, 200, 0, RST), CLIENT)]
    stack.receive(encode(Segment(5000, 9999, 100, 0, SYN)), CLIENT, 0.0)
    assert sent(stack) == [(Segment(9999, 5000, 0, 101, RST | ACK), CLIENT)]
    assert stack.statistics()["drops"] == {"no-connection": 2}
    assert stack.statistics()["resets_sent"] == 2


def test_reset_for_no_connection_is_never_answered():
    stack = lone_stack()
    stack.receive(encode(Segment(5000, 9999, 100, 200, RST)), CLIENT, 0.0)
    assert sent(stack) == []
    assert stack.statistics()["drops"] == {"rst-for-no-connection": 1}


def test_garbage_is_counted_and_dropped():
    stack = lone_stack()
    stack.receive(b"short", CLIENT, 0.0)
    good = bytearray(encode(Segment(5000, 9999, 1, 0, SYN)))
    good[-1] ^= 0xFF
    stack.receive(bytes(good), CLIENT, 0.0)
    assert sent(stack) == []
    assert stack.statistics()["drops"] == {"malformed": 1, "bad-checksum": 1}


def test_listener_answers_syn_and_drops_what_has_neither_syn_nor_ack():
    stack = lone_stack()
    stack.listen(7007, 10, Options())
    stack.receive(encode(Segment(5000, 7007, 100, 0, 0)), CLIENT, 0.0)
    assert sent(stack) == []
    assert stack.statistics()["drops"] == {"listen-no-syn": 1}
    stack.receive(encode(Segment(5000, 7007, 100, 0, SYN)), CLIENT, 0.0)
    [(synack, to)] = sent(stack)
    assert synack.flags == SYN | ACK and synack.ack == 101 and to == CLIENT
    assert stack.statistics()["connections"] == {"SYN-RECEIVED": 1}


def test_backlog_bounds_half_open_connections():
    stack = lone_stack(syn_cookies=False)
    stack.listen(7007, 2, Options())
    for port in (5001, 5002, 5003):
        stack.receive(encode(Segment(port, 7007, 100, 0, SYN)), CLIENT, 0.0)
    assert len(sent(stack)) == 2
    assert stack.statistics()["drops"] == {"backlog-full": 1}


def test_a_full_backlog_answers_with_cookies_and_keeps_nothing():
    stack = lone_stack()
    listener = stack.listen(7007, 2, Options())
    for port in (5001, 5002, 5003, 5004):
        stack.receive(encode(Segment(port, 7007, 100, 0, SYN)), CLIENT, 0.0)
    answers = sent(stack)
    assert [s.flags for s, _ in answers] == [SYN | ACK] * 4
    assert len(listener.half_open) == 2 and len(stack) == 2  # the cookies kept nothing
    assert stack.statistics()["syncookies"] == {"sent": 2}
    assert "backlog-full" not in stack.statistics()["drops"]


def test_completed_handshakes_free_the_backlog():
    net = Network()
    server = net.add(SERVER, syn_cookies=False)
    listener = server.stack.listen(7007, 1, Options())
    client = net.add(CLIENT)
    conns = [client.stack.connect(SERVER, 7007, Options(), 0.0) for _ in range(3)]
    net.run()
    assert all(c.state is State.ESTABLISHED for c in conns)
    assert len(server.connections()) == 3 and not listener.half_open
    # One at a time got in; the others' SYNs were dropped and retried.
    assert server.stack.statistics()["drops"]["backlog-full"] >= 2


def test_stop_listening_resets_half_open_connections_and_refuses_new_ones():
    stack = lone_stack()
    listener = stack.listen(7007, 10, Options())
    stack.receive(encode(Segment(5000, 7007, 100, 0, SYN)), CLIENT, 0.0)
    sent(stack)
    stack.stop_listening(listener, 0.1)
    [(rst, _)] = sent(stack)
    assert rst.flags == RST
    assert len(stack) == 0
    stack.receive(encode(Segment(5001, 7007, 100, 0, SYN)), CLIENT, 0.2)
    [(refusal, _)] = sent(stack)
    assert refusal.flags == RST | ACK


def test_listening_twice_on_a_port_is_refused():
    stack = lone_stack()
    stack.listen(7007, 10, Options())
    with pytest.raises(OSError) as failed:
        stack.listen(7007, 10, Options())
    assert failed.value.errno == errno.EADDRINUSE


def test_icmp_port_unreachable_refuses_a_connection_in_syn_sent():
    stack = lone_stack()
    conn = stack.connect(OTHER, 7007, Options(), 0.0)
    [(syn, _)] = sent(stack)
    stack.icmp_error(encode(syn)[:8], OTHER, True, 0.01)
    assert conn.state is State.CLOSED
    assert stack.take_events() == [(conn, [Reset(refused=True)])]
    assert len(stack) == 0
    assert stack.statistics()["drops"] == {"icmp-port-unreachable": 1}


def test_icmp_host_unreachable_ends_a_connection_in_syn_sent():
    stack = lone_stack()
    conn = stack.connect(OTHER, 7007, Options(), 0.0)
    other = stack.connect(OTHER, 7008, Options(), 0.0)
    [(syn, _), _] = sent(stack)
    stack.icmp_error(encode(syn)[:8], OTHER, "host", 0.01)
    stack.icmp_error(b"\0" * 8, OTHER, None, 0.01)  # some other ICMP error: counted
    assert conn.state is State.CLOSED
    assert other.state is State.SYN_SENT  # only the connection whose SYN it quotes
    assert stack.take_events() == [(conn, [Unreachable("host")])]
    assert stack.statistics()["drops"] == {"icmp-host-unreachable": 1, "icmp-error": 1}


# ------------------------------------------------------- the ACK of a FIN, deferred


def deferring(**client_args) -> tuple[Network, object, object, object, object]:
    """A client connected to a server whose stack defers the ACK of a FIN (the asyncio
    endpoint's setting), and the client's FIN arrived: (net, server, its side, the
    client's side, how many segments the server's side had sent)."""
    net = Network()
    server = net.add(SERVER, defer_fin_acks=True)
    server.stack.listen(7007, 100, Options())
    client = net.add(CLIENT, **client_args)
    conn = connect(net, client)
    net.run(stop=lambda: server.connections())
    [accepted] = server.connections()
    sent_before = accepted.counters.segments_out
    client.stack.shutdown(conn, net.now)  # (its reading side stays open)
    net.run(stop=lambda: accepted.state is State.CLOSE_WAIT)
    assert accepted.ack_deferred and server.events_of(accepted)[-1] == EndOfStream()
    return net, server, accepted, conn, sent_before


def test_an_application_that_closes_at_once_sends_the_ack_of_the_fin_with_its_own():
    # A close of three segments, FIN, FIN-ACK, ACK, as Linux's is.
    net, server, accepted, conn, sent_before = deferring()
    taken = server.stack.take_deferred_acks()  # its events delivered
    assert taken == [accepted] and not server.stack.acks_deferred
    net.run(until=net.now + 0.02)  # (within the delayed ACK's 40 ms)
    assert accepted.counters.segments_out == sent_before
    assert conn.state is State.FIN_WAIT_1
    server.stack.close(accepted, net.now)  # the application's turn: it closes
    assert not server.stack.send_deferred_acks(taken, net.now)  # its turn is over: none owed
    net.run(stop=lambda: conn.state is State.TIME_WAIT)
    assert accepted.counters.segments_out == sent_before + 1  # FIN and ACK in one
    net.run()
    assert accepted.state is State.CLOSED and len(server.stack) == 0


def test_an_application_that_answers_at_once_sends_the_ack_with_its_data():
    net, server, accepted, conn, sent_before = deferring()
    taken = server.stack.take_deferred_acks()
    server.stack.send(accepted, b"bye", net.now)
    server.stack.send_deferred_acks(taken, net.now)
    net.run(stop=lambda: conn.state is State.FIN_WAIT_2)
    assert accepted.counters.segments_out == sent_before + 1
    assert bytes(net.hosts[CLIENT].received[conn]) == b"bye"


def test_an_application_that_does_nothing_leaves_a_bare_ack_at_the_end_of_its_turn():
    net, server, accepted, conn, sent_before = deferring()
    at = net.now
    assert server.stack.send_deferred_acks(server.stack.take_deferred_acks(), net.now)
    net.run(stop=lambda: conn.state is State.FIN_WAIT_2)
    assert accepted.counters.segments_out == sent_before + 1
    assert net.now == pytest.approx(at + 0.01)  # one trip over the link, no delay


def test_without_the_drivers_call_the_delayed_ack_timer_sends_it():
    net, server, accepted, conn, sent_before = deferring()
    at = net.now
    net.run(stop=lambda: conn.state is State.FIN_WAIT_2)
    assert net.now == pytest.approx(at + Options().delayed_ack + 0.01)
    assert accepted.counters.segments_out == sent_before + 1
    # The stack holds on to nothing for a driver that never takes them.
    server.stack.close(accepted, net.now)
    net.run()
    assert len(server.stack) == 0 and not server.stack.acks_deferred


def test_a_fin_that_ends_our_own_close_is_acknowledged_at_once():
    # Only a FIN that arrives while ESTABLISHED waits: one that answers ours (FIN-WAIT-2
    # into TIME-WAIT) draws its ACK at once, as the peer waits for it.
    net, server, accepted, conn, _ = deferring(defer_fin_acks=True)
    client_stack = net.hosts[CLIENT].stack
    server.stack.send_deferred_acks(server.stack.take_deferred_acks(), net.now)
    net.run(stop=lambda: conn.state is State.FIN_WAIT_2)
    sent = conn.counters.segments_out
    server.stack.close(accepted, net.now)
    net.run(stop=lambda: conn.state is State.TIME_WAIT)
    assert conn.counters.segments_out == sent + 1
    assert not client_stack.acks_deferred
    at = net.now
    net.run(stop=lambda: accepted.state is State.CLOSED)
    assert net.now == pytest.approx(at + 0.01)


def test_the_segment_that_fills_the_hole_before_a_fin_is_acknowledged_at_once():
    # RFC 5681 4.2: the segment that fills a hole is ACKed at once, and with it the
    # FIN that waited beyond the hole; the deferral is for a FIN that comes in order.
    net, server, client, conn, accepted = _established()
    server.stack.defer_fin_acks = accepted.defer_fin_ack = True
    [data] = _data_segments(client, conn, b"x" * 100, net.now)
    client.stack.shutdown(conn, net.now)
    [fin] = [decode(d) for d, _, _ in client.stack.datagrams_to_send()]
    assert fin.flags & FIN and fin.seq == data.seq + 100
    server.stack.receive(encode(fin), CLIENT, net.now)  # ahead of the hole
    [dupack] = sent(server.stack)
    assert dupack[0].ack == data.seq
    server.stack.receive(encode(data), CLIENT, net.now)  # the hole filled
    [(ack, _)] = sent(server.stack)
    assert ack.ack == fin.seq + 1 and accepted.state is State.CLOSE_WAIT
    assert not server.stack.take_deferred_acks()


# ------------------------------------------------------------------- ports


def test_local_ports_are_distinct_and_come_from_the_range():
    stack = lone_stack(ephemeral_ports=range(40000, 40100))
    ports = {stack.connect(OTHER, 7007, Options(), 0.0).local_port for _ in range(100)}
    assert ports == set(range(40000, 40100))
    with pytest.raises(OSError, match="all 100 are in use") as failed:
        stack.connect(OTHER, 7007, Options(), 0.0)
    assert failed.value.errno == errno.EADDRNOTAVAIL
    # Toward another server port, every local port is free again.
    assert stack.connect(OTHER, 7008, Options(), 0.0).local_port in range(40000, 40100)


def test_a_port_in_time_wait_is_not_reused_without_timestamps():
    # Without timestamps (RFC 6191) nothing tells an old duplicate from new data:
    # the 4-tuple stays taken for the whole of TIME-WAIT.
    net = Network()
    server = net.add(SERVER)
    server.stack.listen(7007, 100, PLAIN)
    client = net.add(CLIENT, ephemeral_ports=range(40000, 40001))
    opts = PLAIN.with_(msl=5.0)
    conn = client.stack.connect(SERVER, 7007, opts, 0.0)
    net.run(stop=lambda: conn.state is State.ESTABLISHED)
    client.stack.close(conn, net.now)
    net.run(stop=lambda: server.events and server.events[-1][1] == EndOfStream())
    server.stack.close(server.connections()[0], net.now)
    net.run(stop=lambda: conn.state is State.TIME_WAIT)
    net.run(until=net.now + 9.0)
    with pytest.raises(OSError) as failed:
        client.stack.connect(SERVER, 7007, opts, net.now)
    assert failed.value.errno == errno.EADDRNOTAVAIL
    net.run()  # TIME-WAIT ends
    assert client.stack.connect(SERVER, 7007, opts, net.now).local_port == 40000


def test_a_syn_beyond_the_old_sequence_space_reopens_time_wait_on_the_server():
    # The server closed first and holds TIME-WAIT; the client comes back on the
    # same port with a higher ISN (RFC 9293 3.10.7.4): a new connection.
    net = Network()
    server = net.add(SERVER)
    server.stack.listen(7007, 100, PLAIN)
    client = net.add(CLIENT, ephemeral_ports=range(40000, 40001))
    conn = client.stack.connect(SERVER, 7007, PLAIN, 0.0)
    net.run(stop=lambda: conn.state is State.ESTABLISHED and server.connections())
    [old] = server.connections()
    server.stack.close(old, net.now)
    net.run(stop=lambda: conn.state is State.CLOSE_WAIT)
    client.stack.close(conn, net.now)
    net.run(stop=lambda: old.state is State.TIME_WAIT and conn.state is State.CLOSED)
    again = client.stack.connect(SERVER, 7007, PLAIN, net.now + 1.0)
    assert again.local_port == 40000
    net.run()
    assert again.state is State.ESTABLISHED
    assert len(server.connections()) == 2
    assert server.stack.statistics()["connections"] == {"ESTABLISHED": 1}


# ------------------------------------------------------------------ timers


def test_one_deadline_for_all_connections():
    stack = lone_stack()
    a = stack.connect(OTHER, 7007, Options(initial_rto=2.0), 0.0)
    b = stack.connect(OTHER, 7007, Options(initial_rto=0.5, min_rto=0.2), 0.1)
    sent(stack)
    assert stack.next_deadline() == pytest.approx(0.6)
    stack.handle_timer(0.6)
    assert [s.flags for s, _ in sent(stack)] == [SYN]  # b's SYN again, not a's
    assert a.counters.retransmissions == 0 and b.counters.retransmissions == 1
    assert stack.statistics()["connection_totals"]["timeouts"] == 1
    assert stack.next_deadline() == pytest.approx(1.6)  # b's next, after backoff
    stack.handle_timer(1.6)
    sent(stack)
    assert stack.next_deadline() == pytest.approx(2.0)  # a's first


def test_timers_run_at_most_a_millisecond_late_and_never_early():
    stack = lone_stack()
    stack.connect(OTHER, 7007, Options(initial_rto=0.2003), 0.0)
    sent(stack)
    due = stack.next_deadline()
    assert 0.2003 <= due <= 0.2013
    stack.handle_timer(0.2)
    assert sent(stack) == []
    stack.handle_timer(due)
    assert len(sent(stack)) == 1


def test_a_deadline_that_moves_later_costs_no_new_timer_entry():
    # A bulk sender restarts its retransmission timer on every ACK: the timer
    # structure holds one entry per connection however often that happens.
    net, server, client = network()
    conn = connect(net, client)
    client.stack.send(conn, bytes(2_000_000), net.now)
    for _ in range(2000):
        net.step()
        assert len(client.stack._timers) <= 1
        assert len(client.stack._timers._heap) <= 8
    assert conn.counters.segments_out > 1000


# ---------------------------------------------------------- no amplification


def run_timers(stack: Stack, until: float) -> list[tuple[Segment, tuple]]:
    """Fire the stack's timers up to ``until``; what it sent meanwhile."""
    out = []
    while (d := stack.next_deadline()) is not None and d <= until:
        stack.handle_timer(d)
        out += sent(stack)
    return out


def listening_stack(**kw) -> Stack:
    stack = lone_stack(**kw)
    stack.listen(7007, 100, Options())
    return stack


def syn_from(addr: tuple, port: int = 4000, seq: int = 1000) -> bytes:
    return encode(Segment(port, 7007, seq, 0, SYN, 65535))


def test_a_spoofed_syn_draws_at_most_three_times_its_bytes():
    # The victim at OTHER never answers: what goes to it, SYN-ACK retransmissions
    # included, stays within three times the bytes of the one SYN (RFC 9000 8.1).
    stack = listening_stack()
    syn = syn_from(OTHER)
    stack.receive(syn, OTHER, 0.0)
    out = sent(stack) + run_timers(stack, 100.0)
    assert all(s.flags == SYN | ACK and addr == OTHER for s, addr in out)
    sizes = [len(encode(s)) for s, _ in out]
    assert 1 <= len(out) <= 3 and sum(sizes) <= 3 * len(syn)
    assert sum(sizes) + sizes[0] > 3 * len(syn)  # one more would have passed the limit
    drops = stack.statistics()["drops"]
    assert drops["amplification-limit"] == Options().synack_retries - (len(out) - 1)
    assert len(stack) == 0  # and the half-open entry went when its retries ran out


def test_each_retransmitted_syn_earns_more_answers_and_the_handshake_completes():
    stack = listening_stack()
    received = sent_bytes = 0
    for t in (0.0, 1.0, 3.0):  # the client's SYN and its own retransmissions
        sent_bytes += sum(len(encode(s)) for s, _ in run_timers(stack, t))
        syn = syn_from(OTHER)
        stack.receive(syn, OTHER, t)
        received += len(syn)
        sent_bytes += sum(len(encode(s)) for s, _ in sent(stack))
    assert 0 < sent_bytes <= 3 * received
    [conn] = stack.connections()
    stack.receive(encode(Segment(4000, 7007, 1001, (conn.iss + 1) & 0xFFFFFFFF, ACK, 65535)),
                  OTHER, 3.1)
    assert conn.state is State.ESTABLISHED
    assert stack.statistics()["accepted"] == 1


def test_a_replayed_syn_is_answered_twice_a_second_at_most_and_ends_on_time():
    stack = listening_stack()
    answers = 0
    entries = {}
    t = 0.0
    while t < 100.0:  # the same SYN every 50 ms for 100 s
        stack.receive(syn_from(OTHER), OTHER, t)
        answers += len(sent(stack)) + len(run_timers(stack, t + 0.05))
        entries[round(t, 2)] = next(iter(stack.connections()), None)
        t += 0.05
    # Answers to the duplicates, at most one per 500 ms, and the entry's own
    # SYN-ACK retransmissions (5 per entry): far fewer than the 2,000 SYNs.
    assert answers <= 100 / 0.5 + 2 * 6
    # The replays do not keep the first half-open entry alive: it ends when its
    # SYN-ACK retries run out (1 + 2 + 4 + 8 + 16 + 32 = 63 s), and the next
    # replay is a new attempt.
    first = entries[0.0]
    assert entries[62.0] is first and entries[64.0] is not first
    assert stack.statistics()["accepted"] == 0


def test_rsts_to_nothing_are_rate_limited_and_counted():
    stack = lone_stack()
    for i in range(10_000):  # a flood of ACKs to no connection, all at once
        stack.receive(encode(Segment(4000 + i % 1000, 9, i, 1, ACK, 0)), OTHER, 1.0)
    assert len(sent(stack)) == 50  # the burst
    stack.receive(encode(Segment(4000, 9, 1, 1, ACK, 0)), OTHER, 1.5)  # 500 refilled
    assert len(sent(stack)) == 1
    drops = stack.statistics()["drops"]
    assert drops["no-connection"] == 10_001
    assert drops["rst-rate-limited"] == 10_000 - 50


# -------------------------------------------------------------------- limits


def handshake_from(stack: Stack, addr: tuple, port: int, now: float) -> object:
    """A whole handshake from ``addr``: the connection, or None if the SYN was dropped."""
    stack.receive(syn_from(addr, port), addr, now)
    answers = sent(stack)
    if not answers:
        return None
    [(synack, _)] = answers
    stack.receive(encode(Segment(port, 7007, 1001, (synack.seq + 1) & 0xFFFFFFFF, ACK,
                                 65535)), addr, now)
    return next(c for c in stack.connections() if c.remote_port == port and c.peer == addr)


def test_a_listener_holds_at_most_max_connections():
    stack = lone_stack()
    stack.listen(7007, 100, PLAIN, max_connections=2)
    first = handshake_from(stack, OTHER, 4001, 0.0)
    assert handshake_from(stack, CLIENT, 4002, 0.0) is not None
    assert handshake_from(stack, ("10.0.0.9", 1), 4003, 0.0) is None
    assert stack.statistics()["drops"]["connection-limit"] == 1
    stack.abort(first, 0.1)  # one ends: room for another
    sent(stack)
    assert handshake_from(stack, ("10.0.0.9", 1), 4003, 0.2) is not None


def test_a_listener_holds_at_most_max_per_host_from_one_address():
    stack = lone_stack()
    stack.listen(7007, 100, PLAIN, max_per_host=2)
    other_port = (OTHER[0], 6000)  # the same host from another UDP port
    assert handshake_from(stack, OTHER, 4001, 0.0) is not None
    assert handshake_from(stack, other_port, 4002, 0.0) is not None
    assert handshake_from(stack, OTHER, 4003, 0.0) is None
    assert handshake_from(stack, CLIENT, 4004, 0.0) is not None  # another host: welcome
    assert stack.statistics()["drops"]["host-limit"] == 1


def test_icmp_quoting_a_syn_ack_ends_the_half_open_entry_at_once():
    # The SYN came from a spoofed address, whose host answers the SYN-ACK with
    # "port unreachable": the half-open entry goes at once, freeing the backlog.
    stack = listening_stack()
    stack.receive(syn_from(OTHER), OTHER, 0.0)
    [(synack, _)] = sent(stack)
    stack.icmp_error(encode(synack)[:8], OTHER, "port", 0.01)
    assert len(stack) == 0 and not stack.listeners[7007].half_open
    assert stack.take_events() == []  # no application ever saw it
    assert run_timers(stack, 100.0) == []


def test_a_connection_takes_no_segment_sent_to_another_local_address():
    # A wildcard server learns the address each datagram reached (via): a
    # connection made at one of its addresses ignores segments sent to another,
    # even with the right ports and peer, as the kernel matches the full 4-tuple.
    stack = listening_stack()
    stack.receive(syn_from(OTHER), OTHER, 0.0, via="10.0.0.1")
    [(synack, _)] = sent(stack)
    ack = encode(Segment(4000, 7007, 1001, (synack.seq + 1) & 0xFFFFFFFF, ACK, 65535))
    stack.receive(ack, OTHER, 0.01, via="10.0.0.7")  # another of our addresses
    [conn] = stack.connections()
    assert conn.state is State.SYN_RECEIVED
    assert stack.statistics()["drops"]["wrong-local-address"] == 1
    stack.receive(ack, OTHER, 0.02, via="10.0.0.1")
    assert conn.state is State.ESTABLISHED


def synack_for(stack: Stack, conn, seq: int = 5000) -> tuple[Segment, bytes]:
    """The SYN ``conn`` sent (taken from ``stack``), and a SYN-ACK that answers it."""
    [(syn, _)] = sent(stack)
    return syn, encode(Segment(7007, conn.local_port, seq, (syn.seq + 1) & 0xFFFFFFFF,
                               SYN | ACK, 65535))


def test_an_active_open_takes_its_local_address_from_its_syn_ack():
    # A client socket on a wildcard address learns where each datagram arrived,
    # but what its SYN left from is the kernel's choice: the connection takes the
    # address its SYN-ACK reached, sends from it, and from then on takes no
    # segment sent to another, as the kernel matches the full 4-tuple.
    stack = lone_stack()
    conn = stack.connect(OTHER, 7007, PLAIN, 0.0)
    syn, synack = synack_for(stack, conn)
    # Until then any address goes, but a SYN-ACK must acknowledge the ISS: a
    # wrong one, wherever it arrives, is answered with a RST and teaches nothing.
    forged = encode(Segment(7007, conn.local_port, 5000, (syn.seq + 99) & 0xFFFFFFFF,
                            SYN | ACK, 65535))
    stack.receive(forged, OTHER, 0.005, via="10.0.0.7")
    [(rst, _)] = sent(stack)
    assert rst.flags == RST and conn.state is State.SYN_SENT and conn.via is None
    stack.receive(synack, OTHER, 0.01, via="10.0.0.2")
    assert conn.state is State.ESTABLISHED and conn.via == "10.0.0.2"
    [(_, _, via)] = stack.datagrams_to_send()  # the handshake's ACK
    assert via == "10.0.0.2"
    ours = (syn.seq + 1) & 0xFFFFFFFF

    def data(payload: bytes) -> bytes:
        return encode(Segment(7007, conn.local_port, 5001, ours, ACK, 65535,
                              payload=payload))

    stack.take_events()
    stack.receive(data(b"forged"), OTHER, 0.02, via="10.0.0.7")  # right ports and seq
    assert stack.statistics()["drops"]["wrong-local-address"] == 1
    assert stack.take_events() == [] and sent(stack) == [] and conn.rcv_nxt == 5001
    stack.receive(data(b"real"), OTHER, 0.03, via="10.0.0.2")
    assert stack.take_events() == [(conn, [DataReceived(b"real")])]


def test_an_active_open_learns_nothing_where_datagrams_carry_no_address():
    # A socket that does not learn the address (bound to one, or on a loop
    # without recvmsg) passes via=None: nothing is pinned, nothing dropped.
    stack = lone_stack()
    conn = stack.connect(OTHER, 7007, PLAIN, 0.0)
    _, synack = synack_for(stack, conn)
    stack.receive(synack, OTHER, 0.01)
    assert conn.state is State.ESTABLISHED and conn.via is None
    [(_, _, via)] = stack.datagrams_to_send()
    assert via is None


def client_in_time_wait(stack: Stack, via: object, now: float) -> tuple[object, bytes]:
    """An active open of ``stack``'s made at ``via`` and left in TIME-WAIT: the
    connection, and the peer's FIN that put it there (to repeat it)."""
    conn = stack.connect(OTHER, 7007, PLAIN, now)
    _, synack = synack_for(stack, conn)
    stack.receive(synack, OTHER, now, via=via)
    stack.close(conn, now)
    [_, (fin, _)] = sent(stack)
    peer_fin = encode(Segment(7007, conn.local_port, 5001, (fin.seq + 1) & 0xFFFFFFFF,
                              FIN | ACK, 65535))
    stack.receive(peer_fin, OTHER, now, via=via)
    assert conn.state is State.TIME_WAIT
    return conn, peer_fin


def test_a_time_wait_record_takes_no_segment_sent_to_another_local_address():
    # The record keeps the address its connection was made at: a segment for its
    # ports and peer that reached another address (here a RST that would end
    # it) is dropped and counted; at its own address the same RST ends it.
    stack = lone_stack()
    conn, peer_fin = client_in_time_wait(stack, "10.0.0.2", 0.0)
    [(_, _, via)] = stack.datagrams_to_send()  # the last ACK
    assert via == "10.0.0.2" and stack.time_wait_entries() == 1
    assert not list(stack.connections())
    rst = encode(Segment(7007, conn.local_port, 5002, 0, RST))
    stack.receive(rst, OTHER, 0.04, via="10.0.0.7")
    assert stack.statistics()["drops"]["wrong-local-address"] == 1
    assert stack.statistics()["connections"] == {"TIME-WAIT": 1}
    stack.receive(peer_fin, OTHER, 0.05, via="10.0.0.2")  # repeated: re-ACKed from there
    [(_, _, via)] = stack.datagrams_to_send()
    assert via == "10.0.0.2"
    stack.receive(rst, OTHER, 0.06, via="10.0.0.2")
    assert stack.statistics()["connections"] == {}


def test_time_wait_records_keep_the_usual_local_address_once():
    # Each record answers from the address its connection was made at, but the
    # table stores only the exceptions to the one most share (a client's records
    # all have the same): the address costs no memory per record.
    stack = lone_stack()
    usual, other = "10.0.0.2", "10.0.0.9"
    made = []
    for via in (None, usual, usual, usual, other, usual):
        made.append(client_in_time_wait(stack, via, 0.0) + (via,))
        sent(stack)  # the last ACK
    assert stack.time_wait_entries() == 6
    assert len(stack._tw._via) == 2  # the one made at none, and the other
    for conn, peer_fin, via in made:
        stack.receive(peer_fin, OTHER, 0.1, via=via)  # repeated: re-ACKed from there
        [(ack, _, answered_from)] = stack.datagrams_to_send()
        assert decode(ack).src_port == conn.local_port and answered_from == via


def test_a_syn_at_another_local_address_may_still_reopen_a_time_wait_4_tuple():
    # A SYN is not dropped for reaching another address than the record's: if it
    # reopens the 4-tuple, the new connection is made at the address it reached
    # (the kernel would open it there, a 4-tuple of its own).
    stack = listening_stack()
    stack.receive(syn_from(OTHER), OTHER, 0.0, via="10.0.0.1")
    [(synack, _)] = sent(stack)
    stack.receive(encode(Segment(4000, 7007, 1001, (synack.seq + 1) & 0xFFFFFFFF, ACK,
                                 65535)), OTHER, 0.01, via="10.0.0.1")
    [first] = stack.connections()
    stack.close(first, 0.1)
    [(fin, _)] = sent(stack)
    stack.receive(encode(Segment(4000, 7007, 1001, (fin.seq + 1) & 0xFFFFFFFF, FIN | ACK,
                                 65535)), OTHER, 0.2, via="10.0.0.1")
    sent(stack)
    assert stack.time_wait_entries() == 1 and not list(stack.connections())
    stack.receive(syn_from(OTHER, seq=10**6), OTHER, 0.3, via="10.0.0.7")
    [(answer, _, via)] = stack.datagrams_to_send()
    [second] = stack.connections()
    assert decode(answer).flags == SYN | ACK and via == second.via == "10.0.0.7"
    assert "wrong-local-address" not in stack.statistics()["drops"]


def test_a_reopened_time_wait_counts_against_the_limits():
    stack = lone_stack()
    stack.listen(7007, 10, PLAIN, max_connections=1)
    first = handshake_from(stack, OTHER, 4000, 0.0)
    # The server closes first; the client answers; the server is left in TIME-WAIT.
    stack.close(first, 0.1)
    [(fin, _)] = sent(stack)
    stack.receive(encode(Segment(4000, 7007, 1001, (fin.seq + 1) & 0xFFFFFFFF, FIN | ACK,
                                 65535)), OTHER, 0.2)
    sent(stack)
    assert stack.time_wait_entries() == 1
    assert handshake_from(stack, CLIENT, 4001, 0.3) is not None  # takes the one slot
    # A new SYN on the TIME-WAIT 4-tuple (a higher ISN reopens it) is over the limit.
    stack.receive(syn_from(OTHER, 4000, seq=10**6), OTHER, 0.4)
    assert sent(stack) == []
    assert stack.statistics()["drops"]["connection-limit"] == 1
    assert stack.listeners[7007].count == 1


def test_a_syn_ack_held_back_is_not_sent_once_the_handshake_completes():
    stack = listening_stack()
    stack.receive(syn_from(OTHER), OTHER, 0.0)
    [(synack, _)] = sent(stack)
    # The timer's first retransmission fits in the budget; its second is held back.
    assert len(run_timers(stack, 3.5)) == 1
    assert stack.statistics()["drops"]["amplification-limit"] == 1
    ack = Segment(4000, 7007, 1001, (synack.seq + 1) & 0xFFFFFFFF, ACK, 65535)
    stack.receive(encode(ack), OTHER, 3.6)
    [conn] = stack.connections()
    assert conn.state is State.ESTABLISHED
    assert sent(stack) == []  # and no stale SYN-ACK after it


# ------------------------------------------------------------- NAT rebinding

NEW = ("10.0.0.9", 6001)


def move(net: Network, host, to: tuple) -> None:
    """The host's NAT gives it a new address: its datagrams come from ``to``."""
    del net.hosts[host.address]
    host.address = to
    net.hosts[to] = host


def moved_after_sending(data: bytes) -> tuple:
    """A connection whose client sent ``data``, which reached the server, and was
    then given the address NEW by its NAT: the network, both hosts, the client's
    connection and the server's."""
    net, server, client = network()
    conn = connect(net, client)
    client.stack.send(conn, data, net.now)
    net.run(stop=lambda: server.received)
    [accepted] = server.connections()
    move(net, client, NEW)
    return net, server, client, conn, accepted


def test_a_peer_that_comes_back_from_a_new_address_is_followed():
    net, server, client, conn, accepted = moved_after_sending(b"before ")
    client.stack.send(conn, b"after", net.now)
    net.run(until=net.now + 1)
    assert bytes(server.received[accepted]) == b"before after"
    assert accepted.peer == NEW and server.stack.statistics()["rebinds"] == 1
    # Answers go to the new address.
    server.stack.send(accepted, b"reply", net.now)
    net.run(until=net.now + 1)
    assert bytes(client.received[conn]) == b"reply"


def test_a_peer_whose_acks_went_to_its_old_address_is_followed_by_its_resend():
    # The NAT gives the client a new port while its data is in flight: the data
    # arrives, but the server's ACK goes to the old port, which no longer leads
    # anywhere. The client's timeout resends the data from its new port: bytes
    # the server already has, behind RCV.NXT, yet from the peer (its ACK and its
    # timestamps prove it). The connection moves, and its ACK reaches the client;
    # before, the server took the resend for a stranger's and reset the client.
    net, server, client, conn, accepted = moved_after_sending(b"in flight")
    net.run(stop=lambda: conn.snd_una == conn.snd_max, until=net.now + 10)
    assert conn.state is State.ESTABLISHED and conn.snd_una == conn.snd_max
    assert conn.counters.retransmissions >= 1 and accepted.peer == NEW
    assert server.stack.statistics()["rebinds"] == 1
    assert bytes(server.received[accepted]) == b"in flight"
    client.stack.send(conn, b", and after", net.now)
    net.run(until=net.now + 1)
    assert bytes(server.received[accepted]) == b"in flight, and after"


def test_a_keepalive_probe_from_a_new_address_moves_the_connection():
    # A keepalive probe (RFC 9293 3.8.4) carries SEQ = SND.UNA - 1, a byte the
    # server already has: from the peer's new port it is still the peer's.
    net, server, client = network()
    conn = connect(net, client, Options(keepalive=True, keepalive_idle=30,
                                        keepalive_interval=5, keepalive_count=3))
    net.run(until=net.now + 1)
    [accepted] = server.connections()
    move(net, client, NEW)
    net.run(until=net.now + 40)
    assert accepted.peer == NEW and server.stack.statistics()["rebinds"] == 1
    assert conn.state is State.ESTABLISHED and accepted.state is State.ESTABLISHED


def _from_client(conn, seq: int, now: float, tsecr: int | None = None) -> Segment:
    """A bare ACK as the client ``conn`` would send it now, at ``seq`` (echoing
    ``tsecr`` if given)."""
    ts = ((int(now * 1000) + conn.ts_offset) & 0xFFFFFFFF,
          conn._ts_recent if tsecr is None else tsecr)
    return Segment(conn.local_port, 7007, seq, conn.rcv_nxt, ACK, 65535, 0,
                   (NOP_OPTION, NOP_OPTION, (8, ts)))


def test_a_segment_from_a_new_address_may_start_at_most_a_receive_buffer_behind():
    # Behind RCV.NXT by more than the receive buffer is too far, even with the
    # timestamps right; a keepalive's SND.UNA - 1 is not.
    net, server, client = network()
    conn = connect(net, client)
    net.run(until=net.now + 1)
    [accepted] = server.connections()
    seq = conn.snd_nxt
    far = (seq - accepted.rcv_buf - 2) & 0xFFFFFFFF
    server.stack.receive(encode(_from_client(conn, far, net.now)), NEW, net.now)
    assert accepted.peer == CLIENT and server.stack.statistics()["rebinds"] == 0
    probe = (seq - 1) & 0xFFFFFFFF  # a keepalive's
    server.stack.receive(encode(_from_client(conn, probe, net.now)), NEW, net.now)
    assert accepted.peer == NEW and server.stack.statistics()["rebinds"] == 1


def test_without_timestamps_a_connection_stays_where_it_is():
    # Nothing a peer without timestamps sends proves an address its own: the
    # sequence numbers it knows, anyone it tells them to knows.
    net, server, client = network()
    conn = connect(net, client, PLAIN)
    net.run(until=net.now + 1)
    [accepted] = server.connections()
    seg = Segment(conn.local_port, 7007, conn.snd_nxt, conn.rcv_nxt, ACK, 65535)
    server.stack.receive(encode(seg), NEW, net.now)
    assert accepted.peer == CLIENT and server.stack.statistics()["rebinds"] == 0
    assert [s.flags for s, addr in sent(server.stack) if addr == NEW] == [RST]


VICTIM = ("10.0.0.66", 7777)


def test_a_peer_cannot_turn_its_download_onto_another_address():
    # The peer itself knows every number its segments carry: a copy of one, sent
    # with a victim's address as its source, passes every check. The connection
    # moves, but sends the victim no more than three times what came from it, and
    # no data but a one-byte probe, until an echo of a timestamp sent there
    # proves the address the peer's. A guess at that echo proves nothing.
    net, server, client = network()
    conn = connect(net, client)
    net.run(until=net.now + 1)
    [accepted] = server.connections()
    server.stack.send(accepted, bytes(2_000_000), net.now)
    net.run(until=net.now + 0.05)  # the download under way
    assert accepted.counters.bytes_out > 100_000
    heard = 0
    to_victim: list[Segment] = []
    for i in range(20):
        # The first a copy of the peer's next ACK; then duplicates of it (which
        # would start a fast retransmit), and guesses at the echo, as close as
        # can be: just past where the secret jump took the server's clock.
        guess = None if i < 5 else (accepted._path_ts + i) & 0xFFFFFFFF
        forged = encode(_from_client(conn, conn.snd_nxt, net.now, guess))
        heard += len(forged)
        server.stack.receive(forged, VICTIM, net.now)
        to_victim += [s for s, addr in sent(server.stack) if addr == VICTIM]
        net.now += 0.5
        server.stack.handle_timer(net.now)
        to_victim += [s for s, addr in sent(server.stack) if addr == VICTIM]
    assert accepted.peer == VICTIM and accepted.unproven
    assert server.stack.statistics()["rebinds"] == 1
    assert to_victim and max(len(s.payload) for s in to_victim) <= 1
    assert sum(len(encode(s)) for s in to_victim) <= 3 * heard
    # (The connection itself sent nothing more: the budget had nothing to drop.)
    assert "amplification-limit" not in server.stack.statistics()["drops"]
    assert accepted._path_misses == PATH_GUESSES  # (the guesses counted, and ran out)


def test_what_escapes_the_connection_toward_an_unproven_address_the_budget_stops():
    # The stack's own limit, under the connection's: three times what came
    # from the new address, whatever the connection queues.
    net, server, client = network()
    conn = connect(net, client)
    net.run(until=net.now + 1)
    [accepted] = server.connections()
    forged = encode(_from_client(conn, conn.snd_nxt, net.now))
    server.stack.receive(forged, VICTIM, net.now)
    sent(server.stack)
    assert accepted.unproven
    big = Segment(7007, conn.local_port, accepted.snd_nxt, accepted.rcv_nxt, ACK, 100, 0, (),
                  bytes(1000))
    accepted._out += [big, big]
    server.stack._service(accepted)
    assert sent(server.stack) == []
    assert server.stack.statistics()["drops"]["amplification-limit"] == 2


@pytest.mark.parametrize("first", ["data", "delayed-ack"])
def test_a_download_follows_its_client_to_a_new_address_once_proven(first):
    net, server, client = network()
    conn = connect(net, client)
    net.run(until=net.now + 1)
    [accepted] = server.connections()
    data = random.Random(11).randbytes(1_000_000)
    server.stack.send(accepted, data, net.now)
    net.run(until=net.now + 0.05)
    # Mid-download the client's NAT moves it: the server's data goes nowhere
    # now. What comes from the new address first is the client's own data
    # (see nat_keepalive for a quiet client); in the second case its last ACKs
    # before the move were lost, so that segment acknowledges more than the
    # server has heard of: it moves SND.UNA, and the probe must go above.
    if first == "delayed-ack":
        net.link(CLIENT, SERVER).loss = 1.0
        before = len(client.received[conn])
        net.run(stop=lambda: len(client.received[conn]) > before + 20_000)
        net.link(CLIENT, SERVER).loss = 0.0
    una = accepted.snd_una
    move(net, client, NEW)
    client.stack.send(conn, b"?", net.now)
    if first == "delayed-ack":
        assert (conn.rcv_nxt - una) & 0xFFFFFFFF > 20_000
    timeouts = accepted.counters.timeouts
    start = net.now
    net.run(until=net.now + 60, stop=lambda: len(client.received[conn]) == len(data))
    assert bytes(client.received[conn]) == data
    assert accepted.peer == NEW and not accepted.unproven
    assert server.stack.statistics()["rebinds"] == 1
    # A round trip and a delayed ACK to prove it; no timeout.
    assert accepted.counters.timeouts == timeouts and net.now - start < 1


def test_a_forged_segment_from_a_new_address_moves_nothing():
    net, server, client = network()
    conn = connect(net, client)
    net.run(until=net.now + 1)
    [accepted] = server.connections()
    assert accepted.info()["timestamps"]
    port, good_seq, good_ack = conn.local_port, conn.snd_nxt, conn.rcv_nxt
    forged = [
        # Everything right but the timestamps the connection uses (PAWS, the echo).
        Segment(port, 7007, good_seq, good_ack, ACK, 65535),
        # Out of the window.
        Segment(port, 7007, (good_seq + 10**6) & 0xFFFFFFFF, good_ack, ACK, 65535),
        # Acknowledging what was never sent.
        Segment(port, 7007, good_seq, (good_ack + 10**6) & 0xFFFFFFFF, ACK, 65535),
        # A RST, or a SYN, never moves a connection.
        Segment(port, 7007, good_seq, 0, RST, 0),
    ]
    for seg in forged:
        server.stack.receive(encode(seg), NEW, net.now)
    assert accepted.peer == CLIENT and accepted.state is State.ESTABLISHED
    assert server.stack.statistics()["rebinds"] == 0
    # The connection still talks to its peer where it was.
    client.stack.send(conn, b"still here", net.now)
    net.run(until=net.now + 1)
    assert bytes(server.received[accepted]) == b"still here"


# ------------------------------------------------------------------ runs in a batch


def _established(options: Options | None = None):
    """A connection, its peer on the server, and the network; nothing in flight."""
    net, server, client = network()
    conn = connect(net, client, options or Options(initial_cwnd=64))
    net.run(until=net.now + 1)
    server.collect()
    [accepted] = server.connections()
    server.stack.coalesce_acks = accepted.coalesce_acks = True  # as the endpoint has it
    return net, server, client, conn, accepted


def _data_segments(client, conn, data: bytes, now: float) -> list[Segment]:
    client.stack.send(conn, data, now)
    return [decode(d) for d, _, _ in client.stack.datagrams_to_send()]


def _received(stack: Stack, conn) -> tuple[bytes, int]:
    """The data delivered to ``conn`` since last asked, and in how many events."""
    events = [ev for c, evs in stack.take_events() if c is conn for ev in evs
              if isinstance(ev, DataReceived)]
    return b"".join(ev.data for ev in events), len(events)


def _passes(stack: Stack) -> list[tuple[object, int]]:
    """The in-order data each pass through a connection delivered since last asked,
    as (connection, bytes): one DataReceived event for each segment the connection
    was given, so a run taken as one segment shows as one. (Observed from the
    outside, as the compiled core's calls cannot be intercepted.)"""
    return [(c, len(ev.data)) for c, evs in stack.take_events() for ev in evs
            if isinstance(ev, DataReceived)]


def test_a_run_of_segments_in_a_batch_is_taken_as_one():
    net, server, client, conn, accepted = _established()
    data = random.Random(5).randbytes(40 * conn.send_mss)
    segs = _data_segments(client, conn, data, net.now)
    assert len(segs) == 40 and len({s.options for s in segs}) == 1  # (one TSval)
    before_in = accepted.counters.segments_in
    server.stack.receive_batch([(encode(s), CLIENT) for s in segs], net.now)
    # One pass: the data, counted per segment; one ACK for all of it.
    assert _received(server.stack, accepted) == (data, 1)
    assert accepted.counters.segments_in - before_in == 40
    acks = sent(server.stack)
    assert [s.ack for s, _ in acks] == [(segs[-1].seq + len(segs[-1].payload)) & 0xFFFFFFFF]


def test_runs_end_where_segments_stop_continuing_one_another():
    net, server, client, conn, accepted = _established()
    mss = conn.send_mss
    data = random.Random(6).randbytes(20 * mss)
    segs = _data_segments(client, conn, data, net.now)
    n = len(segs)
    assert n >= 12 and all(s.flags == ACK for s in segs[:-1])
    odd = list(segs)
    odd[3] = Segment(**{**_fields(segs[3]), "window": segs[3].window - 1})  # another window
    ts = segs[6].options[2][1]
    odd[6] = Segment(**{**_fields(segs[6]),
                        "options": (*segs[6].options[:2], (8, (ts[0] + 1, ts[1])))})
    odd[8] = Segment(**{**_fields(segs[8]), "flags": ACK | 8})  # PSH: the run's last
    batch = [(encode(s), CLIENT) for s in odd[:10]]
    batch.insert(10, (b"corrupt" * 10, CLIENT))  # (counted and skipped)
    batch += [(encode(s), CLIENT) for s in odd[11:]]  # (10 missing: a hole)
    out_of_order = accepted.counters.out_of_order
    server.stack.receive_batch(batch, net.now)
    # Runs from segments 0, 3, 4, 6, 7 and 9 (their lengths in segments below), and
    # one from 11 on, which waits for the hole: one out-of-order arrival, held whole.
    passes = _passes(server.stack)
    assert [n // mss for _, n in passes] == [3, 1, 2, 1, 2, 1]
    assert sum(n for _, n in passes) == sum(len(s.payload) for s in segs[:10])
    assert accepted.counters.out_of_order - out_of_order == 1
    assert accepted.info()["unread"] == sum(len(s.payload) for s in segs[11:])
    assert server.stack.statistics()["drops"]["bad-checksum"] == 1


def _fields(seg: Segment) -> dict:
    return {f: getattr(seg, f) for f in ("src_port", "dst_port", "seq", "ack", "flags",
                                         "window", "urgent", "options", "payload",
                                         "reserved")}


def test_a_shorter_segment_ends_a_run_and_other_connections_interleave():
    net, server, client, conn, accepted = _established()
    conn2 = connect(net, client, Options(initial_cwnd=64))
    net.run(until=net.now + 1)
    server.collect()
    accepted2 = next(c for c in server.stack.connections()
                     if c.remote_port == conn2.local_port)
    mss = conn.send_mss
    a = _data_segments(client, conn, b"a" * (3 * mss + 656), net.now)
    b = _data_segments(client, conn2, b"b" * (mss + 1000), net.now)
    c = _data_segments(client, conn, b"c" * 2000, net.now)
    server.stack.receive_batch([(encode(s), CLIENT) for s in (*a[:2], *b, *a[2:], *c)],
                               net.now)
    # a: two, then conn2's two (the shorter last one in the run), a's last two, and
    # c's, which begins with another PSH-less segment after a's PSH.
    assert _passes(server.stack) == [(accepted, 2 * mss), (accepted2, mss + 1000),
                                     (accepted, mss + 656), (accepted, 2000)]


def test_runs_without_timestamps_and_what_no_run_takes():
    # Without timestamps (20-byte headers) a run is taken as one, as with them.
    net, server, client, conn, accepted = _established(
        Options(initial_cwnd=64, timestamps=False))
    data = random.Random(7).randbytes(8 * conn.send_mss)
    segs = _data_segments(client, conn, data, net.now)
    assert all(not s.options for s in segs)
    server.stack.receive_batch([(encode(s), CLIENT) for s in segs], net.now)
    assert _passes(server.stack) == [(accepted, len(data))]
    # With timestamps: a segment with an older ACK, one whose 12 bytes of options
    # are a SACK block, not timestamps, and one from another port each end the run
    # before them; a segment with SACK blocks starts none.
    net, server, client, conn, accepted = _established()
    mss = conn.send_mss
    segs = _data_segments(client, conn, random.Random(8).randbytes(9 * mss), net.now)
    odd = list(segs)
    odd[2] = Segment(**{**_fields(segs[2]), "ack": segs[2].ack - 1})
    sack = (*segs[4].options[:2], (5, ((1, 2),)))
    odd[4] = Segment(**{**_fields(segs[4]), "options": sack})
    odd[5] = Segment(**{**_fields(segs[5]), "options": sack})
    odd[8] = Segment(**{**_fields(segs[8]), "src_port": segs[8].src_port + 1})
    assert len(encode(odd[4])) == len(encode(segs[4]))  # (the same header length)
    before = server.stack.segments_in
    server.stack.receive_batch([(encode(s), CLIENT) for s in odd], net.now)
    assert server.stack.segments_in - before == 9
    # 0-1; 2 (its ACK older than 3's); 3; 4 and 5 alone; 6-7; 8 to no connection.
    assert [n // mss for c, n in _passes(server.stack) if c is accepted] == [2, 1, 1, 1, 1, 2]
    assert any(s.flags & RST for s, _ in sent(server.stack))  # (8 answered with a RST)


def test_a_run_takes_no_continuation_that_fails_a_check():
    net, server, client, conn, accepted = _established()
    mss = conn.send_mss
    segs = _data_segments(client, conn, random.Random(9).randbytes(8 * mss), net.now)
    odd = list(segs)
    odd[2] = Segment(**{**_fields(segs[2]), "urgent": 1})  # (URG clear: only the field)
    odd[4] = Segment(**{**_fields(segs[4]), "reserved": 1})
    batch = [(encode(s), CLIENT) for s in odd]
    corrupt = bytearray(batch[6][0])
    corrupt[-1] ^= 0xFF
    batch[6] = (bytes(corrupt), CLIENT)
    server.stack.receive_batch(batch, net.now)
    # 0-1; 2, 3, 4 and 5 each alone (2 and 4 differ from the run before them, and
    # start none); 6 dropped, counted; 7 held beyond the hole it leaves.
    assert [n // mss for c, n in _passes(server.stack) if c is accepted] == [2, 1, 1, 1, 1]
    assert server.stack.statistics()["drops"]["bad-checksum"] == 1
    assert accepted.info()["unread"] == len(segs[7].payload)


# What may differ in a continuation, and whether a run still takes it.
_CHANGES = {
    "nothing": ({}, True),
    "psh": ({"flags": ACK | 8}, True),
    "shorter": ({"payload": b"s" * 100}, True),
    "fin": ({"flags": ACK | FIN}, False),
    "urg-flag": ({"flags": ACK | 32}, False),
    "urgent": ({"urgent": 1}, False),
    "reserved": ({"reserved": 2}, False),
    "window": ({"window": 1}, False),
    "ack": ({"ack": -1}, False),
    "tsval": ({"tsval": 1}, False),
    "tsecr": ({"tsecr": 1}, False),
    "no-options": ({"options": ()}, False),
    "longer": ({"payload": b"l" * 3000}, False),
}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(sorted(_CHANGES)), min_size=1, max_size=3, unique=True))
def test_a_run_takes_a_continuation_exactly_when_nothing_but_seq_psh_and_length_differ(changes):
    # The five-piece comparison (wire.run_header) against the rule stated field by
    # field: observed as whether the two segments reach the connection as one.
    net, server, client, conn, accepted = _established()
    first, second = _data_segments(client, conn, bytes(3 * conn.send_mss), net.now)[:2]
    fields = _fields(second)
    (tsval, tsecr) = second.options[2][1]
    for name in changes:
        for field, value in _CHANGES[name][0].items():
            if field == "ack":
                fields["ack"] = (second.ack + value) & 0xFFFFFFFF
            elif field in ("tsval", "tsecr"):
                tsval, tsecr = (tsval + value, tsecr) if field == "tsval" else (tsval, tsecr + 1)
                fields["options"] = (*second.options[:2], (8, (tsval, tsecr)))
            elif field == "flags":
                fields["flags"] = fields["flags"] | value
            else:
                fields[field] = value
    # (Of two payload changes the later stands.)
    sizes = [name for name in changes if name in ("shorter", "longer")]
    expected = all(_CHANGES[name][1] for name in changes
                   if name not in ("shorter", "longer") or name == sizes[-1])
    server.stack.receive_batch([(encode(first), CLIENT), (encode(Segment(**fields)), CLIENT)],
                               net.now)
    passes = [n for c, n in _passes(server.stack) if c is accepted]
    merged = bool(passes) and passes[0] == len(first.payload) + len(fields["payload"])
    assert merged == expected, (changes, passes)


def test_an_observed_connection_sees_each_segment():
    from utcp.core.observer import NullObserver

    seen: list[Segment] = []

    class Watch(NullObserver):
        def segment_received(self, conn, seg, now):
            seen.append(seg)

    net, server, client, conn, accepted = _established()
    accepted.observer = Watch()
    segs = _data_segments(client, conn, b"x" * 10 * conn.send_mss, net.now)
    server.stack.receive_batch([(encode(s), CLIENT) for s in segs], net.now)
    assert len(_passes(server.stack)) == len(seen) == len(segs) == 10


def test_data_queued_while_half_open_leaves_in_full_once_the_ack_proves_the_peer():
    # The ACK of the SYN-ACK proves the peer's address: what the application queued
    # meanwhile is no longer held to three times the bytes heard.
    stack = listening_stack()
    stack.receive(syn_from(OTHER), OTHER, 0.0)
    [(synack, _)] = sent(stack)
    [conn] = stack.connections()
    assert conn.state is State.SYN_RECEIVED
    data = random.Random(4).randbytes(12 * conn.send_mss)
    stack.send(conn, data, 0.01)
    assert sent(stack) == []
    # An ACK of what we never sent proves nothing: it draws a RST, and no data.
    wrong = Segment(4000, 7007, 1001, (synack.seq + 2) & 0xFFFFFFFF, ACK, 65535)
    stack.receive(encode(wrong), OTHER, 0.05)
    answer = sent(stack)
    assert [s.flags & RST for s, _ in answer] == [RST] and not answer[0][0].payload
    assert conn.state is State.SYN_RECEIVED
    ack = Segment(4000, 7007, 1001, (synack.seq + 1) & 0xFFFFFFFF, ACK, 65535)
    stack.receive(encode(ack), OTHER, 0.1)
    assert conn.state is State.ESTABLISHED
    out = sent(stack)
    assert b"".join(s.payload for s, _ in out) == data[:10 * conn.send_mss]  # (cwnd 10)
    assert "amplification-limit" not in stack.statistics()["drops"]
