"""The endpoint's single timer, which drives every connection's deadlines."""

from __future__ import annotations

import asyncio
import heapq
import types

import pytest
from conftest import HOST, deadline

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
