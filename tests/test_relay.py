"""The impairing UDP relay (``utcp.emulator.Relay``) over loopback: NAT-like
mappings per client, TCP port rewriting, the impaired paths, idle expiry."""

from __future__ import annotations

import asyncio
import random

import pytest
from conftest import HOST, RawSocket, deadline, echo_once, wait_until
from hypothesis import given
from hypothesis import strategies as st

from utcp.core.wire import ACK, MalformedSegment, Segment, checksum, decode, encode
from utcp.emulator import Impairments, Relay
from utcp.emulator.relay import rewrite_port

pytestmark = pytest.mark.usefixtures("loop_errors")


class Echo(RawSocket):
    """A plain UDP echo target that remembers who sent what."""

    def __init__(self) -> None:
        super().__init__()
        self.senders: list[tuple[object, ...]] = []

    def datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
        self.senders.append(addr)
        assert self.transport is not None
        self.transport.sendto(data, addr)


@pytest.fixture
async def echo() -> Echo:
    _, target = await asyncio.get_running_loop().create_datagram_endpoint(
        Echo, local_addr=(HOST, 0))
    yield target
    target.close()


async def datagram(sock: RawSocket, timeout: float = 1.0) -> tuple[bytes, tuple[object, ...]]:
    data, addr, _ = await asyncio.wait_for(sock.received.get(), timeout)
    return data, addr


# ------------------------------------------------------------------ rewriting


@given(st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 65535),
       st.binary(max_size=64), st.integers(0, 2**32 - 1))
def test_rewriting_a_port_keeps_the_checksum_valid(src, dst, new, payload, seq) -> None:
    seg = encode(Segment(src, dst, seq, 7, ACK, 1000, payload=payload))
    out = rewrite_port(seg, 2, dst, new)
    assert checksum(out) == 0
    got = decode(out)
    assert (got.src_port, got.dst_port, got.seq, got.payload) == (src, new, seq, payload)
    back = rewrite_port(out, 0, src, new)
    assert decode(back).src_port == new


@given(st.binary(min_size=20, max_size=80), st.integers(0, 65535))
def test_rewriting_keeps_a_corrupt_segment_corrupt(data, new) -> None:
    old = int.from_bytes(data[2:4], "big")
    assert (checksum(rewrite_port(data, 2, old, new)) == 0) == (checksum(data) == 0)


def test_only_the_expected_port_is_rewritten() -> None:
    seg = encode(Segment(1000, 2000, 1, 0, ACK, 100))
    assert rewrite_port(seg, 2, 2001, 3000) == seg  # another port there: not ours
    assert rewrite_port(b"short", 2, 0, 1) == b"short"


# ------------------------------------------------------------------ mappings


async def test_each_client_gets_its_own_upstream_port(echo, raw_socket) -> None:
    a, b = await raw_socket(), await raw_socket()
    async with Relay((HOST, echo.port)) as relay, deadline(5):
        for i in range(3):
            a.send(b"from a %d" % i, (HOST, relay.port))
            b.send(b"from b %d" % i, (HOST, relay.port))
        for i in range(3):
            assert await datagram(a) == (b"from a %d" % i, (HOST, relay.port))
            assert await datagram(b) == (b"from b %d" % i, (HOST, relay.port))
        ports = relay.mappings()
        assert set(ports) == {(HOST, a.port), (HOST, b.port)}
        assert ports[(HOST, a.port)] != ports[(HOST, b.port)]
        # The target saw one source per client, the mappings' ports, on loopback.
        assert set(echo.senders) == {(HOST, p) for p in ports.values()}
        stats = relay.statistics()
        assert stats["clients"] == stats["mappings"] == 2
        assert stats["up"]["sent"] == stats["up"]["delivered"] == 6
        assert stats["down"]["sent"] == stats["down"]["delivered"] == 6


async def test_tcp_ports_are_rewritten_both_ways_with_valid_checksums(raw_socket) -> None:
    client, target = await raw_socket(), await raw_socket()
    async with Relay((HOST, target.port)) as relay, deadline(5):
        assert relay.port != target.port
        client.send(Segment(client.port, relay.port, 11, 0, ACK, 500, payload=b"up"),
                    (HOST, relay.port))
        seg, via, _ = await target.recv()  # decode checks the checksum
        assert (seg.src_port, seg.dst_port, seg.payload) == (client.port, target.port, b"up")
        target.send(Segment(target.port, client.port, 22, 13, ACK, 500, payload=b"down"), via)
        seg, sender, _ = await client.recv()
        assert sender == (HOST, relay.port)
        assert (seg.src_port, seg.dst_port, seg.payload) == (relay.port, client.port, b"down")


