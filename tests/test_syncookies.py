"""SYN cookies: a listener whose backlog is full keeps nothing for a SYN, and a real
client still gets in, with its MSS, and with timestamps its window scale too.

The cookie itself first (what it keeps, what it is bound to, how long it lives,
how often a guess passes), then one stack fed segments by hand, then clients on
the simulated network.
"""

from __future__ import annotations

import random

import pytest
from netsim import Network

from utcp.core.config import Options
from utcp.core.isn import IsnGenerator
from utcp.core.stack import Stack
from utcp.core.state import State
from utcp.core.syncookies import (
    MSS_TABLE,
    PERIOD,
    CookieState,
    check_cookie,
    cookie_tsval,
    kept,
    make_cookie,
)
from utcp.core.wire import (
    ACK,
    MSS,
    NOP,
    RST,
    SACK_PERMITTED,
    SYN,
    TIMESTAMPS,
    WSCALE,
    Segment,
    decode,
    encode,
)

SERVER = ("10.2.0.1", 7007)
CLIENT = ("10.2.0.2", 5000)
SPOOFED = ("10.2.0.99", 5000)  # an address nobody answers from
SECRET = b"secret"
MASK = 0xFFFFFFFF
# A SYN's 4-tuple and ISN, as make_cookie and check_cookie take them.
TUPLE = (CLIENT, 7007, 4000, 12345)
OWN_WSCALE = 7  # the listener's (Options().wscale: a buffer that may grow to 6 MiB)
# Peer MSS values: each of the table's, and between, below and above them.
PEER_MSS = sorted({*MSS_TABLE, 1, 535, 1000, 1300, 1451, 1460, 9000, 65495})


def table_mss(mss: int) -> int:
    return max((m for m in MSS_TABLE if m <= mss), default=MSS_TABLE[0])


# ------------------------------------------------------------- the cookie alone


def test_with_timestamps_a_cookie_keeps_mss_window_scale_and_sack() -> None:
    isn = IsnGenerator(SECRET)
    clock = 123_456_789
    for mss in PEER_MSS:
        for wscale in (None, *range(16)):
            for sack in (False, True):
                state = CookieState(mss, wscale, True, sack)
                cookie = make_cookie(isn, *TUPLE, 100.0, state, OWN_WSCALE)
                tsval = cookie_tsval(clock, state)
                want = CookieState(table_mss(mss), None if wscale is None else min(wscale, 14),
                                   True, sack)
                assert kept(state) == want
                assert check_cookie(isn, *TUPLE, cookie, tsval, OWN_WSCALE, 100.0) == want
                # The TSecr is an echo: any bits above the low six are the clock's.
                assert check_cookie(isn, *TUPLE, cookie, tsval ^ 0xABCDEF00, OWN_WSCALE,
                                    100.0) == want


def test_without_timestamps_a_cookie_keeps_the_mss_only() -> None:
    # As Linux's: nowhere to put the window scale, so the connection runs unscaled.
    isn = IsnGenerator(SECRET)
    for mss in PEER_MSS:
        for wscale in (None, 0, 7, 14):
            state = CookieState(mss, wscale, False, True)
            assert kept(state) == CookieState(table_mss(mss), None, False, False)
            cookie = make_cookie(isn, *TUPLE, 100.0, state, OWN_WSCALE)
            assert check_cookie(isn, *TUPLE, cookie, None, OWN_WSCALE, 100.0) \
                == kept(state)
            # Our own scale was never offered: a listener with another may take it.
            assert check_cookie(isn, *TUPLE, cookie, None, 9, 100.0) == kept(state)


def test_the_mss_table_keeps_utcps_own_defaults_exactly() -> None:
    from utcp.core.config import DEFAULT_MSS_IPV4, DEFAULT_MSS_IPV6
    assert len(MSS_TABLE) == 4  # two bits of the ISN
    assert {DEFAULT_MSS_IPV4, DEFAULT_MSS_IPV6, 536, 1280 - 40 - 8 - 20} == set(MSS_TABLE)


