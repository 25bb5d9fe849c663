"""The ladder diagram of a real connection pair (tests/pairsim.py, virtual time).

Unlike tests/test_ladder.py, whose fake connections make the observer calls by
hand, these drive two :class:`utcp.core.connection.Connection` objects over a
simulated link, so the diagrams are exactly what the core reports; the
simulation is deterministic, so they are compared as golden strings.
"""

from __future__ import annotations

from pairsim import Pair

from utcp.core.state import State
from utcp.ladder import Ladder


def pair(**kw: object) -> tuple[Ladder, Pair]:
    """A ladder and a pair drawn on it; the server is listening (pairsim's ISNs)."""
    ladder = Ladder("client", "server", **kw)  # type: ignore[arg-type]
    p = Pair(client_observer=ladder.observer("client"),
             server_observer=ladder.observer("server"))
    return ladder, p


def handshake(p: Pair) -> None:
    p.client.connect(p.now)
    p.run(stop=lambda: p.server.state is State.ESTABLISHED)
    assert p.client.state is State.ESTABLISHED


def exchange(p: Pair) -> None:
    """The client sends 'hello', the server answers 'HELLO'."""
    p.client.send(b"hello", p.now)
    p.run(stop=lambda: bytes(p.received[p.server]) == b"hello")
    p.server.send(b"HELLO", p.now)
    p.run(stop=lambda: bytes(p.received[p.client]) == b"HELLO")


def close(p: Pair) -> None:
    """Four-way close: the client shuts down, then the server on the client's FIN."""
    p.client.shutdown(p.now)
    p.run(stop=lambda: p.server.state is State.CLOSE_WAIT)
    p.server.shutdown(p.now)
    p.run()
    assert p.client.state is State.CLOSED and p.server.state is State.CLOSED


def check_width(text: str, width: int = 80) -> None:
    for line in text.splitlines():
        assert len(line) <= width, line
        assert line == line.rstrip(), repr(line)


HANDSHAKE = """\
           client                                               server
           CLOSED                                               LISTEN
    SYN-SENT |--SYN seq=0---------------------------------------->| SYN-RECEIVED
 ESTABLISHED |<------------------------------SYN,ACK seq=0 ack=1--|
             |--ACK seq=1 ack=1---------------------------------->| ESTABLISHED"""

WHOLE = HANDSHAKE + """
             |--PSH,ACK seq=1 ack=1 len=5------------------------>|
             |<------------------------PSH,ACK seq=1 ack=6 len=5--|
  FIN-WAIT-1 |--FIN,ACK seq=6 ack=6------------------------------>| CLOSE-WAIT
  FIN-WAIT-2 |<----------------------------------ACK seq=6 ack=7--|
   TIME-WAIT |<------------------------------FIN,ACK seq=6 ack=7--| LAST-ACK
             |--ACK seq=7 ack=7---------------------------------->| CLOSED
      CLOSED |                                                    |"""

# `utcp demo`'s exchange: the client writes and half-closes as soon as it is
# connected, so its ACK, data and FIN are all in flight when the server takes
# the ACK; the server's states still stand at the heads of their arrows.
DEMO = HANDSHAKE + """
             |--PSH,ACK seq=1 ack=1 len=5------------------------>|
  FIN-WAIT-1 |--FIN,ACK seq=6 ack=1------------------------------>| CLOSE-WAIT
  FIN-WAIT-2 |<----------------------------------ACK seq=1 ack=7--|
             |<------------------------PSH,ACK seq=1 ack=7 len=5--|
   TIME-WAIT |<------------------------------FIN,ACK seq=6 ack=7--| LAST-ACK
             |--ACK seq=7 ack=7---------------------------------->| CLOSED
      CLOSED |                                                    |"""

