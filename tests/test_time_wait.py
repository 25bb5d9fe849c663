"""TIME-WAIT: the compact record a stack keeps, reopening and reuse of its 4-tuple.

The first part runs each TIME-WAIT script twice: on a whole Connection (the
sans-I/O state machine) and on the record a Stack keeps in its place, driven
through the stack as datagrams. Both must answer every segment alike.
"""

from __future__ import annotations

import random

import pytest
from netsim import Network
from tcpscript import (
    LOCAL_ISS,
    LOCAL_PORT,
    PEER_SYN_OPTIONS,
    REMOTE_PORT,
    conn_time_wait,
    expect,
    expect_nothing,
    fire,
    out,
    seg,
    send,
    tick,
    ts,
)

from utcp.core.config import Options
from utcp.core.observer import NullObserver
from utcp.core.seq import add
from utcp.core.stack import Stack
from utcp.core.state import State
from utcp.core.wire import (
    ACK,
    FIN,
    MSS,
    NOP,
    PSH,
    RST,
    SYN,
    TIMESTAMPS,
    WSCALE,
    Segment,
    decode,
    encode,
)

HOST = ("10.0.0.2", 5000)
PEER = ("10.0.0.1", REMOTE_PORT)
PEER_TS = 70_000
TS_SYN_OPTIONS = ((MSS, 1452), (NOP, None), (NOP, None), (TIMESTAMPS, (PEER_TS, 0)),
                  (NOP, None), (WSCALE, 0))


class FixedIsn:
    """An ISN generator that always answers LOCAL_ISS, with a zero clock offset."""

    def __call__(self, *args: object) -> int:
        return LOCAL_ISS

    def timestamp_offset(self, *args: object) -> int:
        return 0


class Record:
    """A stack that keeps one connection as a TIME-WAIT record, with the methods
    the tcpscript verbs use on a Connection."""

    def __init__(self, stack: Stack, key: tuple) -> None:
        self.stack = stack
        self.key = key

    def receive(self, s: Segment, now: float) -> None:
        self.stack.receive(encode(s), PEER, now)

    def take_segments(self) -> list[Segment]:
        return [decode(data) for data, _, _ in self.stack.datagrams_to_send()]

    def take_events(self) -> list:
        return [e for _, events in self.stack.take_events() for e in events]

    def handle_timer(self, now: float) -> None:
        self.stack.handle_timer(now)

    def next_deadline(self) -> float | None:
        return self.stack.next_deadline()

    @property
    def state(self) -> State:
        live = list(self.stack.connections())
        if live:
            return live[0].state
        return State.TIME_WAIT if self.stack.statistics()["connections"] else State.CLOSED


def stack_with(**opts) -> Stack:
    return Stack(HOST, isn=FixedIsn(), rng=random.Random(1),
                 ephemeral_ports=range(LOCAL_PORT, LOCAL_PORT + 1), **opts)


def record_time_wait(timestamps: bool = False, **opts) -> Record:
    """Like tcpscript's conn_time_wait(), but the connection lives in a stack,
    which keeps it as a record once it reaches TIME-WAIT."""
    stack = stack_with()
    conn = stack.connect(PEER, REMOTE_PORT, Options(**opts), 0.0)
    r = Record(stack, conn.key)
    r.take_segments()
    syn_options = TS_SYN_OPTIONS if timestamps else PEER_SYN_OPTIONS
    send(r, seg(0, 1, SYN | ACK, options=syn_options))
    r.take_segments()
    stack.shutdown(conn, 0.0)
    r.take_segments()
    send(r, seg(1, 2, options=ts(PEER_TS + 1, 0) if timestamps else ()))
    send(r, seg(1, 2, FIN | ACK, options=ts(PEER_TS + 2, 0) if timestamps else ()))
    r.take_segments()
    r.take_events()
    assert conn.state is State.TIME_WAIT
    assert list(stack.connections()) == [] and r.state is State.TIME_WAIT
    return r


