"""Stateful fuzzing of two stacks on a lossy simulated network, with hostile datagrams
mixed in: random interleavings of connects, writes, closes, aborts, time, garbage and
forged segments.

Whatever hypothesis tries, no exception escapes a stack, every byte a server hands its
application is the next byte its client sent (a prefix of the stream, never a
forged or misplaced one), and what a stack holds stays within its limits.
"""

from __future__ import annotations

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from netsim import Network

from utcp.core.config import Options
from utcp.core.connection import ConnectionStateError
from utcp.core.state import State
from utcp.core.wire import ACK, FIN, PSH, RST, SYN, Segment, encode

SERVER = ("10.1.0.1", 7007)
CLIENT = ("10.1.0.2", 5000)
STRANGER = ("10.1.0.66", 5000)  # off the path: another address entirely
OPTIONS = Options(msl=1.0, rcv_buf=16 * 1024, syn_retries=3, data_retries=4)


class TwoStacks(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.net: Network | None = None
        self.sent: dict[object, bytearray] = {}

    @rule(seed=st.integers(0, 2**16), loss=st.sampled_from([0.0, 0.05, 0.2]),
          dup=st.sampled_from([0.0, 0.1]), reorder=st.sampled_from([0.0, 0.2]))
    @precondition(lambda self: self.net is None)
    def start(self, seed: int, loss: float, dup: float, reorder: float) -> None:
        self.net = Network(seed=seed, loss=loss, dup=dup, reorder=reorder, delay=0.01)
        # A receive-memory limit that a few paused readers reach.
        self.server = self.net.add(SERVER, max_receive_memory=3 * OPTIONS.rcv_buf,
                                   zero_window_timeout=20.0)
        self.server.stack.listen(7007, 16, OPTIONS, max_connections=8)
        self.client = self.net.add(CLIENT)

    def ready(self) -> bool:
        return self.net is not None

    def open_conns(self) -> list:
        return [c for c in self.sent if c.state not in (State.CLOSED, State.TIME_WAIT)]

    @rule()
    @precondition(lambda self: self.net is not None and len(self.sent) < 6)
    def connect(self) -> None:
        conn = self.client.stack.connect(SERVER, 7007, OPTIONS, self.net.now)
        self.sent[conn] = bytearray()

    @rule(which=st.integers(0, 5), data=st.binary(min_size=1, max_size=4000))
    @precondition(lambda self: self.net is not None and self.sent)
    def write(self, which: int, data: bytes) -> None:
        conns = list(self.sent)
        conn = conns[which % len(conns)]
        try:
            self.client.stack.send(conn, data, self.net.now)
        except ConnectionStateError:
            return  # closed, or shut down: the write is refused, as it should be
        self.sent[conn] += data

    @rule(which=st.integers(0, 5), how=st.sampled_from(["shutdown", "close", "abort"]))
    @precondition(lambda self: self.net is not None and self.sent)
    def end(self, which: int, how: str) -> None:
        conns = list(self.sent)
        conn = conns[which % len(conns)]
        if conn.state is State.CLOSED:
            return
        try:
            getattr(self.client.stack, how)(conn, self.net.now)
        except ConnectionStateError:
            pass

    @rule(which=st.integers(0, 7), pause=st.booleans())
    @precondition(lambda self: self.net is not None)
    def server_reads(self, which: int, pause: bool) -> None:
        conns = list(self.server.stack.connections())
        if not conns:
            return
        conn = conns[which % len(conns)]
        if pause:
            self.server.stack.pause_reading(conn)
        else:
            self.server.stack.resume_reading(conn, self.net.now)

    @rule(dt=st.floats(0.001, 30.0))
    @precondition(lambda self: self.net is not None)
    def wait(self, dt: float) -> None:
        self.net.run(until=self.net.now + dt, max_steps=200_000)
        delivered = sum(len(v) for v in self.server.received.values())
        event("data delivered" if delivered else "no data delivered yet")

    @rule(data=st.binary(max_size=80), from_client=st.booleans())
    @precondition(lambda self: self.net is not None)
    def garbage(self, data: bytes, from_client: bool) -> None:
        self.server.stack.receive(data, CLIENT if from_client else STRANGER, self.net.now)

    @rule(which=st.integers(0, 5), seq=st.integers(0, 2**32 - 1),
          ack=st.integers(0, 2**32 - 1),
          flags=st.sampled_from([RST, SYN, RST | ACK, SYN | ACK, FIN | ACK, PSH | ACK, ACK]),
          payload=st.binary(max_size=50), stranger=st.booleans())
    @precondition(lambda self: self.net is not None and self.sent)
    def forged(self, which: int, seq: int, ack: int, flags: int, payload: bytes,
               stranger: bool) -> None:
        # A blind attacker who knows the ports but not the sequence numbers; from
        # the client's own address, data is only ever RST or SYN (data or FIN with
        # a guessed ACK in range is a risk TCP itself takes: one in billions).
        conns = list(self.sent)
        conn = conns[which % len(conns)]
        if not stranger and flags not in (RST, SYN, RST | ACK, SYN | ACK):
            flags &= ~(FIN | PSH)
            payload = b""
        seg = Segment(conn.local_port, 7007, seq, ack, flags, 65535, payload=payload)
        self.server.stack.receive(encode(seg), STRANGER if stranger else CLIENT, self.net.now)
        self.net.pump()

    @invariant()
    def delivered_is_a_prefix_of_sent(self) -> None:
        if self.net is None:
            return
        by_port = {c.local_port: c for c in self.sent}
        for conn, got in self.server.received.items():
            if conn.peer != CLIENT:
                raise AssertionError(f"data from {conn.peer} reached the application")
            sent = self.sent[by_port[conn.remote_port]]
            assert bytes(got) == bytes(sent[:len(got)]), "delivered bytes differ from sent"

    @invariant()
    def within_limits(self) -> None:
        if self.net is None:
            return
        stack = self.server.stack
        listener = stack.listeners[7007]
        assert listener.count <= 8 and len(listener.half_open) <= 16
        for row in stack.connection_table():
            # Within the receive buffer, however autotuning grew it (never past
            # rcv_buf_max), to within the window's unit: an edge once offered stands.
            assert OPTIONS.rcv_buf <= row["rcv_buf"] <= OPTIONS.rcv_buf_limit
            assert row["unread"] < row["rcv_buf"] + (1 << OPTIONS.wscale)
        mem = stack.memory
        assert mem.held <= mem.limit
        held = {c: c.receive_memory for c in stack.connections() if c.receive_memory}
        assert mem.holders == held and mem.held == sum(held.values())


TwoStacks.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_two_stacks_under_fuzzing = TwoStacks.TestCase