@pytest.mark.parametrize("clock", [0, 5, 63, 64, 100, 1_000_000_007, MASK - 70, MASK])
def test_the_cookie_tsval_carries_the_bits_and_never_runs_ahead_of_the_clock(
        clock: int) -> None:
    for wscale in (None, *range(15)):
        for sack in (False, True):
            ts = cookie_tsval(clock, CookieState(1452, wscale, True, sack))
            assert ts & 0xF == (15 if wscale is None else wscale)
            assert bool(ts & 0x10) is sack and not ts & 0x20
            # At most 63 ticks behind (mod 2**32): PAWS at the peer sees our
            # timestamps only grow, and an RTT sample reads at most 63 ms long.
            assert 0 <= (clock - ts) & MASK <= 63


def test_a_cookie_is_bound_to_its_syn_the_secret_and_what_it_carries() -> None:
    isn = IsnGenerator(SECRET)
    state = CookieState(1452, 7, True)
    cookie = make_cookie(isn, *TUPLE, 100.0, state, OWN_WSCALE)
    tsval = cookie_tsval(5000, state)
    assert check_cookie(isn, *TUPLE, cookie, tsval, OWN_WSCALE, 100.0) == state
    for other in ((SPOOFED, 7007, 4000, 12345), (CLIENT, 7008, 4000, 12345),
                  (CLIENT, 7007, 4001, 12345), (CLIENT, 7007, 4000, 12346)):
        assert check_cookie(isn, *other, cookie, tsval, OWN_WSCALE, 100.0) is None
    assert check_cookie(IsnGenerator(b"other"), *TUPLE, cookie, tsval, OWN_WSCALE,
                        100.0) is None
    # A TSecr that does not echo the cookie's bits: another window scale, SACK
    # said on, the reserved ECN bit, or no timestamps at all.
    for bad in (tsval ^ 1, tsval ^ 0x10, tsval ^ 0x20):
        assert check_cookie(isn, *TUPLE, cookie, bad, OWN_WSCALE, 100.0) is None
    assert check_cookie(isn, *TUPLE, cookie, None, OWN_WSCALE, 100.0) is None
    # And our own scale: the SYN-ACK offered 3, a listener that would scale by 4
    # does not take it.
    assert check_cookie(isn, *TUPLE, cookie, tsval, OWN_WSCALE + 1, 100.0) is None
    # Without timestamps, a TSecr makes no cookie of one that had none.
    plain = make_cookie(isn, *TUPLE, 100.0, CookieState(1452, 7, False), OWN_WSCALE)
    assert check_cookie(isn, *TUPLE, plain, None, OWN_WSCALE, 100.0) is not None
    assert all(check_cookie(isn, *TUPLE, plain, t, OWN_WSCALE, 100.0) is None
               for t in range(64))


def test_a_cookie_lives_one_to_two_periods() -> None:
    isn = IsnGenerator(SECRET)
    state = CookieState(536, None, False)
    made = 1.5 * PERIOD  # halfway through period 1
    cookie = make_cookie(isn, *TUPLE, made, state, OWN_WSCALE)

    def taken(now: float) -> bool:
        return check_cookie(isn, *TUPLE, cookie, None, OWN_WSCALE, now) is not None

    assert taken(made) and taken(2 * PERIOD - 0.001)  # its own period
    assert taken(2 * PERIOD) and taken(3 * PERIOD - 0.001)  # the next
    assert not taken(3 * PERIOD)  # two periods on
    assert not taken(10 * PERIOD)
    assert not taken(PERIOD - 0.001)  # (made in what is still the future)


def test_in_a_period_exactly_four_acknowledgment_numbers_pass() -> None:
    # A cookie is H1 + (count << 24) + ((H2 + mss_index) mod 2**24): of the 2**24
    # values with its top byte, those holding index 0 to 3, which lie together
    # around the real one, and no other near it; no other top byte (another
    # period) passes it. So a guess that somehow had the top byte right would pass
    # 4 times in 2**24; a blind one also needs a top byte of the 2 in 256 that
    # name this period or the one before: 1 in 2**29.
    isn = IsnGenerator(SECRET)
    for index, mss in enumerate(MSS_TABLE):
        state = CookieState(mss, 2, True)
        cookie = make_cookie(isn, *TUPLE, 100.0, state, OWN_WSCALE)
        tsval = cookie_tsval(777_777, state)
        passed = {d: got for d in range(-4096, 4096)
                  if (got := check_cookie(isn, *TUPLE, (cookie + d) & MASK, tsval, OWN_WSCALE,
                                          100.0)) is not None}
        assert sorted(passed) == [i - index for i in range(len(MSS_TABLE))]
        assert [passed[i - index].mss for i in range(len(MSS_TABLE))] == list(MSS_TABLE)
        assert [k for k in range(1, 256)
                if check_cookie(isn, *TUPLE, (cookie + (k << 24)) & MASK, tsval,
                                OWN_WSCALE, 100.0) is not None] == []


