"""Two hosts: network namespaces joined by a veth pair, driven through the CLI.

Needs root (to create namespaces); skipped, with the reason, otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from typing import Any

import pytest
from conftest import deadline

# Addresses on a veth pair that exists only inside this test: IPv4 link-local,
# IPv6 unique-local and IPv6 link-local (which needs its scope, "%interface").
# The server has a second address of each kind: a server on a wildcard address
# must answer from the one the client chose, not from the kernel's pick.
SERVER_IP = "169.254.77.1"
SERVER_IP_2 = "169.254.77.3"
CLIENT_IP = "169.254.77.2"
SERVER_IP6 = "fd77::1"
CLIENT_IP6 = "fd77::2"
SERVER_LL = "fe80::77:1"
SERVER_LL_2 = "fe80::77:3"
CLIENT_LL = "fe80::77:2"
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
        for ip in (SERVER_IP, SERVER_IP_2):
            _sh("ip", "-n", a, "addr", "add", f"{ip}/24", "dev", va)
        _sh("ip", "-n", b, "addr", "add", f"{CLIENT_IP}/24", "dev", vb)
        # nodad: usable at once, without duplicate address detection's wait.
        for ns, dev, ips in ((a, va, (SERVER_IP6, SERVER_LL, SERVER_LL_2)),
                             (b, vb, (CLIENT_IP6, CLIENT_LL))):
            for ip in ips:
                _sh("ip", "-n", ns, "addr", "add", f"{ip}/64", "dev", dev, "nodad")
        for ns, dev in ((a, va), (b, vb)):
            # No link-local address of the kernel's making: once its duplicate address
            # detection ended (a second or so after the link came up), the client's
            # kernel could pick it over fe80::77:2 (both /64, a tie), and the server
            # would see another address than the one the test expects.
            _sh("ip", "-n", ns, "link", "set", dev, "addrgenmode", "none")
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
            _sh("ip", "-n", ns, "link", "set", dev, "up")
        yield a, b, vb
    finally:
        for ns in (a, b):  # deleting a namespace deletes its end of the veth pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.mark.parametrize("listen, connect, client", [
    pytest.param(SERVER_IP, SERVER_IP, CLIENT_IP, id="ipv4"),
    pytest.param("0.0.0.0", SERVER_IP_2, CLIENT_IP, id="ipv4-wildcard-second-address"),
    pytest.param("::", SERVER_IP6, CLIENT_IP6, id="ipv6"),
    # (RFC 6724 would pick fe80::77:3, the longer prefix match, for the answers.)
    pytest.param("::", SERVER_LL + "%{dev}", CLIENT_LL, id="ipv6-link-local-two-addresses"),
])
def test_echo_between_two_hosts_through_the_cli(two_hosts: tuple[str, str, str], listen: str,
                                                connect: str, client: str) -> None:
    server_ns, client_ns, client_dev = two_hosts
    connect = connect.format(dev=client_dev)
    utcp = [sys.executable, "-m", "utcp"]
    server = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, *utcp, "echo-server", "--host", listen,
         "--port", str(PORT)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        assert "listening" in server.stderr.readline()
        result = subprocess.run(
            ["ip", "netns", "exec", client_ns, *utcp, "echo-client", connect, str(PORT)],
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
    # (An IPv6 address in brackets, as in a URL, so that its port reads apart.)
    shown = f"[{client}]" if ":" in client else client
    assert f"connection from {shown}:" in err


def test_bench_between_two_hosts_against_utcp_and_the_kernel(
        two_hosts: tuple[str, str, str]) -> None:
    # utcp bench from one namespace against utcp echo-server in the other, over
    # utcp and over the kernel's TCP: what a user compares between two machines.
    server_ns, client_ns, _ = two_hosts
    utcp = [sys.executable, "-m", "utcp"]
    kernel_port = 7100
    server = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, *utcp, "echo-server", "--host", "0.0.0.0",
         "--port", str(PORT), "--kernel-port", str(kernel_port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {}
    try:
        assert server.stderr is not None
        assert "listening" in server.stderr.readline()
        for test, extra, stack in (("connect", ["--concurrency", "8"], "utcp"),
                                   ("connect", ["--concurrency", "8"], "kernel"),
                                   ("rr", [], "utcp"),
                                   ("throughput", ["--reverse"], "utcp")):
            kernel = ["--kernel"] if stack == "kernel" else []
            port = kernel_port if kernel else PORT
            run = subprocess.run(
                ["ip", "netns", "exec", client_ns, *utcp, "bench", test, SERVER_IP,
                 str(port), "--duration", "0.3", "--json", *extra, *kernel],
                capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, run.stderr
            results[test, " ".join(extra), stack] = json.loads(run.stdout)
    finally:
        server.terminate()
        server.communicate(timeout=10)
    for (test, _, stack), r in results.items():
        assert r["stack"] == stack
        if test == "connect":
            assert r["failures"] == {} and r["connections"] > 20, r
        elif test == "rr":
            assert r["round_trips"] > 100, r
        else:
            assert r["mb_per_s"] > 1, r


@pytest.mark.parametrize("target, errno_text, within", [
    # No route at all (the namespace has none to 10/8): the SYN cannot leave.
    pytest.param("10.99.0.1", "Network is unreachable", 2.0, id="no-route"),
    # On the link, but nobody answers ARP: the kernel's ICMP host unreachable
    # (after its 3 s of ARP tries) ends the attempt, before the SYN retries would.
    pytest.param("169.254.77.9", "No route to host", 8.0, id="no-such-host"),
])
def test_an_unreachable_host_fails_at_once_not_after_the_syn_retries(
        two_hosts: tuple[str, str, str], target: str, errno_text: str, within: float) -> None:
    _, client_ns, _ = two_hosts
    t0 = time.monotonic()
    result = subprocess.run(
        ["ip", "netns", "exec", client_ns, sys.executable, "-m", "utcp", "echo-client", target,
         "7", "--message", "x", "--syn-retries", "6"],  # retries alone: over 2 minutes
        capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t0
    assert result.returncode == 1
    assert result.stderr == f"utcp: cannot connect to {target}:7: {errno_text}\n"
    assert took < within


# The client's NAT, for the test below: a utcp.emulator.Relay. It says "relaying"
# once it listens; for each line on its stdin it forgets the client's mapping, as a
# home router does when one expires, and says "rebound"; when its stdin closes, it
# prints the upstream port of each mapping in turn, and its counters, as JSON.
NAT = """
import asyncio, json, sys
from utcp.emulator import Relay

