"""utcp's asyncio streams over real UDP sockets on 127.0.0.1.

Each test starts what it needs, uses short timers, closes what it opens and is
bounded in time, so a hang is a failure, not a stuck run.
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
from collections import Counter

import pytest
from conftest import (
    HOST,
    deadline,
    echo_handler,
    echo_once,
    read_all,
    run_on_loop,
    send_all,
    sha,
    wait_until,
)

import utcp
from utcp.core.wire import ACK, FIN, MSS, PSH, RST, SYN, BadChecksum, Segment, decode, encode
from utcp.datagram import BatchedDatagramTransport, gso_supported, open_datagram_socket
from utcp.endpoint import Endpoint

try:
    import uvloop
except ImportError:  # not available on Windows
    uvloop = None

pytestmark = pytest.mark.usefixtures("loop_errors")

MB = 1024 * 1024


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def client_endpoint(writer: asyncio.StreamWriter):
    return writer.transport.endpoint


def state(writer: asyncio.StreamWriter) -> str:
    return writer.get_extra_info("utcp")["state"]


# ------------------------------------------------------------ echo scenarios
# Plain coroutines, so the same scenarios run on asyncio's loop and on uvloop.


async def wildcard_server_answers_from_the_chosen_address() -> None:
    # The server's socket is bound to 0.0.0.0 and the client sends to 127.0.0.2.
    # Left to itself the kernel would answer from 127.0.0.1 (its choice for that
    # destination), which the client cannot match to its connection: like TCP,
    # the server must answer from the address the SYN was sent to. Each side's
    # sockname is then the concrete address, as the kernel's would be.
    seen = []

    async def handler(reader, writer):
        seen.append(writer.get_extra_info("sockname"))
        writer.close()

    server = await utcp.start_server(handler, "0.0.0.0", 0)
    try:
        reader, writer = await utcp.open_connection("127.0.0.2", server.port)
        assert writer.get_extra_info("sockname")[0] == "127.0.0.1"  # the kernel's pick
        assert writer.get_extra_info("peername") == ("127.0.0.2", server.port)
        assert await reader.read() == b""
        assert seen == [("127.0.0.2", server.port)]
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()


async def echo_one_byte() -> None:
    server = await utcp.start_server(echo_handler, HOST, 0)
    try:
        reader, writer = await utcp.open_connection(HOST, server.port)
        writer.write(b"x")
        await writer.drain()
        assert await reader.readexactly(1) == b"x"
        writer.write_eof()
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()


async def echo_ten_megabytes() -> None:
    data = random.Random(10).randbytes(10 * MB)
    server = await utcp.start_server(echo_handler, HOST, 0)
    try:
        reader, writer = await utcp.open_connection(HOST, server.port)
        # Writer and reader run together: the echo cannot wait for the whole upload.
        _, echoed = await asyncio.gather(send_all(writer, data), read_all(reader))
        assert len(echoed) == len(data)
        assert sha(echoed) == sha(data)
        info = writer.get_extra_info("utcp")
        assert info["bytes_out"] == info["bytes_in"] == len(data)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def echo_concurrent(n: int, **server_options) -> None:
    server = await utcp.start_server(echo_handler, HOST, 0, **server_options)
    try:
        messages = [f"message {i} ".encode() * (1 + i % 7) for i in range(n)]
        echoed = await asyncio.gather(*(echo_once(server.port, m) for m in messages))
        assert echoed == messages
    finally:
        server.close()
        await server.wait_closed()


async def test_echo_one_byte() -> None:
    async with deadline(10):
        await echo_one_byte()


async def test_echo_ten_megabytes() -> None:
    async with deadline(60):
        await echo_ten_megabytes()


async def test_200_concurrent_connections() -> None:
    async with deadline(30):
        # All 200 SYNs arrive in one burst: a backlog that holds them all.
        await echo_concurrent(200, backlog=256)


async def test_200_concurrent_connections_at_the_default_backlog() -> None:
    async with deadline(30):
        # Half the burst overflows the default backlog (100); those SYNs are retried.
        await echo_concurrent(200)


async def test_stream_methods_behave_as_asyncio_documents(make_server) -> None:
    server = await make_server()
    async with deadline(10):
        reader, writer = await utcp.open_connection(HOST, server.port)
        assert writer.get_extra_info("peername") == (HOST, server.port)
        host, port = writer.get_extra_info("sockname")
        assert port == client_endpoint(writer).local_address[1] and port > 0
        writer.writelines([b"one\n", b"two;", b"three", b"!"])
        assert await reader.readline() == b"one\n"
        assert await reader.readuntil(b";") == b"two;"
        assert await reader.readexactly(6) == b"three!"
        writer.write(b"tail")
        writer.write_eof()
        with pytest.raises(asyncio.IncompleteReadError) as short:
            await reader.readexactly(10)  # the server echoes 4 bytes, then closes
        assert short.value.partial == b"tail"
        assert reader.at_eof()
        assert not writer.is_closing()
        writer.close()
        assert writer.is_closing()
        await writer.wait_closed()


async def test_data_timeout_reaches_a_blocked_drain(make_server) -> None:
    async def read_nothing(reader, writer):
        await asyncio.sleep(30)

    server = await make_server(read_nothing)
    async with deadline(10):
        reader, writer = await utcp.open_connection(HOST, server.port, data_retries=2,
                                                    min_rto=0.05, initial_rto=0.05)
        # Far above the high-water mark and what the reader's buffers take, were
        # they grown to rcv_buf_max: drain() blocks.
        writer.write(b"x" * (8 * MB))
        drain = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0.02)
        assert not drain.done()
        server._endpoint.close()  # the server's host goes silent
        with pytest.raises(TimeoutError, match="not acknowledged") as timed_out:
            await drain
        assert timed_out.value.errno == errno.ETIMEDOUT
        with pytest.raises(TimeoutError):
            await reader.read()
        writer.close()


@pytest.mark.parametrize("syn_cookies", [True, False], ids=["cookies", "no-cookies"])
async def test_concurrent_connections_beyond_backlog_complete(make_server,
                                                              syn_cookies: bool) -> None:
    # 50 SYNs at once into a backlog of 10: the rest get in through SYN cookies,
    # or, without them, are dropped and retried.
    server = await make_server(backlog=10, syn_cookies=syn_cookies)
    messages = [b"%d" % i * 100 for i in range(50)]
    async with deadline(20):
        echoed = await asyncio.gather(*(echo_once(server.port, m, initial_rto=0.05,
                                                  min_rto=0.05) for m in messages))
    assert echoed == messages
    stats = server.statistics()
    if syn_cookies:
        assert stats["syncookies"]["accepted"] > 0
        assert "backlog-full" not in stats["drops"]
    else:
        assert stats["drops"]["backlog-full"] > 0


# ------------------------------------------------------------ uvloop


@pytest.mark.parametrize("scenario", [
    pytest.param(echo_one_byte, id="one-byte"),
    pytest.param(echo_ten_megabytes, id="ten-megabytes"),
    pytest.param(lambda: echo_concurrent(200, backlog=256), id="200-concurrent"),
    pytest.param(wildcard_server_answers_from_the_chosen_address, id="wildcard-server"),
])
@pytest.mark.skipif(uvloop is None, reason="uvloop is not installed")
def test_echo_on_uvloop(scenario) -> None:
    async def bounded() -> None:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        async with deadline(60):
            await scenario()

    run_on_loop(uvloop.new_event_loop, bounded())


@pytest.mark.skipif(uvloop is None, reason="uvloop is not installed")
def test_shared_endpoint_keeps_working_on_uvloop_after_a_syn_to_nowhere() -> None:
    # The host answers a SYN to a port where nothing is bound with ICMP port
    # unreachable. libuv stops polling a socket that reports an error, so on uvloop
    # the endpoint does not ask for ICMP errors (the SYN times out instead): the
    # shared client endpoint must go on carrying the next connection.
    async def scenario() -> None:
        async with deadline(10):
            server = await utcp.start_server(echo_handler, HOST, 0)
            try:
                assert await echo_once(server.port, b"before") == b"before"
                with pytest.raises((TimeoutError, ConnectionRefusedError)):
                    await utcp.open_connection(HOST, _unbound_udp_port(socket.AF_INET, HOST),
                                               syn_retries=1, initial_rto=0.05, min_rto=0.05)
                assert await echo_once(server.port, b"after") == b"after"
            finally:
                server.close()
                await server.wait_closed()

    run_on_loop(uvloop.new_event_loop, scenario())


@pytest.mark.skipif(uvloop is None, reason="uvloop is not installed")
def test_a_client_on_uvloop_keeps_uvloops_transport(monkeypatch) -> None:
    # Learning each datagram's local address takes recvmsg, which uvloop's own
    # datagram transport does not offer; reading a client's socket in Python
    # instead costs more than it is worth there (see the README): the client's
    # connections are matched by peer and ports, as documented. (Unless the
    # kernel offers UDP GSO or GRO, switched off here: see the next test.)
    monkeypatch.setenv("UTCP_GSO", "0")
    monkeypatch.setenv("UTCP_GRO", "0")

    async def scenario() -> None:
        async with deadline(10):
            server = await utcp.start_server(echo_handler, HOST, 0)
            try:
                reader, writer = await utcp.open_connection(HOST, server.port)
                assert not isinstance(client_endpoint(writer).transport,
                                      BatchedDatagramTransport)
                assert writer.transport.conn.via is None
                assert writer.get_extra_info("sockname")[0] == HOST  # (from the routes)
                writer.close()
                await writer.wait_closed()
            finally:
                server.close()
                await server.wait_closed()

    run_on_loop(uvloop.new_event_loop, scenario())


@pytest.mark.skipif(uvloop is None, reason="uvloop is not installed")
def test_a_client_on_uvloop_sends_with_gso_where_the_kernel_has_it() -> None:
    # One system call for many segments beats uvloop's one call each, in C.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with probe:
        if not gso_supported(probe):
            pytest.skip("the kernel has no UDP GSO")

    async def scenario() -> None:
        async with deadline(10):
            server = await utcp.start_server(echo_handler, HOST, 0)
            try:
                data = random.randbytes(300_000)
                reader, writer = await utcp.open_connection(HOST, server.port)
                transport = client_endpoint(writer).transport
                assert isinstance(transport, BatchedDatagramTransport) and transport.gso
                assert not transport.pktinfo  # (as with uvloop's own transport)
                _, echoed = await asyncio.gather(send_all(writer, data), read_all(reader))
                assert echoed == data
                writer.close()
                await writer.wait_closed()
            finally:
                server.close()
                await server.wait_closed()

    run_on_loop(uvloop.new_event_loop, scenario())


# ------------------------------------------------------------ half-close


async def test_half_close_server_keeps_sending_after_eof(make_server) -> None:
    server_states: list[str] = []
    chunks = [bytes([i]) * (1000 * (i + 1)) for i in range(5)]
    client_read = asyncio.Event()

    async def handler(reader, writer):
        try:
            assert await reader.read() == b"request"  # to EOF
            server_states.append(state(writer))
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
                client_read.clear()
                await client_read.wait()  # the client looks at its state meanwhile
                server_states.append(state(writer))
        finally:
            writer.close()
            server_states.append(state(writer))

    server = await make_server(handler)
    async with deadline(10):
        reader, writer = await utcp.open_connection(HOST, server.port)
        writer.write(b"request")
        writer.write_eof()
        assert writer.can_write_eof()
        with pytest.raises(RuntimeError):
            writer.write(b"more")
        client_states = []
        for chunk in chunks:
            assert await reader.readexactly(len(chunk)) == chunk
            client_states.append(state(writer))
            client_read.set()
        assert await reader.read() == b""
        assert reader.at_eof()
        client_states.append(state(writer))
        writer.close()
    # Our FIN was acknowledged while the server went on sending: FIN-WAIT-2. The
    # server's FIN then took us to TIME-WAIT.
    assert client_states == ["FIN-WAIT-2"] * len(chunks) + ["TIME-WAIT"]
    assert server_states[:-1] == ["CLOSE-WAIT"] * (len(chunks) + 1)
    assert server_states[-1] in ("LAST-ACK", "CLOSED")


# ------------------------------------------------------------ refused, RST


async def test_connection_refused_after_server_close(make_server) -> None:
    server = await make_server()
    async with deadline(10):
        reader, writer = await utcp.open_connection(HOST, server.port)
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"  # the server has it too
        server.close()  # the endpoint's socket lives on for the open connection
        assert not server.is_serving()
        with pytest.raises(ConnectionRefusedError) as refused:
            await utcp.open_connection(HOST, server.port)
        assert refused.value.errno == errno.ECONNREFUSED  # as the kernel's error carries
        stats = server.statistics()
        assert stats["resets_sent"] == 1
        assert stats["drops"]["no-connection"] == 1
        assert stats["listeners"] == []
        # The refused attempt left nothing behind on the client's endpoint.
        assert client_endpoint(writer).statistics()["connections"] == {"ESTABLISHED": 1}
        # The connection accepted before close() still works.
        writer.write(b"still here")
        assert await reader.readexactly(10) == b"still here"
        writer.write_eof()
        assert await reader.read() == b""
        writer.close()
        await server.wait_closed()


def _unbound_udp_port(family: int, host: str) -> int:
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("family, host", [
    pytest.param(socket.AF_INET, HOST, id="ipv4"),
    pytest.param(socket.AF_INET6, "::1", id="ipv6", marks=pytest.mark.skipif(
        not _ipv6_loopback(), reason="no IPv6 loopback")),
])
async def test_refused_when_no_socket_is_bound_at_the_port(family, host) -> None:
    # No utcp endpoint, no UDP socket at all: the host answers our SYN's datagram
    # with ICMP port unreachable, which refuses the connection at once, as it does
    # for the kernel's TCP (rather than after the SYN retries, about two minutes).
    port = _unbound_udp_port(family, host)
    async with deadline(5):
        with pytest.raises(ConnectionRefusedError) as refused:
            await utcp.open_connection(host, port)
    assert refused.value.errno == errno.ECONNREFUSED


async def test_an_icmp_error_costs_no_other_peer_its_datagram() -> None:
    # A pending ICMP error fails the socket's next send, whatever its destination:
    # that datagram, to a peer that is alive, still leaves.
    ep = await Endpoint.create((HOST, 0))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind((HOST, 0))
            peer.settimeout(5)
            # Loopback answers within the first send: the error is pending at the second.
            ep.transport.sendto(b"x" * 20, (HOST, _unbound_udp_port(socket.AF_INET, HOST)))
            ep.transport.sendto(b"for the live peer", peer.getsockname())
            assert peer.recv(100) == b"for the live peer"
        assert ep.statistics()["drops"]["icmp-port-unreachable"] == 1
    finally:
        ep.close()


@pytest.mark.parametrize("via", [False, True], ids=["sendmany", "sendto_from"])
async def test_an_icmp_error_met_by_a_batch_send_is_read_at_once(via: bool) -> None:
    # As above, through sendmany (or sendto_from): the failed send took the error's
    # errno off the socket and the retry succeeded, but the error was left queued,
    # unread: lost, and the socket, never drained of it, kept waking the loop.
    ep = await Endpoint.create(("0.0.0.0" if via else HOST, 0))
    transport = ep.transport
    reads = 0
    read_ready = transport._read_ready_pktinfo if transport.pktinfo else transport._read_ready

    def counted() -> None:
        nonlocal reads
        reads += 1
        read_ready()

    loop = asyncio.get_running_loop()
    loop.remove_reader(transport._sock.fileno())
    loop.add_reader(transport._sock.fileno(), counted)
    local = None
    if via:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"hello", (HOST, ep.local_address[1]))
            await wait_until(lambda: ep.statistics()["segments_in"] == 1, 5)
        local = transport._locals.popitem()[1]  # the address that reached it
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind((HOST, 0))
            peer.settimeout(5)
            gone = (HOST, _unbound_udp_port(socket.AF_INET, HOST))
            transport.sendmany([(b"x" * 20, gone, None)])
            if via:
                transport.sendto_from(b"for the live peer", peer.getsockname(), local)
            else:
                transport.sendmany([(b"for the live peer", peer.getsockname(), None)])
            assert peer.recv(100) == b"for the live peer"
        assert ep.statistics()["drops"]["icmp-port-unreachable"] == 1
        await asyncio.sleep(0.05)
        assert reads <= 2
    finally:
        ep.close()


async def test_datagrams_to_one_local_address_share_its_local_address() -> None:
    # A wildcard socket that learns where each datagram arrived makes one
    # LocalAddress per address (and interface), not one per datagram: each
    # datagram's control message is looked up, not decoded again.
    loop = asyncio.get_running_loop()
    got: list[tuple] = []

    class Collect(asyncio.DatagramProtocol):
        def datagrams_received(self, batch: list[tuple]) -> None:
            got.extend(batch)

    transport = await open_datagram_socket(loop, Collect(), ("0.0.0.0", 0), pktinfo=True)
    try:
        port = transport.get_extra_info("sockname")[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            for host in ("127.0.0.1", "127.0.0.2", "127.0.0.1"):
                peer.sendto(b"x", (host, port))
            await wait_until(lambda: len(got) == 3, 5)
        first, second, third = (local for _, _, local in got)
        assert (first.host, second.host) == ("127.0.0.1", "127.0.0.2")
        assert third is first
    finally:
        transport.close()


async def test_a_wildcard_client_takes_no_segment_sent_to_another_local_address(
        make_server) -> None:
    # The client's shared socket is bound to 0.0.0.0 and its connection made at
    # 127.0.0.1, where the server's SYN-ACK came. A segment with the right ports,
    # peer and sequence numbers, sent to 127.0.0.2 (loopback answers there too),
    # is not that connection's, as the kernel matches the full 4-tuple: dropped
    # and counted, and the connection carries on.
    server = await make_server()
    async with deadline(10):
        reader, writer = await utcp.open_connection(HOST, server.port, timestamps=False)
        ep = client_endpoint(writer)
        assert ep.local_address[0] == "0.0.0.0"
        conn = writer.transport.conn
        assert conn.via.host == HOST and writer.get_extra_info("sockname")[0] == HOST
        forged = encode(Segment(server.port, conn.local_port, conn.rcv_nxt, conn.snd_nxt,
                                ACK | PSH, 65535, payload=b"forged"))
        # It comes from the server's own socket, so from its UDP address too.
        server._endpoint.transport.sendto(forged, ("127.0.0.2", ep.local_address[1]))
        await wait_until(lambda: ep.statistics()["drops"].get("wrong-local-address") == 1)
        writer.write(b"still here")
        assert await reader.readexactly(10) == b"still here"
        # The same forgery at the connection's own address is taken: it was only
        # the address that kept it out.
        forged = encode(Segment(server.port, conn.local_port, conn.rcv_nxt, conn.snd_nxt,
                                ACK | PSH, 65535, payload=b"forged"))
        server._endpoint.transport.sendto(forged, (HOST, ep.local_address[1]))
        assert await reader.readexactly(6) == b"forged"
        writer.transport.abort()


def _resolving_to(monkeypatch: pytest.MonkeyPatch, *hosts: str) -> None:
    """Make the running loop resolve the name ``utcp.test`` to ``hosts``, in order."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(host, port, **kwargs):
        if host != "utcp.test":
            return await real(host, port, **kwargs)
        if kwargs.get("family", socket.AF_UNSPEC) not in (socket.AF_UNSPEC, socket.AF_INET):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_DGRAM, 17, "", (h, port)) for h in hosts]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


