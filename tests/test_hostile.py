"""Hostile peers against a live server, over real UDP on 127.0.0.1: the server holds,
and its other clients do not notice."""

from __future__ import annotations

import asyncio
import socket

import pytest
from conftest import HOST, deadline

import utcp
from utcp.core.wire import ACK, RST, SYN, Segment, decode, encode


class RawPeer:
    """A peer that writes its own segments: a handshake, then whatever it likes."""

    def __init__(self, server_port: int) -> None:
        self.server = (HOST, server_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.iss = 77_000
        self.ack = 0

    async def send(self, seg: Segment) -> None:
        await asyncio.get_running_loop().sock_sendto(self.sock, encode(seg), self.server)

    async def handshake(self) -> None:
        loop = asyncio.get_running_loop()
        await self.send(Segment(self.port, self.server[1], self.iss, 0, SYN, 65535))
        data, _ = await loop.sock_recvfrom(self.sock, 65536)
        synack = decode(data)
        assert synack.flags == SYN | ACK
        self.ack = (synack.seq + 1) & 0xFFFFFFFF
        await self.send(self.segment(0))

    def segment(self, offset: int, payload: bytes = b"") -> Segment:
        """An ACK carrying ``payload`` at ``offset`` bytes into our stream."""
        return Segment(self.port, self.server[1], (self.iss + 1 + offset) & 0xFFFFFFFF,
                       self.ack, ACK, 65535, payload=payload)

    def close(self) -> None:
        self.sock.close()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()


async def test_a_peer_holding_thousands_of_holes_harms_no_one_else() -> None:
    async with deadline(30):
        server = await utcp.start_server(echo, HOST, 0)
        async with server:
            attacker = RawPeer(server.port)
            await attacker.handshake()
            reader, writer = await utcp.open_connection(HOST, server.port)

            async def attack() -> None:
                # 6,000 one-byte holes, then duplicates of them, as fast as it can.
                for i in range(6000):
                    await attacker.send(attacker.segment(2 + 2 * i, b"x"))
                for _ in range(3):
                    for i in range(0, 6000, 5):
                        await attacker.send(attacker.segment(2 + 2 * i, b"x"))

            attacking = asyncio.ensure_future(attack())
            # Meanwhile another client's echoes all come back.
            for i in range(50):
                line = f"still here {i}\n".encode()
                writer.write(line)
                assert await reader.readexactly(len(line)) == line
            await attacking
            await asyncio.sleep(0.2)
            totals = server.statistics()["connection_totals"]
            assert totals["out_of_order"] >= 6000
            assert totals["ooo_dropped"] > 0  # held to the queue's limits, the rest dropped
            [row] = [r for r in server.connection_table()
                     if r["remote_port"] == attacker.port]
            assert row["unread"] <= 512  # one byte in each range the queue may hold
            writer.close()
            await writer.wait_closed()
            # The attacker resets its connection (at RCV.NXT, as RFC 5961 asks), or
            # the server would wait for it to end.
            await attacker.send(Segment(attacker.port, server.port,
                                        (attacker.iss + 1) & 0xFFFFFFFF, 0, RST))
            attacker.close()


async def test_a_server_past_max_connections_drops_further_syns() -> None:
    async with deadline(20):
        server = await utcp.start_server(echo, HOST, 0, max_connections=1)
        async with server:
            _, writer = await utcp.open_connection(HOST, server.port)
            with pytest.raises(TimeoutError):  # its SYNs are dropped, as a full backlog's
                await utcp.open_connection(HOST, server.port, syn_retries=1, initial_rto=0.2,
                                           min_rto=0.2)
            assert server.statistics()["drops"]["connection-limit"] >= 1
            writer.close()
            await writer.wait_closed()


async def test_peers_that_never_read_cannot_pin_the_servers_memory() -> None:
    # The attack: write to an echo server and never read. The server's echo then
    # waits on the attacker's closed window, stops reading, and its own buffers
    # fill. Two attackers take the server past three quarters of its receive
    # memory: their connections are reset after zero_window_timeout, while a
    # client that reads is served throughout.
    async def stubborn_echo(reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, TimeoutError):
            pass  # (TimeoutError: reclaimed, its received data unread)
        writer.close()

    async with deadline(30):
        server = await utcp.start_server(stubborn_echo, HOST, 0, rcv_buf=256 * 1024,
                                         max_receive_memory=512 * 1024,
                                         zero_window_timeout=0.5)
        async with server:
            attackers = [await utcp.open_connection(HOST, server.port) for _ in range(2)]

            async def flood(writer) -> None:
                with pytest.raises(ConnectionResetError):
                    while True:
                        writer.write(bytes(65536))
                        await writer.drain()

            floods = [asyncio.create_task(flood(w)) for _, w in attackers]
            reader, writer = await utcp.open_connection(HOST, server.port)
            most = 0
            while not all(f.done() for f in floods):
                writer.write(b"ping\n")
                assert await reader.readline() == b"ping\n"
                most = max(most, server.statistics()["receive_memory"]["held"])
                await asyncio.sleep(0.02)
            await asyncio.gather(*floods)
            stats = server.statistics()
            assert most <= 512 * 1024
            assert stats["drops"]["memory-reclaimed"] == 2
            assert stats["receive_memory"]["held"] == 0
            writer.write(b"still served\n")
            assert await reader.readline() == b"still served\n"
            writer.close()
            await writer.wait_closed()
            for _, w in attackers:
                w.close()


async def test_limits_are_checked() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_connections must be a positive integer"):
            await utcp.start_server(echo, HOST, 0, max_connections=bad)
    with pytest.raises(ValueError, match="max_connections_per_host must be a positive"):
        await utcp.start_server(echo, HOST, 0, max_connections_per_host=0)
    with pytest.raises(ValueError, match="max_receive_memory must be >= 0 or None"):
        await utcp.start_server(echo, HOST, 0, max_receive_memory=-5)
    with pytest.raises(ValueError, match="zero_window_timeout must be > 0"):
        await utcp.start_server(echo, HOST, 0, zero_window_timeout=0)


async def test_a_spoofed_syn_flood_does_not_keep_real_clients_out() -> None:
    # The backlog is full of half-open connections from a "victim" that never
    # answers; real clients get in at their first SYN all the same (syn_retries=0:
    # a SYN dropped would fail the connection), through SYN cookies.
    async with deadline(30):
        server = await utcp.start_server(echo, HOST, 0, backlog=8)
        async with server:
            flood = RawPeer(server.port)
            for port in range(20_000, 22_000):
                await flood.send(Segment(port, server.port, port * 7, 0, SYN, 65535))
            await asyncio.sleep(0.1)
            for i in range(20):
                reader, writer = await utcp.open_connection(HOST, server.port, syn_retries=0)
                writer.write(b"in %d\n" % i)
                assert await reader.readline() == b"in %d\n" % i
                writer.close()
                await writer.wait_closed()
            stats = server.statistics()
            assert stats["syncookies"]["sent"] >= 1992 and stats["syncookies"]["accepted"] == 20
            assert stats["connections"].get("SYN-RECEIVED", 0) <= 8  # all it keeps
            flood.close()  # (its half-open entries end with their SYN-ACK retries)


async def test_an_icmp_answer_to_a_syn_ack_frees_its_backlog_place_at_once() -> None:
    # A SYN "from" a UDP port where nothing is bound (spoofed): the SYN-ACK draws
    # an ICMP port unreachable, and the half-open entry goes at once.
    async with deadline(10):
        server = await utcp.start_server(echo, HOST, 0, backlog=4)
        async with server:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                sender.bind((HOST, 0))
                port = sender.getsockname()[1]
                sender.sendto(encode(Segment(port, server.port, 1, 0, SYN, 65535)),
                              (HOST, server.port))
            # (closed: nothing is bound at that port when the SYN-ACK arrives)
            for _ in range(100):
                if server.statistics()["drops"].get("icmp-port-unreachable"):
                    break
                await asyncio.sleep(0.01)
            stats = server.statistics()
            assert stats["drops"]["icmp-port-unreachable"] == 1
            assert "SYN-RECEIVED" not in stats["connections"]
