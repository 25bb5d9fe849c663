"""``utcp stat``: what a running utcp command's connections are doing, like ``ss -ti``
and ``nstat``.

Each serving command (``echo-server``, ``listen``, ``tunnel``) opens a control
socket, a Unix domain socket only its user can reach, named after its UDP
port in a directory of that user's and of its network namespace (two servers
on one port in two namespaces are two servers, as ``ss`` sees them). ``utcp
stat`` asks each (or the one for a port) for a snapshot: the endpoint's counters
and one row per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from .output import CliError, address_text, stdout


def control_dir() -> str:
    """The directory of this user's control sockets in this network namespace."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    try:  # (Linux: the namespace's inode; elsewhere, one directory for all)
        netns = f"-net{os.stat('/proc/self/ns/net').st_ino}"
    except OSError:
        netns = ""
    return os.path.join(base, f"utcp-{os.getuid()}{netns}")


def control_path(port: int) -> str:
    return os.path.join(control_dir(), f"{port}.sock")


class StatChannel:
    """The control socket of a serving command: answers each connection with one
    JSON snapshot from ``snapshot()`` and closes it."""

    def __init__(self, port: int, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.path = control_path(port)
        self._snapshot = snapshot
        self._server: asyncio.AbstractServer | None = None

    async def open(self) -> None:
        """Open the socket; where that cannot be done, go on without it (stat is extra)."""
        directory = os.path.dirname(self.path)
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            if os.stat(directory).st_uid != os.getuid():
                return  # someone else's directory: never serve our state there
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)  # left behind by a command that was killed
            self._server = await asyncio.start_unix_server(self._answer, self.path)
            os.chmod(self.path, 0o600)
        except (OSError, NotImplementedError):
            self._server = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(json.dumps(self._snapshot()).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def snapshot_of(command: str, servers: list[tuple[str, Any]]) -> dict[str, Any]:
    """What ``utcp stat`` shows of a command's utcp servers, named."""
    return {
        "pid": os.getpid(),
        "command": command,
        "servers": [{"name": name, "port": server.port, "statistics": server.statistics(),
                     "connections": server.connection_table()}
                    for name, server in servers],
    }


def _ask(path: str) -> dict[str, Any] | None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect(path)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        except OSError:
            return None  # a socket left behind by a command that is gone
    try:
        return json.loads(data)  # type: ignore[no-any-return]
    except ValueError:
        return None


def _ms(seconds: Any) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def format_snapshot(snap: dict[str, Any]) -> str:
    lines = [f"utcp {snap['command']} (pid {snap['pid']})"]
    for srv in snap["servers"]:
        stats = srv["statistics"]
        states = ", ".join(f"{n} {state}" for state, n in sorted(stats["connections"].items()))
        lines.append(f"  {srv['name']} on port {srv['port']}: {states or 'no connections'}")
        header = (f"    {'State':<12} {'Peer':<24} {'Local':>5} {'RTT/var ms':>12} "
                  f"{'RTO ms':>7} {'cwnd':>7} {'ssthresh':>9} {'in flight':>9} "
                  f"{'retrans':>7} {'Recv-Q':>7} {'Send-Q':>7}")
        if srv["connections"]:
            lines.append(header)
        for c in srv["connections"]:
            peer = address_text(c["peer"], c["remote_port"]) if c["peer"] else "-"
            rtt = f"{_ms(c['srtt'])}/{_ms(c['rttvar'])}"
            ssthresh = c["ssthresh"] if c["ssthresh"] < 2**30 else "-"
            lines.append(
                f"    {c['state']:<12} {peer:<24} {c['local_port']:>5} {rtt:>12} "
                f"{_ms(c['rto']):>7} {c['cwnd']:>7} {ssthresh!s:>9} {c['unacked']:>9} "
                f"{c['retransmissions']:>7} {c['unread']:>7} {c['unsent'] + c['unacked']:>7}")
        counters = {"segments_in": stats["segments_in"], "segments_out": stats["segments_out"],
                    "retransmissions": stats["retransmissions"],
                    "resets_sent": stats["resets_sent"], "accepted": stats["accepted"],
                    "receive_memory": stats["receive_memory"]["held"]}
        counters.update({f"drop:{k}": v for k, v in sorted(stats["drops"].items())})
        lines.append("    " + "  ".join(f"{k} {v}" for k, v in counters.items()))
    return "\n".join(lines)


async def stat_command(port: int | None, as_json: bool) -> None:
    """``utcp stat [PORT] [--json]``."""
    directory = control_dir()
    if port is not None:
        paths = [control_path(port)]
    else:
        try:
            names = sorted(os.listdir(directory), key=lambda n: (len(n), n))
        except OSError:
            names = []
        paths = [os.path.join(directory, n) for n in names if n.endswith(".sock")]
    loop = asyncio.get_running_loop()
    snaps = [s for s in await asyncio.gather(*(loop.run_in_executor(None, _ask, p)
                                                for p in paths)) if s is not None]
    if not snaps:
        where = f"on port {port}" if port is not None else "for this user"
        raise CliError(f"no running utcp server {where} (echo-server, listen and tunnel "
                       "answer 'utcp stat')")
    if as_json:
        stdout.line(json.dumps(snaps if port is None else snaps[0]))
    else:
        stdout.line("\n\n".join(format_snapshot(s) for s in snaps))
    sys.stdout.flush()