async def test_each_resolved_address_is_tried_in_turn(make_server, monkeypatch) -> None:
    server = await make_server()
    # Nothing is bound at 127.0.0.2 (loopback too): refused there, then connected.
    _resolving_to(monkeypatch, "127.0.0.2", HOST)
    async with deadline(5):
        reader, writer = await utcp.open_connection("utcp.test", server.port)
        assert writer.get_extra_info("peername") == (HOST, server.port)
        writer.write(b"second address")
        assert await reader.readexactly(14) == b"second address"
        writer.close()
        await writer.wait_closed()


async def test_every_resolved_address_failing_names_each(monkeypatch) -> None:
    port = _unbound_udp_port(socket.AF_INET, HOST)
    _resolving_to(monkeypatch, "127.0.0.2", "127.0.0.3")
    async with deadline(5):
        with pytest.raises(OSError, match=r"multiple exceptions: .*127\.0\.0\.2.*127\.0\.0\.3"):
            await utcp.open_connection("utcp.test", port)
    _resolving_to(monkeypatch, "127.0.0.2")
    async with deadline(5):
        with pytest.raises(ConnectionRefusedError):
            await utcp.open_connection("utcp.test", port)


async def test_segment_for_no_connection_draws_rst(make_server, raw_socket) -> None:
    server = await make_server()
    raw = await raw_socket()
    addr = (HOST, server.port)
    async with deadline(10):
        # An ACK for no connection: RST with SEQ = its ACK (RFC 9293 3.10.7.1).
        raw.send(Segment(5555, server.port, seq=1000, ack=777777, flags=ACK, window=1000), addr)
        rst, _, _ = await raw.recv()
        assert (rst.src_port, rst.dst_port, rst.flags, rst.seq) == (server.port, 5555, RST, 777777)
        # Data without ACK, to a TCP port nothing listens on: RST,ACK acknowledging it.
        raw.send(Segment(5556, 9, seq=2000, flags=0, payload=b"hello"), addr)
        rst, _, _ = await raw.recv()
        assert (rst.src_port, rst.flags, rst.seq, rst.ack) == (9, RST | ACK, 0, 2005)
        # The same to the listening port is dropped (RFC 9293 3.10.7.2, LISTEN).
        raw.send(Segment(5556, server.port, seq=2000, flags=0, payload=b"hello"), addr)
        raw.send(Segment(5556, server.port, seq=2000, flags=FIN), addr)
        # A RST is never answered.
        raw.send(Segment(5557, server.port, seq=3000, flags=RST), addr)
        assert await raw.collect(0.1) == []
    stats = server.statistics()
    assert stats["resets_sent"] == 2
    assert stats["drops"]["no-connection"] == 2
    assert stats["drops"]["listen-no-syn"] == 2
    assert stats["drops"]["rst-for-no-connection"] == 1
    assert stats["connections"] == {}


