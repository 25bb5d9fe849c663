"""``utcp bench``'s measurements (utcp.bench), against servers in the same process.

The command line around them is tested in tests/test_cli.py.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket

import pytest
from conftest import HOST, deadline, echo_handler

import utcp
from utcp import bench

pytestmark = pytest.mark.usefixtures("loop_errors")


def three_free_ports(kind: int) -> int:
    """A port P such that P, P + 1 and P + 2 are free (UDP or TCP, by ``kind``).

    Drawn below the ephemeral range, where other tests' TIME-WAIT sockets and
    client ports are; TCP ports are probed with SO_REUSEADDR, as asyncio binds them.
    """
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(10000, 32000)
        socks = []
        try:
            for p in range(port, port + 3):
                s = socket.socket(socket.AF_INET, kind)
                socks.append(s)
                if kind == socket.SOCK_STREAM:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((HOST, p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return port
    raise RuntimeError("no three adjacent free ports")


async def utcp_services() -> tuple[int, list[utcp.Server]]:
    """utcp's echo on P, discard on P + 1 and source on P + 2, as utcp echo-server runs them."""
    port = three_free_ports(socket.SOCK_DGRAM)
    servers = [await utcp.start_server(handler, HOST, port + i)
               for i, handler in enumerate((echo_handler, bench.discard, bench.source))]
    return port, servers


async def kernel_services() -> tuple[int, list[asyncio.Server]]:
    port = three_free_ports(socket.SOCK_STREAM)
    servers = [await asyncio.start_server(handler, HOST, port + i)
               for i, handler in enumerate((echo_handler, bench.discard, bench.source))]
    return port, servers


async def close(servers) -> None:
    for s in servers:
        s.close()
    for s in servers:
        await s.wait_closed()


async def test_connect_counts_what_the_server_accepted() -> None:
    async with deadline(30):
        port, servers = await utcp_services()
        r = await bench.connect(HOST, port, duration=0.5, concurrency=8, progress=False)
        assert r["test"] == "connect" and r["stack"] == "utcp" and r["loop"] == "asyncio"
        assert r["failures"] == {}
        assert r["connections"] > 20
        assert r["connections"] == servers[0].statistics()["accepted"]
        assert r["conn_per_s"] == pytest.approx(r["connections"] / r["seconds"])
        lat = r["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        await close(servers)


async def test_connect_over_the_kernels_tcp() -> None:
    async with deadline(30):
        port, servers = await kernel_services()
        r = await bench.connect(HOST, port, duration=0.3, concurrency=4, message_size=300,
                                kernel=True, progress=False)
        assert r["stack"] == "kernel" and r["failures"] == {} and r["connections"] > 10
        await close(servers)


async def test_connect_counts_failures_by_cause() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    async with deadline(30):
        # Nothing at that port: ICMP port unreachable refuses every attempt.
        r = await bench.connect(HOST, port, duration=0.2, concurrency=2, progress=False)
    assert r["connections"] == 0
    assert set(r["failures"]) == {"refused"} and r["failures"]["refused"] >= 2


@pytest.mark.parametrize("kernel", [False, True], ids=["utcp", "kernel"])
async def test_request_response(kernel) -> None:
    async with deadline(30):
        port, servers = await (kernel_services() if kernel else utcp_services())
        r = await bench.request_response(HOST, port, duration=0.3, kernel=kernel,
                                         progress=False)
        assert r["round_trips"] > 50
        assert r["rtt_per_s"] == pytest.approx(r["round_trips"] / r["seconds"])
        assert r["latency_ms"]["p50"] > 0
        await close(servers)


@pytest.mark.parametrize("kernel", [False, True], ids=["utcp", "kernel"])
@pytest.mark.parametrize("reverse", [False, True], ids=["to-server", "from-server"])
async def test_throughput(kernel, reverse) -> None:
    async with deadline(30):
        port, servers = await (kernel_services() if kernel else utcp_services())
        r = await bench.throughput(HOST, port, duration=0.3, reverse=reverse, kernel=kernel,
                                   progress=False)
        assert r["direction"] == ("from server" if reverse else "to server")
        assert r["bytes"] >= bench.CHUNK
        assert r["mb_per_s"] == pytest.approx(r["bytes"] / 1e6 / r["seconds"])
        await close(servers)


def test_summary_reads_like_a_report() -> None:
    r = {"test": "connect", "stack": "utcp", "loop": "uvloop", "concurrency": 64,
         "message_size": 16, "seconds": 10.0, "connections": 51234,
         "failures": {"timed out": 2, "refused": 1}, "conn_per_s": 5123.4,
         "latency_ms": {"p50": 1.0, "p90": 2.0, "p99": 3.5, "max": 40.0}}
    assert bench.summary(r).splitlines() == [
        "connect (utcp on uvloop, 64 at a time, 16-byte echo):",
        "  51234 connections in 10.0 s = 5123 conn/s",
        "  setup latency: p50 1.00  p90 2.00  p99 3.50  max 40.00 ms",
        "  failures: 1 refused, 2 timed out",
    ]


def test_percentiles_of_nothing_are_none_so_json_stays_json() -> None:
    assert bench.percentiles([]) == {"p50": None, "p90": None, "p99": None, "max": None}
    json.loads(json.dumps(bench.percentiles([]), allow_nan=False))
    assert bench.percentiles([0.001, 0.002, 0.003, 0.004]) == {
        "p50": 3.0, "p90": 4.0, "p99": 4.0, "max": 4.0}
