"""The ``utcp`` command, run as a user would: in a subprocess, over loopback."""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
from test_bench import three_free_ports

UTCP = [sys.executable, "-m", "utcp"]


def run(*args: str, timeout: float = 30, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*UTCP, *args], capture_output=True, text=True, timeout=timeout,
                          **kw)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ctrl_c_default() -> None:
    """In a child: SIGINT as a terminal's Ctrl-C finds it. (A shell runs a background
    job with SIGINT ignored, and its children inherit that: run so, the Ctrl-C
    tests would test nothing but the ignoring.)"""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_echo_server(port: int, *extra: str,
                      stdout: int = subprocess.PIPE) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*UTCP, "echo-server", "--host", "127.0.0.1", "--port", str(port),
                             *extra], stdout=stdout, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_default)
    assert proc.stderr is not None
    line = proc.stderr.readline()  # the server announces itself once it listens
    assert "listening" in line, line
    return proc


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.terminate()
    try:
        return proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def finish(proc: subprocess.Popen[str], timeout: float) -> str:
    """Wait for ``proc`` to exit by itself and return its stderr; fail if it does not."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"{proc.args} still ran after {timeout} s; stderr:\n{err}")
    return err


def closed_pipe() -> int:
    """The write end of a pipe whose read end is already closed: writing to it fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


def test_demo_prints_the_ladder_of_a_whole_connection() -> None:
    result = run("demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for state in ("SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2",
                  "CLOSE-WAIT", "LAST-ACK", "TIME-WAIT", "CLOSED"):
        assert state in out, f"{state} missing from the demo's ladder:\n{out}"
    assert "SYN seq=0" in out and "SYN,ACK seq=0 ack=1" in out
    assert "len=5" in out  # 'hello' and 'HELLO'
    assert "client received b'HELLO'" in out
    assert "TIME-WAIT lasted" in out
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "Traceback" not in result.stderr


def test_demo_trace_draws_the_same_ladder_live_in_causal_order() -> None:
    traced = run("demo", "--trace", "--msl", "0.1")
    plain = run("demo", "--msl", "0.1")
    assert traced.returncode == 0 and plain.returncode == 0, traced.stderr

    def ladder(out: str) -> list[str]:
        return [line for line in out.splitlines() if "|" in line or line.strip() in
                ("client                                               server",)]

    live = ladder(traced.stdout)
    assert live == ladder(plain.stdout)  # the same picture, drawn as it happened
    rows = "\n".join(live)
    assert "LISTEN" in traced.stdout.splitlines()[5]  # before the SYN, not after it
    # The client's FIN-WAIT-2 stands on the row of the ACK that caused it, above the
    # server's FIN.
    assert rows.index("FIN-WAIT-2") < rows.index("FIN,ACK seq=6 ack=7")


def test_demo_runs_on_uvloop() -> None:
    pytest.importorskip("uvloop")
    result = run("demo", "--uvloop", "--msl", "0.1")
    assert result.returncode == 0, result.stderr
    assert "TIME-WAIT" in result.stdout


def test_echo_client_and_server_exchange_lines() -> None:
    port = free_udp_port()
    server = start_echo_server(port)
    try:
        result = run("echo-client", "127.0.0.1", str(port), "--message", "ping pong",
                     "--count", "3")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["ping pong"] * 3
        piped = run("echo-client", "127.0.0.1", str(port), input="one\ntwo\n")
        assert piped.returncode == 0, piped.stderr
        assert piped.stdout.splitlines() == ["one", "two"]
    finally:
        _, err = stop(server)
    assert "connection from 127.0.0.1" in err
    assert "echoed 30 bytes" in err  # three times "ping pong" and a newline