def test_blind_guesses_of_a_final_ack_fail() -> None:
    # A blind guess passes once in 2**29 (above): the chance that any of these
    # 100,000 passes is 100,000 / 2**29 = 0.0002, for any seed and secret. (The
    # old encoding, 8 bits of state beside a 24-bit hash and the period in the
    # clear, took one in 2**23 even blind: 1 in 84 runs of this test would have
    # seen one, and a guesser who read the period, 1 in 65,536.)
    isn = IsnGenerator(SECRET)
    rng = random.Random(7)
    taken = sum(check_cookie(isn, CLIENT, 7007, 4000, 1, rng.getrandbits(32),
                             rng.choice((None, rng.getrandbits(32))), OWN_WSCALE,
                             100.0) is not None
                for _ in range(100_000))
    assert taken == 0


# ---------------------------------------------------- one stack, fed by hand

CLIENT_TS = 50_000  # the client's timestamp clock at its SYN
CLIENT_WSCALE = 5


def flooded_stack(**options) -> Stack:
    """A stack whose listener on 7007 (backlog 1) is held by a spoofed SYN."""
    stack = Stack(SERVER, isn=IsnGenerator(SECRET), rng=random.Random(1))
    stack.listen(7007, 1, Options(**options))
    stack.receive(encode(Segment(6000, 7007, 1, 0, SYN, 65535)), SPOOFED, 0.0)
    stack.datagrams_to_send()
    return stack


def sent(stack: Stack) -> list[Segment]:
    out = []
    for data, addr, _ in stack.datagrams_to_send():
        assert addr == CLIENT
        out.append(decode(data))
    return out


def client_syn(timestamps: bool = True, wscale: int | None = CLIENT_WSCALE,
               mss: int = 1432, sack: bool = False) -> Segment:
    opts: tuple = ((MSS, mss),)
    if sack:
        opts += ((NOP, None), (NOP, None), (SACK_PERMITTED, None))
    if timestamps:
        opts += ((NOP, None), (NOP, None), (TIMESTAMPS, (CLIENT_TS, 0)))
    if wscale is not None:
        opts += ((NOP, None), (WSCALE, wscale))
    return Segment(4000, 7007, 12345, 0, SYN, 65535, 0, opts)


def final_ack(synack: Segment, *, window: int = 100, ts_delay: int = 50) -> Segment:
    """The client's ACK of ``synack``, ``ts_delay`` ticks after its SYN."""
    opts: tuple = ()
    ts = synack.option(TIMESTAMPS)
    if ts is not None:
        opts = ((NOP, None), (NOP, None),
                (TIMESTAMPS, (CLIENT_TS + ts_delay, ts[0])))  # type: ignore[index]
    return Segment(4000, 7007, 12346, (synack.seq + 1) & MASK, ACK, window, 0, opts)


def server_clock(now: float) -> int:
    """The server's timestamp clock toward CLIENT (see IsnGenerator.timestamp_offset)."""
    return (int(now * 1000) + IsnGenerator(SECRET).timestamp_offset(SERVER, CLIENT)) & MASK


def test_listen_full_backlog_answers_with_the_state_in_isn_and_tsval() -> None:
    stack = flooded_stack()
    stack.receive(encode(client_syn()), CLIENT, 10.0)
    [synack] = sent(stack)
    assert len(stack) == 1  # nothing kept but the spoofed SYN's entry
    assert synack.flags == SYN | ACK and synack.ack == 12346
    # A SYN-ACK like any passive open's (our MSS and window scale), but for its
    # TSval: rounded down so that its low bits say the client's window scale.
    assert [k for k, _ in synack.options] == [MSS, NOP, NOP, TIMESTAMPS, NOP, WSCALE]
    assert synack.option(MSS) == 1452 and synack.option(WSCALE) == OWN_WSCALE
    tsval, tsecr = synack.option(TIMESTAMPS)  # type: ignore[misc]
    assert tsecr == CLIENT_TS
    assert tsval & 0x3F == CLIENT_WSCALE
    assert 0 <= (server_clock(10.0) - tsval) & MASK <= 63
    assert stack.statistics()["syncookies"] == {"sent": 1}