# ------------------------------------------------------------ timeouts


async def test_syn_timeout_against_a_silent_socket(raw_socket) -> None:
    silent = await raw_socket()
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with deadline(10):
        with pytest.raises(TimeoutError, match="SYN") as timed_out:
            await utcp.open_connection(HOST, silent.port, syn_retries=2,
                                       initial_rto=0.05, min_rto=0.05)
        assert timed_out.value.errno == errno.ETIMEDOUT
    elapsed = loop.time() - start
    # SYN, retries after 0.05 and then 0.1 s, given up 0.2 s later.
    assert elapsed >= 0.35 - 0.01
    syns = []
    while not silent.received.empty():
        syns.append(await silent.recv())
    assert len(syns) == 3
    assert all(s.flags == SYN and s.dst_port == silent.port for s, _, _ in syns)
    assert len({(s.src_port, s.seq) for s, _, _ in syns}) == 1  # one connection's SYN
    assert syns[0][0].option(MSS) == 1452
    gaps = [b[2] - a[2] for a, b in zip(syns, syns[1:], strict=False)]
    assert gaps[0] >= 0.05 - 0.01 and gaps[1] >= 0.1 - 0.01  # exponential backoff
    assert gaps[1] > gaps[0] * 1.5


async def test_cancelled_connect_leaves_nothing_behind(raw_socket) -> None:
    silent = await raw_socket()
    async with deadline(10):
        # (asyncio.wait_for raises asyncio.TimeoutError: the builtin since 3.11.)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(
                utcp.open_connection(HOST, silent.port, initial_rto=0.05, min_rto=0.05), 0.12)
        first = await silent.collect(0.3)
    assert [s.flags for s in first] == [SYN, SYN]  # at 0 and 0.05 s; 0.15 s never came
    ep = utcp.protocols._shared[asyncio.get_running_loop()][socket.AF_INET]
    assert ep.statistics()["connections"] == {}


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
async def test_echo_over_ipv6() -> None:
    async with deadline(10):
        server = await utcp.start_server(echo_handler, "::1", 0)
        async with server:
            reader, writer = await utcp.open_connection("::1", server.port)
            assert writer.get_extra_info("peername")[:2] == ("::1", server.port)
            data = random.Random(6).randbytes(300_000)
            _, echoed = await asyncio.gather(send_all(writer, data), read_all(reader))
            assert echoed == data
            # A 1500-byte IPv6 path leaves 20 bytes less for the segment than IPv4's
            # (MSS 1432), and the timestamps take 12 of each segment's.
            info = writer.get_extra_info("utcp")
            assert info["timestamps"] and info["send_mss"] == 1432 - 12
            writer.close()


