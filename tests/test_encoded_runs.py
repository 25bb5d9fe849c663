"""Runs of full-sized segments sent already encoded (Connection.encode_runs): the
bulk sender's short cut must put on the wire exactly what the segment-by-segment
path would, byte for byte and at the same times."""

from __future__ import annotations

import random

import pytest
from pairsim import Pair

from utcp.core.buffers import SendBuffer
from utcp.core.config import Options
from utcp.core.events import Writable
from utcp.core.observer import NullObserver
from utcp.core.seq import MOD
from utcp.core.state import State
from utcp.core.wire import (
    ACK,
    MSS,
    NOP_OPTION,
    TIMESTAMPS,
    Segment,
    decode,
    encode,
    encode_run,
    encodes_as_run,
)
from utcp.emulator import Impairments

# --------------------------------------------------------------- the codec


@pytest.mark.parametrize("options", [
    (NOP_OPTION, NOP_OPTION, (TIMESTAMPS, (123456789, 0xFFFFFFFF))),
    (),
], ids=["timestamps", "no-options"])
@pytest.mark.parametrize("size", [1448, 536, 100, 1])
@pytest.mark.parametrize("seq", [0, MOD - 3000])
def test_encode_run_gives_what_encode_gives_for_each_segment(options, size, seq):
    rng = random.Random(size)
    first = Segment(40000, 7007, 5, 0xDEADBEEF, ACK, 0xFFFF, 0, options, b"x" * size)
    payloads = [rng.randbytes(size) for _ in range(5)]
    run = encode_run(first, seq, payloads)
    expected = []
    for p in payloads:
        expected.append(encode(Segment(40000, 7007, seq, 0xDEADBEEF, ACK, 0xFFFF, 0, options, p)))
        seq = (seq + size) % MOD
    assert run == expected
    assert [decode(d).payload for d in run] == payloads  # checksums right


def test_encode_run_declines_other_options():
    first = Segment(1, 2, 0, 0, ACK, 10, 0, ((MSS, 1460),), b"x")
    assert not encodes_as_run(first)
    with pytest.raises(ValueError, match="run"):
        encode_run(first, 0, [b"y"])


# --------------------------------------------------------- the send buffer


@pytest.mark.parametrize("seed", range(8))
def test_peek_run_gives_what_peek_gives_piece_by_piece(seed):
    rng = random.Random(seed)
    start = MOD - 5000 if seed % 2 else 7
    buf = SendBuffer(start)
    for _ in range(40):
        # Large writes kept whole, runs of small ones gathered into a bytearray.
        n = rng.choice([1, 10, 700, 1500, 2047, 2048, 3000, 20000])
        buf.append(rng.randbytes(n) if rng.random() < 0.8 else bytearray(rng.randbytes(n)))
    buf.ack(rng.randrange(3000))
    for _ in range(50):
        n = rng.choice([1, 100, 1448, 4000])
        count = rng.randrange(1, 30)
        off = rng.randrange(max(buf.size - n * count, 0) + 1)
        if off + n * count > buf.size:
            continue
        seq = (buf.start + off) % MOD
        assert buf.peek_run(seq, n, count) == [
            buf.peek((seq + i * n) % MOD, n) for i in range(count)]


# ------------------------------------------------- whole transfers, both ways

SIZE = 200_000


def _writes(rng: random.Random) -> list[bytes]:
    # Chunks that end inside segments, and runs of small writes the buffer gathers.
    out = []
    while sum(map(len, out)) < SIZE:
        out.append(rng.randbytes(rng.choice([rng.randrange(1, 2000), rng.randrange(1, 9000),
                                             40_000])))
    return out


def _snapshot(c) -> tuple:
    rack = c._rack
    return (c.state, c.snd_nxt, c.snd_max, c.snd_una, c._rtt_seq, c._rtt_sent,
            tuple(c.counters.as_dict().values()), c.next_deadline(),
            None if rack is None else (len(rack.recs), rack.head, rack.recs[-1:]))


