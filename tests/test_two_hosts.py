"""Two hosts: network namespaces joined by a veth pair, driven through the CLI.

Needs root (to create namespaces); skipped, with the reason, otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

# Link-local addresses on a veth pair that exists only inside this test.
SERVER_IP = "169.254.77.1"
CLIENT_IP = "169.254.77.2"
PORT = 7007


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


@pytest.fixture
def two_hosts():
    if os.geteuid() != 0:
        pytest.skip("creating network namespaces needs root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2's 'ip' command is not installed")
    tag = f"{os.getpid() % 100000}"
    a, b = f"utcp-srv-{tag}", f"utcp-cli-{tag}"
    va, vb = f"utva{tag}", f"utvb{tag}"
    try:
        _sh("ip", "netns", "add", a)
        _sh("ip", "netns", "add", b)
    except (subprocess.CalledProcessError, OSError) as exc:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        pytest.skip(f"network namespaces are not available here: {exc}")
    try:
        _sh("ip", "link", "add", va, "type", "veth", "peer", "name", vb)
        _sh("ip", "link", "set", va, "netns", a)
        _sh("ip", "link", "set", vb, "netns", b)
        _sh("ip", "-n", a, "addr", "add", f"{SERVER_IP}/24", "dev", va)
        _sh("ip", "-n", b, "addr", "add", f"{CLIENT_IP}/24", "dev", vb)
        for ns, dev in ((a, va), (b, vb)):
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
            _sh("ip", "-n", ns, "link", "set", dev, "up")
        yield a, b
    finally:
        for ns in (a, b):  # deleting a namespace deletes its end of the veth pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_echo_between_two_hosts_through_the_cli(two_hosts: tuple[str, str]) -> None:
    server_ns, client_ns = two_hosts
    utcp = [sys.executable, "-m", "utcp"]
    server = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, *utcp, "echo-server", "--host", SERVER_IP,
         "--port", str(PORT)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        assert "listening" in server.stderr.readline()
        result = subprocess.run(
            ["ip", "netns", "exec", client_ns, *utcp, "echo-client", SERVER_IP, str(PORT)],
            input="hello from the other host\nsecond line\n", capture_output=True,
            text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["hello from the other host", "second line"]
        # The client is really elsewhere: the server saw the other namespace's address.
    finally:
        server.terminate()
        try:
            _, err = server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            _, err = server.communicate()
    assert f"connection from {CLIENT_IP}" in err
