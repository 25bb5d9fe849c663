"""Coverage-guided fuzzing targets: the segment decoder, and a stack fed arbitrary
datagrams. Each target takes bytes and must never raise. ``tests/fuzz/run.py``
runs one under atheris; ``tests/test_fuzz_corpus.py`` replays each corpus in the
normal test suite.
"""

from __future__ import annotations

import pathlib
import random

from utcp.core.config import Options
from utcp.core.isn import IsnGenerator
from utcp.core.stack import Stack
from utcp.core.wire import ACK, SYN, MalformedSegment, Segment, decode, encode

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"
SERVER = ("10.3.0.1", 7007)
PEERS = [("10.3.0.2", 5000), ("10.3.0.3", 5001)]


def decode_target(data: bytes) -> None:
    """Any bytes: a segment that encodes back to a segment that decodes, or a
    MalformedSegment (BadChecksum is one); nothing else."""
    try:
        seg = decode(data)
    except MalformedSegment:
        return
    again = decode(encode(seg))
    assert again.flags == seg.flags and again.payload == seg.payload


def stack_target(data: bytes) -> None:
    """A listening stack (with a connection of its own open) fed the input as a run of
    datagrams: each a length byte, a peer byte, then the datagram; time moves on a
    little with each. No exception may escape, and the stack keeps its limits."""
    stack = Stack(SERVER, isn=IsnGenerator(b"fuzz"), rng=random.Random(0))
    listener = stack.listen(7007, 4, Options(rcv_buf=8192), max_connections=16)
    stack.connect(PEERS[0], 7007, Options(), 0.0)
    now = 0.0
    i = 0
    while i + 2 <= len(data):
        n, who = data[i], data[i + 1]
        datagram = data[i + 2:i + 2 + n]
        i += 2 + n
        now += (who >> 4) * 0.05
        peer = PEERS[who & 1]
        if who & 2 and len(datagram) >= 4:
            # Aim it at a connection that exists, so the fuzzer needn't guess ports.
            conns = list(stack.connections())
            if conns:
                c = conns[datagram[0] % len(conns)]
                datagram = c.remote_port.to_bytes(2, "big") + \
                    c.local_port.to_bytes(2, "big") + datagram[4:]
                peer = c.peer
        stack.receive(datagram, peer, now)
        stack.end_batch(now)
        deadline = stack.next_deadline()
        if deadline is not None and deadline <= now:
            stack.handle_timer(now)
        stack.datagrams_to_send()
        stack.take_events()
    assert listener.count <= 16 and len(listener.half_open) <= 4


TARGETS = {"decode": decode_target, "stack": stack_target}


def seeds() -> dict[str, list[bytes]]:
    """A few well-formed starting points for each target."""
    syn = encode(Segment(5000, 7007, 1, 0, SYN, 65535))
    ack = encode(Segment(5000, 7007, 2, 1, ACK, 65535, payload=b"data"))
    run = bytes([len(syn), 0]) + syn + bytes([len(ack), 2]) + ack
    return {"decode": [syn, ack], "stack": [run]}