def _run(encode_runs: bool, opts: Options, app: str, seed: int, **link) -> tuple[Pair, list]:
    """Both sides send about SIZE bytes as ``app`` says, then close; the state of
    both connections after every step."""
    p = Pair(client_opts=opts, server_opts=opts, seed=seed, encode_runs=encode_runs, **link)
    rng = random.Random(seed)
    data = {p.client: _writes(rng), p.server: _writes(rng)}
    left = {c: list(d) for c, d in data.items()}
    states: list = []
    started: dict = {}
    writable = {p.client: 0, p.server: 0}

    def app_step() -> bool:
        states.append((p.now, _snapshot(p.client), _snapshot(p.server)))
        for c in (p.client, p.server):
            if c.state is not State.ESTABLISHED and c not in started:
                continue
            if c not in started:
                started[c] = p.now
                if app == "paused-reader":
                    p._peer(c).pause_reading()
            todo = left[c]
            if app == "spread":
                # One write per step of the simulation, a step being any arrival.
                if todo:
                    c.send(todo.pop(0), p.now)
            elif app == "low-water":
                # As a writer awaiting drain(): more only once told it is Writable.
                told = sum(type(e) is Writable for e in p.events[c])
                if todo and (p.now == started[c] or told > writable[c]):
                    writable[c] = told
                    while todo and c.unsent < 60_000:
                        c.send(todo.pop(0), p.now)
                    c.send_low_water = 30_000
            else:
                while todo:
                    c.send(todo.pop(0), p.now)
            if app == "paused-reader" and p.now - started[c] > 0.3:
                p._peer(c).resume_reading(p.now)
            if not todo and c.state is State.ESTABLISHED:
                c.shutdown(p.now)
        return False

    p.client.connect(p.now)
    p.run(stop=app_step)
    assert p.received[p.server] == b"".join(data[p.client])
    assert p.received[p.client] == b"".join(data[p.server])
    assert p.client.state is State.CLOSED and p.server.state is State.CLOSED
    return p, states


CASES = {
    "default": Options(),
    "no-timestamps": Options(timestamps=False),
    "no-sack": Options(sack=False),
    "small-mss": Options(mss=100),
    "nagle": Options(nodelay=False),
    "newreno": Options(congestion_control="newreno"),
    "paced-cubic": Options(pacing=True),  # (the initial window unpaced, in runs)
    "bbr": Options(congestion_control="bbr"),  # paced, with rate samples: no runs
    "small-window": Options(rcv_buf=20_000, rcv_buf_max=None),
}
LINKS = {
    "clean": {},
    "lossy": {"loss": 0.05, "dup": 0.02, "reorder": 0.05},
    "wrap": {"client_iss": MOD - 150_000, "server_iss": MOD - 10},
    "bottleneck": {"impairments": Impairments(delay=0.01, rate=20e6, queue=20)},
}
APPS = ["at-once", "spread", "paused-reader", "low-water"]


def _same_either_way(case: str, link: str, app: str) -> Pair:
    before, states_before = _run(False, CASES[case], app, seed=3, **LINKS[link])
    after, states_after = _run(True, CASES[case], app, seed=3, **LINKS[link])
    assert before.preencoded == 0
    assert after.wire == before.wire
    assert after.events[after.client] == before.events[before.client]
    assert after.events[after.server] == before.events[before.server]
    assert states_after == states_before
    return after


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("link", LINKS)
def test_a_transfer_puts_the_same_bytes_on_the_wire_with_runs_encoded(case, link):
    after = _same_either_way(case, link, "at-once")
    if CASES[case].pacing or case == "bbr":
        # Paced from the first flight (the handshake gave a round trip): no runs.
        assert after.preencoded == 0
    elif link in ("lossy", "bottleneck") or case == "small-window":
        # Recovery (a SACK scoreboard, segments resent) sends one by one, as a
        # window that holds few segments sends few at a time.
        assert after.preencoded > 20
    else:
        assert after.preencoded > len(after.wire) // 3


@pytest.mark.parametrize("app", APPS[1:])
@pytest.mark.parametrize("link", ["clean", "bottleneck"])
@pytest.mark.parametrize("case", ["default", "small-window"])
def test_the_same_bytes_whatever_the_application_does(app, link, case):
    after = _same_either_way(case, link, app)
    assert after.preencoded > 0


def test_no_runs_while_an_observer_watches():
    p = Pair(encode_runs=True, client_observer=NullObserver())
    started = []

    def start() -> bool:
        if not started and p.client.state is State.ESTABLISHED:
            started.append(1)
            p.client.send(bytes(500_000), p.now)
            p.client.shutdown(p.now)
            p.server.shutdown(p.now)
        return False

    p.client.connect(p.now)
    p.run(stop=start)
    p.run()
    assert len(p.received[p.server]) == 500_000
    client_data = [d for _, from_client, d in p.wire if from_client and len(d) > 100]
    assert len(client_data) > 300
    assert p.preencoded == 0