def whole_time_wait(timestamps: bool = False, **opts):
    if not timestamps:
        return conn_time_wait(**opts)
    from tcpscript import make
    c = make(**opts)
    c.connect(0.0)
    c.take_segments()
    send(c, seg(0, 1, SYN | ACK, options=TS_SYN_OPTIONS))
    c.shutdown(0.0)
    send(c, seg(1, 2, options=ts(PEER_TS + 1, 0)))
    send(c, seg(1, 2, FIN | ACK, options=ts(PEER_TS + 2, 0)))
    c.take_segments()
    c.take_events()
    assert c.state is State.TIME_WAIT
    return c


both = pytest.mark.parametrize("time_wait", [whole_time_wait, record_time_wait],
                               ids=["connection", "record"])


def rst(seq: int) -> Segment:
    return Segment(LOCAL_PORT, REMOTE_PORT, add(LOCAL_ISS, seq), 0, RST)


# ------------------------------------------------- the same answers, both ways


@both
def test_2msl_then_closed(time_wait):
    c = time_wait()
    tick(c, 59.999)
    assert c.state is State.TIME_WAIT
    fire(c, 60.0)
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert c.take_events() == []
    assert c.next_deadline() is None


@both
def test_short_msl(time_wait):
    c = time_wait(msl=0.005)
    fire(c, 0.01)
    assert c.state is State.CLOSED


@both
def test_retransmitted_fin_is_reacked_and_restarts_2msl(time_wait):
    c = time_wait()
    send(c, seg(1, 2, FIN | ACK), at=30.0)
    expect(c, [out(2, 2)])
    assert c.state is State.TIME_WAIT
    tick(c, 60.0)
    assert c.state is State.TIME_WAIT
    fire(c, 90.0)
    assert c.state is State.CLOSED


@both
def test_a_fin_after_2msl_draws_a_reset(time_wait):
    c = time_wait()
    fire(c, 60.0)
    send(c, seg(1, 2, FIN | ACK), at=61.0)
    expect(c, [rst(2)])


@both
def test_reset_at_rcv_nxt_ends_it(time_wait):
    c = time_wait()
    send(c, seg(2, None, RST), at=1.0)
    expect_nothing(c)
    assert c.state is State.CLOSED
    assert c.next_deadline() is None


@both
def test_reset_in_window_draws_a_challenge_ack(time_wait):
    c = time_wait()
    send(c, seg(50, None, RST), at=1.0)
    expect(c, [out(2, 2)])
    send(c, seg(60, None, RST), at=1.1)
    expect_nothing(c)  # RFC 5961 7: one per 500 ms
    assert c.state is State.TIME_WAIT


@both
def test_reset_out_of_window_is_ignored(time_wait):
    c = time_wait()
    send(c, seg(2**20, None, RST), at=1.0)
    expect_nothing(c)
    assert c.state is State.TIME_WAIT


@both
def test_syn_draws_a_rate_limited_challenge_ack(time_wait):
    # No listener: a SYN cannot reopen the 4-tuple; TIME-WAIT answers it.
    c = time_wait()
    send(c, seg(1000, None, SYN, options=PEER_SYN_OPTIONS), at=1.0)
    expect(c, [out(2, 2)])
    send(c, seg(1000, None, SYN, options=PEER_SYN_OPTIONS), at=1.2)
    expect_nothing(c)
    assert c.state is State.TIME_WAIT


@both
def test_old_duplicates_are_answered_within_the_rate_limit(time_wait):
    c = time_wait()
    send(c, seg(1, 2, ACK | PSH, payload=b"x"), at=1.0)  # all before RCV.NXT: ACK at once
    expect(c, [out(2, 2)])
    send(c, seg(1, 2, ACK | PSH, payload=b"x"), at=1.1)
    expect(c, [out(2, 2)])  # segments with data are always answered
    send(c, seg(1, 2, ACK | PSH, payload=b"xy"), at=1.15)  # reaches RCV.NXT: acceptable,
    expect_nothing(c)  # and TIME-WAIT ignores text
    send(c, seg(0, 2), at=1.2)  # an old bare ACK: within the rate limit
    expect(c, [out(2, 2)])
    send(c, seg(0, 2), at=1.3)
    expect_nothing(c)
    send(c, seg(1, 2), at=1.35)  # a keepalive probe (RCV.NXT - 1): always answered
    expect(c, [out(2, 2)])