async def test_without_rewriting_the_bytes_pass_unchanged(raw_socket) -> None:
    client, target = await raw_socket(), await raw_socket()
    async with Relay((HOST, target.port), rewrite_ports=False) as relay, deadline(5):
        seg = encode(Segment(client.port, relay.port, 1, 0, ACK, 500))
        client.send(seg, (HOST, relay.port))
        assert (await datagram(target))[0] == seg


async def test_a_lossy_direction_drops_everything_that_way(echo, raw_socket) -> None:
    client = await raw_socket()
    async with Relay((HOST, echo.port), up=Impairments(loss=1.0)) as relay:
        for _ in range(10):
            client.send(b"lost", (HOST, relay.port))
        await asyncio.sleep(0.1)
        assert echo.senders == [] and client.received.empty()
        up, down = relay.statistics()["up"], relay.statistics()["down"]
        assert up["sent"] == up["lost"] == 10 and up["delivered"] == 0
        assert down["sent"] == 0
    async with Relay((HOST, echo.port), down=Impairments(loss=1.0)) as relay:
        for _ in range(10):
            client.send(b"echoed, then lost", (HOST, relay.port))
        await wait_until(lambda: len(echo.senders) == 10, 2)
        await asyncio.sleep(0.05)
        assert client.received.empty()
        assert relay.down.counters["lost"] == 10 and relay.up.counters["delivered"] == 10


async def test_delay_holds_datagrams_back_and_jitter_keeps_their_order(echo,
                                                                       raw_socket) -> None:
    client = await raw_socket()
    path = Impairments(delay=0.03, jitter=0.02)
    async with Relay((HOST, echo.port), up=path, seed=3) as relay, deadline(5):
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        for i in range(50):
            client.send(b"%d" % i, (HOST, relay.port))
        got = []
        for _ in range(50):
            data, _, at = await client.received.get()
            got.append(data)
            assert at - sent_at >= 0.029
        assert got == [b"%d" % i for i in range(50)]


async def test_reordering_lets_later_datagrams_overtake(echo, raw_socket) -> None:
    client = await raw_socket()
    path = Impairments(reorder=0.3, reorder_delay=0.02)
    async with Relay((HOST, echo.port), up=path, seed=5) as relay, deadline(5):
        for i in range(40):
            client.send(b"%d" % i, (HOST, relay.port))
        got = [int((await datagram(client))[0]) for _ in range(40)]
        assert sorted(got) == list(range(40)) and got != sorted(got)
        assert relay.up.counters["reordered"] > 0


async def test_the_same_seed_impairs_the_same_datagrams(echo, raw_socket) -> None:
    async def lost_ones(seed: int) -> list[int]:
        client = await raw_socket()
        async with Relay((HOST, echo.port), up=Impairments(loss=0.3), seed=seed) as relay:
            for i in range(30):
                client.send(b"%d" % i, (HOST, relay.port))
            await asyncio.sleep(0.05)
            got = set()
            while not client.received.empty():
                got.add(int(client.received.get_nowait()[0]))
        return sorted(set(range(30)) - got)

    first = await lost_ones(9)
    assert first and first == await lost_ones(9) and first != await lost_ones(10)


async def test_an_idle_mapping_expires_and_the_client_gets_a_new_one(echo,
                                                                     raw_socket) -> None:
    client = await raw_socket()
    async with Relay((HOST, echo.port), idle_timeout=0.1) as relay, deadline(5):
        client.send(b"one", (HOST, relay.port))
        await datagram(client)
        first = relay.mappings()[(HOST, client.port)]
        for _ in range(4):  # traffic from the client keeps it
            await asyncio.sleep(0.04)
            client.send(b"again", (HOST, relay.port))
            await datagram(client)
        assert relay.mappings()[(HOST, client.port)] == first
        await wait_until(lambda: relay.mappings() == {}, 1)
        assert relay.counters["expired"] == 1
        client.send(b"two", (HOST, relay.port))
        assert (await datagram(client))[0] == b"two"
        second = relay.mappings()[(HOST, client.port)]
        assert second != first and echo.senders[-1] == (HOST, second)
        assert relay.counters["clients"] == 2


async def test_a_full_table_drops_new_clients_until_a_mapping_expires(echo,
                                                                      raw_socket) -> None:
    # A flood of new source addresses (spoofed, say) costs at most max_clients
    # sockets; the clients already in go on, and a newcomer gets in once one is gone.
    a, b, c = await raw_socket(), await raw_socket(), await raw_socket()
    async with Relay((HOST, echo.port), max_clients=2, idle_timeout=0.2) as relay, \
            deadline(5):
        for client in (a, b):
            client.send(b"in", (HOST, relay.port))
            await datagram(client)
        for _ in range(3):
            c.send(b"full?", (HOST, relay.port))
        await wait_until(lambda: relay.counters["table-full"] == 3, 1)
        assert len(relay.mappings()) == 2 and (HOST, c.port) not in relay.mappings()
        a.send(b"still here", (HOST, relay.port))
        assert (await datagram(a))[0] == b"still here"
        await wait_until(lambda: relay.mappings() == {}, 2)  # both fall silent
        c.send(b"now", (HOST, relay.port))
        assert (await datagram(c))[0] == b"now"
        assert relay.statistics()["table-full"] == 3 and relay.counters["clients"] == 3


