"""The state machine moves only along the transitions RFC 9293 allows."""

from __future__ import annotations

import pytest
from tcpscript import (
    conn_close_wait,
    conn_established,
    conn_fin_wait_2,
    conn_last_ack,
    conn_syn_sent,
    conn_time_wait,
)

from utcp.core.state import TRANSITIONS, IllegalTransition, State

S = State

# RFC 9293 figure 5, arc by arc: (from, to, what moves it); all but SEND on a
# passive open (LISTEN to SYN-SENT), a call utcp does not offer.
FIGURE_5 = [
    (S.CLOSED, S.LISTEN, "passive OPEN"),
    (S.CLOSED, S.SYN_SENT, "active OPEN, snd SYN"),
    (S.LISTEN, S.SYN_RECEIVED, "rcv SYN, snd SYN,ACK"),
    (S.LISTEN, S.CLOSED, "CLOSE"),
    (S.SYN_SENT, S.SYN_RECEIVED, "rcv SYN, snd ACK"),
    (S.SYN_SENT, S.ESTABLISHED, "rcv SYN,ACK, snd ACK"),
    (S.SYN_SENT, S.CLOSED, "CLOSE"),
    (S.SYN_RECEIVED, S.ESTABLISHED, "rcv ACK of SYN"),
    (S.SYN_RECEIVED, S.FIN_WAIT_1, "CLOSE, snd FIN"),
    (S.ESTABLISHED, S.FIN_WAIT_1, "CLOSE, snd FIN"),
    (S.ESTABLISHED, S.CLOSE_WAIT, "rcv FIN, snd ACK"),
    (S.FIN_WAIT_1, S.FIN_WAIT_2, "rcv ACK of FIN"),
    (S.FIN_WAIT_1, S.CLOSING, "rcv FIN, snd ACK"),
    (S.FIN_WAIT_2, S.TIME_WAIT, "rcv FIN, snd ACK"),
    (S.CLOSE_WAIT, S.LAST_ACK, "CLOSE, snd FIN"),
    (S.CLOSING, S.TIME_WAIT, "rcv ACK of FIN"),
    (S.LAST_ACK, S.CLOSED, "rcv ACK of FIN"),
    (S.TIME_WAIT, S.CLOSED, "timeout 2MSL"),
]


@pytest.mark.parametrize(("old", "new", "event"), FIGURE_5,
                         ids=[f"{a}->{b}" for a, b, _ in FIGURE_5])
def test_every_arc_of_figure_5_is_allowed(old: State, new: State, event: str) -> None:
    assert new in TRANSITIONS[old], event


def test_the_table_adds_only_what_the_text_allows() -> None:
    # Beyond figure 5: CLOSED from anywhere (reset, abort, timeout), and two arcs
    # of section 3.10's text. (A reset passive open, which the RFC returns to
    # LISTEN, goes to CLOSED: its listener is another object and lives on.)
    extra = {(a, b) for a, nexts in TRANSITIONS.items() for b in nexts} \
        - {(a, b) for a, b, _ in FIGURE_5}
    assert {(a, b) for a, b in extra if b is not S.CLOSED} == {
        (S.SYN_RECEIVED, S.CLOSE_WAIT),  # 3.10.7.4 eighth: a FIN in SYN-RECEIVED
        (S.FIN_WAIT_1, S.TIME_WAIT),  # its FIN's ACK and the peer's FIN together
    }
    assert S.LISTEN not in TRANSITIONS[S.SYN_RECEIVED]
    assert all(S.CLOSED in TRANSITIONS[s] for s in S if s is not S.CLOSED)


def test_every_state_is_reachable_and_can_end() -> None:
    reached = {S.CLOSED}
    todo = [S.CLOSED]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in reached:
                reached.add(nxt)
                todo.append(nxt)
    assert reached == set(S)
    assert set(TRANSITIONS) == set(S)


@pytest.mark.parametrize(("build", "wrong"), [
    (conn_established, S.SYN_SENT),
    (conn_syn_sent, S.FIN_WAIT_2),
    (conn_close_wait, S.FIN_WAIT_1),
    (conn_fin_wait_2, S.CLOSE_WAIT),
    (conn_last_ack, S.TIME_WAIT),
    (conn_time_wait, S.ESTABLISHED),
])
def test_a_transition_outside_the_table_raises_and_leaves_the_state(build, wrong) -> None:
    conn = build()
    before = conn.state
    with pytest.raises(IllegalTransition, match=f"{before} -> {wrong}"):
        conn._set_state(wrong, "a bug", 0.0)
    assert conn.state is before


def test_timeout_reasons_are_an_enum_that_compares_as_text() -> None:
    # Code written against the plain strings goes on working.
    from utcp import TimedOut, TimeoutReason

    assert TimedOut(TimeoutReason.SYN) == TimedOut("syn")
    assert TimeoutReason.FIN_WAIT_2 == "fin-wait-2" and str(TimeoutReason.DATA) == "data"
    assert {r.value for r in TimeoutReason} == {
        "syn", "synack", "data", "fin", "keepalive", "persist", "fin-wait-2", "memory"}


def test_every_timeout_reason_has_its_own_message() -> None:
    from utcp import TimeoutReason
    from utcp.transport import _TIMEOUT_MESSAGES

    assert set(_TIMEOUT_MESSAGES) == set(TimeoutReason)
    assert all(type(key) is TimeoutReason for key in _TIMEOUT_MESSAGES)
    assert len(set(_TIMEOUT_MESSAGES.values())) == len(TimeoutReason)


def test_a_reset_passive_open_ends_closed_and_its_listener_stays() -> None:
    # The arc the table leaves out: RFC 9293 returns such a connection to LISTEN.
    from tcpscript import conn_syn_received

    from utcp.core.wire import RST, Segment

    conn = conn_syn_received()
    conn.receive(Segment(conn.remote_port, conn.local_port, conn.rcv_nxt, 0, RST), 1.0)
    assert conn.state is S.CLOSED
