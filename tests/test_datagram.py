"""The datagram layer's UDP segmentation offload (GSO sends, GRO reads) on 127.0.0.1,
and its fallbacks where the kernel lacks it or refuses it."""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from typing import Any

import pytest
from conftest import HOST, deadline, read_all, run_on_loop, send_all, wait_until

import utcp
from utcp import datagram
from utcp.datagram import (
    GSO_MAX_BYTES,
    GSO_MAX_SEGMENTS,
    LONE_AFTER,
    LONE_PROBE,
    SOL_UDP,
    UDP_GRO,
    UDP_SEGMENT,
    BatchedDatagramTransport,
    gro_supported,
    gso_supported,
    offload_wanted,
)

try:
    import uvloop
except ImportError:  # not available on Windows
    uvloop = None

pytestmark = pytest.mark.usefixtures("loop_errors")


def _kernel_has(check: Any) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return bool(check(s))


needs_gso = pytest.mark.skipif(not _kernel_has(gso_supported),
                               reason="the kernel has no UDP GSO (Linux 4.18)")
needs_gro = pytest.mark.skipif(not _kernel_has(gro_supported),
                               reason="the kernel has no UDP GRO (Linux 5.0)")


class CountingSocket(socket.socket):
    """A UDP socket that counts its sends and receives, and can play a kernel
    without offload (``lacks``) or one that refuses GSO sends (``refuse_gso``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sendto_calls = 0
        self.sendmsg_calls = 0
        self.gso_sends = 0  # sendmsg calls that carried UDP_SEGMENT
        self.recvmsg_calls = 0
        self.recvfrom_calls = 0
        self.lacks = False
        self.refuse_gso: int | None = None  # the errno a GSO send fails with

    def getsockopt(self, level: int, opt: int, *args: Any) -> Any:
        if self.lacks and level == SOL_UDP:
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")
        return super().getsockopt(level, opt, *args)

    def setsockopt(self, level: int, opt: int, *args: Any) -> None:
        if self.lacks and level == SOL_UDP:
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")
        super().setsockopt(level, opt, *args)

    def sendto(self, *args: Any) -> int:
        self.sendto_calls += 1
        return super().sendto(*args)

    def sendmsg(self, buffers: Any, ancdata: Any = (), *args: Any) -> int:
        self.sendmsg_calls += 1
        if any(level == SOL_UDP and kind == UDP_SEGMENT for level, kind, _ in ancdata):
            self.gso_sends += 1
            if self.refuse_gso is not None:
                raise OSError(self.refuse_gso, "refused")
        return super().sendmsg(buffers, ancdata, *args)

    def recvmsg(self, *args: Any) -> Any:
        self.recvmsg_calls += 1
        return super().recvmsg(*args)

    def recvfrom(self, *args: Any) -> Any:
        self.recvfrom_calls += 1
        return super().recvfrom(*args)


class Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[tuple[Any, ...]] = []
        self.batches = 0

    def datagrams_received(self, batch: list[tuple[Any, ...]]) -> None:
        self.got.extend(batch)
        self.batches += 1


def _bound(host: str = HOST, cls: type[socket.socket] = CountingSocket) -> Any:
    sock = cls(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    # (Past a stock Linux's net.core.rmem_max where the process may: the bursts
    # sent here must all fit.)
    datagram.enlarge_buffers(sock, 4 << 20)
    return sock


def _plain_receiver() -> socket.socket:
    sock = _bound(cls=socket.socket)
    sock.settimeout(2)
    return sock


def _drain(sock: socket.socket, n: int) -> list[bytes]:
    return [sock.recv(65536) for _ in range(n)]


def _burst(count: int, size: int = 1472, tag: int = 0) -> list[bytes]:
    """``count`` datagrams of ``size`` bytes, each telling its number."""
    return [struct.pack("!HH", tag, i) + bytes([i % 251]) * (size - 4) for i in range(count)]


# ------------------------------------------------------------------ switches


def test_offload_is_wanted_unless_the_environment_or_the_caller_says_no(monkeypatch) -> None:
    monkeypatch.delenv("UTCP_GSO", raising=False)
    assert offload_wanted("GSO")
    for off in ("0", "off", "No", " false "):
        monkeypatch.setenv("UTCP_GSO", off)
        assert not offload_wanted("GSO")
    monkeypatch.setenv("UTCP_GSO", "1")
    assert offload_wanted("GSO")
    assert not offload_wanted("GSO", False)
    monkeypatch.setenv("UTCP_GSO", "0")
    assert offload_wanted("GSO", True)


async def test_the_environment_switches_gso_and_gro_off(monkeypatch) -> None:
    monkeypatch.setenv("UTCP_GSO", "0")
    monkeypatch.setenv("UTCP_GRO", "off")
    t = BatchedDatagramTransport(asyncio.get_running_loop(), _bound(), Collect())
    try:
        assert not t.gso and not t.gro
        if gro_supported(t._sock):
            assert t._sock.getsockopt(SOL_UDP, UDP_GRO) == 0  # never switched on
    finally:
        t.close()


async def test_without_kernel_support_each_datagram_goes_alone() -> None:
    loop = asyncio.get_running_loop()
    sock = CountingSocket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.lacks = True  # as Linux before 4.18: the options are unknown
    sock.bind((HOST, 0))
    t = BatchedDatagramTransport(loop, sock, Collect())
    rx = _plain_receiver()
    try:
        assert not t.gso and not t.gro
        burst = _burst(10)
        t.sendmany([(d, rx.getsockname(), None) for d in burst])
        assert sock.sendto_calls == 10 and sock.gso_sends == 0
        assert _drain(rx, 10) == burst
    finally:
        t.close()
        rx.close()


# ------------------------------------------------------------------ GSO


@needs_gso
async def test_gso_sends_a_burst_in_few_calls_and_it_arrives_as_sent() -> None:
    loop = asyncio.get_running_loop()
    t = BatchedDatagramTransport(loop, _bound(), Collect(), gro=False)
    rx1, rx2 = _plain_receiver(), _plain_receiver()  # no GRO: the kernel splits
    try:
        assert t.gso
        a1, a2 = rx1.getsockname(), rx2.getsockname()
        first = _burst(100, tag=1) + [b"short one"]  # a shorter last datagram joins the run
        second = _burst(3, tag=2)
        third = _burst(5, tag=3) + [b"x" * 2000]  # a longer one starts a run of its own
        items = [(d, a1, None) for d in first] + [(d, a2, None) for d in second] + \
            [(d, (a1[0], a1[1]), None) for d in third]  # (an equal address, not the same)
        t.sendmany(items)
        sock = t._sock
        # 101 datagrams to a1 in runs of 44 (GSO_MAX_BYTES // 1472), 3 to a2, 5 to a1
        # and the long one alone.
        assert sock.gso_sends == 3 + 1 + 1
        assert sock.sendmsg_calls == 5 and sock.sendto_calls == 1
        assert _drain(rx1, 101 + 6) == first + third
        assert _drain(rx2, 3) == second
        assert t.send_errors == 0
    finally:
        t.close()
        rx1.close()
        rx2.close()


@needs_gso
async def test_a_gso_run_leaves_from_the_local_address_it_is_sent_from() -> None:
    # On a wildcard socket a run carries the pktinfo control message too: the
    # peer sees every datagram come from the address its own reached.
    loop = asyncio.get_running_loop()
    proto = Collect()
    sock = _bound("0.0.0.0")
    t = BatchedDatagramTransport(loop, sock, proto, pktinfo=True, gro=False)
    peer = _plain_receiver()
    try:
        assert t.gso and t.pktinfo
        port = sock.getsockname()[1]
        peer.sendto(b"hello", ("127.0.0.2", port))
        await wait_until(lambda: proto.got, 2)
        [(_, addr, local)] = proto.got
        assert local.host == "127.0.0.2"
        burst = _burst(30)
        t.sendmany([(d, addr, local) for d in burst])
        assert sock.gso_sends == 1 and sock.sendto_calls == 0
        got = [peer.recvfrom(65536) for _ in burst]
        assert [d for d, _ in got] == burst
        assert {src for _, src in got} == {("127.0.0.2", port)}
    finally:
        t.close()
        peer.close()


@needs_gso
async def test_a_gso_send_stays_within_the_kernels_limits() -> None:
    loop = asyncio.get_running_loop()
    t = BatchedDatagramTransport(loop, _bound(), Collect(), gro=False)
    rx = _plain_receiver()
    try:
        small = _burst(150, size=100)  # 64 a call, the most the kernel takes
        t.sendmany([(d, rx.getsockname(), None) for d in small])
        assert t._sock.gso_sends == 3
        assert _drain(rx, 150) == small
        assert GSO_MAX_SEGMENTS * 1472 > GSO_MAX_BYTES  # (what made the runs of 44 above)
    finally:
        t.close()
        rx.close()


@needs_gso
@pytest.mark.parametrize("err", [errno.EIO, errno.EINVAL])
async def test_a_destination_refusing_gso_gets_its_datagrams_one_by_one(err: int) -> None:
    # EIO: a device without checksum offload, IPsec; EINVAL: a path MTU below the
    # segment size. The datagrams go one by one, and that destination gets no more
    # GSO attempts; others still do.
    loop = asyncio.get_running_loop()
    sock = _bound()
    t = BatchedDatagramTransport(loop, sock, Collect(), gro=False)
    rx1, rx2 = _plain_receiver(), _plain_receiver()
    try:
        sock.refuse_gso = err
        burst = _burst(10)
        t.sendmany([(d, rx1.getsockname(), None) for d in burst])
        assert sock.gso_sends == 1 and sock.sendto_calls == 10
        assert _drain(rx1, 10) == burst
        t.sendmany([(d, rx1.getsockname(), None) for d in burst])
        assert sock.gso_sends == 1 and sock.sendto_calls == 20
        assert _drain(rx1, 10) == burst
        sock.refuse_gso = None
        t.sendmany([(d, rx2.getsockname(), None) for d in burst])
        assert sock.gso_sends == 2
        assert _drain(rx2, 10) == burst
        assert t.send_errors == 0
    finally:
        t.close()
        rx1.close()
        rx2.close()


@pytest.mark.parametrize("gso", [pytest.param(True, marks=needs_gso), False],
                         ids=["gso", "no-gso"])
async def test_an_icmp_error_met_by_sendmany_is_read_and_costs_no_datagram(gso: bool) -> None:
    # A port unreachable from an earlier datagram to a closed port surfaces on the
    # next send, here of a run to a live peer: it is read as an ICMP error (not
    # left in the error queue, where it kept waking the loop for nothing), and
    # the run still arrives.
    loop = asyncio.get_running_loop()
    unreachable: list[tuple[Any, int]] = []

    class Errors(Collect):
        def unreachable(self, quoted: bytes, addr: Any, err: int) -> None:
            unreachable.append((addr, err))

        def error_received(self, exc: Exception) -> None:
            pass

    sock = _bound()
    t = BatchedDatagramTransport(loop, sock, Errors(), gro=False, gso=gso)
    rx = _plain_receiver()
    closed = _plain_receiver()
    gone = closed.getsockname()
    closed.close()
    try:
        # (On loopback the ICMP error is back before sendmany returns; the loop gets
        # no turn to read it before the next send.)
        t.sendmany([(b"to nobody", gone, None)])
        burst = _burst(20)
        t.sendmany([(d, rx.getsockname(), None) for d in burst])
        assert sock.gso_sends == (1 if gso else 0)
        assert sock.sendto_calls == 1 + 20 + (0 if gso else 1)  # (the one that failed)
        assert _drain(rx, 20) == burst
        assert unreachable == [(gone, errno.ECONNREFUSED)]  # read at once
    finally:
        t.close()
        rx.close()


# ------------------------------------------------------------------ GRO


def _gso_sender() -> socket.socket:
    return _bound(cls=socket.socket)


def _send_gso(sock: socket.socket, datagrams: list[bytes], addr: Any) -> None:
    """What a GSO sender (another program) sends: one run in one call."""
    size = len(datagrams[0])
    sock.sendmsg(datagrams, [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))], 0, addr)


@needs_gso
@needs_gro
@pytest.mark.parametrize("pktinfo", [False, True], ids=["bound", "wildcard"])
async def test_gro_reads_a_run_in_one_call_and_splits_it_as_sent(pktinfo: bool) -> None:
    loop = asyncio.get_running_loop()
    proto = Collect()
    sock = _bound("0.0.0.0" if pktinfo else HOST)
    t = BatchedDatagramTransport(loop, sock, proto, pktinfo=pktinfo)
    tx = _gso_sender()
    try:
        assert t.gro and t.pktinfo == pktinfo
        addr = (HOST, sock.getsockname()[1])
        runs = [_burst(44, tag=1), _burst(20, tag=2) + [b"last, shorter"], [b"alone"],
                _burst(30, size=100, tag=3)]
        for run in runs:
            _send_gso(tx, run, addr)
        sent = [d for run in runs for d in run]
        async with deadline(5):
            while len(proto.got) < len(sent):
                await asyncio.sleep(0.005)
        assert [item[0] for item in proto.got] == sent
        assert all(type(item[0]) is bytes for item in proto.got)
        assert {item[1] for item in proto.got} == {tx.getsockname()}
        if pktinfo:
            assert {item[2].host for item in proto.got} == {HOST}
            assert len({id(item[2]) for item in proto.got}) == 1
        else:
            assert {len(item) for item in proto.got} == {2}
        assert sock.recvmsg_calls <= len(runs) + 2  # (and the one that found nothing)
        # At most BATCH datagrams to the protocol at a time, give or take one run.
        assert proto.batches >= 2
    finally:
        t.close()
        tx.close()


@needs_gro
async def test_gro_off_where_the_kernel_lacks_it_reads_one_by_one() -> None:
    loop = asyncio.get_running_loop()
    proto = Collect()
    sock = CountingSocket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.lacks = True
    sock.bind((HOST, 0))
    t = BatchedDatagramTransport(loop, sock, proto)
    try:
        assert not t.gro
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for d in _burst(5):
                tx.sendto(d, sock.getsockname())
        await wait_until(lambda: len(proto.got) == 5, 2)
        assert [d for d, _ in proto.got] == _burst(5)
        assert sock.recvmsg_calls == 0  # recvfrom, as without GRO
    finally:
        t.close()


async def test_gro_is_switched_off_again_if_the_loop_cannot_watch_the_socket() -> None:
    # open_datagram_socket then hands the socket to the loop's own transport, which
    # would take a coalesced read for one datagram.
    class NoReader:
        def add_reader(self, *args: Any) -> None:
            raise NotImplementedError

    sock = _bound()
    try:
        with pytest.raises(NotImplementedError):
            BatchedDatagramTransport(NoReader(), sock, Collect())  # type: ignore[arg-type]
        if gro_supported(sock):
            assert sock.getsockopt(SOL_UDP, UDP_GRO) == 0
    finally:
        sock.close()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _bound6() -> Any:
    sock = CountingSocket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.bind(("::1", 0))
    datagram.enlarge_buffers(sock, 4 << 20)  # (as _bound)
    return sock


@needs_gso
@needs_gro
@pytest.mark.parametrize("bound", [
    pytest.param(_bound, id="ipv4"),
    pytest.param(_bound6, id="ipv6", marks=pytest.mark.skipif(
        not _ipv6_loopback(), reason="no IPv6 loopback"))])
async def test_gso_to_gro_between_two_transports(bound: Any) -> None:
    loop = asyncio.get_running_loop()
    proto = Collect()
    rx = BatchedDatagramTransport(loop, bound(), proto)
    tx = BatchedDatagramTransport(loop, bound(), Collect())
    try:
        addr = rx.get_extra_info("sockname")
        sent = _burst(300) + [b"tail"]
        tx.sendmany([(d, addr, None) for d in sent])
        async with deadline(5):
            while len(proto.got) < len(sent):
                await asyncio.sleep(0.005)
        assert [d for d, _ in proto.got] == sent
        assert rx._sock.recvmsg_calls < 20 and tx._sock.gso_sends == 7
    finally:
        rx.close()
        tx.close()


# ------------------------------------------------------------------ utcp over it


@pytest.mark.parametrize("env", [{}, {"UTCP_GSO": "0", "UTCP_GRO": "0"}],
                         ids=["offload", "no-offload"])
async def test_a_transfer_is_the_same_with_and_without_offload(make_server, monkeypatch,
                                                               env: dict[str, str]) -> None:
    monkeypatch.delenv("UTCP_GSO", raising=False)
    monkeypatch.delenv("UTCP_GRO", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    server = await make_server()
    data = bytes(range(256)) * 8000  # 2 MB
    async with deadline(20):
        reader, writer = await utcp.open_connection(HOST, server.port)
        transports = [writer.transport.endpoint.transport, server._endpoint.transport]
        for t in transports:
            assert isinstance(t, BatchedDatagramTransport)
            assert t.gso == (not env and datagram.gso_supported(t._sock))
            assert t.gro == (not env and datagram.gro_supported(t._sock))
        _, echoed = await asyncio.gather(send_all(writer, data), read_all(reader))
        assert echoed == data
        writer.close()
        await writer.wait_closed()


# ------------------------------------------------- one datagram per wake-up


async def _lone_datagrams_then_a_burst(reader: str) -> None:
    """Request/response traffic (one datagram per wake-up) is read mostly without
    a read that finds nothing; a burst after it is all delivered, in batches again,
    and lone datagrams after that are counted afresh."""
    loop = asyncio.get_running_loop()
    proto = Collect()
    sock = _bound("0.0.0.0" if reader == "pktinfo" else HOST)
    sock.lacks = reader != "gro"
    t = BatchedDatagramTransport(loop, sock, proto, pktinfo=reader == "pktinfo",
                                 gro=reader == "gro")
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    addr = (HOST, sock.getsockname()[1])

    async def one_at_a_time(datagrams: list[bytes]) -> int:
        """Send each once the one before has arrived; the reads it took."""
        before = sock.recvmsg_calls + sock.recvfrom_calls
        for d in datagrams:
            n = len(proto.got)
            tx.sendto(d, addr)
            await wait_until(lambda n=n: len(proto.got) == n + 1, 2)
        return sock.recvmsg_calls + sock.recvfrom_calls - before

    try:
        assert t.gro == (reader == "gro") and t.pktinfo == (reader == "pktinfo")
        # The first LONE_AFTER wake-ups also read to the end (and find nothing);
        # after that one read per datagram, but for every (LONE_PROBE + 1)-th.
        lone = _burst(40, size=100, tag=1)
        expected = len(lone) + LONE_AFTER + (len(lone) - LONE_AFTER) // (LONE_PROBE + 1)
        assert await one_at_a_time(lone) == expected
        # (Small datagrams: the burst fits a stock Linux's socket buffer.)
        burst = _burst(200, size=100, tag=2)
        batches = proto.batches
        for d in burst:
            tx.sendto(d, addr)
        await wait_until(lambda: len(proto.got) == len(lone) + len(burst), 2)
        # At most LONE_PROBE wake-ups read one datagram before one reads to the end.
        assert proto.batches - batches <= LONE_PROBE + 1 + len(burst) // datagram.BATCH + 2
        again = _burst(40, size=100, tag=3)
        assert await one_at_a_time(again) == expected
        assert [item[0] for item in proto.got] == lone + burst + again
    finally:
        t.close()
        tx.close()


READERS = ["plain", "pktinfo", pytest.param("gro", marks=needs_gro)]


@pytest.mark.parametrize("reader", READERS)
async def test_one_datagram_per_wake_up_costs_one_read_and_a_burst_is_batched_again(
        reader: str) -> None:
    await _lone_datagrams_then_a_burst(reader)


@pytest.mark.skipif(uvloop is None, reason="uvloop is not installed")
@pytest.mark.parametrize("reader", READERS)
def test_one_read_per_wake_up_leaves_nothing_behind_on_uvloop(reader: str) -> None:
    # (libuv watches the socket level-triggered too: what a wake-up leaves is read
    # at the next.)
    run_on_loop(uvloop.new_event_loop, _lone_datagrams_then_a_burst(reader))