@pytest.mark.parametrize("listener_ts", [True, False])
@pytest.mark.parametrize("listener_sack", [True, False])
def test_listen_a_cookie_syn_ack_is_a_passive_opens_but_for_isn_and_tsval(
        listener_ts: bool, listener_sack: bool) -> None:
    # Without timestamps on both sides the cookie cannot keep the window scale or
    # SACK: it answers as a passive open answers a SYN that offered neither.
    opts = {"timestamps": listener_ts, "sack": listener_sack}
    for syn_ts in (True, False):
        for wscale in (None, 0, CLIENT_WSCALE, 14):
            for sack in (True, False):
                for mss in (536, 1432, 9000):
                    syn = client_syn(timestamps=syn_ts, wscale=wscale, mss=mss, sack=sack)
                    stack = flooded_stack(**opts)
                    stack.receive(encode(syn), CLIENT, 10.0)
                    [got] = sent(stack)
                    answered = syn if listener_ts and syn_ts else Segment(
                        syn.src_port, syn.dst_port, syn.seq, 0, SYN, syn.window, 0,
                        tuple(o for o in syn.options if o[0] not in (WSCALE, SACK_PERMITTED)))
                    plain = Stack(SERVER, isn=IsnGenerator(SECRET), rng=random.Random(1))
                    plain.listen(7007, 8, Options(**opts))
                    plain.receive(encode(answered), CLIENT, 10.0)
                    [want] = sent(plain)
                    assert (got.src_port, got.dst_port, got.ack, got.flags, got.window) == \
                        (want.src_port, want.dst_port, want.ack, want.flags, want.window)
                    assert [(k, v[1] if k == TIMESTAMPS else v) for k, v in got.options] == \
                        [(k, v[1] if k == TIMESTAMPS else v) for k, v in want.options]
                    if want.option(TIMESTAMPS) is not None:
                        ahead = want.option(TIMESTAMPS)[0] - got.option(TIMESTAMPS)[0]
                        assert 0 <= ahead & MASK <= 63  # rounded down to carry the state


def test_listen_final_ack_with_timestamps_makes_the_connection_the_syn_asked_for() -> None:
    stack = flooded_stack()
    stack.receive(encode(client_syn()), CLIENT, 10.0)
    [synack] = sent(stack)
    stack.receive(encode(final_ack(synack)), CLIENT, 10.05)
    [conn] = [c for c in stack.connections() if c.peer == CLIENT]
    assert conn.state is State.ESTABLISHED
    assert stack.statistics()["syncookies"] == {"sent": 1, "accepted": 1}
    assert conn.send_mss == 1432 - 12  # its MSS (from the table), less the timestamps
    assert conn.snd_wnd == 100 << CLIENT_WSCALE  # its window, scaled as it said
    assert conn.info()["timestamps"] is True
    # The RTT from the echo of the real SYN-ACK (50 ms), up to 63 ms long.
    assert 0.05 <= conn.rtt.srtt < 0.05 + 0.064  # type: ignore[operator]
    # What we send next: our window scaled by the shift we offered, and a TSval
    # on from the cookie's, echoing the client's latest.
    stack.send(conn, b"x", 10.06)
    [data] = sent(stack)
    assert data.window == conn.rcv_wnd >> OWN_WSCALE
    later, echo = data.option(TIMESTAMPS)  # type: ignore[misc]
    assert echo == CLIENT_TS + 50
    assert 0 < (later - synack.option(TIMESTAMPS)[0]) & MASK < 2**31  # type: ignore[index]


