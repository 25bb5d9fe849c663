"""The ladder diagram, driven by the exact observer calls a connection pair makes."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from utcp.core.state import State
from utcp.core.wire import ACK, FIN, PSH, RST, SYN, Segment
from utcp.ladder import Ladder

CISS, SISS = 1000, 5000
CPORT, SPORT = 40000, 80


class Pair:
    """Two fake connections whose observers see what a real pair's would.

    The order of calls follows the core: ``receive`` reports the segment first,
    then any state change, then the segments it sends; ``connect`` and ``close``
    change state, then send. ``state`` takes the cause the core would report.
    """

    def __init__(self, ladder: Ladder, left: bool = True, right: bool = True,
                 ciss: int = CISS, siss: int = SISS) -> None:
        self.c = SimpleNamespace(iss=ciss, irs=None, local_port=CPORT, remote_port=SPORT,
                                 state=State.CLOSED)
        self.s = SimpleNamespace(iss=siss, irs=None, local_port=SPORT, remote_port=CPORT,
                                 state=State.CLOSED)
        self.obs = {id(self.c): ladder.observer("left") if left else None,
                    id(self.s): ladder.observer("right") if right else None}

    def state(self, conn: SimpleNamespace, new: State, now: float,
              cause: str = "segment") -> None:
        old, conn.state = conn.state, new
        if (o := self.obs[id(conn)]) is not None:
            o.state_changed(conn, old, new, cause, now)

    def send(self, conn: SimpleNamespace, seq: int, ack: int, flags: int, now: float,
             data: bytes = b"") -> Segment:
        seg = Segment(conn.local_port, conn.remote_port, seq, ack, flags, 65535, payload=data)
        if (o := self.obs[id(conn)]) is not None:
            o.segment_sent(conn, seg, now)
        return seg

    def recv(self, conn: SimpleNamespace, seg: Segment, now: float) -> None:
        if (o := self.obs[id(conn)]) is not None:
            o.segment_received(conn, seg, now)


def handshake(p: Pair) -> None:
    c, s = p.c, p.s
    ci, si = c.iss, s.iss
    p.state(s, State.LISTEN, 0.0, "listen")
    p.state(c, State.SYN_SENT, 1.0, "connect")
    syn = p.send(c, ci, 0, SYN, 1.0)
    p.recv(s, syn, 1.01)
    s.irs = ci
    p.state(s, State.SYN_RECEIVED, 1.01)
    synack = p.send(s, si, ci + 1, SYN | ACK, 1.01)
    p.recv(c, synack, 1.02)
    c.irs = si
    p.state(c, State.ESTABLISHED, 1.02)
    ack = p.send(c, ci + 1, si + 1, ACK, 1.02)
    p.recv(s, ack, 1.03)
    p.state(s, State.ESTABLISHED, 1.03)


def exchange(p: Pair) -> None:
    c, s = p.c, p.s
    ci, si = c.iss, s.iss
    data = p.send(c, ci + 1, si + 1, PSH | ACK, 2.0, b"hello")
    p.recv(s, data, 2.01)
    ack = p.send(s, si + 1, ci + 6, ACK, 2.01)
    reply = p.send(s, si + 1, ci + 6, PSH | ACK, 2.01, b"world")
    p.recv(c, ack, 2.02)
    p.recv(c, reply, 2.02)
    ack = p.send(c, ci + 6, si + 6, ACK, 2.02)
    p.recv(s, ack, 2.03)


def close(p: Pair) -> None:
    c, s = p.c, p.s
    ci, si = c.iss, s.iss
    p.state(c, State.FIN_WAIT_1, 3.0, "close")
    fin = p.send(c, ci + 6, si + 6, FIN | ACK, 3.0)
    p.recv(s, fin, 3.01)
    p.state(s, State.CLOSE_WAIT, 3.01)
    ack = p.send(s, si + 6, ci + 7, ACK, 3.01)
    p.recv(c, ack, 3.02)
    p.state(c, State.FIN_WAIT_2, 3.02)
    p.state(s, State.LAST_ACK, 4.0, "close")
    fin = p.send(s, si + 6, ci + 7, FIN | ACK, 4.0)
    p.recv(c, fin, 4.01)
    p.state(c, State.TIME_WAIT, 4.01)
    ack = p.send(c, ci + 7, si + 7, ACK, 4.01)
    p.recv(s, ack, 4.02)
    p.state(s, State.CLOSED, 4.02)
    p.state(c, State.CLOSED, 64.01, "2MSL timeout")


def whole(ladder: Ladder, **kw: object) -> str:
    p = Pair(ladder, **kw)  # type: ignore[arg-type]
    handshake(p)
    exchange(p)
    close(p)
    return ladder.render()


HANDSHAKE = """\
           client                                               server
           CLOSED                                               LISTEN
    SYN-SENT |--SYN seq=0---------------------------------------->| SYN-RECEIVED
 ESTABLISHED |<------------------------------SYN,ACK seq=0 ack=1--|
             |--ACK seq=1 ack=1---------------------------------->| ESTABLISHED"""

# Live mode prints no line of initial states, so a server's LISTEN gets a row.
LIVE_LISTEN = "             |                                                    | LISTEN"


# Arrow rows: "<left state> |--label--->| <right state>" or "|<---label--|".
ROW = re.compile(
    r"^(?: *[0-9.]+)? *(?P<lstate>[A-Z0-9-]*) \|(?P<inner>.*)\|(?: (?P<rstate>[A-Z0-9-]+))?$"
)


def arrows(text: str) -> list[tuple[str, str]]:
    """(direction, label) of every arrow: direction '>' is left to right."""
    out = []
    for line in text.splitlines():
        m = ROW.match(line)
        if not m or not m["inner"].strip():
            continue
        inner = m["inner"].strip()
        if inner.startswith("--") and inner.endswith((">", "X")):
            out.append((">" if inner.endswith(">") else ">X", inner.strip("->X")))
        elif inner.endswith("--") and inner.startswith(("<", "X")):
            out.append(("<" if inner.startswith("<") else "X<", inner.strip("-<X")))
        else:
            raise AssertionError(f"not an arrow: {line!r}")
    return out


def states(text: str) -> tuple[list[str], list[str]]:
    """The states written beside the left and the right column, top to bottom."""
    left, right = [], []
    for line in text.splitlines():
        m = ROW.match(line)
        if m:
            if m["lstate"]:
                left.append(m["lstate"])
            if m["rstate"]:
                right.append(m["rstate"])
    return left, right


def check_shape(text: str, width: int = 80) -> None:
    for line in text.splitlines():
        assert len(line) <= width, line
        assert line == line.rstrip(), repr(line)


FULL_ARROWS = [
    (">", "SYN seq=0"),
    ("<", "SYN,ACK seq=0 ack=1"),
    (">", "ACK seq=1 ack=1"),
    (">", "PSH,ACK seq=1 ack=1 len=5"),
    ("<", "ACK seq=1 ack=6"),
    ("<", "PSH,ACK seq=1 ack=6 len=5"),
    (">", "ACK seq=6 ack=6"),
    (">", "FIN,ACK seq=6 ack=6"),
    ("<", "ACK seq=6 ack=7"),
    ("<", "FIN,ACK seq=6 ack=7"),
    (">", "ACK seq=7 ack=7"),
]
CLIENT_STATES = ["SYN-SENT", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT", "CLOSED"]
# After LISTEN, which render() shows in the header line (live mode on a row).
SERVER_STATES = ["SYN-RECEIVED", "ESTABLISHED", "CLOSE-WAIT", "LAST-ACK", "CLOSED"]


def test_handshake_golden() -> None:
    ladder = Ladder()
    handshake(Pair(ladder))
    assert ladder.render() == HANDSHAKE


def test_whole_connection_arrows_and_relative_numbers() -> None:
    text = whole(Ladder())
    check_shape(text)
    assert arrows(text) == FULL_ARROWS


def test_whole_connection_states_on_their_sides() -> None:
    text = whole(Ladder())
    assert states(text) == (CLIENT_STATES, SERVER_STATES)
    lines = text.splitlines()
    assert lines[0].split() == ["client", "server"]
    assert lines[1].split() == ["CLOSED", "LISTEN"]
    assert "LISTEN" not in "\n".join(lines[2:])  # no row of its own
    # States stand on the row of the segment that caused them, as in RFC 9293's figures.
    assert "  FIN-WAIT-1 |--FIN,ACK seq=6 ack=6--" in text
    assert any(ln.startswith("   TIME-WAIT |<--") and ln.endswith("--| LAST-ACK") for ln in lines)
    assert lines[-1].rstrip() == "      CLOSED |" + " " * 52 + "|"


def test_columns_line_up() -> None:
    text = whole(Ladder())
    for line in text.splitlines()[2:]:
        assert line[13] == "|" and line[66] == "|", line


def test_absolute_numbers() -> None:
    text = whole(Ladder(relative=False))
    check_shape(text)
    got = arrows(text)
    assert [d for d, _ in got] == [d for d, _ in FULL_ARROWS]
    assert got[0][1] == "SYN seq=1000"
    assert got[1][1] == "SYN,ACK seq=5000 ack=1001"
    assert got[3][1] == "PSH,ACK seq=1001 ack=5001 len=5"
    assert got[-1][1] == "ACK seq=1007 ack=5007"


def test_relative_numbers_wrap_around() -> None:
    p = Pair(ladder := Ladder(), ciss=2**32 - 3, siss=2**32 - 1)
    handshake(p)
    p.recv(p.s, p.send(p.c, 2, 0, ACK, 5.0, b"x"), 5.01)  # seq has wrapped past zero
    got = arrows(ladder.render())
    assert got[:3] == FULL_ARROWS[:3]
    assert got[3] == (">", "ACK seq=5 ack=1 len=1")


def test_only_server_observed() -> None:
    ladder = Ladder("client", "server")
    text = whole(ladder, left=False)
    check_shape(text)
    # The client's segments are drawn from its column although only their arrival
    # was seen; its ISN comes from its SYN (and the server's irs).
    assert arrows(text) == FULL_ARROWS
    left, right = states(text)
    assert left == []
    assert right == SERVER_STATES
    assert text.splitlines()[1].strip() == "LISTEN"  # the unobserved client has none
    assert "X" not in text  # nothing is called lost when the receiver is not watched


def test_only_client_observed() -> None:
    text = whole(Ladder(), right=False)
    check_shape(text)
    assert arrows(text) == FULL_ARROWS
    assert states(text) == (CLIENT_STATES, [])


def test_unobserved_sender_isn_from_its_syn() -> None:
    # The server's connection has not taken irs yet when the SYN is reported.
    ladder = Ladder(relative=True)
    p = Pair(ladder, left=False)
    p.state(p.s, State.LISTEN, 0.0)
    p.recv(p.s, Segment(CPORT, SPORT, 77, 0, SYN), 1.0)
    p.recv(p.s, Segment(CPORT, SPORT, 78, 0, RST), 1.5)
    assert arrows(ladder.render()) == [(">", "SYN seq=0"), (">", "RST seq=1")]


def test_observer_by_name_and_bad_side() -> None:
    ladder = Ladder("alice", "bob")
    p = Pair(ladder, left=False, right=False)
    p.obs[id(p.c)] = ladder.observer("bob")  # the client drawn on the right
    p.obs[id(p.s)] = ladder.observer("alice")
    handshake(p)
    got = arrows(ladder.render())
    assert [d for d, _ in got] == ["<", ">", "<"]
    with pytest.raises(ValueError):
        ladder.observer("carol")


def test_lost_segment_and_retransmission() -> None:
    ladder = Ladder()
    p = Pair(ladder)
    p.state(p.s, State.LISTEN, 0.0, "listen")
    p.state(p.c, State.SYN_SENT, 1.0, "connect")
    p.send(p.c, CISS, 0, SYN, 1.0)  # lost
    syn = p.send(p.c, CISS, 0, SYN, 2.0)  # retransmitted after the RTO
    p.recv(p.s, syn, 2.01)
    p.state(p.s, State.SYN_RECEIVED, 2.01)
    text = ladder.render()
    check_shape(text)
    assert arrows(text) == [(">X", "SYN seq=0"), (">", "SYN seq=0")]
    assert states(text) == (["SYN-SENT"], ["SYN-RECEIVED"])
    lost = next(ln for ln in text.splitlines() if "X" in ln)
    assert lost.startswith("    SYN-SENT |--SYN seq=0--")
    assert lost.endswith(" |")  # the arrow stops short of the server


# The demo's exchange: the client sends its ACK, data and FIN back to back, so
# the server enters ESTABLISHED and CLOSE-WAIT with later arrows already drawn.
IN_FLIGHT = """\
           client                                               server
           CLOSED                                               LISTEN
    SYN-SENT |--SYN seq=0---------------------------------------->| SYN-RECEIVED
 ESTABLISHED |<------------------------------SYN,ACK seq=0 ack=1--|
             |--ACK seq=1 ack=1---------------------------------->| ESTABLISHED
             |--PSH,ACK seq=1 ack=1 len=5------------------------>|
  FIN-WAIT-1 |--FIN,ACK seq=6 ack=1------------------------------>| CLOSE-WAIT
  FIN-WAIT-2 |<----------------------------------ACK seq=1 ack=7--|
             |<------------------------PSH,ACK seq=1 ack=7 len=5--|
   TIME-WAIT |<------------------------------FIN,ACK seq=6 ack=7--| LAST-ACK
             |--ACK seq=7 ack=7---------------------------------->| CLOSED
      CLOSED |                                                    |"""


def test_states_at_the_arrows_that_caused_them_with_segments_in_flight() -> None:
    ladder = Ladder()
    p = Pair(ladder)
    c, s = p.c, p.s
    p.state(s, State.LISTEN, 0.0, "listen")
    p.state(c, State.SYN_SENT, 1.0, "connect")
    syn = p.send(c, CISS, 0, SYN, 1.0)
    p.recv(s, syn, 1.01)
    s.irs = CISS
    p.state(s, State.SYN_RECEIVED, 1.01)
    synack = p.send(s, SISS, CISS + 1, SYN | ACK, 1.01)
    p.recv(c, synack, 1.02)
    c.irs = SISS
    p.state(c, State.ESTABLISHED, 1.02)
    sent = [p.send(c, CISS + 1, SISS + 1, ACK, 1.02),
            p.send(c, CISS + 1, SISS + 1, PSH | ACK, 1.02, b"hello")]
    p.state(c, State.FIN_WAIT_1, 1.02, "close")
    sent.append(p.send(c, CISS + 6, SISS + 1, FIN | ACK, 1.02))
    p.recv(s, sent[0], 1.03)
    p.state(s, State.ESTABLISHED, 1.03)
    p.recv(s, sent[1], 1.03)
    p.recv(s, sent[2], 1.03)
    p.state(s, State.CLOSE_WAIT, 1.03)
    sent = [p.send(s, SISS + 1, CISS + 7, ACK, 1.03),
            p.send(s, SISS + 1, CISS + 7, PSH | ACK, 1.03, b"HELLO")]
    p.state(s, State.LAST_ACK, 1.03, "close")
    sent.append(p.send(s, SISS + 6, CISS + 7, FIN | ACK, 1.03))
    p.recv(c, sent[0], 1.04)
    p.state(c, State.FIN_WAIT_2, 1.04)
    p.recv(c, sent[1], 1.04)
    p.recv(c, sent[2], 1.04)
    p.state(c, State.TIME_WAIT, 1.04)
    ack = p.send(c, CISS + 7, SISS + 7, ACK, 1.04)
    p.recv(s, ack, 1.05)
    p.state(s, State.CLOSED, 1.05)
    p.state(c, State.CLOSED, 3.04, "2MSL timeout")
    assert ladder.render() == IN_FLIGHT


def test_second_state_caused_by_one_segment_gets_a_row_of_its_own() -> None:
    # The server closes on the client's FIN, so its FIN acknowledges the client's:
    # FIN-WAIT-2 stands at that arrow's head and TIME-WAIT below it.
    ladder = Ladder()
    p = Pair(ladder)
    handshake(p)
    c, s = p.c, p.s
    p.state(c, State.FIN_WAIT_1, 2.0, "close")
    p.recv(s, p.send(c, CISS + 1, SISS + 1, FIN | ACK, 2.0), 2.01)
    p.state(s, State.CLOSE_WAIT, 2.01)
    p.state(s, State.LAST_ACK, 2.01, "close")
    p.recv(c, p.send(s, SISS + 1, CISS + 2, FIN | ACK, 2.01), 2.02)
    p.state(c, State.FIN_WAIT_2, 2.02)
    p.state(c, State.TIME_WAIT, 2.02)
    p.recv(s, p.send(c, CISS + 2, SISS + 2, ACK, 2.02), 2.03)
    p.state(s, State.CLOSED, 2.03)
    assert ladder.render().splitlines()[5:] == [
        "  FIN-WAIT-1 |--FIN,ACK seq=1 ack=1------------------------------>| CLOSE-WAIT",
        "  FIN-WAIT-2 |<------------------------------FIN,ACK seq=1 ack=2--| LAST-ACK",
        "   TIME-WAIT |--ACK seq=2 ack=2---------------------------------->| CLOSED",
    ]


def test_state_is_never_drawn_above_an_earlier_state_of_its_side() -> None:
    # Simultaneous close: the client enters CLOSING on the server's FIN, whose
    # arrow is above the client's own FIN-WAIT-1, so CLOSING gets a row below.
    # The server's CLOSING can stand at the head of the client's FIN.
    ladder = Ladder()
    p = Pair(ladder)
    handshake(p)
    c, s = p.c, p.s
    p.state(s, State.FIN_WAIT_1, 2.0, "close")
    sfin = p.send(s, SISS + 1, CISS + 1, FIN | ACK, 2.0)
    p.state(c, State.FIN_WAIT_1, 2.005, "close")
    cfin = p.send(c, CISS + 1, SISS + 1, FIN | ACK, 2.005)
    p.recv(c, sfin, 2.01)
    p.state(c, State.CLOSING, 2.01)
    p.recv(s, cfin, 2.015)
    p.state(s, State.CLOSING, 2.015)
    text = ladder.render()
    assert text.splitlines()[5:] == [
        "             |<------------------------------FIN,ACK seq=1 ack=1--| FIN-WAIT-1",
        "  FIN-WAIT-1 |--FIN,ACK seq=1 ack=1------------------------------>| CLOSING",
        "     CLOSING |                                                    |",
    ]
    assert states(text) == (["SYN-SENT", "ESTABLISHED", "FIN-WAIT-1", "CLOSING"],
                            ["SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "CLOSING"])


def test_application_transition_after_an_arrival_is_not_at_its_head() -> None:
    # The client's ACK of the data is delayed; closing at that same moment
    # enters FIN-WAIT-1 on the row of the FIN it sends, not at the data's head.
    ladder = Ladder()
    p = Pair(ladder)
    handshake(p)
    p.recv(p.c, p.send(p.s, SISS + 1, CISS + 1, PSH | ACK, 2.0, b"hi"), 2.01)
    p.state(p.c, State.FIN_WAIT_1, 2.01, "close")
    p.recv(p.s, p.send(p.c, CISS + 1, SISS + 3, FIN | ACK, 2.01), 2.02)
    assert ladder.render().splitlines()[5:] == [
        "             |<------------------------PSH,ACK seq=1 ack=1 len=2--|",
        "  FIN-WAIT-1 |--FIN,ACK seq=1 ack=3------------------------------>|",
    ]


def test_timer_transition_after_an_arrival_is_not_at_its_head() -> None:
    ladder = Ladder()
    p = Pair(ladder)
    handshake(p)
    p.recv(p.c, p.send(p.s, SISS + 1, CISS + 1, PSH | ACK, 2.0, b"hi"), 2.01)
    p.state(p.c, State.CLOSED, 9.0, "keepalive probes unanswered")
    assert ladder.render().splitlines()[5:] == [
        "             |<------------------------PSH,ACK seq=1 ack=1 len=2--|",
        "      CLOSED |                                                    |",
    ]


def test_listen_after_other_events_keeps_its_row() -> None:
    ladder = Ladder()
    p = Pair(ladder, left=False)
    p.recv(p.s, Segment(CPORT, SPORT, 7, 0, SYN), 1.0)  # finds it CLOSED
    p.state(p.s, State.LISTEN, 2.0, "listen")
    lines = ladder.render().splitlines()
    assert lines[1].strip() == "CLOSED"
    assert lines[-1].endswith("| LISTEN")


def test_send_reported_before_state_change_still_shares_the_row() -> None:
    ladder = Ladder()
    p = Pair(ladder, right=False)
    p.send(p.c, CISS, 0, SYN, 1.0)
    p.state(p.c, State.SYN_SENT, 1.0)
    line = ladder.render().splitlines()[-1]
    assert line.startswith("    SYN-SENT |--SYN seq=0--") and line.endswith(">|")


def test_duplicate_delivery_is_a_second_arrow() -> None:
    ladder = Ladder()
    p = Pair(ladder)
    handshake(p)
    seg = p.send(p.c, CISS + 1, SISS + 1, PSH | ACK, 2.0, b"hi")
    p.recv(p.s, seg, 2.01)
    p.recv(p.s, seg, 2.02)  # the link duplicated it
    assert arrows(ladder.render())[-2:] == [(">", "PSH,ACK seq=1 ack=1 len=2")] * 2


def test_live_lines_as_they_happen() -> None:
    lines: list[str] = []
    ladder = Ladder(live=lines.append)
    p = Pair(ladder)
    p.state(p.s, State.LISTEN, 0.0, "listen")
    assert lines == [HANDSHAKE.splitlines()[0], LIVE_LISTEN]
    p.state(p.c, State.SYN_SENT, 1.0, "connect")
    syn = p.send(p.c, CISS, 0, SYN, 1.0)
    # Drawn at send time, before the server has seen it.
    assert lines[-1].startswith("             |--SYN seq=0--") and lines[-1].endswith(">|")
    assert lines[-2].rstrip("| ") == "    SYN-SENT"
    n = len(lines)
    p.recv(p.s, syn, 1.01)
    assert len(lines) == n  # arrival of a drawn segment adds nothing
    p.s.irs = CISS
    p.state(p.s, State.SYN_RECEIVED, 1.01)
    assert lines[-1].endswith("| SYN-RECEIVED")
    # The rest of the connection: one row per event, and render() stays compact.
    synack = p.send(p.s, SISS, CISS + 1, SYN | ACK, 1.01)
    p.recv(p.c, synack, 1.02)
    p.c.irs = SISS
    p.state(p.c, State.ESTABLISHED, 1.02)
    ack = p.send(p.c, CISS + 1, SISS + 1, ACK, 1.02)
    p.recv(p.s, ack, 1.03)
    p.state(p.s, State.ESTABLISHED, 1.03)
    exchange(p)
    close(p)
    live = "\n".join(lines)
    check_shape(live)
    assert arrows(live) == FULL_ARROWS
    assert states(live) == (CLIENT_STATES, ["LISTEN", *SERVER_STATES])
    assert all(not (m := ROW.match(ln)) or not (m["lstate"] and m["inner"].strip())
               for ln in lines)  # live rows never share a state with an arrow
    assert ladder.render() == whole(Ladder())


def test_live_one_side_draws_arrivals() -> None:
    lines: list[str] = []
    whole(Ladder(live=lines.append), left=False)
    assert arrows("\n".join(lines)) == FULL_ARROWS


@pytest.mark.parametrize("kw", [
    {}, {"relative": False}, {"window": True}, {"times": True},
    {"width": 60}, {"width": 60, "times": True, "relative": False, "window": True},
])
def test_every_line_fits(kw: dict) -> None:
    width = kw.get("width", 80)
    text = whole(Ladder("a-rather-long-client-name", "an-even-longer-server-name", **kw))
    check_shape(text, width)
    lines: list[str] = []
    whole(Ladder(live=lines.append, **kw))
    check_shape("\n".join(lines), width)
    assert len(arrows(text)) == len(FULL_ARROWS)


def test_window_and_times() -> None:
    text = whole(Ladder(window=True, times=True))
    check_shape(text)
    assert arrows(text)[0] == (">", "SYN seq=0 win=65535")
    rows = text.splitlines()[2:]
    assert rows[0].startswith("   0.000     SYN-SENT |--SYN")
    assert rows[-1].startswith("  63.010       CLOSED |")
    # Rows before the first segment have no time (live mode gives states rows).
    lines: list[str] = []
    whole(Ladder(window=True, times=True, live=lines.append))
    assert lines[1].startswith(" " * 22 + "|") and lines[1].endswith("| LISTEN")
    assert lines[2].startswith(" " * 13 + "SYN-SENT |")
    assert lines[3].startswith("   0.000              |--SYN")


def test_too_narrow() -> None:
    with pytest.raises(ValueError):
        Ladder(width=40)


def test_empty() -> None:
    assert Ladder("x", "y").render().split() == ["x", "y"]