DEMO_TIMES = """\
                    client                                      server
                    CLOSED                                      LISTEN
   0.000     SYN-SENT |--SYN seq=0------------------------------->| SYN-RECEIVED
   0.010  ESTABLISHED |<---------------------SYN,ACK seq=0 ack=1--|
   0.020              |--ACK seq=1 ack=1------------------------->| ESTABLISHED
   0.020              |--PSH,ACK seq=1 ack=1 len=5--------------->|
   0.020   FIN-WAIT-1 |--FIN,ACK seq=6 ack=1--------------------->| CLOSE-WAIT
   0.030   FIN-WAIT-2 |<-------------------------ACK seq=1 ack=7--|
   0.030              |<---------------PSH,ACK seq=1 ack=7 len=5--|
   0.030    TIME-WAIT |<---------------------FIN,ACK seq=6 ack=7--| LAST-ACK
   0.040              |--ACK seq=7 ack=7------------------------->| CLOSED
  60.040       CLOSED |                                           |"""


def demo(p: Pair) -> None:
    p.client.connect(p.now)
    p.run(stop=lambda: p.client.state is State.ESTABLISHED)
    assert p.server.state is State.SYN_RECEIVED  # the client's ACK is still in flight
    p.client.send(b"hello", p.now)
    p.client.shutdown(p.now)
    p.run(stop=lambda: p.server.state is State.CLOSE_WAIT)
    assert bytes(p.received[p.server]) == b"hello"
    p.server.send(b"HELLO", p.now)
    p.server.shutdown(p.now)
    p.run()
    assert bytes(p.received[p.client]) == b"HELLO"
    assert p.client.state is State.CLOSED and p.server.state is State.CLOSED


def test_handshake() -> None:
    ladder, p = pair()
    handshake(p)
    text = ladder.render()
    assert text == HANDSHAKE
    check_width(text)


def test_exchange_and_four_way_close() -> None:
    ladder, p = pair()
    handshake(p)
    exchange(p)
    close(p)
    text = ladder.render()
    assert text == WHOLE
    check_width(text)


def test_demo_sequence_with_segments_in_flight() -> None:
    ladder, p = pair()
    demo(p)
    text = ladder.render()
    assert text == DEMO
    check_width(text)


def test_demo_sequence_with_times() -> None:
    ladder, p = pair(times=True)
    demo(p)
    text = ladder.render()
    assert text == DEMO_TIMES
    check_width(text)


def test_live_lines_fit_and_show_listen() -> None:
    lines: list[str] = []
    ladder, p = pair(live=lines.append)
    demo(p)
    check_width("\n".join(lines))
    assert lines[0] == DEMO.splitlines()[0]
    assert lines[1].endswith("| LISTEN")  # live mode has no line of initial states
    assert ladder.render() == DEMO


def test_settled_live_lines_are_the_compact_picture_drawn_as_it_happens() -> None:
    lines: list[str] = []
    ladder, p = pair(live=lines.append, settle=True)
    p.client.connect(p.now)
    p.run(stop=lambda: p.client.state is State.ESTABLISHED)
    # The SYN and the SYN-ACK have settled, with their states beside them; the
    # client's ACK is still in flight, so its row (and what follows) waits.
    assert lines == DEMO.splitlines()[:4]
    p.client.send(b"hello", p.now)
    p.client.shutdown(p.now)
    p.run(stop=lambda: p.server.state is State.CLOSE_WAIT)
    p.server.send(b"HELLO", p.now)
    p.server.shutdown(p.now)
    p.run()
    ladder.flush_live()
    assert "\n".join(lines) == ladder.render() == DEMO
    ladder.flush_live()  # nothing twice
    assert "\n".join(lines) == DEMO


def test_a_segment_lost_in_flight_stops_holding_the_lines_back() -> None:
    lines: list[str] = []
    ladder, p = pair(live=lines.append, settle=True, settle_after=1.0)
    p.client.connect(p.now)
    assert len(p.client.take_segments()) == 1  # the SYN, lost: never delivered
    assert lines == []  # its row could still take the server's state
    p.run()  # the SYN is retransmitted after its RTO, and the handshake completes
    assert p.client.state is State.ESTABLISHED
    assert "X" in lines[2]  # no longer held back: drawn as lost, as render() draws it
    ladder.flush_live()
    assert "\n".join(lines) == ladder.render()
