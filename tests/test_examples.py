"""Every example runs and prints what its docstring promises."""

from __future__ import annotations

import pathlib
import subprocess
import sys

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str) -> str:
    result = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_echo_example_echoes() -> None:
    out = run_example("echo.py")
    assert "server: received 'Hello World!'" in out
    assert "client: received 'Hello World!'" in out


def test_trace_example_draws_the_whole_lifecycle() -> None:
    out = run_example("trace_handshake.py")
    assert "SYN seq=0" in out and "len=4" in out and "TIME-WAIT" in out
    assert out.rstrip().splitlines()[-1].strip().startswith("CLOSED")


def test_stats_example_counts_the_megabyte() -> None:
    out = run_example("stats.py")
    assert "server counted 1000000 bytes" in out
    assert "'bytes_out': 1000000" in out


def test_sans_io_example_runs_a_whole_connection_on_no_sockets() -> None:
    out = run_example("sans_io.py")
    assert "server: DataReceived(data=b'hello, sans-I/O')" in out
    assert "client: DataReceived(data=b'HELLO, SANS-I/O')" in out
    assert "client: Closed()" in out and "server: Closed()" in out
    # TIME-WAIT lasts 2 x MSL = 1 s on the simulated clock, not on the real one.
    assert out.rstrip().splitlines()[-1] == (
        "1040 ms  TIME-WAIT over: the client holds 0 connections, the server 0")


def test_protocol_echo_example_echoes() -> None:
    out = run_example("echo_protocol.py")
    assert "server: received 'Hello World!'" in out
    assert "client: received 'Hello World!'" in out
    assert out.rstrip().endswith("client: the server closed the connection")