@both
def test_ack_of_data_never_sent_draws_a_challenge_ack(time_wait):
    c = time_wait()
    send(c, seg(2, 500), at=1.0)
    expect(c, [out(2, 2)])
    send(c, seg(2, 2), at=1.1)  # the ACK it should be: nothing to say
    expect_nothing(c)


@both
def test_with_timestamps_the_answers_carry_them_and_paws_applies(time_wait):
    c = time_wait(timestamps=True)
    send(c, seg(1, 2, FIN | ACK, options=ts(PEER_TS + 90, 0)), at=5.0)
    expect(c, [out(2, 2, options=ts(5000, PEER_TS + 2))])
    send(c, seg(1, 2, ACK | PSH, payload=b"x", options=ts(PEER_TS - 5, 0)), at=6.0)
    expect(c, [out(2, 2, options=ts(6000, PEER_TS + 2))])  # PAWS: old duplicate
    send(c, seg(1, 2, ACK | PSH, payload=b"x", options=ts(PEER_TS - 5, 0)), at=6.1)
    expect_nothing(c)  # within the rate limit
    send(c, seg(2, 2, options=ts(PEER_TS + 100, 0)), at=7.0)  # in window: taken (R3)
    expect_nothing(c)
    send(c, seg(2, 500, options=ts(PEER_TS + 101, 0)), at=8.0)  # ACKs what was never sent
    expect(c, [out(2, 2, options=ts(8000, PEER_TS + 101))])


# -------------------------------------------------------- what the stack keeps


def test_the_record_holds_no_connection_and_no_application_object():
    r = record_time_wait()
    assert list(r.stack.connections()) == []
    assert r.stack.statistics()["connections"] == {"TIME-WAIT": 1}
    assert len(r.stack) == 1 and r.stack.time_wait_entries() == 1


def test_a_traced_connection_stays_whole_for_its_observer():
    class States(NullObserver):
        def __init__(self) -> None:
            self.states: list[State] = []

        def state_changed(self, conn, old, new, cause, now):
            self.states.append(new)

    obs = States()
    net = Network()
    server = net.add(PEER)
    server.stack.listen(REMOTE_PORT, 10, Options())
    client = net.add(HOST)
    conn = client.stack.connect(PEER, REMOTE_PORT, Options(msl=1.0), 0.0, observer=obs)
    net.run(stop=lambda: conn.state is State.ESTABLISHED and server.connections())
    client.stack.close(conn, net.now)
    net.run(stop=lambda: server.connections()[0].state is State.CLOSE_WAIT)
    server.stack.close(server.connections()[0], net.now)
    net.run(stop=lambda: conn.state is State.TIME_WAIT)
    assert list(client.stack.connections()) == [conn]
    net.run()
    assert obs.states[-2:] == [State.TIME_WAIT, State.CLOSED]


def test_a_connection_holding_unread_data_stays_whole_until_it_is_read():
    stack = stack_with()
    conn = stack.connect(PEER, REMOTE_PORT, Options(), 0.0)
    stack.datagrams_to_send()
    stack.receive(encode(seg(0, 1, SYN | ACK, options=PEER_SYN_OPTIONS)), PEER, 0.0)
    stack.pause_reading(conn)
    stack.shutdown(conn, 0.0)
    stack.receive(encode(seg(1, 2, ACK | PSH, payload=b"unread")), PEER, 0.1)
    stack.receive(encode(seg(7, 2, FIN | ACK)), PEER, 0.1)
    assert conn.state is State.TIME_WAIT and list(stack.connections()) == [conn]
    stack.resume_reading(conn, 0.2)
    assert list(stack.connections()) == [] and len(stack) == 1
    events = [e for _, evs in stack.take_events() for e in evs]
    assert b"unread" in [getattr(e, "data", None) for e in events]


# ------------------------------------------------------------------ reopening


def server_time_wait(timestamps: bool) -> tuple[Network, object, object]:
    """A server that closed first and holds TIME-WAIT for the client's 4-tuple."""
    net = Network()
    server = net.add(PEER)
    server.stack.listen(REMOTE_PORT, 10, Options(timestamps=timestamps))
    client = net.add(HOST, ephemeral_ports=range(40000, 40001))
    conn = client.stack.connect(PEER, REMOTE_PORT, Options(timestamps=timestamps), 0.0)
    net.run(stop=lambda: conn.state is State.ESTABLISHED and server.connections())
    server.stack.close(server.connections()[0], net.now)
    net.run(stop=lambda: conn.state is State.CLOSE_WAIT)
    client.stack.close(conn, net.now)
    net.run(until=net.now + 1.0)
    assert server.stack.statistics()["connections"] == {"TIME-WAIT": 1}
    assert list(server.stack.connections()) == []
    return net, server, client