async def test_keepalive_aborts_when_the_peer_vanishes(make_server) -> None:
    server_error: list[BaseException] = []

    async def handler(reader, writer):
        try:
            writer.write(b"hi")
            await reader.read()
        except ConnectionError as exc:
            server_error.append(exc)
        finally:
            writer.close()

    server = await make_server(handler)
    loop = asyncio.get_running_loop()
    async with deadline(10):
        reader, writer = await utcp.open_connection(
            HOST, server.port, keepalive=True, keepalive_idle=0.2,
            keepalive_interval=0.05, keepalive_count=3)
        assert await reader.readexactly(2) == b"hi"
        # The server's socket goes away without a word (like a crashed host).
        server._endpoint.close()
        vanished = loop.time()
        with pytest.raises(TimeoutError, match="keepalive"):
            await reader.read(100)
        # Idle 0.2 s, then three probes 0.05 s apart go unanswered.
        assert loop.time() - vanished >= 0.2 + 3 * 0.05 - 0.05
        assert client_endpoint(writer).statistics()["connections"] == {}
        writer.close()
    assert len(server_error) == 1 and isinstance(server_error[0], ConnectionAbortedError)


async def test_keepalive_keeps_an_idle_connection_alive(make_server) -> None:
    # Probes come faster than the 0.5 s limit on answering out-of-window ACKs.
    options = dict(keepalive=True, keepalive_idle=0.2, keepalive_interval=0.05,
                   keepalive_count=3)
    server = await make_server(**options)
    async with deadline(10):
        reader, writer = await utcp.open_connection(HOST, server.port, **options)
        before = writer.get_extra_info("utcp")
        await asyncio.sleep(0.8)  # idle: both ends probe, each answers the other
        after = writer.get_extra_info("utcp")
        assert after["segments_out"] - before["segments_out"] >= 2
        assert after["segments_in"] - before["segments_in"] >= 2
        assert after["state"] == "ESTABLISHED"
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        writer.write_eof()
        assert await reader.read() == b""
        writer.close()


# ------------------------------------------------------------ TIME-WAIT


class StateLog(utcp.NullObserver):
    def __init__(self) -> None:
        self.changes: list[tuple[str, float]] = []

    def state_changed(self, conn, old, new, cause, now) -> None:
        self.changes.append((str(new), now))


async def test_time_wait_entered_and_expiring(make_server) -> None:
    msl = 0.05
    server = await make_server()
    log = StateLog()
    async with deadline(10):
        reader, writer = await utcp.open_connection(HOST, server.port, msl=msl, observer=log)
        ep = client_endpoint(writer)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        writer.close()  # we close first: we will be the one in TIME-WAIT
        await wait_until(lambda: ep.statistics()["connections"] == {"TIME-WAIT": 1})
        await wait_until(lambda: ep.statistics()["connections"] == {})
        # The server, which closed second, went through LAST-ACK and left no TIME-WAIT.
        await wait_until(lambda: server.statistics()["connections"] == {})
    states = [s for s, _ in log.changes]
    assert states == ["SYN-SENT", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT",
                      "CLOSED"]
    entered, left = log.changes[-2][1], log.changes[-1][1]
    assert left - entered >= 2 * msl - 1e-9
    assert ep.statistics()["connection_totals"]["bytes_out"] == 1


# ------------------------------------------------------------ server close


async def test_server_close_with_clients_connected(make_server) -> None:
    handlers_done = 0

    async def handler(reader, writer):
        nonlocal handlers_done
        await echo_handler(reader, writer)
        handlers_done += 1

    server = await make_server(handler)
    async with deadline(10):
        clients = [await utcp.open_connection(HOST, server.port) for _ in range(3)]
        for i, (reader, writer) in enumerate(clients):
            writer.write(b"before %d" % i)
            assert await reader.readexactly(8) == b"before %d" % i
        server.close()
        assert not server.is_serving()
        assert server.sockets == ()
        with pytest.raises(ConnectionRefusedError):
            await utcp.open_connection(HOST, server.port)
        closed = asyncio.ensure_future(server.wait_closed())
        # Connections accepted before close() keep working.
        for i, (reader, writer) in enumerate(clients):
            writer.write(b"after %d" % i)
            assert await reader.readexactly(7) == b"after %d" % i
        await asyncio.sleep(0.05)
        assert not closed.done()  # handlers still running
        for i, (reader, writer) in enumerate(clients):
            writer.write_eof()
            assert await reader.read() == b""
            writer.close()
            if i < 2:
                await asyncio.sleep(0.05)
                assert not closed.done()
        await closed
        assert handlers_done == 3
        # With no listener and no connection left, the endpoint lets go of its socket.
        await asyncio.wait_for(server._endpoint.wait_closed(), 5)


