"""``utcp impair``, the impairing UDP relay, as a user runs it: its values and
units, its usage errors, and the relay itself in a subprocess over loopback."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from conftest import deadline
from test_cli import UTCP, ctrl_c_default, free_udp_port, start_echo_server, stop

import utcp
from utcp.cli import main
from utcp.cli.impair import blackout, describe, direction_spec, duration, fraction, rate
from utcp.emulator import Impairments

HOST = "127.0.0.1"

# ------------------------------------------------------------------ values


@pytest.mark.parametrize(("text", "seconds"), [
    ("15ms", 0.015), ("0.5s", 0.5), ("200us", 0.0002), ("200µs", 0.0002), ("20", 0.02),
    ("1.5e1ms", 0.015), (".5s", 0.5), ("0", 0.0),
])
def test_durations_take_units_and_a_bare_number_is_milliseconds(text, seconds) -> None:
    assert duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["fast", "-5ms", "5 parsecs", "inf", "nan", "1e400", ""])
def test_what_is_no_duration(text) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        duration(text)


def test_fractions_rates_and_blackouts() -> None:
    assert fraction("2%") == pytest.approx(0.02) and fraction("0.02") == 0.02
    assert fraction("100%") == 1.0
    for bad in ("101%", "1.5", "2x", "-1%"):
        with pytest.raises(argparse.ArgumentTypeError):
            fraction(bad)
    assert rate("10mbit") == 10e6 and rate("500kbit") == 500e3 and rate("1gbit") == 1e9
    assert rate("1500") == 1500 and rate("2Mbit") == 2e6
    for bad in ("10mbps", "0", "fast"):
        with pytest.raises(argparse.ArgumentTypeError):
            rate(bad)
    assert blackout("10:2") == (10, 2) and blackout("1.5s:500ms") == (1.5, 0.5)
    for bad in ("10", "10:0", "x:1"):
        with pytest.raises(argparse.ArgumentTypeError):
            blackout(bad)


def test_a_direction_spec_names_the_flags_and_clean_resets() -> None:
    assert direction_spec("loss=2% delay=20ms reorder-delay=5ms rate=1mbit") == {
        "loss": 0.02, "delay": 0.02, "reorder_delay": 0.005, "rate": 1e6}
    assert direction_spec("queue=10,mtu=1200 blackout=3:1") == {
        "queue": 10, "mtu": 1200, "blackout": (3.0, 1.0)}
    assert direction_spec("clean loss=1%")["delay"] == 0.0
    with pytest.raises(argparse.ArgumentTypeError, match="keys: delay"):
        direction_spec("latency=5ms")


@pytest.mark.parametrize("imp", [
    Impairments(),
    Impairments(delay=0.02, jitter=0.0005, loss=0.02, burst=3, max_burst=4, reorder=0.1,
                reorder_delay=0.004, duplicate=0.005, corrupt=0.0001, rate=1.5e6, queue=50,
                mtu=1200, blackout=(10, 0.25)),
    Impairments(delay=1.5, rate=64e3, blackout=(0.5, 2)),
    Impairments(queue=2_000_000, mtu=1_000_000, max_burst=1_000_000),
])
def test_the_description_reads_back_as_the_same_impairments(imp) -> None:
    text = describe(imp)
    assert Impairments(**direction_spec(text)) == imp, text


def test_the_description_is_in_the_units_people_write() -> None:
    imp = Impairments(delay=0.02, loss=0.02, rate=10e6, blackout=(5, 1))
    assert describe(imp) == "delay=20ms loss=2% rate=10mbit blackout=5s:1s"
    assert describe(Impairments()) == "clean"


@pytest.mark.parametrize(("args", "message"), [
    (["--loss", "150%"], "from 0 to 1"),
    (["--delay", "fast"], "not a duration: 'fast'"),
    (["--rate", "10mbps"], "not a rate"),
    (["--up", "latency=5ms"], "not key=value: 'latency=5ms'"),
    (["--down", "loss=1", "--burst", "3"], "--down: loss=1 with burst"),
    (["--loss", "1", "--burst", "3"], "loss=1 with burst"),
    (["--blackout", "5"], "not UP:DOWN"),
    (["--queue", "0"], "must be 1 or more"),
    (["--idle-timeout", "0"], "more than 0 seconds"),
    (["--max-clients", "0"], "must be 1 or more"),
    (["--seed", "x"], "invalid int value"),
])
def test_bad_values_are_usage_errors(args, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["impair", "--listen", "9000", "--to", "127.0.0.1:7007", *args])
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("listen", "to", "message"), [
    ("x", "127.0.0.1:7", "argument --listen: not [HOST:]PORT"),
    ("70000", "127.0.0.1:7", "port out of range 0-65535"),
    ("9000", "127.0.0.1", "argument --to: not HOST:PORT"),
    ("9000", "::1:7", "IPv6 in brackets"),
    ("9000", "127.0.0.1:0", "port out of range 1-65535"),
])
def test_bad_addresses_are_usage_errors(listen, to, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["impair", "--listen", listen, "--to", to])
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------ the relay


def launch(*args: str, stderr: int = subprocess.PIPE) -> subprocess.Popen[str]:
    """``utcp impair ARGS``, started."""
    return subprocess.Popen([*UTCP, "impair", *args], stdout=subprocess.PIPE, stderr=stderr,
                            text=True, preexec_fn=ctrl_c_default)


def relaying(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """The port ``proc`` relays from, and its first line, once it relays."""
    assert proc.stderr is not None
    line = proc.stderr.readline()
    m = re.search(r"relaying UDP 127\.0\.0\.1:(\d+) -> ", line)
    assert m, line
    return int(m.group(1)), line


@contextlib.contextmanager
def both_stopped(relay: subprocess.Popen[str], server: subprocess.Popen[str]) -> Iterator[None]:
    """While ``relay`` relays to ``server``; at the end both are stopped."""
    try:
        yield
    finally:
        stop(server)
        if relay.poll() is None:
            relay.kill()
            relay.communicate()


def terminated(relay: subprocess.Popen[str]) -> tuple[str, str]:
    """What ``relay`` printed once SIGTERM ended it."""
    relay.send_signal(signal.SIGTERM)
    return relay.communicate(timeout=10)


def test_impair_relays_utcp_and_prints_its_counters_as_json_on_sigterm() -> None:
    server_port, relay_port = free_udp_port(), free_udp_port()
    relay = launch("--listen", f"{HOST}:{relay_port}", "--to", f"{HOST}:{server_port}",
                   "--json", "--delay", "5ms", "--loss", "10%", "--down",
                   "loss=0 duplicate=20%", "--seed", "3")
    server = start_echo_server(server_port)  # while the relay starts
    with both_stopped(relay, server):
        port, line = relaying(relay)
        assert port == relay_port
        assert line.strip() == (
            f"utcp: relaying UDP {HOST}:{relay_port} -> {HOST}:{server_port} "
            "(up: delay=5ms loss=10%, down: delay=5ms duplicate=20%, seed 3)")
        client = subprocess.run([*UTCP, "echo-client", HOST, str(relay_port), "--message",
                                 "through the bad path", "--count", "20"],
                                capture_output=True, text=True, timeout=20)
        assert client.returncode == 0, client.stderr
        assert client.stdout.splitlines() == ["through the bad path"] * 20
        out, err = terminated(relay)
    assert relay.returncode == 143, err
    assert err == ""  # nothing but the first line, in a pipe
    report = json.loads(out)
    assert report["seed"] == 3 and report["clients"] == report["mappings"] == 1
    assert report["listen"] == f"{HOST}:{relay_port}"
    assert report["target"] == f"{HOST}:{server_port}"
    up, down = report["up"], report["down"]
    assert up["impairments"] == {"delay": 0.005, "loss": 0.1}
    assert down["impairments"] == {"delay": 0.005, "duplicate": 0.2}
    assert up["sent"] > 0 and up["delivered"] == up["sent"] - up["lost"]
    assert down["lost"] == 0 and down["delivered"] == down["sent"] + down["duplicated"]
    assert down["duplicated"] > 0
    assert report["strangers"] == report["expired"] == 0


async def test_rebind_every_moves_a_client_to_new_ports_and_its_connection_follows() -> None:
    # A NAT that reassigns mappings every 0.3 s: the client's datagrams reach the
    # server from a new port after each quiet spell, and the connection goes on.
    server_port, relay_port = free_udp_port(), free_udp_port()
    relay = launch("--listen", f"{HOST}:{relay_port}", "--to", f"{HOST}:{server_port}",
                   "--json", "--rebind-every", "0.3")
    server = start_echo_server(server_port)
    with both_stopped(relay, server):
        relaying(relay)
        async with deadline(20):
            reader, writer = await utcp.open_connection(HOST, relay_port)
            for i in range(4):
                line = b"line %d\n" % i
                writer.write(line)
                assert await reader.readexactly(len(line)) == line
                await asyncio.sleep(0.35)  # quiet: the mapping is reassigned meanwhile
            writer.close()
            await writer.wait_closed()
        out, _ = terminated(relay)
    report = json.loads(out)
    assert report["rebound"] >= 3 and report["clients"] >= 4, report


def test_ctrl_c_ends_impair_with_a_summary() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as target, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        target.bind((HOST, 0))
        target.settimeout(5)
        client.settimeout(0.3)
        relay = launch("--listen", f"{HOST}:0", "--to", f"{HOST}:{target.getsockname()[1]}",
                       "--up", "delay=1ms", "--down", "loss=100%")
        try:
            port, _ = relaying(relay)
            for i in range(3):
                client.sendto(b"ping %d" % i, (HOST, port))
                data, via = target.recvfrom(100)
                assert data == b"ping %d" % i
                target.sendto(b"pong", via)  # lost on the way down
            with pytest.raises(TimeoutError):
                client.recvfrom(100)
            relay.send_signal(signal.SIGINT)
            out, err = relay.communicate(timeout=10)
        finally:
            if relay.poll() is None:
                relay.kill()
                relay.communicate()
    assert relay.returncode == 130, err
    assert "Traceback" not in err
    lines = out.splitlines()
    assert re.fullmatch(rf"relayed 127\.0\.0\.1:{port} -> .* for [\d.]+ s: 1 client, "
                        r"0 mappings expired, 0 datagrams from strangers", lines[0]), out
    assert lines[1] == "  up   (delay=1ms): 3 sent, 3 delivered"
    assert lines[2] == "  down (loss=100%): 3 sent, 0 delivered, 3 lost"


def test_impair_shows_live_counters_on_a_terminal() -> None:
    primary, secondary = os.openpty()
    try:
        relay = launch("--listen", f"{HOST}:0", "--to", f"{HOST}:9", stderr=secondary)
        os.close(secondary)
        seen = ""
        deadline = time.monotonic() + 5
        while "| 0 clients" not in seen:  # drawn a second after the start
            left = deadline - time.monotonic()
            assert left > 0, seen
            if select.select([primary], [], [], left)[0]:
                seen += os.read(primary, 4096).decode()
        relay.send_signal(signal.SIGTERM)
        relay.communicate(timeout=10)
    finally:
        os.close(primary)
        if relay.poll() is None:
            relay.kill()
            relay.communicate()
    assert relay.returncode == 143
    assert "utcp: relaying UDP" in seen
    assert "up: 0 sent 0 delivered | down: 0 sent 0 delivered | 0 clients" in seen