def syn_to(server, *, seq: int, tsval: int | None, at: float) -> list[Segment]:
    """Send the server a SYN from the client's 4-tuple; what it answers."""
    options = PEER_SYN_OPTIONS if tsval is None else (
        (MSS, 1452), (NOP, None), (NOP, None), (TIMESTAMPS, (tsval, 0)))
    server.stack.receive(encode(Segment(40000, REMOTE_PORT, seq, 0, SYN, 65535, 0, options)),
                         HOST, at)
    return [decode(d) for d, _, _ in server.stack.datagrams_to_send()]


def old_rcv_nxt(server) -> int:
    # The server's FIN was acknowledged, its RCV.NXT is past the client's FIN.
    return server.events[0][0].rcv_nxt


@pytest.mark.parametrize("timestamps", [False, True])
def test_a_syn_beyond_the_old_sequence_space_reopens(timestamps):
    net, server, client = server_time_wait(timestamps)
    [synack] = syn_to(server, seq=add(old_rcv_nxt(server), 10), tsval=None, at=net.now)
    assert synack.flags == SYN | ACK
    # Linux's choice: the new ISS lies beyond anything the old connection sent.
    old = server.events[0][0]
    assert synack.seq == add(old.snd_max, 65537)
    assert server.stack.statistics()["connections"] == {"SYN-RECEIVED": 1}


def test_a_syn_with_a_newer_timestamp_reopens_whatever_its_sequence_number():
    # RFC 6191: with timestamps, the SYN's sequence number may be anything.
    net, server, client = server_time_wait(True)
    old = server.events[0][0]
    [synack] = syn_to(server, seq=add(old_rcv_nxt(server), -1000),
                      tsval=(old._ts_recent + 1) & 0xFFFFFFFF, at=net.now)
    assert synack.flags == SYN | ACK


def test_an_old_syn_reopens_nothing():
    net, server, client = server_time_wait(True)
    old = server.events[0][0]
    # An older sequence number and no newer timestamp: an old duplicate.
    [answer] = syn_to(server, seq=add(old_rcv_nxt(server), -1000), tsval=None, at=net.now)
    assert answer.flags == ACK and server.stack.statistics()["connections"] == {"TIME-WAIT": 1}
    # PAWS rejects an older timestamp even with a newer sequence number.
    assert syn_to(server, seq=add(old_rcv_nxt(server), 10), tsval=old._ts_recent - 1,
                  at=net.now + 0.1) == []  # (the answer is within the rate limit)
    assert server.stack.statistics()["connections"] == {"TIME-WAIT": 1}


# ---------------------------------------------------------------------- reuse


def client_time_wait(timestamps: bool, **stack_args):
    """A client with one port that closed first and holds TIME-WAIT toward the server."""
    net = Network()
    server = net.add(PEER)
    server.stack.listen(REMOTE_PORT, 10, Options(timestamps=timestamps))
    client = net.add(HOST, ephemeral_ports=range(40000, 40001), **stack_args)
    opts = Options(timestamps=timestamps)
    conn = client.stack.connect(PEER, REMOTE_PORT, opts, 0.0)
    net.run(stop=lambda: conn.state is State.ESTABLISHED and server.connections())
    client.stack.close(conn, net.now)
    net.run(stop=lambda: server.connections()[0].state is State.CLOSE_WAIT)
    server.stack.close(server.connections()[0], net.now)
    net.run(stop=lambda: server.connections()[0].state is State.CLOSED)
    assert client.stack.statistics()["connections"] == {"TIME-WAIT": 1}
    return net, server, client, conn, opts