async def test_server_close_resets_half_open_connections(make_server, raw_socket) -> None:
    handled = []

    async def handler(reader, writer):
        handled.append(writer)
        writer.close()

    server = await make_server(handler)
    raw = await raw_socket()
    addr = (HOST, server.port)
    async with deadline(10):
        raw.send(Segment(40001, server.port, seq=1000, flags=SYN, window=65535), addr)
        synack, _, _ = await raw.recv()
        assert synack.flags == SYN | ACK
        server.close()  # mid-handshake: like a SYN queue, it goes with the listener
        rst, _, _ = await raw.recv()
        assert (rst.flags, rst.seq) == (RST, synack.seq + 1)
        await server.wait_closed()
        # The handshake's last ACK comes too late: no handler runs on a closed server.
        raw.send(Segment(40001, server.port, seq=1001, ack=synack.seq + 1, flags=ACK,
                         window=65535), addr)
        await asyncio.sleep(0.05)
    assert handled == []
    assert server.statistics()["connections"] == {}


async def test_server_as_async_context_manager() -> None:
    async with deadline(10):
        async with await utcp.start_server(echo_handler, HOST, 0) as server:
            assert server.is_serving() and server.port > 0
            assert await echo_once(server.port, b"ctx") == b"ctx"
        assert not server.is_serving()


async def test_cancelling_serve_forever_closes_the_server() -> None:
    server = await utcp.start_server(echo_handler, HOST, 0)
    async with deadline(10):
        task = asyncio.ensure_future(server.serve_forever())
        assert await echo_once(server.port, b"forever") == b"forever"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()
        assert server.statistics()["listeners"] == []
        await server.wait_closed()
        await server._endpoint.wait_closed()  # nothing left open: the socket is closed


async def test_server_on_a_wildcard_answers_from_the_address_the_client_chose() -> None:
    async with deadline(10):
        await wildcard_server_answers_from_the_chosen_address()


async def test_start_serving_false_listens_only_once_started() -> None:
    async with deadline(10):
        server = await utcp.start_server(echo_handler, HOST, 0, start_serving=False)
        assert not server.is_serving() and server.sockets  # bound, not listening
        with pytest.raises(ConnectionRefusedError):  # a RST: nothing listens yet
            await utcp.open_connection(HOST, server.port)
        await server.start_serving()
        assert server.is_serving()
        assert await echo_once(server.port, b"now") == b"now"
        server.close()
        await server.wait_closed()
        assert server.sockets == ()


async def test_start_server_listens_on_what_a_name_resolves_to(monkeypatch) -> None:
    if not _ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(host, port, **kwargs):  # a name with only an IPv6 address
        if host != "v6only.test":
            return await real(host, port, **kwargs)
        return [(socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("::1", port, 0, 0))]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    async with deadline(10):
        server = await utcp.start_server(echo_handler, "v6only.test", 0)
        try:
            assert server.sockets[0].family == socket.AF_INET6
            reader, writer = await utcp.open_connection("::1", server.port)
            # IPv6's default MSS, less the 12 bytes of timestamps in each segment.
            assert writer.get_extra_info("utcp")["send_mss"] == 1432 - 12
            writer.close()
            await writer.wait_closed()
        finally:
            server.close()
            await server.wait_closed()


async def test_start_server_without_host_binds_the_family_asked_for() -> None:
    if not _ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    async with deadline(10):
        server = await utcp.start_server(echo_handler, None, 0, family=socket.AF_INET6)
        try:
            assert server.sockets[0].family == socket.AF_INET6
            reader, writer = await utcp.open_connection("::1", server.port)
            writer.write(b"v6")
            assert await reader.readexactly(2) == b"v6"
            writer.close()
            await writer.wait_closed()
        finally:
            server.close()
            await server.wait_closed()


async def test_family_limits_the_addresses_tried(make_server, monkeypatch) -> None:
    server = await make_server()
    _resolving_to(monkeypatch, HOST)  # an IPv4 address only
    async with deadline(10):
        with pytest.raises(socket.gaierror):
            await utcp.open_connection("utcp.test", server.port, family=socket.AF_INET6)
        reader, writer = await utcp.open_connection("utcp.test", server.port,
                                                    family=socket.AF_INET)
        writer.close()
        await writer.wait_closed()


# ------------------------------------------------------------ hostile datagrams


def junk_kind(data: bytes) -> str:
    try:
        decode(data)
    except BadChecksum:
        return "bad-checksum"
    except utcp.MalformedSegment:
        return "malformed"
    return "valid"


async def test_datagram_storm_during_transfers(make_server, raw_socket) -> None:
    server = await make_server()
    storm = await raw_socket()
    rng = random.Random(2024)
    payloads = [rng.randbytes(200_000 + i) for i in range(10)]
    async with deadline(30):
        conns = [await utcp.open_connection(HOST, server.port) for _ in payloads]
        client_ep = client_endpoint(conns[0][1])
        server_addr, client_addr = (HOST, server.port), (HOST, client_ep.local_address[1])

        # (asyncio's sendto() silently skips empty datagrams before Python 3.13.)
        junk = [rng.randbytes(rng.randint(1, 1500)) for _ in range(5000)]
        forged = [encode(Segment(rng.randrange(1, 65536), server.port,
                                 rng.getrandbits(32), rng.getrandbits(32),
                                 rng.getrandbits(8), rng.getrandbits(16),
                                 payload=rng.randbytes(rng.randint(0, 100))))
                  for _ in range(1000)]
        to_server, to_client = junk[::2], junk[1::2]
        # How each endpoint must count them: the checksum catches almost all; the
        # rest fail as malformed (too short, bad offset or options).
        expected = {name: Counter(junk_kind(d) for d in batch)
                    for name, batch in (("server", to_server), ("client", to_client))}
        assert expected["server"]["bad-checksum"] > 0 and expected["server"]["malformed"] > 0

        async def blow() -> None:
            sends = [(d, server_addr) for d in to_server + forged] + \
                [(d, client_addr) for d in to_client]
            rng.shuffle(sends)
            for i, (d, addr) in enumerate(sends):
                storm.send(d, addr)
                if i % 50 == 49:
                    await asyncio.sleep(0.001)  # interleave with the transfers

        async def transfer(reader, writer, data) -> bytes:
            _, echoed = await asyncio.gather(send_all(writer, data, 8192), read_all(reader))
            writer.close()
            return echoed

        results = await asyncio.gather(
            blow(), *(transfer(r, w, p) for (r, w), p in zip(conns, payloads, strict=True)))
    assert [sha(e) for e in results[1:]] == [sha(p) for p in payloads]
    sstats, cstats = server.statistics(), client_ep.statistics()
    # Every junk datagram that fails to decode is counted, at the endpoint it reached.
    for kind in ("bad-checksum", "malformed"):
        assert sstats["drops"][kind] == expected["server"][kind]
        assert cstats["drops"][kind] == expected["client"][kind]
    # The forged segments drew RSTs, were dropped and counted, or sat in the backlog
    # (a few land on a half-open connection a previous one created).
    drops = sstats["drops"]
    # (Each answered with a RST, but for those past the RST rate limit.)
    assert sstats["resets_sent"] + drops.get("rst-rate-limited", 0) == \
        drops["no-connection"] > 0
    assert drops["rst-for-no-connection"] > 0
    assert drops["listen-no-syn"] > 0
    accounted = drops["no-connection"] + drops["rst-for-no-connection"] + \
        drops["listen-no-syn"] + drops.get("backlog-full", 0) + \
        sstats["connections"].get("SYN-RECEIVED", 0)
    assert 0.95 * len(forged) <= accounted <= len(forged)


# ------------------------------------------------------------ flow control


