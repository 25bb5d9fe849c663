"""``utcp stat`` and ``Server.connection_table()``: a running server's connections."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import socket
import subprocess
import sys

from conftest import HOST, deadline

import utcp

UTCP = [sys.executable, "-m", "utcp"]


async def test_connection_table_lists_each_connection() -> None:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    async with deadline(10):
        server = await utcp.start_server(hold, HOST, 0)
        async with server:
            _, writer = await utcp.open_connection(HOST, server.port)
            writer.write(b"x" * 10_000)
            await writer.drain()
            await asyncio.sleep(0.1)
            [row] = server.connection_table()
            assert row["state"] == "ESTABLISHED"
            assert row["local_port"] == server.port
            assert row["peer"] == HOST
            assert row["remote_port"] == writer.get_extra_info("utcp")["local_port"]
            assert row["bytes_in"] == 10_000 and row["srtt"] is not None
            for key in ("rto", "rttvar", "cwnd", "ssthresh", "unacked", "unsent", "unread",
                        "retransmissions"):
                assert key in row
            writer.close()
            await writer.wait_closed()


def test_utcp_stat_shows_a_running_servers_connections(tmp_path: pathlib.Path) -> None:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}  # this test's sockets only
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([*UTCP, "echo-server", "--host", HOST, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=env)
    assert server.stderr is not None
    assert "listening" in server.stderr.readline()
    client = subprocess.Popen([*UTCP, "connect", HOST, str(port)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert client.stdin is not None and client.stdout is not None
    try:
        client.stdin.write(b"ping\n")
        client.stdin.flush()
        assert client.stdout.readline() == b"ping\n"  # connected
        result = subprocess.run([*UTCP, "stat", str(port), "--json"], capture_output=True,
                                text=True, timeout=30, env=env)
        assert result.returncode == 0, result.stderr
        snap = json.loads(result.stdout)
        assert snap["command"] == "echo-server" and snap["pid"] == server.pid
        echo = snap["servers"][0]
        assert echo["name"] == "echo" and echo["port"] == port
        [conn] = echo["connections"]
        assert conn["state"] == "ESTABLISHED" and conn["bytes_in"] == 5
        assert echo["statistics"]["accepted"] == 1

        table = subprocess.run([*UTCP, "stat"], capture_output=True, text=True, timeout=30,
                               env=env)
        assert table.returncode == 0, table.stderr
        assert f"echo on port {port}: 1 ESTABLISHED" in table.stdout
        assert "RTT/var ms" in table.stdout and "segments_in" in table.stdout
    finally:
        client.communicate(input=b"", timeout=10)  # stdin ends: it half-closes, then ends
        server.terminate()
        server.communicate(timeout=10)
    # The server removed its socket as it stopped: nothing answers now.
    gone = subprocess.run([*UTCP, "stat"], capture_output=True, text=True, timeout=30, env=env)
    assert gone.returncode == 1
    assert "no running utcp server for this user" in gone.stderr
    [directory] = tmp_path.iterdir()  # (this user's, in this network namespace)
    assert directory.name.startswith(f"utcp-{os.getuid()}") and list(directory.iterdir()) == []
