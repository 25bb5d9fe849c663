"""Where the command's output goes: stdout that survives a closed pipe, traces
on stderr or in a file, and addresses as people write them."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
from typing import IO, Any

from ..core.connection import Connection
from ..core.observer import NullObserver, Observer
from ..core.state import State
from ..core.wire import Segment
from ..ladder import Ladder
from ..pcap import PcapWriter, Tee


class CliError(Exception):
    """A failure to report as one plain line, without a traceback."""


def address_text(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets (``[::1]:7007``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def reason(exc: OSError) -> str:
    """What went wrong, in the system's words (``Address already in use``)."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def error_line(text: str) -> None:
    """One line on stderr, flushed."""
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ stdout


class Stdout:
    """Standard output, where a reader that has gone (``| head``) ends the command quietly.

    Every write to stdout goes through :meth:`write`. Many come from observers, which
    the TCP core calls in the middle of a state change: an exception there would break
    the connection, so a closed pipe never raises. Instead stdout is pointed at
    os.devnull, so that no later write or the flush at exit fails again, and the main
    task is cancelled; the command then exits with status 141, as for SIGPIPE.
    """

    def __init__(self) -> None:
        self.closed = False
        self.main_task: asyncio.Task[None] | None = None

    def write(self, data: str | bytes) -> None:
        """Write text or bytes to stdout and flush them, or stop the program quietly."""
        if self.closed:
            return
        try:
            if isinstance(data, str):
                sys.stdout.write(data)
                sys.stdout.flush()
            else:
                sys.stdout.flush()  # text written before these bytes goes out first
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
        except BrokenPipeError:
            self.reader_gone()

    def line(self, text: str = "") -> None:
        """Write ``text`` and a newline."""
        self.write(text + "\n")

    def reader_gone(self) -> None:
        """Point stdout at os.devnull and cancel the main task, if there is one."""
        self.closed = True
        # As the Python docs on SIGPIPE advise: anything still buffered, and the flush
        # at interpreter exit, must not fail with another BrokenPipeError.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass  # stdout is no file descriptor: nothing the OS can still fail on
        finally:
            os.close(devnull)
        task = self.main_task
        if task is not None and not task.done():
            task.cancel()


stdout = Stdout()


# ---------------------------------------------------------------- tracing


class TraceSink:
    """Where trace rows go: stderr, or a file, each row stamped with the wall-clock time."""

    def __init__(self, path: str | None = None) -> None:
        self._file: IO[str] | None = None
        if path is not None:
            try:
                self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise CliError(f"cannot write the trace to {path}: {exc.strerror}") from None

    def row(self, label: str, text: str) -> None:
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        line = f"{stamp} {label} {text}\n"
        if self._file is not None:
            self._file.write(line)
            self._file.flush()
        else:
            try:
                sys.stderr.write(line)
                sys.stderr.flush()
            except (BrokenPipeError, ValueError):
                pass  # nobody reads stderr any more: the trace is not worth a failure

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class PerConnectionTrace(NullObserver):
    """Gives every connection of a listener or client its own live ladder, whose
    rows go to ``sink`` labelled with the connection's peer."""

    def __init__(self, side: str, sink: TraceSink) -> None:
        self._side = side
        self._sink = sink
        self._ladders: dict[Connection, Any] = {}

    def _obs(self, conn: Connection) -> Any:
        obs = self._ladders.get(conn)
        if obs is None:
            peer = conn.peer
            label = address_text(peer[0], conn.remote_port) if peer else f":{conn.remote_port}"
            ladder = Ladder("client", "server", live=functools.partial(self._sink.row, label))
            obs = self._ladders[conn] = ladder.observer(self._side)
        return obs

    def state_changed(self, conn: Connection, old: State, new: State, cause: str,
                      now: float) -> None:
        self._obs(conn).state_changed(conn, old, new, cause, now)
        if new is State.CLOSED:
            self._ladders.pop(conn, None)

    def segment_sent(self, conn: Connection, seg: Segment, now: float) -> None:
        self._obs(conn).segment_sent(conn, seg, now)

    def segment_received(self, conn: Connection, seg: Segment, now: float) -> None:
        self._obs(conn).segment_received(conn, seg, now)


class Observing:
    """What the command line asked to see of its connections: a live trace
    (``--trace``, ``--trace-file``), a capture (``--pcap``), both, or neither."""

    def __init__(self, trace: TraceSink | None = None, pcap: PcapWriter | None = None) -> None:
        self.trace = trace
        self.pcap = pcap

    def observer(self, side: str) -> Observer | None:
        """The observer for the connections of ``side`` ("client" or "server")."""
        observers: list[Observer] = []
        if self.trace is not None:
            observers.append(PerConnectionTrace(side, self.trace))
        if self.pcap is not None:
            observers.append(self.pcap)
        if not observers:
            return None
        return observers[0] if len(observers) == 1 else Tee(*observers)

    def close(self) -> None:
        if self.trace is not None:
            self.trace.close()
        if self.pcap is not None:
            self.pcap.close()


def open_pcap(path: str) -> PcapWriter:
    """The capture file for ``--pcap``, or one plain line saying why not."""
    try:
        return PcapWriter(path)
    except OSError as exc:
        raise CliError(f"cannot write the capture to {path}: {reason(exc)}") from None
