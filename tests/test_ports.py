"""Local ports of client connections sharing one socket, over real sockets.

How the stack chooses ports and when it reuses them is tested on virtual time
in tests/test_stack.py."""

from __future__ import annotations

import asyncio
import gc
import socket
import weakref

import pytest
from conftest import HOST, deadline, echo_handler, echo_once, wait_until

import utcp
from utcp import protocols
from utcp.core.stack import EPHEMERAL_PORTS, Stack
from utcp.endpoint import Endpoint


async def test_concurrent_connections_get_distinct_ports() -> None:
    async with deadline(20):
        server = await utcp.start_server(echo_handler, HOST, 0)
        pairs = await asyncio.gather(*(utcp.open_connection(HOST, server.port)
                                       for _ in range(50)))
        ports = {w.get_extra_info("utcp")["local_port"] for _, w in pairs}
        assert len(ports) == 50
        assert all(p in EPHEMERAL_PORTS for p in ports)
        for _, w in pairs:
            w.close()
        server.close()
        await server.wait_closed()


async def test_concurrent_first_connections_share_one_endpoint() -> None:
    async with deadline(20):
        server = await utcp.start_server(echo_handler, HOST, 0)
        loop = asyncio.get_running_loop()
        protocols._shared.pop(loop, None)  # as if this loop had never connected
        pairs = await asyncio.gather(*(utcp.open_connection(HOST, server.port)
                                       for _ in range(30)))
        assert len({id(w.transport.endpoint) for _, w in pairs}) == 1
        for _, w in pairs:
            w.close()
        server.close()
        await server.wait_closed()


def test_finished_loops_are_not_kept_alive() -> None:
    async def one_connection() -> None:
        server = await utcp.start_server(echo_handler, HOST, 0, msl=0.01)
        assert await echo_once(server.port, b"x", msl=0.01) == b"x"
        server.close()

    def run_and_close() -> weakref.ref[asyncio.AbstractEventLoop]:
        # What asyncio.run() does: run, cancel what is left (the endpoints' keeper
        # tasks close their sockets), close the loop.
        loop = asyncio.new_event_loop()
        loop.run_until_complete(one_connection())
        tasks = asyncio.all_tasks(loop)
        for t in tasks:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.close()
        return weakref.ref(loop)

    refs = [run_and_close() for _ in range(3)]
    gc.collect()
    assert [r() for r in refs] == [None, None, None]


async def test_local_addr_binds_a_socket_of_its_own() -> None:
    async with deadline(20):
        server = await utcp.start_server(echo_handler, HOST, 0)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
        reader, writer = await utcp.open_connection(HOST, server.port, local_addr=(HOST, port),
                                                    msl=0.01)
        assert writer.get_extra_info("sockname") == (HOST, port)
        ep = writer.transport.endpoint
        writer.write(b"mine")
        assert await reader.readexactly(4) == b"mine"
        writer.close()
        await writer.wait_closed()
        assert await reader.read() == b""
        await ep.wait_closed()  # the dedicated socket closes with its last connection
        server.close()
        await server.wait_closed()


