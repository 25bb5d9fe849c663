"""The endpoint's single timer, which drives every connection's deadlines."""

from __future__ import annotations

import asyncio
import heapq
import types

import pytest
from conftest import HOST, deadline, read_all, send_all

import utcp
from utcp.core.config import Options
from utcp.endpoint import Endpoint

pytestmark = pytest.mark.usefixtures("loop_errors")


async def test_timer_keeps_the_earliest_deadline_when_its_heap_is_compacted(raw_socket) -> None:
    # Superseded heap entries are compacted away now and then, possibly while the
    # timer is running connections' deadlines. The timer must then still wake at
    # the earliest deadline, not at one a minute later.
    silent = await raw_socket()  # answers nothing: SYNs are retransmitted
    ep = await Endpoint.create((HOST, 0))
    try:
        slow = ep.connect((HOST, silent.port), 7, Options(initial_rto=60.0, max_rto=60.0))
        fast = ep.connect((HOST, silent.port), 8, Options(initial_rto=0.05, min_rto=0.05,
                                                          syn_retries=10))
        assert slow.conn.next_deadline() > fast.conn.next_deadline()
        # Superseded entries between the two deadlines, enough that the next push
        # (the fast SYN's retransmission timer) compacts the heap.
        gone = types.SimpleNamespace(_deadline=None)
        t = ep.loop.time()
        for i in range(100):
            heapq.heappush(ep._heap, (t + 1 + i * 0.01, -1 - i, gone))
        async with deadline(10):
            while fast.conn.counters.retransmissions < 3:
                await asyncio.sleep(0.01)
        assert len(ep._heap) < 100
    finally:
        ep.close()
        await ep.wait_closed()


async def test_one_timer_for_all_segments_not_one_per_segment(monkeypatch, make_server) -> None:
    # The connections' deadlines share the endpoint's one loop timer, re-armed only
    # when the earliest deadline moves earlier: a bulk transfer of thousands of
    # segments arms it a handful of times, never once per segment.
    loop = asyncio.get_running_loop()
    armed = 0
    call_at, call_later = loop.call_at, loop.call_later

    def counting_call_at(*args, **kwargs):
        nonlocal armed
        armed += 1
        return call_at(*args, **kwargs)

    def counting_call_later(*args, **kwargs):
        nonlocal armed
        armed += 1
        return call_later(*args, **kwargs)

    server = await make_server()
    monkeypatch.setattr(loop, "call_at", counting_call_at)
    monkeypatch.setattr(loop, "call_later", counting_call_later)
    async with deadline(30):
        reader, writer = await utcp.open_connection(HOST, server.port)
        data = bytes(5_000_000)
        _, echoed = await asyncio.gather(send_all(writer, data), read_all(reader))
        assert echoed == data
        writer.close()
        await writer.wait_closed()
    segments = server.statistics()["segments_in"] + server.statistics()["segments_out"]
    assert segments > 5000
    assert armed < segments / 100, (armed, segments)