async def main(listen, target):
    loop = asyncio.get_running_loop()
    async with Relay(target, listen=listen) as relay:
        print("relaying", flush=True)
        ports = []
        while await loop.run_in_executor(None, sys.stdin.readline):
            ports += relay.mappings().values()
            relay.rebind()
            print("rebound", flush=True)
        ports += relay.mappings().values()
        print(json.dumps({"ports": ports, **relay.statistics()}), flush=True)

host, port, target_host, target_port = sys.argv[1:]
asyncio.run(main((host, int(port)), (target_host, int(target_port))))
"""


async def test_a_transfer_between_two_hosts_follows_its_client_to_each_new_port_of_its_nat(
        two_hosts: tuple[str, str, str]) -> None:
    # Issue 9. utcp connect, in the client's namespace, sends 4.2 MB to utcp
    # echo-server in the other through a NAT beside it, in three parts; between
    # two, the NAT forgets the client's mapping, so the next part reaches the server
    # from a new UDP port. The connection must follow it (the echo comes back
    # through the new mapping), every byte arrive and the server count the moves.
    # The NAT forgets once a part's echo is back, told so by the test rather than
    # by an idle timer, so nothing races: the connection is then quiet, as when a
    # router's mapping expires, and the client's next segment from the new port is
    # new data, which proves it. (Rebinding with data in flight is covered on
    # virtual time, tests/test_scenarios.py, and on loopback, tests/test_relay.py.)
    server_ns, client_ns, _ = two_hosts
    utcp = [sys.executable, "-m", "utcp"]
    nat_port = 9000
    data = random.Random(9).randbytes(4_200_000)
    parts = [data[i:i + 1_400_000] for i in range(0, len(data), 1_400_000)]
    pipe = asyncio.subprocess.PIPE
    procs: list[asyncio.subprocess.Process] = []

    async def run(ns: str, *argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
        procs.append(await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", ns, *argv, **kwargs))
        return procs[-1]

    with tempfile.TemporaryDirectory() as runtime:
        # Its own directory for the server's 'utcp stat' socket, named after the port:
        # another server of the same port elsewhere on this machine is not asked.
        env = {**os.environ, "XDG_RUNTIME_DIR": runtime}
        try:
            async with deadline(30):
                server = await run(server_ns, *utcp, "echo-server", "--host", SERVER_IP,
                                   "--port", str(PORT), stderr=pipe, env=env)
                nat = await run(client_ns, sys.executable, "-c", NAT, CLIENT_IP,
                                str(nat_port), SERVER_IP, str(PORT), stdin=pipe,
                                stdout=pipe)
                assert server.stderr and nat.stdin and nat.stdout
                assert b"listening" in await server.stderr.readline()
                assert await nat.stdout.readline() == b"relaying\n"
                client = await run(client_ns, *utcp, "connect", CLIENT_IP, str(nat_port),
                                   stdin=pipe, stdout=pipe, stderr=pipe)
                assert client.stdin and client.stdout and client.stderr

                async def send(part: bytes) -> None:
                    assert client.stdin
                    client.stdin.write(part)
                    await client.stdin.drain()

                echo = b""
                for i, part in enumerate(parts):
                    if i:
                        nat.stdin.write(b"rebind\n")
                        assert await nat.stdout.readline() == b"rebound\n"
                    try:
                        _, back = await asyncio.gather(
                            send(part), client.stdout.readexactly(len(part)))
                    except (asyncio.IncompleteReadError, ConnectionError):
                        pytest.fail(f"part {i + 1}: " + (await client.stderr.read()).decode())
                    echo += back
                client.stdin.close()  # the client half-closes; the server then closes
                assert await client.stdout.read() == b""
                assert await client.wait() == 0, await client.stderr.read()
                stat = await run(server_ns, *utcp, "stat", "--json", str(PORT),
                                 stdout=pipe, env=env)
                stat_out, _ = await stat.communicate()
                nat.stdin.close()  # the NAT reports
                nat_out, _ = await nat.communicate()
                server.terminate()
                server_log = (await server.stderr.read()).decode()
        finally:
            for proc in procs:  # (all gone already, unless something above failed)
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()
    assert hashlib.sha256(echo).digest() == hashlib.sha256(data).digest()
    relay = json.loads(nat_out)
    assert relay["rebound"] == 2 and relay["clients"] == 3, relay
    ports = relay["ports"]  # the client's source port as the server saw it, in turn
    moves = sum(a != b for a, b in pairwise(ports))  # (a port may come back: rarely)
    assert len(ports) == 3 and moves >= 1, relay
    assert f"connection from {CLIENT_IP}:{ports[0]} " in server_log
    stats = json.loads(stat_out)["servers"][0]["statistics"]
    assert stats["rebinds"] == moves, stats


def test_stat_asks_only_the_servers_of_its_own_network_namespace(
        two_hosts: tuple[str, str, str]) -> None:
    # Two servers on one port, one per namespace: each namespace's utcp stat
    # finds its own, and neither unlinks the other's control socket.
    server_ns, client_ns, _ = two_hosts
    servers = []
    try:
        for ns, host in ((server_ns, SERVER_IP), (client_ns, CLIENT_IP)):
            proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "utcp",
                                     "echo-server", "--host", host, "--port", str(PORT)],
                                    stderr=subprocess.PIPE, text=True)
            servers.append(proc)
            assert proc.stderr is not None and "listening" in proc.stderr.readline()
        for ns, proc in zip((server_ns, client_ns), servers, strict=True):
            out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "utcp",
                                  "stat", "--json", str(PORT)],
                                 capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, out.stderr
            # (ip netns exec runs the server in the process it started: its pid.)
            assert json.loads(out.stdout)["pid"] == proc.pid, ns
    finally:
        for proc in servers:
            proc.kill()
            proc.communicate()
