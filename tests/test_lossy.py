"""utcp through an impaired link: a UDP relay that delays, drops, reorders,
duplicates and corrupts datagrams (seeded, so each run sees the same impairments).
"""

from __future__ import annotations

import asyncio
import random

import pytest
from conftest import HOST, deadline, read_all, send_all, sha, wait_until
from relay import Impairment, Relay

import utcp

pytestmark = pytest.mark.usefixtures("loop_errors")

MB = 1024 * 1024
# Short timers so that recovering from losses takes a fraction of a second.
# (A short MSL too: both ends may close at once and both wait in TIME-WAIT.)
FAST = dict(min_rto=0.02, initial_rto=0.05, max_rto=0.5, delayed_ack=0.01, msl=0.05)


@pytest.mark.parametrize("loss", [0.05, 0.15])
async def test_a_megabyte_each_way_through_a_lossy_link(loss, make_server) -> None:
    rng = random.Random(int(loss * 100))
    up_data, down_data = rng.randbytes(MB), rng.randbytes(MB)
    got_up: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handler(reader, writer):
        try:
            _, received = await asyncio.gather(send_all(writer, down_data, 16384),
                                               read_all(reader))
            got_up.set_result(received)
        except Exception as exc:
            got_up.set_exception(exc)
        finally:
            writer.close()

    link = Impairment(delay=0.002, jitter=0.002, loss=loss, duplicate=0.02, reorder=0.05,
                      reorder_delay=0.004, corrupt=0.01)
    server = await make_server(handler, **FAST)
    async with Relay((HOST, server.port), upstream=link, downstream=link, seed=7) as relay:
        async with deadline(40):
            reader, writer = await utcp.open_connection(HOST, relay.port, **FAST)
            _, got_down = await asyncio.gather(send_all(writer, up_data, 16384),
                                               read_all(reader))
            writer.close()
            assert sha(await got_up) == sha(up_data)
            assert sha(got_down) == sha(down_data)
            client_ep = writer.transport.endpoint
            # Let the closing handshake finish and the last delayed datagrams land.
            await wait_until(lambda: server.statistics()["connections"] == {}, 20)
            await wait_until(lambda: relay.idle, 5)
            await asyncio.sleep(0.05)

    for stats in (relay.up, relay.down):
        assert stats.dropped > 0 and stats.duplicated > 0 and stats.reordered > 0
        assert stats.corrupted > 0
    assert relay.strangers == 0
    sstats, cstats = server.statistics(), client_ep.statistics()
    # Each corrupted copy (one byte changed) failed the checksum at the endpoint it
    # reached and was counted there. (A FIN retransmitted after the peer's short
    # TIME-WAIT ended may also draw a RST, counted as 'no-connection'.)
    assert sstats["drops"]["bad-checksum"] == relay.up.corrupted
    assert cstats["drops"]["bad-checksum"] == relay.down.corrupted
    assert "malformed" not in sstats["drops"] and "malformed" not in cstats["drops"]
    # The losses were repaired by retransmission, on both sides.
    assert sstats["retransmissions"] > 0 and cstats["retransmissions"] > 0
    assert sstats["connection_totals"]["duplicates"] > 0


async def test_relay_without_impairments_is_transparent(make_server) -> None:
    server = await make_server()
    async with Relay((HOST, server.port)) as relay, deadline(10):
        reader, writer = await utcp.open_connection(HOST, relay.port)
        data = random.Random(1).randbytes(100_000)
        _, echoed = await asyncio.gather(send_all(writer, data), read_all(reader))
        writer.close()
        assert echoed == data
        info = writer.get_extra_info("utcp")
        assert info["retransmissions"] == 0 and info["remote_port"] == relay.port
    assert relay.up.dropped == relay.down.dropped == relay.up.corrupted == 0
    assert relay.up.delivered == relay.up.received > 0
    assert server.statistics()["drops"] == {}