@pytest.mark.parametrize(("stdin", "echoed"), [
    (b"\xff\xfe\x00abc\n", b"\xff\xfe\x00abc\n"),  # not UTF-8, and a NUL
    (b"0123456789" * 20_000 + b"\n", b"0123456789" * 20_000 + b"\n"),  # past readline's limit
    (b"one\r\n\ntwo", b"one\r\n\ntwo"),  # sent as is: no newline added at the end
    (bytes(range(256)) * 20_000, bytes(range(256)) * 20_000),  # 5 MB, no line structure
], ids=["non-utf8", "200KB-line", "no-final-newline", "5MB-binary"])
def test_echo_client_round_trips_arbitrary_bytes(stdin: bytes, echoed: bytes) -> None:
    port = free_udp_port()
    server = start_echo_server(port)
    try:
        result = subprocess.run([*UTCP, "echo-client", "127.0.0.1", str(port)], input=stdin,
                                capture_output=True, timeout=20)
    finally:
        stop(server)
    assert result.returncode == 0, result.stderr
    assert result.stdout == echoed


def test_echo_client_message_keeps_the_bytes_of_its_argument() -> None:
    port = free_udp_port()
    server = start_echo_server(port)
    try:
        result = subprocess.run([*UTCP, "echo-client", "127.0.0.1", str(port), "--message",
                                 b"caf\xe9 \xff"], capture_output=True, timeout=20)
    finally:
        stop(server)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"caf\xe9 \xff\n"


def test_echo_client_and_server_exchange_lines_on_uvloop() -> None:
    pytest.importorskip("uvloop", reason="uvloop is not installed: nothing to run on")
    port = free_udp_port()
    server = start_echo_server(port, "--uvloop")
    try:
        result = run("echo-client", "127.0.0.1", str(port), "--uvloop", input="one\ntwo\n",
                     timeout=20)
    finally:
        _, err = stop(server)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["one", "two"]
    assert "echoed 8 bytes" in err


def test_echo_client_trace_prints_a_live_ladder() -> None:
    port = free_udp_port()
    server = start_echo_server(port, "--trace")
    try:
        result = run("echo-client", "127.0.0.1", str(port), "--message", "hi", "--trace")
    finally:
        _, server_err = stop(server)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"  # the trace stays off the data
    client_rows = [line for line in result.stderr.splitlines() if "|" in line]
    server_rows = [line for line in server_err.splitlines() if "|" in line]
    for rows, peer in ((client_rows, f"127.0.0.1:{port} "), (server_rows, "127.0.0.1:")):
        text = "\n".join(rows)
        assert "SYN" in text and "FIN" in text and "ESTABLISHED" in text
        for row in rows:
            # Each row: wall-clock time, then the peer the connection is with.
            assert re.match(r"\d\d:\d\d:\d\d\.\d{3} ", row), row
            assert row.split()[1].startswith(peer.strip()), row


def test_trace_file_gets_the_trace(tmp_path: pathlib.Path) -> None:
    port = free_udp_port()
    server = start_echo_server(port)
    trace = tmp_path / "trace.txt"
    try:
        result = run("echo-client", "127.0.0.1", str(port), "--message", "hi",
                     "--trace-file", str(trace))
    finally:
        stop(server)
    assert result.returncode == 0, result.stderr
    assert "|" not in result.stderr
    text = trace.read_text()
    assert "SYN" in text and "TIME-WAIT" in text


def test_echo_client_reports_a_silent_host_without_traceback() -> None:
    # A bound UDP socket that never answers: the SYN goes unanswered.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        t0 = time.monotonic()
        result = run("echo-client", "127.0.0.1", str(port), "--message", "x",
                     "--syn-retries", "0")
    assert result.returncode == 1
    assert result.stderr.startswith("utcp: no answer from 127.0.0.1:")
    assert "Traceback" not in result.stderr
    assert time.monotonic() - t0 < 20


def test_echo_client_reports_a_refused_connection_without_traceback() -> None:
    port = free_udp_port()  # nothing is bound there: the SYN draws an ICMP port unreachable
    t0 = time.monotonic()
    result = run("echo-client", "127.0.0.1", str(port), "--message", "x", timeout=20)
    assert result.returncode == 1
    assert result.stderr == (f"utcp: connection refused by 127.0.0.1:{port} "
                             "(nothing listens on that port)\n")
    assert result.stdout == ""
    assert time.monotonic() - t0 < 10


