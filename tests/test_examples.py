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


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_example(*args: str) -> subprocess.Popen[str]:
    """An example's server, in a process of its own, once it says it is ready."""
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / args[0]), *args[1:]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "port" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


def stop_example(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.communicate(timeout=10)


def test_chat_example_passes_each_line_to_everyone() -> None:
    out = run_example("chat.py")
    ada, _, bob = out.partition("bob saw:")
    for seen in (ada, bob):
        assert "<ada> hello, bob" in seen and "<bob> hi ada!" in seen


def test_chat_example_in_two_processes() -> None:
    port = free_udp_port()
    server = start_example("chat.py", "server", str(port))
    try:
        client = subprocess.run([sys.executable, str(EXAMPLES / "chat.py"), "client",
                                 "127.0.0.1", str(port), "eve"], input="anyone here?\n",
                                capture_output=True, text=True, timeout=30)
    finally:
        stop_example(server)
    assert client.returncode == 0, client.stderr
    assert client.stdout.splitlines()[:2] == ["* eve joined", "<eve> anyone here?"]


def test_http_example_serves_and_fetches() -> None:
    out = run_example("http_h11.py")
    assert "GET /http_h11.py: 200" in out and "GET /nothing-here: 404 not found" in out
    port = free_udp_port()
    server = start_example("http_h11.py", "server", str(port))
    try:
        got = subprocess.run([sys.executable, str(EXAMPLES / "http_h11.py"), "get",
                              "127.0.0.1", str(port), "/echo.py"], capture_output=True,
                             timeout=30)
    finally:
        stop_example(server)
    assert got.returncode == 0, got.stderr
    assert got.stdout == (EXAMPLES / "echo.py").read_bytes()


def test_file_transfer_example_checks_the_digest(tmp_path: pathlib.Path) -> None:
    assert "receiver says OK" in run_example("file_transfer.py")
    src = tmp_path / "data.bin"
    src.write_bytes(bytes(range(256)) * 8000)
    port = free_udp_port()
    receiver = subprocess.Popen([sys.executable, str(EXAMPLES / "file_transfer.py"), "receive",
                                 str(port), str(tmp_path / "out.bin")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert receiver.stdout is not None
    assert "waiting for a file" in receiver.stdout.readline()
    sender = subprocess.run([sys.executable, str(EXAMPLES / "file_transfer.py"), "send",
                             "127.0.0.1", str(port), str(src)], capture_output=True, text=True,
                            timeout=60)
    out, err = receiver.communicate(timeout=30)
    assert sender.returncode == 0, sender.stderr
    assert receiver.returncode == 0, err
    assert "receiver says OK" in sender.stdout and "matches" in out
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    assert "[" not in sender.stderr  # no progress bar where stderr is no terminal


def test_errors_example_shows_each_exception() -> None:
    out = run_example("errors_and_keepalive.py")
    for text in ("ConnectionRefusedError", "TimeoutError: [Errno 110] connection timed out: "
                 "no answer to SYN", "ConnectionResetError", "IncompleteReadError",
                 "keepalive probes unanswered"):
        assert text in out


def test_tls_example_verifies_and_refuses() -> None:
    out = run_example("tls_echo.py")
    assert "client: echoed b'secret message'" in out
    assert "untrusting client: SSLCertVerificationError" in out


def test_echo_example_in_two_processes() -> None:
    port = free_udp_port()
    server = start_example("echo.py", "server", str(port))
    try:
        client = subprocess.run([sys.executable, str(EXAMPLES / "echo.py"), "client",
                                 "127.0.0.1", str(port), "over there"], capture_output=True,
                                text=True, timeout=30)
    finally:
        stop_example(server)
    assert client.returncode == 0, client.stderr
    assert client.stdout == "client: received 'over there'\n"


def test_emulated_network_example_uploads_intact_on_virtual_time() -> None:
    out = run_example("emulated_network.py")
    assert "uploaded 2097152 bytes in" in out and "of virtual time" in out
    assert "sha256 matches" in out
