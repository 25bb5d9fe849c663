"""Two connections over a seeded lossy link on virtual time (tests/pairsim.py):
whole transfers both ways through loss, duplication, reordering and sequence
wrap-around, each ending with both sides CLOSED after TIME-WAIT."""

from __future__ import annotations

import hashlib
import random

import pytest
from pairsim import Pair

from utcp.core.config import Options
from utcp.core.events import Closed, Connected, DataReceived, EndOfStream, FinAcked
from utcp.core.observer import NullObserver
from utcp.core.seq import MOD
from utcp.core.state import State

MB = 1 << 20


class Transitions(NullObserver):
    def __init__(self) -> None:
        self.states: list[State] = [State.CLOSED]

    def state_changed(self, conn, old, new, cause, now):
        assert old is self.states[-1], f"{old} -> {new}, but the last state was {self.states[-1]}"
        self.states.append(new)


def transfer(size: int = MB, **link) -> tuple[Pair, dict, dict]:
    """Both sides send ``size`` bytes and shut down as soon as they are ESTABLISHED."""
    obs = {"client": Transitions(), "server": Transitions()}
    p = Pair(client_observer=obs["client"], server_observer=obs["server"], **link)
    rng = random.Random(link.get("seed", 1))
    payload = {p.client: rng.randbytes(size), p.server: rng.randbytes(size)}
    started: set = set()

    def start_when_established() -> bool:
        for c in (p.client, p.server):
            if c not in started and c.state is State.ESTABLISHED:
                started.add(c)
                c.send(payload[c], p.now)
                c.shutdown(p.now)
        return False

    p.client.connect(p.now)
    p.run(stop=start_when_established)
    return p, payload, obs


def digest(b: bytes | bytearray) -> str:
    return hashlib.sha256(b).hexdigest()


def assert_clean_finish(p: Pair, payload: dict, obs: dict) -> None:
    c, s = p.client, p.server
    assert digest(p.received[s]) == digest(payload[c])
    assert digest(p.received[c]) == digest(payload[s])
    for conn, o in ((c, obs["client"]), (s, obs["server"])):
        assert conn.state is State.CLOSED
        assert conn.next_deadline() is None
        assert conn.take_segments() == []
        # Both shut down at once, so both close actively and wait out TIME-WAIT.
        assert o.states[-2:] == [State.TIME_WAIT, State.CLOSED]
        evs = [e for e in p.events[conn] if not isinstance(e, DataReceived)]
        # Our FIN's ACK and the peer's FIN arrive in either order, then both are done.
        assert evs in ([Connected(), EndOfStream(), FinAcked(), Closed()],
                       [Connected(), FinAcked(), EndOfStream(), Closed()])
    assert p.events[c][-1] == Closed()


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("loss", [0.0, 0.05, 0.2])
def test_pair_transfer_1mb_each_way(loss, seed):
    p, payload, obs = transfer(loss=loss, dup=0.05, reorder=0.1, seed=seed)
    assert_clean_finish(p, payload, obs)
    if loss:
        assert p.client.counters.retransmissions and p.server.counters.retransmissions


def test_pair_clean_link_no_retransmissions():
    p, payload, obs = transfer()
    assert_clean_finish(p, payload, obs)
    assert p.client.counters.retransmissions == p.server.counters.retransmissions == 0
    # TIME-WAIT (2 MSL = 60 s) is the last thing to end.
    assert 60 < p.now < 61


# Where 2**32 falls in each direction's sequence space: on the SYN, inside the
# first segment, deep in the transfer, on the last data byte, on the FIN. The
# per-segment path spells out its sequence arithmetic (utcp/core/connection.py):
# these runs check that every such expression agrees with utcp.core.seq wherever
# the wrap lands, through loss, duplication and reordering.
WRAP_POINTS = {
    "on-syn": MOD - 1,
    "in-first-segment": MOD - 100,
    "mid-transfer": MOD - 300_000,
    "on-last-byte": MOD - MB,
    "on-fin": MOD - MB - 1,
}


@pytest.mark.parametrize("loss", [0.0, 0.05, 0.2])
@pytest.mark.parametrize("client_at, server_at", [
    ("in-first-segment", "mid-transfer"),
    ("on-syn", "on-fin"),
    ("on-last-byte", "on-syn"),
    ("on-fin", "in-first-segment"),
])
def test_pair_sequence_numbers_wrap(loss, client_at, server_at):
    client_iss, server_iss = WRAP_POINTS[client_at], WRAP_POINTS[server_at]
    p, payload, obs = transfer(loss=loss, dup=0.05, reorder=0.1, seed=7,
                               client_iss=client_iss, server_iss=server_iss)
    assert_clean_finish(p, payload, obs)
    # Both directions crossed 2**32 and ended on a small number.
    assert p.client.snd_una < client_iss and p.server.snd_una < server_iss
    assert p.client.snd_una == (client_iss + MB + 2) % MOD  # SYN, data, FIN
    assert p.server.snd_una == (server_iss + MB + 2) % MOD
    # New data is told apart from retransmissions across the wrap too.
    assert p.client.counters.bytes_out == p.server.counters.bytes_out == MB


def test_pair_short_msl():
    opts = Options(msl=0.005)
    p, payload, obs = transfer(size=10_000, client_opts=opts, server_opts=opts)
    assert_clean_finish(p, payload, obs)
    assert p.now < 1.0


def test_pair_lifecycle_transitions():
    # One side closes first: the other goes through CLOSE-WAIT and LAST-ACK.
    obs_c, obs_s = Transitions(), Transitions()
    p = Pair(client_observer=obs_c, server_observer=obs_s)
    p.client.connect(0.0)
    p.run(stop=lambda: p.server.state is State.ESTABLISHED)
    p.client.send(b"request", p.now)
    p.client.shutdown(p.now)
    p.run(stop=lambda: p.server.state is State.CLOSE_WAIT)
    p.server.send(b"response", p.now)
    p.server.shutdown(p.now)
    p.run()
    assert bytes(p.received[p.server]) == b"request"
    assert bytes(p.received[p.client]) == b"response"
    assert obs_c.states == [State.CLOSED, State.SYN_SENT, State.ESTABLISHED, State.FIN_WAIT_1,
                            State.FIN_WAIT_2, State.TIME_WAIT, State.CLOSED]
    assert obs_s.states == [State.CLOSED, State.LISTEN, State.SYN_RECEIVED, State.ESTABLISHED,
                            State.CLOSE_WAIT, State.LAST_ACK, State.CLOSED]