async def _respond_and_close(reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
    await reader.read()  # the whole request, to EOF
    writer.write(b"response")
    writer.close()
    await writer.wait_closed()


async def test_own_socket_keeps_an_unread_reply_through_time_wait() -> None:
    # We half-close first, so the server's reply and FIN take us to TIME-WAIT
    # before we read: the reply must still be there when we do.
    async with deadline(10):
        server = await utcp.start_server(_respond_and_close, HOST, 0)
        reader, writer = await utcp.open_connection(HOST, server.port, local_addr=(HOST, 0),
                                                    msl=0.05)
        writer.write(b"request")
        writer.write_eof()
        ep = writer.transport.endpoint
        while ep.statistics()["connections"] != {"TIME-WAIT": 1}:
            await asyncio.sleep(0.005)
        assert await reader.read() == b"response"
        writer.close()
        await writer.wait_closed()
        await ep.wait_closed()  # once TIME-WAIT is over
        server.close()
        await server.wait_closed()


async def test_own_socket_stays_through_time_wait_to_ack_a_repeated_fin() -> None:
    # Our last ACK is lost: the server repeats its FIN, and our socket, still open
    # through TIME-WAIT, acknowledges it, so the server's close completes.
    server_closed: asyncio.Future[BaseException | None] = (
        asyncio.get_running_loop().create_future())

    async def respond_and_close(reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        try:
            await _respond_and_close(reader, writer)
            server_closed.set_result(None)
        except OSError as exc:
            server_closed.set_result(exc)

    async with deadline(10):
        server = await utcp.start_server(respond_and_close, HOST, 0, data_retries=3,
                                         min_rto=0.05, initial_rto=0.1)
        reader, writer = await utcp.open_connection(HOST, server.port, local_addr=(HOST, 0),
                                                    msl=0.5)
        tr = writer.transport
        udp = tr.endpoint.transport
        real_sendmany = udp.sendmany
        lost = []

        def lose_the_first_ack_in_time_wait(datagrams: list) -> None:
            if str(tr.conn.state) == "TIME-WAIT" and not lost:
                lost.append(datagrams.pop(0))
            real_sendmany(datagrams)

        udp.sendmany = lose_the_first_ack_in_time_wait
        writer.write(b"request")
        writer.write_eof()
        assert await reader.read() == b"response"
        writer.close()
        await writer.wait_closed()
        assert await server_closed is None
        assert lost and server.statistics()["retransmissions"] >= 1
        server.close()
        await server.wait_closed()


async def test_connections_left_open_when_the_loop_ends_are_reset() -> None:
    # A connection cannot outlive its loop: its peer learns at once, by RST.
    async with deadline(20):
        got: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.read()
                got.set_result(None)
            except ConnectionResetError as exc:
                got.set_result(exc)

        server = await utcp.start_server(handler, HOST, 0)
        # The program keeps its writer until the end (a writer dropped earlier is
        # closed by its __del__, which sends FIN: an orderly close, not this case).
        kept: list[asyncio.StreamWriter] = []

        async def client() -> None:
            reader, writer = await utcp.open_connection(HOST, server.port)
            kept.append(writer)
            writer.write(b"still here")
            await writer.drain()

        await asyncio.to_thread(asyncio.run, client())  # a whole program that just ends
        assert isinstance(await got, ConnectionResetError)
        assert kept[0].transport.is_closing()
        server.close()
        await server.wait_closed()


async def test_one_ephemeral_port_serves_connection_after_connection() -> None:
    # The client closes first, so each connection leaves TIME-WAIT on the one port
    # it may use: the next connect must reuse that 4-tuple (timestamps make it safe)
    # rather than fail with "no free local port". Without reuse it fails at once.
    async with deadline(20):
        server = await utcp.start_server(echo_handler, HOST, 0)
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
        for delay, reconnects in ((0.0, True), (None, False)):
            ep = await Endpoint.create((HOST, 0), stack=Stack(
                ephemeral_ports=range(port, port + 1), tw_reuse_delay=delay))
            protocols._shared.setdefault(loop, {})[socket.AF_INET] = ep
            try:
                for i in range(3):
                    if i and not reconnects:
                        with pytest.raises(OSError, match="no free local port"):
                            await utcp.open_connection(HOST, server.port)
                        break
                    reader, writer = await utcp.open_connection(HOST, server.port)
                    assert writer.get_extra_info("utcp")["local_port"] == port
                    writer.write(b"ping %d" % i)
                    assert await reader.readexactly(6) == b"ping %d" % i
                    writer.close()
                    await writer.wait_closed()
                    assert await reader.read() == b""
                    await wait_until(lambda ep=ep: ep.statistics()["connections"]
                                     == {"TIME-WAIT": 1})
            finally:
                protocols._shared[loop].pop(socket.AF_INET, None)
                ep.close()
        server.close()
        await server.wait_closed()