def test_listen_final_ack_without_timestamps_makes_an_unscaled_connection() -> None:
    stack = flooded_stack()
    stack.receive(encode(client_syn(timestamps=False)), CLIENT, 10.0)
    [synack] = sent(stack)
    # No timestamps to carry the window scale: none offered (the client then
    # scales nothing either), as Linux's cookies.
    assert [k for k, _ in synack.options] == [MSS]
    stack.receive(encode(final_ack(synack, window=40_000)), CLIENT, 10.05)
    [conn] = [c for c in stack.connections() if c.peer == CLIENT]
    assert conn.state is State.ESTABLISHED
    assert conn.send_mss == 1432 and conn.info()["timestamps"] is False
    assert conn.snd_wnd == 40_000  # not scaled
    stack.send(conn, b"x", 10.06)
    [data] = sent(stack)
    assert data.window == 65535 and data.options == ()  # rcv_wnd 256 KiB, unscaled


@pytest.mark.parametrize("timestamps", [True, False])
def test_listen_a_cookie_keeps_sack_only_with_timestamps(timestamps: bool) -> None:
    # With timestamps the SACK-permitted bit rides in the TSval, and both ends use
    # SACK; without, the cookie SYN-ACK offers none, as Linux's.
    stack = flooded_stack()
    stack.receive(encode(client_syn(timestamps=timestamps, sack=True)), CLIENT, 10.0)
    [synack] = sent(stack)
    assert ((SACK_PERMITTED, None) in synack.options) is timestamps
    stack.receive(encode(final_ack(synack)), CLIENT, 10.05)
    [conn] = [c for c in stack.connections() if c.peer == CLIENT]
    assert conn.state is State.ESTABLISHED and conn.info()["sack"] is timestamps


def test_listen_without_timestamps_answers_a_syn_offering_them_with_a_plain_cookie() -> None:
    stack = flooded_stack(timestamps=False)
    stack.receive(encode(client_syn()), CLIENT, 10.0)
    [synack] = sent(stack)
    assert [k for k, _ in synack.options] == [MSS]
    stack.receive(encode(final_ack(synack)), CLIENT, 10.05)
    [conn] = [c for c in stack.connections() if c.peer == CLIENT]
    assert conn.state is State.ESTABLISHED and conn.info()["timestamps"] is False


def test_listen_bad_cookie_draws_a_rst_and_makes_nothing() -> None:
    stack = flooded_stack()
    stack.receive(encode(client_syn()), CLIENT, 10.0)
    [synack] = sent(stack)
    good = final_ack(synack)
    # Off by 5000, by the MSS index's 2 bits plus one, or with another window
    # scale in the echoed TSecr (all three refused, and counted).
    off = final_ack(synack)
    off.ack = (synack.seq + 1 + 5000) & MASK
    past_index = final_ack(synack)
    past_index.ack = (synack.seq + 1 + len(MSS_TABLE)) & MASK
    other_scale = final_ack(synack)
    tsval, tsecr = other_scale.option(TIMESTAMPS)  # type: ignore[misc]
    other_scale.options = ((NOP, None), (NOP, None), (TIMESTAMPS, (tsval, tsecr ^ 1)))
    for bad in (off, past_index, other_scale):
        stack.receive(encode(bad), CLIENT, 10.05)
        [rst] = sent(stack)
        assert rst.flags == RST and rst.seq == bad.ack
    assert len(stack) == 1  # the spoofed SYN's half-open entry only
    assert stack.statistics()["syncookies"] == {"sent": 1, "failed": 3}
    # The right cookie, in time, is taken.
    stack.receive(encode(good), CLIENT, 10.1)
    assert stack.statistics()["syncookies"]["accepted"] == 1
    [conn] = [c for c in stack.connections() if c.peer == CLIENT]
    assert conn.state is State.ESTABLISHED


def test_listen_cookie_from_two_periods_ago_draws_a_rst() -> None:
    stack = flooded_stack()
    stack.receive(encode(client_syn()), CLIENT, 10.0)
    [synack] = sent(stack)
    late = 2 * PERIOD + 0.5  # period 2; the cookie is of period 0
    for port in (6001, 6002):  # (still flooded: the listener still checks ACKs)
        stack.receive(encode(Segment(port, 7007, 1, 0, SYN, 65535)), SPOOFED, late - 1)
    stack.datagrams_to_send()
    stack.receive(encode(final_ack(synack)), CLIENT, late)
    [rst] = sent(stack)
    assert rst.flags == RST
    assert stack.statistics()["syncookies"] == {"sent": 3, "failed": 1}


