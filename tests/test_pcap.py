"""pcap captures: what Wireshark reads back is plain TCP over IP, checksums and all."""

from __future__ import annotations

import asyncio
import io
import pathlib
import socket
import subprocess
import sys
import time

import pytest
from conftest import HOST, deadline
from scapy.all import IP, TCP, IPv6, rdpcap

import utcp

# (Wireshark's own TCP analysis is not available here; scapy decodes the same
# bytes and recomputes the checksums, which is what makes the analysis work.)


def flags(packets: list) -> list[str]:
    return [str(p[TCP].flags) for p in packets]


def checksums_hold(packet) -> bool:
    ip_layer = IPv6 if IPv6 in packet else IP
    copy = packet.copy()
    del copy[TCP].chksum
    if ip_layer is IP:
        del copy[IP].chksum
    again = ip_layer(bytes(copy))
    ok = again[TCP].chksum == packet[TCP].chksum
    if ip_layer is IP:
        ok = ok and again[IP].chksum == packet[IP].chksum
    return ok


async def exchange(host: str, tmp_path: pathlib.Path) -> tuple[list, list, int, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()
        writer.write(data.upper())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    client_cap = utcp.PcapWriter(str(tmp_path / "client.pcap"))
    server_cap = utcp.PcapWriter(str(tmp_path / "server.pcap"))
    async with deadline(10):
        server = await utcp.start_server(handle, host, 0, observer=server_cap, msl=0.05)
        async with server:
            reader, writer = await utcp.open_connection(host, server.port, observer=client_cap,
                                                        msl=0.05)
            client_port = writer.get_extra_info("sockname")[1]
            writer.write(b"hello, wireshark")
            writer.write_eof()
            assert await reader.read() == b"HELLO, WIRESHARK"
            writer.close()
            await writer.wait_closed()
            await asyncio.sleep(0.2)  # TIME-WAIT over
    client_cap.close()
    server_cap.close()
    return (list(rdpcap(str(tmp_path / "client.pcap"))),
            list(rdpcap(str(tmp_path / "server.pcap"))), server.port, client_port)


async def test_a_capture_shows_handshake_data_and_close_as_tcp(tmp_path: pathlib.Path) -> None:
    t0 = time.time()
    client, server, server_port, _ = await exchange(HOST, tmp_path)
    # The server answers the client's FIN at once, and its answer carries the ACK of
    # that FIN, as Linux's does (whose delayed ACK would hold it): no bare ACK between.
    expected = ["S", "SA", "A", "PA", "FA", "PA", "FA", "A"]
    assert flags(client) == expected
    assert flags(server) == expected  # the same segments, seen from the other end
    for p in client:
        assert IP in p and p[IP].proto == 6 and p[IP].src == p[IP].dst == HOST
        assert checksums_hold(p), p.summary()
        assert t0 - 1 < float(p.time) < time.time() + 1
    syn = client[0][TCP]
    assert syn.dport == server_port
    assert dict(syn.options)["MSS"] == 1452
    assert "Timestamp" in dict(syn.options)
    # The bytes of the stream, as Wireshark's "follow TCP stream" would show them.
    assert b"".join(bytes(p[TCP].payload) for p in client if p[TCP].sport != server_port) \
        == b"hello, wireshark"
    assert b"".join(bytes(p[TCP].payload) for p in client if p[TCP].sport == server_port) \
        == b"HELLO, WIRESHARK"
    # Sequence numbers run on across the capture as TCP's do.
    data = [p[TCP] for p in client if p[TCP].flags == "PA"]
    fins = [p[TCP] for p in client if p[TCP].flags == "FA"]
    assert fins[0].seq == data[0].seq + 16


async def test_ipv6_captures_carry_ipv6_headers(tmp_path: pathlib.Path) -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback address on this host")
    client, _, _, _ = await exchange("::1", tmp_path)
    assert flags(client)[:3] == ["S", "SA", "A"]
    for p in client:
        assert IPv6 in p and p[IPv6].nh == 6 and p[IPv6].src == "::1"
        assert checksums_hold(p), p.summary()


def test_a_file_object_is_left_open() -> None:
    buf = io.BytesIO()
    with utcp.PcapWriter(buf) as cap:
        assert cap.segments == 0
    assert not buf.closed
    assert buf.getvalue()[:4] == bytes.fromhex("d4c3b2a1")  # pcap, little-endian


def test_the_command_line_captures_with_pcap(tmp_path: pathlib.Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    utcp_cmd = [sys.executable, "-m", "utcp"]
    server = subprocess.Popen([*utcp_cmd, "echo-server", "--host", HOST, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert server.stderr is not None
    assert "listening" in server.stderr.readline()
    try:
        result = subprocess.run([*utcp_cmd, "echo-client", HOST, str(port), "--message", "hi",
                                 "--pcap", str(tmp_path / "c.pcap"), "--trace"],
                                capture_output=True, text=True, timeout=30)
    finally:
        server.terminate()
        server.communicate(timeout=10)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"
    assert "SYN" in result.stderr  # the trace too: both observers at once
    packets = list(rdpcap(str(tmp_path / "c.pcap")))
    assert flags(packets)[:3] == ["S", "SA", "A"]
    assert sum("F" in f for f in flags(packets)) == 2  # a FIN each way
    assert all(checksums_hold(p) for p in packets)


def test_tshark_reads_the_capture_as_tcp_with_good_checksums(tmp_path: pathlib.Path) -> None:
    import shutil

    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark (Wireshark's command line) is not installed here")
    capture = tmp_path / "demo.pcap"
    demo = subprocess.run([sys.executable, "-m", "utcp", "demo", "--msl", "0.05", "--pcap",
                           str(capture)], capture_output=True, timeout=30)
    assert demo.returncode == 0, demo.stderr
    fields = subprocess.run(
        [tshark, "-r", str(capture), "-o", "tcp.check_checksum:TRUE", "-o",
         "ip.check_checksum:TRUE", "-T", "fields", "-e", "tcp.flags.str", "-e",
         "tcp.checksum.status", "-e", "ip.checksum.status", "-e", "tcp.analysis.flags"],
        capture_output=True, text=True, timeout=60)
    rows = [line.split("\t") for line in fields.stdout.splitlines()]
    assert len(rows) == 8  # the demo's segments (its ladder)
    assert all(r[1] == "1" and r[2] == "1" for r in rows)  # 1: checksum good
    assert all(len(r) < 4 or r[3] == "" for r in rows)  # no TCP analysis warnings
    follow = subprocess.run([tshark, "-r", str(capture), "-qz", "follow,tcp,ascii,0"],
                            capture_output=True, text=True, timeout=60)
    assert "hello" in follow.stdout and "HELLO" in follow.stdout
