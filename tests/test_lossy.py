"""utcp through an impaired link: the emulator's UDP relay delays, drops, reorders,
duplicates and corrupts datagrams (seeded, so each run sees the same impairments).
"""

from __future__ import annotations

import asyncio
import random

import pytest
from conftest import HOST, deadline, read_all, send_all, sha, wait_until

import utcp
from utcp.emulator import ImpairedPath, Impairments, Relay

pytestmark = pytest.mark.usefixtures("loop_errors")

MB = 1024 * 1024
# Short timers so that recovering from losses takes a fraction of a second.
# (A short MSL too: both ends may close at once and both wait in TIME-WAIT.)
FAST = dict(min_rto=0.02, initial_rto=0.05, max_rto=0.5, delayed_ack=0.01, msl=0.05)


def count_corrupted_copies(path: ImpairedPath) -> list[int]:
    """A one-item list that counts the corrupted copies ``path`` lets through: its
    counters count corrupted datagrams, and a duplicated one arrives corrupted twice."""
    count = [0]
    send = path.send

    def counting(data: bytes, now: float) -> list[tuple[float, bytes]]:
        out = send(data, now)
        count[0] += sum(copy != data for _, copy in out)
        return out

    path.send = counting  # type: ignore[method-assign]
    return count


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

    link = Impairments(delay=0.002, jitter=0.002, loss=loss, duplicate=0.02, reorder=0.05,
                       reorder_delay=0.004, corrupt=0.01)
    server = await make_server(handler, **FAST)
    async with Relay((HOST, server.port), up=link, down=link, seed=7) as relay:
        corrupted_up = count_corrupted_copies(relay.up)
        corrupted_down = count_corrupted_copies(relay.down)
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

    for path in (relay.up, relay.down):
        counts = path.counters
        assert counts["lost"] > 0 and counts["duplicated"] > 0 and counts["reordered"] > 0
        assert counts["corrupted"] > 0
    assert relay.counters["strangers"] == 0 and relay.counters["clients"] == 1
    sstats, cstats = server.statistics(), client_ep.statistics()
    # Each corrupted copy (one bit flipped) failed the checksum at the endpoint it
    # reached and was counted there. (A FIN retransmitted after the peer's short
    # TIME-WAIT ended may also draw a RST, counted as 'no-connection'.)
    assert sstats["drops"]["bad-checksum"] == corrupted_up[0] >= relay.up.counters["corrupted"]
    assert cstats["drops"]["bad-checksum"] == corrupted_down[0] \
        >= relay.down.counters["corrupted"]
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
    up, down = relay.statistics()["up"], relay.statistics()["down"]
    assert up["lost"] == down["lost"] == up["corrupted"] == down["corrupted"] == 0
    assert up["delivered"] == up["sent"] > 0 and down["delivered"] == down["sent"] > 0
    assert server.statistics()["drops"] == {}