async def test_slow_reader_blocks_a_fast_writer(make_server) -> None:
    data = random.Random(5).randbytes(5 * MB)
    chunk = 64 * 1024
    rcv_buf = 32 * 1024

    held = []  # on the reading side: in the connection, and in the StreamReader

    async def slow_handler(reader, writer):
        got = bytearray()
        try:
            while part := await reader.read(4096):
                got += part
                held.append((writer.get_extra_info("utcp")["unread"], len(reader._buffer)))
                await asyncio.sleep(0.001)
            writer.write(sha(bytes(got)).encode())
        finally:
            writer.close()

    # (A fixed buffer: the bounds below are its size.)
    server = await make_server(slow_handler, limit=4096, rcv_buf=rcv_buf, rcv_buf_max=None)
    async with deadline(40):
        reader, writer = await utcp.open_connection(HOST, server.port)
        tr = writer.transport
        low, high = tr.get_write_buffer_limits()
        blocked = 0
        for i in range(0, len(data), chunk):
            writer.write(data[i:i + chunk])
            size = tr.get_write_buffer_size()
            assert size <= high + chunk
            if size > high:
                blocked += 1  # drain() must wait here
            await writer.drain()
            assert tr.get_write_buffer_size() <= high
            info = writer.get_extra_info("utcp")
            assert info["unacked"] <= info["snd_wnd"] <= rcv_buf
        writer.write_eof()
        assert await reader.read() == sha(data).encode()
        writer.close()
    assert blocked > len(data) // chunk // 4  # flow control held the writer back
    # The reader's memory is bounded too: the receive buffer, and asyncio's pause at
    # twice the reader's limit (plus what one delivery adds before it pauses).
    assert max(unread for unread, _ in held) <= rcv_buf
    assert max(buffered for _, buffered in held) <= 2 * 4096 + rcv_buf


async def test_readexactly_beyond_twice_the_limit(make_server) -> None:
    # asyncio's StreamReader pauses reading at twice its limit, and readexactly(n)
    # for a larger n resumes it before it waits: the held data must still wake it.
    data = random.Random(9).randbytes(300_000)

    async def send_then_close(reader, writer):
        writer.write(data)
        await writer.drain()
        writer.close()

    server = await make_server(send_then_close)
    async with deadline(10):
        reader, writer = await utcp.open_connection(HOST, server.port, limit=16 * 1024)
        await asyncio.sleep(0.2)  # all of it arrives while nobody reads: paused
        assert await reader.readexactly(len(data)) == data
        writer.close()
        await writer.wait_closed()


async def test_close_without_drain_still_delivers_everything(make_server) -> None:
    data = random.Random(8).randbytes(2 * MB)
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def sink(reader, writer):
        received.set_result(await read_all(reader))
        writer.close()

    server = await make_server(sink)
    async with deadline(20):
        _, writer = await utcp.open_connection(HOST, server.port)
        writer.write(data)
        writer.close()  # like a socket's close(): buffered data still goes out, then FIN
        await writer.wait_closed()
        assert sha(await received) == sha(data)


async def test_wait_closed_returns_once_the_peer_has_everything(make_server) -> None:
    # asyncio's promise for wait_closed(): all data flushed before the program exits.
    # A utcp connection ends with its loop (reset), so wait_closed() waits for the
    # ACK of the FIN: a program that returns right after it has lost nothing.
    data = random.Random(9).randbytes(2 * MB)
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def sink(reader, writer):
        try:
            received.set_result(await read_all(reader))
        except ConnectionError as exc:
            received.set_exception(exc)
        writer.close()

    server = await make_server(sink)
    states: list[str] = []

    async def program() -> None:
        _, writer = await utcp.open_connection(HOST, server.port)
        writer.write(data)
        writer.close()  # no drain(): close() sends what is buffered, then FIN
        await writer.wait_closed()
        states.append(state(writer))
        assert writer.get_extra_info("utcp")["unacked"] == 0

    async with deadline(20):
        await asyncio.to_thread(asyncio.run, program())  # returns, and its loop ends
        assert sha(await received) == sha(data)
    assert states[0] in ("FIN-WAIT-2", "TIME-WAIT", "CLOSED")


async def test_reset_after_the_peers_fin_leaves_its_data_readable(make_server) -> None:
    # The client sends everything and its FIN, then resets (its program ended).
    # Like the kernel's TCP, the server still reads all of it and EOF; only a
    # write fails afterwards.
    data = random.Random(11).randbytes(MB)
    reset_sent = asyncio.Event()
    outcome: asyncio.Future[tuple[bytes, BaseException | None]] = (
        asyncio.get_running_loop().create_future())

    async def slow_reader(reader, writer):
        await reset_sent.wait()  # the data waits, held, while the RST arrives
        await asyncio.sleep(0.05)
        got = await read_all(reader)
        writer.write(b"too late")
        try:
            await writer.drain()
            error = None
        except ConnectionResetError as exc:
            error = exc
        outcome.set_result((got, error))
        writer.close()

    server = await make_server(slow_reader, limit=4096, rcv_buf=2 * MB)
    async with deadline(10):
        _, writer = await utcp.open_connection(HOST, server.port)
        writer.write(data)
        writer.write_eof()
        await wait_until(lambda: state(writer) == "FIN-WAIT-2")  # all of it acknowledged
        writer.transport.abort()
        reset_sent.set()
        got, error = await outcome
    assert sha(got) == sha(data)
    assert isinstance(error, ConnectionResetError)


@pytest.mark.parametrize("reply", [
    pytest.param(b"response", id="reply-fails"),
    pytest.param(b"", id="close-alone-succeeds"),
])
async def test_wait_closed_after_the_peers_reset_after_fin(make_server, reply) -> None:
    # The client sends its request and FIN, then resets. The server reads the
    # request to EOF, then replies and closes: the reply cannot arrive, and
    # wait_closed() says so. A close with nothing written lost nothing: no error.
    client_reset = asyncio.Event()
    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def reply_late(reader, writer):
        assert await reader.read() == b"request"
        await client_reset.wait()
        await wait_until(lambda: state(writer) == "CLOSED")  # the RST has arrived
        writer.write(reply)
        writer.close()
        try:
            await writer.wait_closed()
            outcome.set_result(None)
        except ConnectionResetError as exc:
            outcome.set_result(exc)

    server = await make_server(reply_late)
    async with deadline(10):
        _, writer = await utcp.open_connection(HOST, server.port)
        writer.write(b"request")
        writer.write_eof()
        await wait_until(lambda: state(writer) == "FIN-WAIT-2")
        writer.transport.abort()
        client_reset.set()
        error = await outcome
    if reply:
        assert isinstance(error, ConnectionResetError) and error.errno == errno.ECONNRESET
    else:
        assert error is None


async def test_abort_after_close_is_not_reported_as_the_peers_reset(make_server) -> None:
    async def read_nothing(reader, writer):
        await asyncio.sleep(30)

    server = await make_server(read_nothing)
    async with deadline(10):
        _, writer = await utcp.open_connection(HOST, server.port)
        writer.write(b"x" * MB)  # far more than the windows: still unacknowledged
        writer.close()
        writer.transport.abort()  # we give up on it ourselves
        await writer.wait_closed()  # as asyncio's: an abort is no error
        assert state(writer) == "CLOSED"


async def test_wait_closed_raises_when_the_fin_is_never_acknowledged(make_server) -> None:
    server = await make_server(echo_handler)
    async with deadline(10):
        reader, writer = await utcp.open_connection(HOST, server.port, data_retries=2,
                                                    min_rto=0.05, initial_rto=0.05)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        server._endpoint.close()  # the server's host goes silent
        writer.write(b"lost")
        writer.close()
        with pytest.raises(TimeoutError, match="not acknowledged"):
            await writer.wait_closed()
        assert client_endpoint(writer).statistics()["connections"] == {}


