"""The network emulator: impaired paths (sans-I/O, seeded) and the virtual-time
network on which utcp's public API runs unchanged."""

from __future__ import annotations

import asyncio
import hashlib
import time

import pytest

import utcp
from utcp.emulator import ImpairedPath, Impairments, VirtualNetwork

# ----------------------------------------------------------------- one path


def arrivals(imp: Impairments, n: int = 10_000, *, size: int = 100, gap: float = 0.001,
             seed: int = 1) -> tuple[ImpairedPath, list[list[tuple[float, bytes]]]]:
    path = ImpairedPath(imp, seed=seed)
    return path, [path.send(i.to_bytes(4, "big") * (size // 4), i * gap) for i in range(n)]


def test_a_clean_path_delays_every_datagram_by_its_delay_and_keeps_order():
    path, out = arrivals(Impairments(delay=0.02), 100)
    assert [a for [(a, _)] in out] == pytest.approx([i * 0.001 + 0.02 for i in range(100)])
    assert path.counters == {"sent": 100, "delivered": 100}


def test_random_loss_takes_its_share():
    path, out = arrivals(Impairments(loss=0.1))
    assert 900 <= path.counters["lost"] <= 1100
    assert sum(1 for o in out if not o) == path.counters["lost"]


def test_burst_loss_keeps_the_mean_rate_and_loses_in_runs_of_the_mean_length():
    path, out = arrivals(Impairments(loss=0.05, burst=4), 100_000)
    lost = [not o for o in out]
    runs, run = [], 0
    for x in lost:
        if x:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    assert 0.04 <= sum(lost) / len(lost) <= 0.06
    assert 3.5 <= sum(runs) / len(runs) <= 4.5
    # Random loss at the same rate rarely loses four in a row.
    _, plain = arrivals(Impairments(loss=0.05), 100_000)
    assert sum(runs) / len(runs) > 2 * _mean_run([not o for o in plain])


@pytest.mark.parametrize("burst", [1.0, 3.0])
def test_max_burst_caps_every_run_of_losses(burst):
    # As the QUIC interop runner's drop-rate network: at most N lost in a row.
    path, out = arrivals(Impairments(loss=0.3, burst=burst, max_burst=3), 100_000)
    lost = [not o for o in out]
    longest = run = 0
    for x in lost:
        run = run + 1 if x else 0
        longest = max(longest, run)
    assert longest == 3
    assert sum(lost) == path.counters["lost"]
    # Without the cap the same path loses far longer runs.
    _, uncapped = arrivals(Impairments(loss=0.3, burst=burst), 100_000)
    longest = run = 0
    for o in uncapped:
        run = run + 1 if not o else 0
        longest = max(longest, run)
    assert longest > 6


def _mean_run(lost: list[bool]) -> float:
    runs, run = [], 0
    for x in lost:
        if x:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    return sum(runs) / len(runs)


def test_the_same_seed_repeats_a_run_and_another_seed_does_not():
    imp = Impairments(delay=0.01, jitter=0.005, loss=0.1, reorder=0.1, duplicate=0.05,
                      corrupt=0.05)
    assert arrivals(imp, seed=5)[1] == arrivals(imp, seed=5)[1]
    assert arrivals(imp, seed=5)[1] != arrivals(imp, seed=6)[1]


def test_jitter_alone_never_reorders():
    _, out = arrivals(Impairments(delay=0.01, jitter=0.02), 2000)
    times = [a for [(a, _)] in out]
    assert times == sorted(times)
    assert max(t - i * 0.001 for i, t in enumerate(times)) > 0.02  # it did vary


def test_reordered_datagrams_are_overtaken():
    path, out = arrivals(Impairments(delay=0.01, reorder=0.05, reorder_delay=0.01), 2000)
    times = [a for [(a, _)] in out]
    overtaken = sum(1 for i in range(len(times) - 1) if times[i] > times[i + 1])
    assert overtaken > 50 and path.counters["reordered"] >= overtaken


def test_duplicates_arrive_twice_and_corruption_flips_exactly_one_bit():
    path, out = arrivals(Impairments(duplicate=0.1, corrupt=0.1), 2000)
    assert sum(len(o) == 2 for o in out) == path.counters["duplicated"] > 100
    flipped = 0
    for i, copies in enumerate(out):
        sent = i.to_bytes(4, "big") * 25
        for _, data in copies:
            diff = sum(bin(a ^ b).count("1") for a, b in zip(sent, data, strict=True))
            assert diff in (0, 1)
            flipped += diff
    assert path.counters["corrupted"] > 100 and flipped >= path.counters["corrupted"]


def test_a_bottleneck_spaces_datagrams_at_its_rate_and_drops_past_its_queue():
    # 1000-byte datagrams at 1 Mbit/s leave 8 ms apart; 100 sent at once: the
    # first waits for nothing, 10 more wait in the queue, the rest are dropped.
    path = ImpairedPath(Impairments(rate=1e6, queue=10, delay=0.005))
    out = [path.send(bytes(1000), 0.0) for _ in range(100)]
    delivered = [o[0][0] for o in out if o]
    assert delivered == pytest.approx([0.005 + 0.008 * k for k in range(1, 11)])
    assert path.counters["queue-full"] == 90
    # Once the queue drains, the path carries again.
    assert path.send(bytes(1000), 1.0) == [(pytest.approx(1.013), bytes(1000))]


def test_datagrams_above_the_mtu_are_dropped():
    path = ImpairedPath(Impairments(mtu=1280))
    assert path.send(bytes(1280), 0.0) and not path.send(bytes(1281), 0.0)
    assert path.counters["too-big"] == 1


def test_a_blackout_carries_nothing_while_down():
    path = ImpairedPath(Impairments(blackout=(5.0, 2.0)))
    up = [t for t in range(0, 21) if path.send(b"x", float(t))]
    assert up == [0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 14, 15, 16, 17, 18]
    assert path.counters["blackout"] == 6


@pytest.mark.parametrize("args, message", [
    ({"loss": 1.5}, "loss is a fraction"),
    ({"delay": -1}, "delay must be 0 or more"),
    ({"burst": 0.5}, "burst is a mean length"),
    ({"rate": 0}, "rate must be above 0"),
    ({"queue": 0}, "queue must hold 1 datagram"),
    ({"blackout": (1.0, 0.0)}, "blackout is"),
    ({"mtu": 0}, "mtu must be 1 byte"),
    ({"max_burst": 0}, "max_burst is a count of 1 or more"),
    ({"max_burst": 2.5}, "max_burst is a count of 1 or more"),
    ({"max_burst": True}, "max_burst is a count of 1 or more"),
])
def test_impossible_impairments_are_refused_with_a_clear_message(args, message):
    with pytest.raises(ValueError, match=message):
        Impairments(**args)


def test_describe_names_what_differs_from_a_clean_path():
    assert Impairments().describe() == "clean"
    assert Impairments(delay=0.015, loss=0.02).describe() == "delay=0.015 loss=0.02"


# ----------------------------------------------------------- virtual network


async def sha_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = await reader.read()
    writer.write(hashlib.sha256(data).digest())
    await writer.drain()
    writer.close()


def two_hosts(**path) -> tuple[VirtualNetwork, object, object]:
    net = VirtualNetwork(seed=2)
    server = net.add_host("10.0.0.1", "server")
    client = net.add_host("10.0.0.2", "client")
    if path:
        net.set_path("10.0.0.1", "10.0.0.2", Impairments(**path))
    return net, server, client


def transfer(net, server, client, size: int) -> tuple[float, bytes, bytes]:
    """Send ``size`` bytes from client to server with the public API; return the
    virtual time it took, and the digests sent and received."""
    blob = hashlib.sha256(b"seed").digest() * (size // 32)

    async def main():
        srv = await server.run(utcp.start_server(sha_echo, "0.0.0.0", 7000))

        async def go():
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            reader, writer = await utcp.open_connection("server", 7000)
            writer.write(blob)
            writer.write_eof()
            got = await reader.read()
            writer.close()
            await writer.wait_closed()
            return loop.time() - t0, got

        took, got = await client.run(go())
        srv.close()
        await srv.wait_closed()
        return took, got

    took, got = net.run(main())
    return took, hashlib.sha256(blob).digest(), got


def test_the_streams_api_runs_unchanged_on_virtual_time():
    net, server, client = two_hosts(delay=0.05)
    wall = time.perf_counter()
    took, sent, got = transfer(net, server, client, 64 * 1024)
    assert got == sent
    # Three round trips of 100 ms at least (handshake, data, close), in virtual time.
    assert took >= 0.3
    assert time.perf_counter() - wall < took  # (and far less on the wall clock)


def test_a_lossy_bottleneck_delivers_everything_intact_and_runs_repeat():
    imp = dict(delay=0.015, rate=10e6, queue=25, loss=0.02, burst=3)
    first = transfer(*two_hosts(**imp), 512 * 1024)
    assert first[1] == first[2]
    assert transfer(*two_hosts(**imp), 512 * 1024) == first  # the same, to the microsecond


def test_hours_of_keepalive_take_no_wall_time():
    net, server, client = two_hosts(delay=0.01)

    async def main():
        srv = await server.run(utcp.start_server(sha_echo, "0.0.0.0", 7000))

        async def go():
            reader, writer = await utcp.open_connection(
                "server", 7000, keepalive=True, keepalive_idle=7200, keepalive_interval=75,
                keepalive_count=9)
            net.set_path("10.0.0.1", "10.0.0.2", Impairments(loss=1.0))  # the peer vanishes
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(TimeoutError):
                await reader.read()
            return loop.time() - t0

        took = await client.run(go())
        srv.close()
        return took

    wall = time.perf_counter()
    took = net.run(main())
    assert 7200 + 9 * 75 <= took <= 7200 + 10 * 75
    assert time.perf_counter() - wall < 5


def test_a_port_with_no_socket_refuses_at_once():
    net, server, client = two_hosts(delay=0.02)

    async def go():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(ConnectionRefusedError):
            await utcp.open_connection("server", 7999)
        return loop.time() - t0

    async def main():
        return await client.run(go())

    assert net.run(main()) == pytest.approx(0.04)  # one round trip: SYN, ICMP back
    assert net.counters["port-unreachable"] == 1


def test_code_not_on_a_host_must_say_which_host_it_binds():
    net, _, _ = two_hosts()

    async def main():
        with pytest.raises(OSError, match="which virtual host"):
            await utcp.open_connection("server", 7000)
        with pytest.raises(OSError, match="no such virtual host"):
            await utcp.start_server(sha_echo, "10.9.9.9", 7000)

    net.run(main())


def test_a_seed_repeats_every_segment_ports_and_sequence_numbers_included():
    def run() -> list[tuple]:
        net, server, client = two_hosts(delay=0.01, loss=0.05)
        seen: list[tuple] = []

        class Record:
            def state_changed(self, conn, old, new, cause, now):
                pass

            def segment_sent(self, conn, seg, now):
                seen.append((now, seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags))

            def segment_received(self, conn, seg, now):
                pass

        async def main():
            await server.run(utcp.start_server(sha_echo, "0.0.0.0", 7000, observer=Record()))

            async def go():
                reader, writer = await utcp.open_connection("server", 7000, observer=Record())
                writer.write(bytes(50_000))
                writer.write_eof()
                await reader.read()
                writer.close()

            await client.run(go())

        net.run(main())
        return seen

    first = run()
    assert len(first) > 50 and run() == first
