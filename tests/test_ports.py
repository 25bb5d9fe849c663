"""Local port allocation for client connections sharing one socket."""

from __future__ import annotations

import asyncio

import pytest
from conftest import HOST, echo_handler, echo_once

import utcp
from utcp import endpoint


@pytest.fixture
def three_ports(monkeypatch: pytest.MonkeyPatch) -> range:
    ports = range(40100, 40103)
    monkeypatch.setattr(endpoint, "EPHEMERAL_PORTS", ports)
    return ports


async def test_ports_in_time_wait_are_reused_only_after_a_second(three_ports: range) -> None:
    async with asyncio.timeout(20):
        server = await utcp.start_server(echo_handler, HOST, 0)
        used = set()
        for _ in range(3):  # the client closes first: each 4-tuple enters TIME-WAIT
            reader, writer = await utcp.open_connection(HOST, server.port)
            used.add(writer.get_extra_info("utcp")["local_port"])
            writer.write(b"x")
            assert await reader.readexactly(1) == b"x"
            writer.close()
            await writer.wait_closed()
            assert await reader.read() == b""
        assert used == set(three_ports)
        ep = writer.transport.endpoint
        while ep.statistics()["connections"] != {"TIME-WAIT": 3}:
            await asyncio.sleep(0.01)
        with pytest.raises(OSError, match="all 3 are in use or in TIME-WAIT"):
            await utcp.open_connection(HOST, server.port)
        await asyncio.sleep(1.05)  # Linux's tcp_tw_reuse delay
        assert await echo_once(server.port, b"reused") == b"reused"
        server.close()
        await server.wait_closed()


async def test_concurrent_connections_get_distinct_ports() -> None:
    async with asyncio.timeout(20):
        server = await utcp.start_server(echo_handler, HOST, 0)
        pairs = await asyncio.gather(*(utcp.open_connection(HOST, server.port)
                                       for _ in range(50)))
        ports = {w.get_extra_info("utcp")["local_port"] for _, w in pairs}
        assert len(ports) == 50
        assert all(p in endpoint.EPHEMERAL_PORTS for p in ports)
        for _, w in pairs:
            w.close()
        server.close()
        await server.wait_closed()