async def test_zero_window_survives_a_stalled_reader(make_server) -> None:
    go = asyncio.Event()

    async def stalled(reader, writer):
        try:
            await go.wait()  # reads nothing for a while: the window stays shut
            writer.write(b"%d" % len(await reader.read()))
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await make_server(stalled, limit=4096, rcv_buf=16384)
    async with deadline(10):
        # Zero-window probes come faster than 0.5 s apart, and only 5 unanswered ones
        # would abort the connection.
        reader, writer = await utcp.open_connection(HOST, server.port, min_rto=0.02,
                                                    initial_rto=0.05, max_rto=0.05,
                                                    data_retries=5)
        try:
            writer.write(b"x" * 200_000)
            await asyncio.sleep(1.0)
        finally:
            go.set()
        writer.write_eof()
        assert await reader.read() == b"200000"
        writer.close()


# ------------------------------------------------------------ errors in blocked calls


async def test_reset_reaches_blocked_read_and_drain(make_server) -> None:
    abort_now = asyncio.Event()

    async def stalling_handler(reader, writer):
        await abort_now.wait()  # never reads: the window fills and closes
        writer.transport.abort()

    server = await make_server(stalling_handler, limit=4096, rcv_buf=16384)
    async with deadline(10):
        reader, writer = await utcp.open_connection(HOST, server.port)
        read_task = asyncio.ensure_future(reader.read(100))
        writer.write(b"x" * (1 * MB))
        drain_task = asyncio.ensure_future(writer.drain())
        await wait_until(lambda: writer.get_extra_info("utcp")["snd_wnd"] == 0)
        await asyncio.sleep(0.05)
        assert not read_task.done() and not drain_task.done()
        abort_now.set()
        with pytest.raises(ConnectionResetError):
            await read_task
        with pytest.raises(ConnectionResetError):
            await drain_task
        assert client_endpoint(writer).statistics()["connections"] == {}
        writer.close()
    assert server.statistics()["connections"] == {}


async def test_reset_reaches_a_pending_read(make_server) -> None:
    async def handler(reader, writer):
        await reader.readexactly(5)
        writer.transport.abort()

    server = await make_server(handler)
    async with deadline(10):
        reader, writer = await utcp.open_connection(HOST, server.port)
        read_task = asyncio.ensure_future(reader.read(100))
        await asyncio.sleep(0.02)
        assert not read_task.done()
        writer.write(b"hello")
        with pytest.raises(ConnectionResetError, match="reset") as reset:
            await read_task
        assert reset.value.errno == errno.ECONNRESET
        with pytest.raises(ConnectionResetError):
            writer.write(b"again")
            await writer.drain()
        writer.close()


# ------------------------------------------------------------ the backlog


async def test_backlog_limits_half_open_connections(make_server, raw_socket) -> None:
    server = await make_server(backlog=2, syn_cookies=False)
    raw = await raw_socket()
    addr = (HOST, server.port)

    def syn(port: int) -> Segment:
        return Segment(port, server.port, seq=1000 * port, flags=SYN, window=65535,
                       options=((MSS, 1452),))

    async with deadline(10):
        for port in range(40001, 40006):
            raw.send(syn(port), addr)
        replies = await raw.collect(0.3)  # well before any SYN-ACK retransmission
        assert sorted((s.dst_port, s.flags, s.ack) for s in replies) == [
            (40001, SYN | ACK, 40001001), (40002, SYN | ACK, 40002001)]
        stats = server.statistics()
        assert stats["drops"]["backlog-full"] == 3
        assert stats["connections"] == {"SYN-RECEIVED": 2}
        # Resetting a half-open connection frees its place in the backlog.
        raw.send(Segment(40001, server.port, seq=40001001, flags=RST), addr)
        raw.send(syn(40003), addr)
        (reply,) = await raw.collect(0.1)
        assert (reply.dst_port, reply.flags) == (40003, SYN | ACK)
        assert server.statistics()["drops"]["backlog-full"] == 3
        # A real client still gets through once the backlog has room.
        for port, seg in ((40002, 40002001), (40003, 40003001)):
            raw.send(Segment(port, server.port, seq=seg, flags=RST), addr)
        assert await echo_once(server.port, b"through") == b"through"


async def _server_in_time_wait(make_server, raw, *, backlog: int, port: int = 40001):
    """A server whose connection from ``raw``'s ``port`` (ISN 1000) is in TIME-WAIT."""
    async def close_at_once(reader, writer):
        writer.close()

    server = await make_server(close_at_once, backlog=backlog)
    addr = (HOST, server.port)
    # The client connects; the server closes first and ends in TIME-WAIT.
    raw.send(Segment(port, server.port, seq=1000, flags=SYN, window=65535), addr)
    synack, _, _ = await raw.recv()
    raw.send(Segment(port, server.port, seq=1001, ack=synack.seq + 1, flags=ACK,
                     window=65535), addr)
    fin, _, _ = await raw.recv()
    assert fin.flags & FIN
    raw.send(Segment(port, server.port, seq=1001, ack=fin.seq + 1, flags=FIN | ACK,
                     window=65535), addr)
    await raw.recv()  # the ACK of our FIN
    assert server.statistics()["connections"] == {"TIME-WAIT": 1}
    return server


async def test_syn_reopening_time_wait_respects_the_backlog(make_server, raw_socket) -> None:
    raw = await raw_socket()
    async with deadline(10):
        server = await _server_in_time_wait(make_server, raw, backlog=1)
    addr = (HOST, server.port)

    def syn(port: int, seq: int) -> Segment:
        return Segment(port, server.port, seq=seq, flags=SYN, window=65535)

    async with deadline(10):
        # 40002 takes the one place in the backlog.
        raw.send(syn(40002, 5000), addr)
        assert (await raw.recv())[0].flags == SYN | ACK
        # A new SYN on the TIME-WAIT 4-tuple (beyond the old sequence numbers) may
        # reopen it, but, as any SYN, only if the backlog has room.
        raw.send(syn(40001, 900_000), addr)
        assert await raw.collect(0.1) == []
        assert server.statistics()["drops"]["backlog-full"] == 1
        raw.send(Segment(40002, server.port, seq=5001, flags=RST), addr)
        raw.send(syn(40001, 900_000), addr)
        (reply,) = await raw.collect(0.1)
        assert (reply.dst_port, reply.flags, reply.ack) == (40001, SYN | ACK, 900_001)


async def test_syn_rst_on_a_time_wait_4tuple_opens_nothing(make_server, raw_socket) -> None:
    # A SYN that also carries RST is no connection request: it must neither end
    # the TIME-WAIT connection nor take a place in the backlog.
    raw = await raw_socket()
    async with deadline(10):
        server = await _server_in_time_wait(make_server, raw, backlog=1)
        addr = (HOST, server.port)
        raw.send(Segment(40001, server.port, seq=900_000, flags=SYN | RST, window=65535), addr)
        assert await raw.collect(0.1) == []
        assert server.statistics()["connections"] == {"TIME-WAIT": 1}
        raw.send(Segment(40005, server.port, seq=5000, flags=SYN, window=65535), addr)
        (reply,) = await raw.collect(0.1)
        assert (reply.dst_port, reply.flags, reply.ack) == (40005, SYN | ACK, 5001)
        assert "backlog-full" not in server.statistics()["drops"]