def test_reuse_waits_a_second_after_the_last_timestamp():
    net, server, client, old, opts = client_time_wait(True)
    last = net.now  # the server's last segment (the ACK of our FIN) arrived
    net.run(until=last + 0.9)
    with pytest.raises(OSError):  # the one port is in TIME-WAIT, its last segment too recent
        client.stack.connect(PEER, REMOTE_PORT, opts, net.now)
    net.run(until=last + 1.1)
    new = client.stack.connect(PEER, REMOTE_PORT, opts, net.now)
    assert new.local_port == old.local_port
    assert new.iss == add(old.snd_max, 65537)  # beyond the old sequence space
    # One clock toward that peer, which only moves forward: the new SYN's timestamp
    # is newer than anything the old connection sent.
    assert new.ts_offset == old.ts_offset
    [syn] = [decode(d) for d, _, _ in client.stack.datagrams_to_send()]
    assert syn.option(TIMESTAMPS)[0] > int(last * 1000) + old.ts_offset
    client.stack._datagrams.append((encode(syn), PEER, None))  # (send it after all)
    net.run(stop=lambda: new.state is State.ESTABLISHED)
    assert new.state is State.ESTABLISHED
    assert client.stack.statistics()["connections"] == {"ESTABLISHED": 1}


def test_a_call_on_a_connection_kept_as_a_record_changes_nothing():
    # The application may still hold the connection that became a record: close()
    # after write_eof() and the peer's FIN, say. Neither that nor a resume_reading()
    # makes a second record, even once a new connection has the 4-tuple.
    net, server, client, old, opts = client_time_wait(True)
    client.stack.close(old, net.now)
    client.stack.resume_reading(old, net.now)
    assert len(client.stack) == 1
    net.run(until=net.now + 1.1)
    new = client.stack.connect(PEER, REMOTE_PORT, opts, net.now)
    net.run(stop=lambda: new.state is State.ESTABLISHED)
    client.stack.close(old, net.now)
    client.stack.resume_reading(old, net.now)
    assert client.stack.statistics()["connections"] == {"ESTABLISHED": 1}
    assert client.stack.datagrams_to_send() == []


def test_no_reuse_without_timestamps():
    net, server, client, old, opts = client_time_wait(False)
    net.run(until=net.now + 30.0)
    with pytest.raises(OSError):
        client.stack.connect(PEER, REMOTE_PORT, opts, net.now)


def test_no_reuse_when_turned_off():
    net, server, client, old, opts = client_time_wait(True, tw_reuse_delay=None)
    net.run(until=net.now + 5.0)
    with pytest.raises(OSError):
        client.stack.connect(PEER, REMOTE_PORT, opts, net.now)
    net.run()  # until TIME-WAIT is over
    assert client.stack.connect(PEER, REMOTE_PORT, opts, net.now).local_port == 40000


@pytest.mark.parametrize("ports", [5, 50])
def test_one_client_goes_on_for_as_long_as_it_likes(ports):
    # Far more connections than ports, toward one server, back to back, the client
    # closing first: every 4-tuple is in TIME-WAIT when it is wanted again, and
    # is reused. The table keeps one entry per port, however many have come and gone.
    net = Network(delay=0.05)
    server = net.add(PEER)
    server.stack.listen(REMOTE_PORT, 100, Options())
    client = net.add(HOST, ephemeral_ports=range(40000, 40000 + ports))
    opts = Options()
    for _ in range(300):
        conn = client.stack.connect(PEER, REMOTE_PORT, opts, net.now)  # never EADDRNOTAVAIL
        client.stack.send(conn, b"ping", net.now)
        port = conn.local_port

        def pinged(port: int = port) -> bool:
            last = list(server.received)[-1] if server.received else None
            return last is not None and last.remote_port == port \
                and server.received[last] == b"ping"

        net.run(stop=pinged)
        accepted = list(server.received)[-1]
        server.stack.send(accepted, b"pong", net.now)
        net.run(stop=lambda c=conn: client.received.get(c) == b"pong")
        client.stack.close(conn, net.now)
        net.run(stop=lambda a=accepted: a.state is State.CLOSE_WAIT)
        server.stack.close(accepted, net.now)
        net.run(stop=lambda c=conn, a=accepted: c.state is State.TIME_WAIT
                and a.state is State.CLOSED)
    assert client.stack.time_wait_entries() <= ports
    assert client.stack.statistics()["connections"]["TIME-WAIT"] <= ports
    assert client.stack.statistics()["connection_totals"]["retransmissions"] == 0