@pytest.mark.parametrize("timestamps, options, wscale, taken", [
    # A 4 MiB buffer that may grow to 6 MiB: the same scale (7), which the new
    # listener can take.
    (True, {"rcv_buf": 4 * 1024 * 1024}, 7, True),
    # A fixed 256 KiB buffer: scale 3 where the SYN-ACK offered 7: refused.
    (True, {"rcv_buf_max": None}, 3, False),
    (False, {"rcv_buf_max": None}, 3, True),  # no timestamps, no scaling: nothing to differ
])
def test_listen_again_with_another_receive_buffer_takes_only_cookies_it_can_honour(
        timestamps: bool, options: dict, wscale: int, taken: bool) -> None:
    stack = flooded_stack()
    old = stack.listeners[7007]
    stack.receive(encode(client_syn(timestamps)), CLIENT, 10.0)
    [synack] = sent(stack)
    assert synack.option(WSCALE) == (OWN_WSCALE if timestamps else None)
    # The listener is replaced before the final ACK comes, by one whose receive
    # buffer needs another window scale; it too is flooded, and sending cookies.
    stack.stop_listening(old, 10.01)
    stack.listen(7007, 1, Options(**options))
    assert stack.listeners[7007].options.wscale == wscale
    stack.receive(encode(Segment(6001, 7007, 1, 0, SYN, 65535)), SPOOFED, 10.02)
    stack.receive(encode(Segment(6002, 7007, 1, 0, SYN, 65535)), SPOOFED, 10.02)
    stack.datagrams_to_send()
    stack.receive(encode(final_ack(synack)), CLIENT, 10.05)
    cookies = stack.statistics()["syncookies"]
    if not taken:
        [rst] = sent(stack)
        assert rst.flags == RST
        assert cookies == {"sent": 2, "failed": 1}
        assert not [c for c in stack.connections() if c.peer == CLIENT]
        return
    assert cookies == {"sent": 2, "accepted": 1}
    [conn] = [c for c in stack.connections() if c.peer == CLIENT]
    assert conn.state is State.ESTABLISHED
    # Its windows are scaled by what the SYN-ACK offered (or not at all).
    stack.send(conn, b"x", 10.06)
    [data] = sent(stack)
    shift = OWN_WSCALE if timestamps else 0
    assert data.window == min(conn.rcv_wnd >> shift, 65535)


def test_listen_again_without_timestamps_refuses_a_cookie_that_had_them() -> None:
    stack = flooded_stack()
    stack.receive(encode(client_syn()), CLIENT, 10.0)
    [synack] = sent(stack)
    stack.stop_listening(stack.listeners[7007], 10.01)
    stack.listen(7007, 1, Options(timestamps=False))
    stack.receive(encode(Segment(6001, 7007, 1, 0, SYN, 65535)), SPOOFED, 10.02)
    stack.receive(encode(Segment(6002, 7007, 1, 0, SYN, 65535)), SPOOFED, 10.02)
    stack.datagrams_to_send()
    stack.receive(encode(final_ack(synack)), CLIENT, 10.05)
    [rst] = sent(stack)
    assert rst.flags == RST
    assert stack.statistics()["syncookies"] == {"sent": 2, "failed": 1}


# ------------------------------------------------- clients on a simulated network


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
    opts = Options(timestamps=timestamps, mss=1432, rcv_buf=1024 * 1024)
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
    # The MSS from the cookie's table (less the timestamps' 12 bytes); with
    # timestamps the client's window scale (its 1 MiB window seen whole), and
    # without them no scaling (64 KiB at most), as the client itself agrees.
    assert accepted.send_mss == 1432 - (12 if timestamps else 0)
    assert accepted.info()["timestamps"] is timestamps
    assert conn.info()["timestamps"] is timestamps
    if timestamps:
        assert accepted.snd_wnd > 65535
    else:
        assert accepted.snd_wnd <= 65535 and conn.snd_wnd <= 65535
    # And the other way.
    server.stack.send(accepted, b"back", net.now)
    net.run(stop=lambda: client.received)
    assert bytes(client.received[conn]) == b"back"


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