async def test_closed_server_port_is_free_while_its_connections_wait_in_time_wait() -> None:
    # The server closes first, so TIME-WAIT lands on its side (2 MSL = 60 s by
    # default). As with the kernel and SO_REUSEADDR, a server restarted at once on
    # the same port must not fail with "address in use".
    async def close_first(reader, writer):
        writer.close()
        await writer.wait_closed()

    async with deadline(10):
        server = await utcp.start_server(close_first, HOST, 0)
        port = server.port
        reader, writer = await utcp.open_connection(HOST, port)
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        await wait_until(lambda: server.statistics()["connections"] == {"TIME-WAIT": 1})
        server.close()
        await server.wait_closed()
        await asyncio.wait_for(server._endpoint.wait_closed(), 5)
        again = await utcp.start_server(echo_handler, HOST, port)
        try:
            assert await echo_once(port, b"restarted") == b"restarted"
        finally:
            again.close()
            await again.wait_closed()


async def test_closed_server_leaves_a_time_wait_handler_its_unread_data() -> None:
    # The handler half-closes first and reads later; meanwhile the client's reply
    # and FIN put the connection in TIME-WAIT and the server is closed, which
    # frees its socket. The handler still reads the whole reply.
    handler_read: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    go = asyncio.Event()

    async def half_close_first(reader, writer):
        writer.write_eof()
        await go.wait()
        try:
            handler_read.set_result(await reader.read())
        except OSError as exc:
            handler_read.set_exception(exc)
        writer.close()

    async with deadline(10):
        server = await utcp.start_server(half_close_first, HOST, 0)
        reader, writer = await utcp.open_connection(HOST, server.port)
        assert await reader.read() == b""
        writer.write(b"reply")
        writer.close()
        await writer.wait_closed()
        await wait_until(lambda: server.statistics()["connections"] == {"TIME-WAIT": 1})
        server.close()
        await server.wait_closed()
        await asyncio.wait_for(server._endpoint.wait_closed(), 5)
        go.set()
        assert await handler_read == b"reply"


# ------------------------------------------------------------ observers


async def test_an_observer_that_raises_costs_its_connection_nothing(make_server) -> None:
    # The observer runs inside the state machine; its exception is reported to the
    # loop's exception handler once, and the connection goes on untraced.
    class Failing(utcp.NullObserver):
        calls = 0

        def segment_sent(self, conn, seg, now):
            Failing.calls += 1
            raise RuntimeError("observer bug")

    loop = asyncio.get_running_loop()
    reported: list[dict] = []
    server = await make_server()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        async with deadline(10):
            reader, writer = await utcp.open_connection(HOST, server.port, observer=Failing())
            writer.write(b"still works")
            assert await reader.readexactly(11) == b"still works"
            writer.close()
            await writer.wait_closed()
    finally:
        loop.set_exception_handler(None)
    assert Failing.calls == 1
    assert [type(c["exception"]) for c in reported] == [RuntimeError]
    assert "no longer called" in reported[0]["message"]
    assert client_endpoint(writer).statistics()["connections"] == {"TIME-WAIT": 1}


# ------------------------------------------------------------ bad arguments


@pytest.mark.parametrize("port", [0, 70000, -1, "abc", None, 1.5, True])
async def test_open_connection_rejects_bad_ports(port) -> None:
    with pytest.raises(ValueError, match="port must be an integer from 1 to 65535"):
        await utcp.open_connection(HOST, port)


async def test_bad_options() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument.*bogus"):
        await utcp.open_connection(HOST, 9, bogus=1)
    with pytest.raises(ValueError, match="mss must be between 88 and 65495, got 5"):
        await utcp.open_connection(HOST, 9, mss=5)
    with pytest.raises(ValueError, match="initial_rto must be more than zero seconds, got -1"):
        await utcp.open_connection(HOST, 9, initial_rto=-1)
    with pytest.raises(ValueError, match="delayed_ack must be zero or more seconds"):
        await utcp.open_connection(HOST, 9, delayed_ack=-0.1)
    with pytest.raises(ValueError, match="msl must be a finite number of seconds, got 'long'"):
        await utcp.open_connection(HOST, 9, msl="long")
    with pytest.raises(ValueError, match="rcv_buf must be an integer, got 1.5"):
        await utcp.open_connection(HOST, 9, rcv_buf=1.5)
    with pytest.raises(ValueError, match="keepalive must be True or False, got 1"):
        await utcp.open_connection(HOST, 9, keepalive=1)
    for limit in (0, True, 1.5):
        with pytest.raises(ValueError, match="limit must be a positive integer"):
            await utcp.open_connection(HOST, 9, limit=limit)
    with pytest.raises(TypeError, match="observer must have state_changed.*lacks"):
        await utcp.open_connection(HOST, 9, observer=42)
    with pytest.raises(TypeError, match="observer must have"):
        await utcp.start_server(echo_handler, HOST, 0, observer=object())
    with pytest.raises(TypeError, match="ssl argument must be an SSLContext, a bool or None"):
        await utcp.open_connection(HOST, 9, ssl="yes")
    with pytest.raises(TypeError, match="ssl argument must be an SSLContext or None"):
        await utcp.start_server(echo_handler, HOST, 0, ssl=True)
    with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
        await utcp.open_connection(HOST, 9, server_hostname="example.org")
    with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful with ssl"):
        await utcp.start_server(echo_handler, HOST, 0, ssl_handshake_timeout=5)
    with pytest.raises(ValueError, match="ssl_shutdown_timeout should be a positive number"):
        await utcp.open_connection(HOST, 9, ssl=True, ssl_shutdown_timeout=0)
    with pytest.raises(ValueError, match="reuse_port is not supported"):
        await utcp.start_server(echo_handler, HOST, 0, reuse_port=True)
    with pytest.raises(ValueError, match="family must be"):
        await utcp.open_connection(HOST, 9, family=socket.AF_UNIX)
    with pytest.raises(TypeError, match="host must be a string or None, got 123"):
        await utcp.start_server(echo_handler, 123, 0)
    with pytest.raises(ValueError, match="backlog must be a positive integer, got 0"):
        await utcp.start_server(echo_handler, HOST, 0, backlog=0)
    with pytest.raises(ValueError, match="port"):
        await utcp.start_server(echo_handler, HOST, 70000)
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        await utcp.start_server(echo_handler, HOST, 0, bogus=1)
    with pytest.raises(ValueError, match="keepalive_count"):
        await utcp.start_server(echo_handler, HOST, 0, keepalive_count=0)


@pytest.mark.parametrize("timestamps", [True, False], ids=["timestamps", "no-timestamps"])
async def test_the_receive_buffer_grows_over_real_sockets_within_the_sockets_cap(
        timestamps: bool) -> None:
    # Receive-buffer autotuning end to end: a reader that keeps up has its buffer
    # grown past rcv_buf, but never past what the UDP socket beneath can queue
    # (where the kernel grants less than rcv_buf, it does not grow at all).
    got: dict = {}

    async def handle(reader, writer):
        data = await reader.read()
        got["rcv_buf"] = writer.get_extra_info("utcp")["rcv_buf"]
        got["cap"] = writer.transport.endpoint.stack.memory.rcv_buf_cap
        got["sha"] = sha(data)
        writer.close()

    server = await utcp.start_server(handle, HOST, 0, timestamps=timestamps)
    blob = bytes(range(256)) * (64 * 1024)  # 16 MiB
    try:
        async with deadline(60):
            reader, writer = await utcp.open_connection(HOST, server.port,
                                                        timestamps=timestamps)
            writer.write(blob)
            writer.write_eof()
            await reader.read()
            writer.close()
            await writer.wait_closed()
    finally:
        server.close()
    assert got["sha"] == sha(blob)
    start = utcp.Options().rcv_buf
    assert got["cap"] is not None
    if got["cap"] > start:
        assert start < got["rcv_buf"] <= got["cap"]
    else:
        assert got["rcv_buf"] == start
