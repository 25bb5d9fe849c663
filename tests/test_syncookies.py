"""SYN cookies: a listener whose backlog is full keeps nothing for a SYN, and a real
client still gets in, with its MSS, window scale and timestamps."""

from __future__ import annotations

import random

import pytest
from netsim import Network

from utcp.core.config import Options
from utcp.core.isn import IsnGenerator
from utcp.core.stack import Stack
from utcp.core.state import State
from utcp.core.syncookies import MSS_TABLE, PERIOD, CookieState, check_cookie, make_cookie
from utcp.core.wire import ACK, RST, SYN, Segment, decode, encode

SERVER = ("10.2.0.1", 7007)
CLIENT = ("10.2.0.2", 5000)
SPOOFED = ("10.2.0.99", 5000)  # an address nobody answers from


@pytest.mark.parametrize("mss", [536, 999, 1000, 1452, 1460, 9000])
@pytest.mark.parametrize("wscale", [None, 0, 7, 14])
@pytest.mark.parametrize("timestamps", [False, True])
def test_a_cookie_carries_what_the_syn_said(mss: int, wscale: int | None,
                                            timestamps: bool) -> None:
    isn = IsnGenerator(b"secret")
    state = CookieState(mss, wscale, timestamps)
    cookie = make_cookie(isn, CLIENT, 7007, 4000, 12345, 100.0, state)
    got = check_cookie(isn, CLIENT, 7007, 4000, 12345, cookie, 100.0 + PERIOD)
    assert got == CookieState(max(m for m in MSS_TABLE if m <= max(mss, 536)), wscale,
                              timestamps)
    # Bound to the 4-tuple, the peer's ISN, and two periods at most.
    assert check_cookie(isn, CLIENT, 7007, 4001, 12345, cookie, 100.0) is None
    assert check_cookie(isn, CLIENT, 7007, 4000, 12346, cookie, 100.0) is None
    assert check_cookie(isn, SPOOFED, 7007, 4000, 12345, cookie, 100.0) is None
    assert check_cookie(isn, CLIENT, 7007, 4000, 12345, cookie, 100.0 + 2 * PERIOD) is None
    assert check_cookie(IsnGenerator(b"other"), CLIENT, 7007, 4000, 12345, cookie,
                        100.0) is None


def test_guessed_cookies_are_rarely_taken() -> None:
    isn = IsnGenerator(b"secret")
    rng = random.Random(7)
    taken = sum(check_cookie(isn, CLIENT, 7007, 4000, 1, rng.getrandbits(32), 0.0) is not None
                for _ in range(200_000))
    # A guess needs the right period (1 or 2 in 256) and state under 256 (1 in 65,536).
    assert taken <= 2


def flooded(**client_options) -> tuple[Network, object, object]:
    """A server whose backlog of 1 is held by a spoofed SYN, and a client host."""
    net = Network()
    server = net.add(SERVER)
    server.stack.listen(7007, 1, Options())
    server.stack.receive(encode(Segment(6000, 7007, 1, 0, SYN, 65535)), SPOOFED, 0.0)
    client = net.add(CLIENT)
    return net, server, client


@pytest.mark.parametrize("timestamps", [True, False])
def test_a_client_gets_in_through_a_cookie_with_its_options(timestamps: bool) -> None:
    net, server, client = flooded()
    opts = Options(timestamps=timestamps, mss=1400)
    conn = client.stack.connect(SERVER, 7007, opts, net.now)
    net.run(stop=lambda: conn.state is not State.SYN_SENT)
    assert conn.state is State.ESTABLISHED
    assert server.stack.statistics()["syncookies"]["sent"] == 1
    client.stack.send(conn, b"through the cookie" * 1000, net.now)
    net.run(stop=lambda: server.received and
            sum(map(len, server.received.values())) >= 18_000)
    [accepted] = [c for c in server.stack.connections() if c.peer == CLIENT]
    assert bytes(server.received[accepted]) == b"through the cookie" * 1000
    assert server.stack.statistics()["syncookies"]["accepted"] == 1
    # The MSS from the cookie's table (1400, less the timestamps' 12 bytes), the
    # client's window scale (its window is over 64 KiB), and timestamps as offered.
    assert accepted.send_mss == 1400 - (12 if timestamps else 0)
    assert accepted.snd_wnd > 65535
    assert accepted.info()["timestamps"] is timestamps
    # And the other way.
    server.stack.send(accepted, b"back", net.now)
    net.run(stop=lambda: client.received)
    assert bytes(client.received[conn]) == b"back"


def test_an_ack_with_a_bad_cookie_draws_a_rst_and_makes_nothing() -> None:
    stack = Stack(SERVER, isn=IsnGenerator(b"x"), rng=random.Random(1))
    stack.listen(7007, 1, Options())
    stack.receive(encode(Segment(6000, 7007, 1, 0, SYN, 65535)), SPOOFED, 0.0)
    stack.receive(encode(Segment(6001, 7007, 1, 0, SYN, 65535)), CLIENT, 0.0)
    [_, (synack, _)] = [(decode(d), a) for d, a, _ in stack.datagrams_to_send()]
    # (Off by up to 255 would still pass: the low 8 bits carry the state, as in
    # Linux's cookies. A blind guess is off by far more.)
    forged = Segment(6001, 7007, 2, (synack.seq + 1 + 5000) & 0xFFFFFFFF, ACK, 65535)
    stack.receive(encode(forged), CLIENT, 0.1)
    [(rst, _)] = [(decode(d), a) for d, a, _ in stack.datagrams_to_send()]
    assert rst.flags == RST
    assert len(stack) == 1  # the spoofed SYN's half-open entry only
    assert stack.statistics()["syncookies"] == {"sent": 1, "failed": 1}
    # The right cookie, in time, is taken (too late, check_cookie refuses it: above).
    good = Segment(6001, 7007, 2, (synack.seq + 1) & 0xFFFFFFFF, ACK, 65535)
    stack.receive(encode(good), CLIENT, 1.0)
    assert stack.statistics()["syncookies"]["accepted"] == 1
    [conn] = [c for c in stack.connections() if c.peer == CLIENT]
    assert conn.state is State.ESTABLISHED


def test_a_cookie_connection_takes_no_rtt_sample_from_its_replayed_syn_ack() -> None:
    net = Network(delay=0.4)  # 0.8 s round trip
    server = net.add(SERVER)
    server.stack.listen(7007, 1, Options(timestamps=False))
    server.stack.receive(encode(Segment(6000, 7007, 1, 0, SYN, 65535)), SPOOFED, 0.0)
    client = net.add(CLIENT)
    conn = client.stack.connect(SERVER, 7007, Options(timestamps=False), net.now)
    net.run(stop=lambda: conn.state is State.ESTABLISHED)
    net.run(until=net.now + 0.5)
    [accepted] = [c for c in server.stack.connections() if c.peer == CLIENT]
    assert server.stack.statistics()["syncookies"]["accepted"] == 1
    # No sample of 0 s (which would set the RTO to its 200 ms floor, well under
    # the real 0.8 s round trip, and retransmit for nothing).
    assert accepted.rtt.rto >= 0.8
