"""Runs of full-sized segments sent already encoded (Connection.encode_runs): the
bulk sender's short cut must put on the wire exactly what the segment-by-segment
path would, byte for byte and at the same times."""

from __future__ import annotations

import random

import pytest
from pairsim import Pair

from utcp.core.buffers import SendBuffer
from utcp.core.config import Options
from utcp.core.observer import NullObserver
from utcp.core.seq import MOD
from utcp.core.state import State
from utcp.core.wire import ACK, MSS, NOP_OPTION, TIMESTAMPS, Segment, decode, encode, encode_run

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
    assert encode_run(first, 0, [b"y"]) is None


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

def _writes(kind: str, rng: random.Random) -> list[bytes]:
    if kind == "one":
        return [rng.randbytes(300_000)]
    if kind == "odd":  # chunks that end inside segments
        return [rng.randbytes(rng.randrange(1, 9000)) for _ in range(60)]
    return [rng.randbytes(rng.randrange(1, 2000)) for _ in range(300)]  # "small"


def _run(encode_runs: bool, opts: Options, writes: str, seed: int, **link) -> Pair:
    p = Pair(client_opts=opts, server_opts=opts, seed=seed, encode_runs=encode_runs, **link)
    rng = random.Random(seed)
    data = {p.client: _writes(writes, rng), p.server: _writes(writes, rng)}
    started: set = set()

    def start_when_established() -> bool:
        for c in (p.client, p.server):
            if c not in started and c.state is State.ESTABLISHED:
                started.add(c)
                for d in data[c]:
                    c.send(d, p.now)
                c.shutdown(p.now)
        return False

    p.client.connect(p.now)
    p.run(stop=start_when_established)
    p.run()
    assert p.received[p.server] == b"".join(data[p.client])
    assert p.received[p.client] == b"".join(data[p.server])
    assert p.client.state is State.CLOSED and p.server.state is State.CLOSED
    return p


CASES = {
    "default": Options(),
    "no-timestamps": Options(timestamps=False),
    "no-sack": Options(sack=False),
    "small-mss": Options(mss=100),
    "newreno": Options(congestion_control="newreno"),
    "bbr": Options(congestion_control="bbr"),  # paced, with rate samples: no runs
}
LINKS = {
    "clean": {},
    "lossy": {"loss": 0.05, "dup": 0.02, "reorder": 0.05},
    "wrap": {"client_iss": MOD - 150_000, "server_iss": MOD - 10},
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("writes", ["one", "odd", "small"])
@pytest.mark.parametrize("link", LINKS)
def test_a_transfer_puts_the_same_bytes_on_the_wire_with_runs_encoded(case, writes, link):
    before = _run(False, CASES[case], writes, seed=3, **LINKS[link])
    after = _run(True, CASES[case], writes, seed=3, **LINKS[link])
    assert before.preencoded == 0
    assert after.wire == before.wire
    if case == "bbr":
        # BBR paces every segment once it has a round trip: nothing goes in runs.
        assert after.preencoded == 0
    elif link == "lossy":
        # Recovery (a SACK scoreboard, segments resent) sends one by one.
        assert after.preencoded > 20
    else:
        assert after.preencoded > len(after.wire) // 4


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
