"""``utcp tunnel``: kernel TCP programs over utcp, through two tunnels, as a user runs them."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import pathlib
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

UTCP = [sys.executable, "-m", "utcp"]
HOST = "127.0.0.1"


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for_line(proc: subprocess.Popen[str], needle: str) -> None:
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert needle in line, line


@contextlib.contextmanager
def tunnels(target_tcp_port: int) -> Iterator[int]:
    """TCP port P here -> utcp -> tunnel -> kernel TCP ``target_tcp_port``: yields P."""
    utcp_port = free_port(socket.SOCK_DGRAM)
    entry = free_port(socket.SOCK_STREAM)
    far = subprocess.Popen([*UTCP, "tunnel", f"utcp:{HOST}:{utcp_port}",
                            f"tcp:{HOST}:{target_tcp_port}"],
                           stderr=subprocess.PIPE, text=True)
    near = subprocess.Popen([*UTCP, "tunnel", f"tcp:{HOST}:{entry}",
                             f"utcp:{HOST}:{utcp_port}"], stderr=subprocess.PIPE, text=True)
    try:
        wait_for_line(far, "tunnel from utcp:")
        wait_for_line(near, "tunnel from tcp:")
        yield entry
    finally:
        for proc in (near, far):
            proc.terminate()
        for proc in (near, far):
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        assert near.returncode == far.returncode == 143


def test_http_through_two_tunnels(tmp_path: pathlib.Path) -> None:
    blob = os.urandom(4_000_000)
    (tmp_path / "blob").write_bytes(blob)
    web_port = free_port(socket.SOCK_STREAM)
    web = subprocess.Popen([sys.executable, "-m", "http.server", str(web_port), "--bind", HOST,
                            "--directory", str(tmp_path)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):  # until it listens
            with socket.socket() as probe:
                if probe.connect_ex((HOST, web_port)) == 0:
                    break
            time.sleep(0.05)
        with tunnels(web_port) as entry:
            for _ in range(3):  # one utcp connection per request, each in turn
                conn = http.client.HTTPConnection(HOST, entry, timeout=30)
                conn.request("GET", "/blob")
                response = conn.getresponse()
                body = response.read()
                conn.close()
                assert response.status == 200
                assert hashlib.sha256(body).digest() == hashlib.sha256(blob).digest()
    finally:
        web.terminate()
        web.wait()


class KernelServer:
    """A kernel TCP server on a thread: each connection is given to ``handle``."""

    def __init__(self, handle) -> None:
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.results: list[object] = []
        self._handle = handle
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            self.results.append(self._handle(conn))
        except Exception as exc:  # recorded for the test to check
            self.results.append(exc)

    def wait(self, n: int = 1) -> list[object]:
        """The results, once ``n`` connections have ended (or after 10 s)."""
        for _ in range(200):
            if len(self.results) >= n:
                break
            time.sleep(0.05)
        return self.results

    def close(self) -> None:
        self.sock.close()


def echo_until_eof(conn: socket.socket) -> int:
    """Echo everything, half-close after the client's FIN, and count the bytes."""
    total = 0
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
            total += len(data)
        conn.shutdown(socket.SHUT_WR)
        time.sleep(0.2)
    return total


def test_half_close_goes_through_both_ways() -> None:
    server = KernelServer(echo_until_eof)
    payload = os.urandom(1_000_000)
    try:
        with tunnels(server.port) as entry, socket.create_connection((HOST, entry)) as c:
            c.settimeout(30)
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)  # our FIN: the server's recv() returns b""
            got = bytearray()
            while data := c.recv(65536):
                got += data
    finally:
        server.close()
    assert bytes(got) == payload  # the server's FIN came back as our EOF, after all of it
    assert server.wait() == [len(payload)]


def reset_after_a_line(conn: socket.socket) -> str:
    conn.recv(100)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()  # a RST
    return "reset"


def test_a_reset_is_passed_on_as_a_reset() -> None:
    server = KernelServer(reset_after_a_line)
    try:
        with tunnels(server.port) as entry, socket.create_connection((HOST, entry)) as c:
            c.settimeout(30)
            c.sendall(b"hello\n")
            with pytest.raises(ConnectionResetError):
                while c.recv(100):
                    pass
    finally:
        server.close()
    assert server.wait() == ["reset"]


def wait_for_reset(conn: socket.socket) -> str:
    with conn:
        conn.settimeout(30)
        try:
            while conn.recv(100):
                pass
        except ConnectionResetError:
            return "reset"
    return "eof"


def test_a_client_reset_reaches_the_server() -> None:
    server = KernelServer(wait_for_reset)
    try:
        with tunnels(server.port) as entry:
            c = socket.create_connection((HOST, entry))
            c.sendall(b"x")
            time.sleep(0.3)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            results = server.wait()
    finally:
        server.close()
    assert results == ["reset"]


def test_a_target_that_refuses_resets_the_client() -> None:
    nobody = free_port(socket.SOCK_STREAM)  # no kernel TCP server there
    with tunnels(nobody) as entry, socket.create_connection((HOST, entry)) as c:
        c.settimeout(30)
        with pytest.raises(ConnectionResetError):
            c.sendall(b"anyone?")
            while c.recv(100):
                pass


def test_bad_tunnel_addresses_are_named() -> None:
    result = subprocess.run([*UTCP, "tunnel", "tcp:127.0.0.1:80", "tcp:127.0.0.1:81"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "a tunnel joins tcp: to utcp: or utcp: to tcp:" in result.stderr
    result = subprocess.run([*UTCP, "tunnel", "udp:x:1", "utcp:127.0.0.1:81"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "'udp:x:1': give tcp:HOST:PORT or utcp:HOST:PORT" in result.stderr