def test_demo_trace_into_a_closed_pipe_ends_quietly() -> None:
    # Like `utcp demo --trace | head -5`: rows still come (TIME-WAIT lasts 1 s) after
    # the reader has gone.
    proc = subprocess.Popen([*UTCP, "demo", "--trace"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for _ in range(5):
        assert proc.stdout.readline()
    proc.stdout.close()
    err = finish(proc, timeout=10)
    assert proc.returncode == 141
    assert err == ""


def test_echo_client_into_a_closed_stdout_ends_quietly() -> None:
    port = free_udp_port()
    server = start_echo_server(port)
    out = closed_pipe()
    try:
        client = subprocess.Popen([*UTCP, "echo-client", "127.0.0.1", str(port), "--message",
                                   "hi"], stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.PIPE, text=True)
        os.close(out)
        err = finish(client, timeout=10)
    finally:
        stop(server)
    assert client.returncode == 141
    assert err == ""


def test_ctrl_c_stops_the_echo_server_with_a_client_connected() -> None:
    port = free_udp_port()
    server = start_echo_server(port)
    client = subprocess.Popen([*UTCP, "echo-client", "127.0.0.1", str(port)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert client.stdin is not None and client.stdout is not None
    try:
        client.stdin.write("hello\n")
        client.stdin.flush()
        assert client.stdout.readline() == "hello\n"  # connected, and it stays so
        t0 = time.monotonic()
        server.send_signal(signal.SIGINT)
        err = finish(server, timeout=8)
        took = time.monotonic() - t0
    finally:
        client.kill()
        client.communicate()
        if server.poll() is None:
            stop(server)
    assert server.returncode == 130, err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == "utcp: interrupted"
    assert took < 5


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stopping_the_echo_server_sends_its_clients_fin(sig: signal.Signals) -> None:
    # The client sees the server's FIN at once, not minutes of silence: with its
    # stdin still open, it reports that the server closed.
    port = free_udp_port()
    server = start_echo_server(port)
    client = subprocess.Popen([*UTCP, "echo-client", "127.0.0.1", str(port)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    assert client.stdin is not None and client.stdout is not None
    try:
        client.stdin.write(b"hello\n")
        client.stdin.flush()
        assert client.stdout.readline() == b"hello\n"
        server.send_signal(sig)
        err = finish(server, timeout=8)
        client_err = finish(client, timeout=8)  # stdin still open: only the FIN ends it
    finally:
        client.kill()
        client.communicate()
        if server.poll() is None:
            stop(server)
    assert server.returncode == (130 if sig == signal.SIGINT else 143), err
    assert "Traceback" not in err
    assert client.returncode == 1
    assert f"127.0.0.1:{port} closed the connection after echoing 6 of the 6 bytes" in \
        client_err.decode()


def test_ctrl_c_stops_an_echo_client_waiting_for_stdin() -> None:
    # As typed at a terminal: stdin is a tty, and the client waits for the next line.
    port = free_udp_port()
    server = start_echo_server(port)
    tty, typist = os.openpty()
    client = subprocess.Popen([*UTCP, "echo-client", "127.0.0.1", str(port)],
                              stdin=typist, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, preexec_fn=ctrl_c_default)
    os.close(typist)
    assert client.stdout is not None and client.stderr is not None
    try:
        os.write(tty, b"hello\n")
        assert client.stdout.readline() == "hello\n"  # now it waits for the next line
        client.send_signal(signal.SIGINT)
        client.wait(timeout=8)  # stdin stays open: no EOF ends it, only the signal
        err = client.stderr.read()
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate()
        os.close(tty)
        stop(server)
    assert client.returncode == 130, err
    assert "Traceback" not in err


@pytest.mark.parametrize(("args", "message"), [
    (["echo-client", "127.0.0.1", "99999"], "port out of range"),
    (["echo-client", "127.0.0.1", "http"], "not a port number"),
    (["echo-client", "127.0.0.1", "7007", "--count", "-1"], "must be 0 or more"),
    (["echo-server", "--port", "-5"], "port out of range"),
    (["demo", "--msl", "0"], "must be more than 0"),
    (["frobnicate"], "invalid choice"),
    (["echo-client", "127.0.0.1", "--syn-retries", "300"], "syn_retries must be between"),
    (["demo", "--msl", "inf"], "msl must be a finite number"),
    (["bench", "connect", "127.0.0.1", "--concurrency", "0"], "at least 1"),
    (["bench", "rr", "127.0.0.1", "--duration", "0"], "must be more than 0"),
    (["bench", "frobnicate", "127.0.0.1"], "invalid choice"),
    (["echo-server", "--max-connections", "0"], "must be 1 or more"),
    (["listen", "7", "--max-per-host", "x"], "not a whole number"),
])
def test_bad_arguments_get_a_usage_error(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unresolvable_host_is_reported_plainly() -> None:
    result = run("echo-client", "no-such-host.invalid", "7007", "--message", "x")
    assert result.returncode == 1
    assert result.stderr.startswith("utcp: cannot resolve 'no-such-host.invalid'")


def test_echo_server_reports_an_address_in_use() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = run("echo-server", "--host", "127.0.0.1", "--port", str(port), timeout=10)
    assert result.returncode == 1
    assert result.stderr.startswith(f"utcp: cannot listen on 127.0.0.1:{port}")


def test_python_dash_m_and_console_script_agree() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "echo-server" in result.stdout and "demo" in result.stdout
    script = os.path.join(os.path.dirname(sys.executable), "utcp")
    assert os.path.exists(script), f"no console script {script}: pip install -e . in this venv"
    assert subprocess.run([script, "--help"], capture_output=True, text=True,
                          timeout=30).stdout == result.stdout


# ------------------------------------------------------------------- bench


def test_bench_connect_prints_one_json_object_and_no_progress_into_a_pipe() -> None:
    port = free_udp_port()
    server = start_echo_server(port)
    try:
        result = run("bench", "connect", "127.0.0.1", str(port), "--duration", "1",
                     "--concurrency", "4", "--json")
    finally:
        stop(server)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # the progress line is for terminals only
    r = json.loads(result.stdout)
    assert r["test"] == "connect" and r["stack"] == "utcp" and r["failures"] == {}
    assert r["connections"] > 10 and r["conn_per_s"] > 10
    assert set(r["latency_ms"]) == {"p50", "p90", "p99", "max"}


def test_bench_captures_with_pcap(tmp_path: pathlib.Path) -> None:
    from scapy.all import TCP, rdpcap

    port = free_udp_port()
    server = start_echo_server(port)
    try:
        result = run("bench", "connect", "127.0.0.1", str(port), "--duration", "0.3",
                     "--concurrency", "2", "--json", "--pcap", str(tmp_path / "b.pcap"))
    finally:
        stop(server)
    assert result.returncode == 0, result.stderr
    connections = json.loads(result.stdout)["connections"]
    syns = [p for p in rdpcap(str(tmp_path / "b.pcap")) if p[TCP].flags == "S"]
    assert len(syns) >= connections > 0
    kernel = run("bench", "rr", "127.0.0.1", "--kernel", "--pcap", "x.pcap")
    assert kernel.returncode == 2 and "use tcpdump" in kernel.stderr


def test_bench_draws_progress_on_a_terminal() -> None:
    port = free_udp_port()
    server = start_echo_server(port)
    primary, secondary = os.openpty()
    try:
        result = subprocess.run([*UTCP, "bench", "rr", "127.0.0.1", str(port), "--duration",
                                 "1.2"], stderr=secondary, stdout=subprocess.PIPE, text=True,
                                timeout=30)
        os.close(secondary)
        progress = os.read(primary, 4096).decode()
    finally:
        os.close(primary)
        stop(server)
    assert result.returncode == 0
    assert "rr: " in progress and "round trips" in progress
    assert result.stdout.startswith("request/response (utcp on asyncio, 1 byte each way):")


def test_bench_kernel_runs_against_the_echo_servers_kernel_ports() -> None:
    port, kernel = free_udp_port(), three_free_ports(socket.SOCK_STREAM)
    server = start_echo_server(port, "--kernel-port", str(kernel))
    try:
        rr = run("bench", "rr", "127.0.0.1", str(kernel), "--kernel", "--duration", "0.5",
                 "--json")
        tp = run("bench", "throughput", "127.0.0.1", str(kernel), "--kernel", "--duration",
                 "0.5")
    finally:
        stop(server)
    assert rr.returncode == 0, rr.stderr
    r = json.loads(rr.stdout)
    assert r["stack"] == "kernel" and r["round_trips"] > 100
    assert tp.returncode == 0, tp.stderr
    assert tp.stdout.startswith("throughput (kernel on asyncio, to server):")


def test_bench_throughput_both_ways_over_utcp() -> None:
    port = three_free_ports(socket.SOCK_DGRAM)  # echo, discard and source
    server = start_echo_server(port)
    try:
        results = [run("bench", "throughput", "127.0.0.1", str(port), "--duration", "0.5",
                       "--json", *extra) for extra in ([], ["--reverse"])]
    finally:
        stop(server)
    for result, direction in zip(results, ("to server", "from server"), strict=True):
        assert result.returncode == 0, result.stderr
        r = json.loads(result.stdout)
        assert r["direction"] == direction and r["mb_per_s"] > 1


def test_bench_reports_a_refused_connection_plainly() -> None:
    port = free_udp_port()
    result = run("bench", "rr", "127.0.0.1", str(port), "--duration", "1")
    assert result.returncode == 1
    assert result.stderr == f"utcp: bench rr against 127.0.0.1:{port} failed: refused\n"


def test_count_without_message_is_a_usage_error() -> None:
    result = run("echo-client", "127.0.0.1", "7007", "--count", "3")
    assert result.returncode == 2
    assert "--count repeats --message" in result.stderr


def test_version_and_defaults_in_help() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("utcp ")
    help_text = run("echo-server", "--help").stdout
    assert "(default: 0.0.0.0)" in help_text and "(default: 7007)" in help_text
    assert "--keepalive SECONDS" in help_text and "--mss BYTES" in help_text


def test_connection_options_reach_the_connection() -> None:
    # --mss is the MSS the client advertises: its SYN carries it (seen in the trace).
    port = free_udp_port()
    server = start_echo_server(port)
    try:
        result = run("echo-client", "127.0.0.1", str(port), "--message", "x", "--mss", "500",
                     "--keepalive", "30", "--no-timestamps", "--trace")
    finally:
        stop(server)
    assert result.returncode == 0, result.stderr
    bad = run("echo-client", "127.0.0.1", str(port), "--mss", "10")
    assert bad.returncode == 2 and "mss must be between 88 and 65495" in bad.stderr


def test_rcv_buf_max_sets_the_window_scale_the_syn_offers(tmp_path: pathlib.Path) -> None:
    from scapy.all import TCP, rdpcap

    port = free_udp_port()
    server = start_echo_server(port)
    scales = {}
    try:
        for top in ("1048576", "0"):  # grows to 1 MiB: a shift of 5; 0: fixed at 256 KiB
            pcap = tmp_path / f"{top}.pcap"
            result = run("echo-client", "127.0.0.1", str(port), "--message", "x",
                         "--rcv-buf-max", top, "--pcap", str(pcap))
            assert result.returncode == 0, result.stderr
            [syn] = [p for p in rdpcap(str(pcap)) if p[TCP].flags == "S"]
            scales[top] = dict(syn[TCP].options)["WScale"]
    finally:
        stop(server)
    assert scales == {"1048576": 5, "0": 3}
    bad = run("echo-client", "127.0.0.1", str(port), "--rcv-buf-max", "-1")
    assert bad.returncode == 2 and "rcv_buf_max must be None or an integer" in bad.stderr


def test_ipv6_addresses_are_printed_in_brackets() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback address on this host")
        port = s.getsockname()[1]
    proc = subprocess.Popen([*UTCP, "echo-server", "--host", "::1", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        assert f"[::1]:{port}" in proc.stderr.readline()
    finally:
        stop(proc)
    refused = run("echo-client", "::1", str(port), "--message", "x")
    assert refused.returncode == 1
    assert f"connection refused by [::1]:{port}" in refused.stderr


def test_a_port_in_use_is_named() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        result = run("echo-server", "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr == (f"utcp: cannot listen on 127.0.0.1:{port}: "
                             "Address already in use\n")


# ------------------------------------------------------------ connect, listen


def start_listener(*extra: str, stdin: Any = subprocess.PIPE,
                   stdout: Any = subprocess.PIPE) -> tuple[subprocess.Popen[bytes], int]:
    port = free_udp_port()
    proc = subprocess.Popen([*UTCP, "listen", str(port), "--host", "127.0.0.1", *extra],
                            stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                            preexec_fn=ctrl_c_default)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert b"listening on 127.0.0.1:" in line, line
    return proc, port


def test_connect_and_listen_copy_both_ways_and_half_close() -> None:
    upload = os.urandom(3_000_000)
    download = os.urandom(2_000_000)
    listener, port = start_listener()
    client = subprocess.Popen([*UTCP, "connect", "127.0.0.1", str(port)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    # Both at once, each its own input: each side half-closes when its input ends
    # and reads on until the other's FIN.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        from_listener = pool.submit(listener.communicate, input=download, timeout=60)
        from_client = pool.submit(client.communicate, input=upload, timeout=60)
        listener_out, listener_err = from_listener.result()
        client_out, client_err = from_client.result()
    assert client.returncode == 0, client_err
    assert listener.returncode == 0, listener_err
    assert hashlib.sha256(listener_out).digest() == hashlib.sha256(upload).digest()
    assert hashlib.sha256(client_out).digest() == hashlib.sha256(download).digest()
    assert b"connection from 127.0.0.1:" in listener_err


def test_listen_exec_serves_each_connection_with_a_program() -> None:
    listener, port = start_listener("--exec", "tr a-z A-Z", stdin=subprocess.DEVNULL)
    try:
        clients = [subprocess.Popen([*UTCP, "connect", "127.0.0.1", str(port)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE) for _ in range(3)]
        outs = [c.communicate(input=f"hello {i}\n".encode() * 1000, timeout=30)
                for i, c in enumerate(clients)]
    finally:
        listener.send_signal(signal.SIGTERM)
        _, err = listener.communicate(timeout=10)
    for i, (c, (out, cerr)) in enumerate(zip(clients, outs, strict=True)):
        assert c.returncode == 0, cerr
        assert out == f"HELLO {i}\n".encode() * 1000
    assert listener.returncode == 143, err
    assert err.count(b"running tr a-z A-Z") == 3


def test_listen_exec_of_a_missing_program_resets_the_connection() -> None:
    listener, port = start_listener("--exec", "/nonexistent/program", stdin=subprocess.DEVNULL)
    try:
        client = run("connect", "127.0.0.1", str(port), input="x")
    finally:
        listener.send_signal(signal.SIGTERM)
        _, err = listener.communicate(timeout=10)
    assert client.returncode == 1
    assert "reset" in client.stderr
    assert b"cannot run '/nonexistent/program'" in err


def test_a_big_transfer_shows_progress_on_a_terminal_only() -> None:
    listener, port = start_listener(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    tty, term = os.openpty()  # the client's stderr is a terminal; stdin and stdout are not
    try:
        client = subprocess.run([*UTCP, "connect", "127.0.0.1", str(port)],
                                input=b"z" * 3_000_000, stdout=subprocess.DEVNULL,
                                stderr=term, timeout=60)
        os.close(term)
        shown = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(tty, 65536):
                shown += chunk
    finally:
        os.close(tty)
        listener.communicate(timeout=30)
    assert client.returncode == 0
    assert b"sent 3.0 MB, received 0.0 MB" in shown
    piped = run("echo-client", "127.0.0.1", "1", "--message", "x")  # stderr a pipe
    assert "MB" not in piped.stderr