async def test_datagrams_from_strangers_are_counted_and_dropped(echo, raw_socket) -> None:
    client, stranger = await raw_socket(), await raw_socket()
    async with Relay((HOST, echo.port)) as relay, deadline(5):
        client.send(b"hello", (HOST, relay.port))
        await datagram(client)
        upstream = relay.mappings()[(HOST, client.port)]
        stranger.send(b"let me in", (HOST, upstream))
        await wait_until(lambda: relay.counters["strangers"] == 1, 1)
        await asyncio.sleep(0.02)
        assert client.received.empty()


async def test_close_drops_what_is_on_its_way(echo, raw_socket) -> None:
    client = await raw_socket()
    relay = await Relay((HOST, echo.port), up=Impairments(delay=0.05)).start()
    client.send(b"late", (HOST, relay.port))
    await asyncio.sleep(0.01)
    assert not relay.idle
    relay.close()
    assert relay.idle
    await asyncio.sleep(0.08)
    assert echo.senders == []


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="idle_timeout"):
        Relay((HOST, 1), idle_timeout=0)
    with pytest.raises(ValueError, match="max_clients must be an int of 1 or more"):
        Relay((HOST, 1), max_clients=0)


# ------------------------------------------------------------------ utcp through it

FAST = dict(min_rto=0.02, initial_rto=0.05, max_rto=0.5, delayed_ack=0.01, msl=0.05)


async def test_utcp_echo_through_a_bad_path_arrives_intact(make_server) -> None:
    server = await make_server(**FAST)
    bad = Impairments(delay=0.002, jitter=0.002, loss=0.05, reorder=0.05,
                      reorder_delay=0.004, duplicate=0.05, corrupt=0.02)
    data = random.Random(4).randbytes(200_000)
    async with Relay((HOST, server.port), up=bad, down=bad, seed=11) as relay:
        assert relay.port != server.port  # so the ports are rewritten
        async with deadline(20):
            assert await echo_once(relay.port, data, **FAST) == data
    for path in (relay.up, relay.down):
        for name in ("lost", "reordered", "duplicated", "corrupted"):
            assert path.counters[name] > 0, (name, path.counters)
    assert server.statistics()["drops"].get("bad-checksum", 0) > 0
    assert "malformed" not in server.statistics()["drops"]


async def test_corruption_comes_after_rewriting(raw_socket) -> None:
    """The checksum is updated before the path flips a bit: a flip is never repaired."""
    client, target = await raw_socket(), await raw_socket()
    async with Relay((HOST, target.port), up=Impairments(corrupt=1.0)) as relay:
        for i in range(20):
            client.send(Segment(client.port, relay.port, i, 0, ACK, 100, payload=b"x" * i),
                        (HOST, relay.port))
        for _ in range(20):
            with pytest.raises(MalformedSegment):
                await target.recv()


async def test_a_transfer_survives_its_client_being_rebound_again_and_again() -> None:
    # Real sockets on loopback: the relay forgets the client's mapping four times
    # during 4 MB, so the server sees the client from a new port each time; the
    # connection follows it, and every byte arrives. (Rebound as the data goes,
    # every 800 kB written, not on a clock: a fast build had finished sending
    # before the fourth of four rebinds 50 ms apart, and left nothing to forget.)
    import hashlib

    import utcp

    async def digest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(hashlib.sha256(await reader.read()).digest())
        await writer.drain()
        writer.close()

    data = random.Random(9).randbytes(4_000_000)
    async with deadline(30):
        server = await utcp.start_server(digest, HOST, 0)
        async with server, Relay((HOST, server.port), seed=3) as relay:
            reader, writer = await utcp.open_connection(HOST, relay.port)
            ports = set()

            for i in range(0, len(data), 100_000):
                writer.write(data[i:i + 100_000])
                await writer.drain()
                if i and i % 800_000 == 0:
                    ports.update(p for p in relay.mappings().values() if p)
                    relay.rebind()
            writer.write_eof()
            assert await reader.read() == hashlib.sha256(data).digest()
            writer.close()
            await writer.wait_closed()  # (the FINs cross the relay before it goes)
            assert relay.statistics()["rebound"] == 4
            assert len(ports) >= 2
            assert server.statistics()["rebinds"] >= 2
