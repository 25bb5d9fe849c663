"""The ``utcp`` command: echo server and client, nc-style streams, benchmarks, an
impairing relay, and a demo that draws TCP at work."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from .. import __version__, bench, compiled
from ..core.config import Options
from .demo import demo
from .echo import echo_client, echo_server
from .impair import add_arguments as impair_arguments
from .impair import directions, impair_command
from .output import CliError, Observing, TraceSink, address_text, open_pcap, stdout
from .pipe import connect_command, listen_command
from .stat import stat_command
from .tunnel import tunnel

__all__ = ["main", "build_parser", "CliError", "DEFAULT_PORT"]

DEFAULT_PORT = 7007


# ------------------------------------------------------------------- bench


async def run_bench(args: argparse.Namespace, options: dict[str, Any],
                    observing: Observing) -> None:
    """``utcp bench TEST``: measure, then print the summary or one JSON object."""
    common = {"duration": args.duration, "kernel": args.kernel,
              "observer": observing.observer("client")}
    where = address_text(args.host, args.port)
    try:
        if args.test == "connect":
            result = await bench.connect(args.host, args.port, concurrency=args.concurrency,
                                         message_size=args.message_size, **common)
        elif args.test == "rr":
            result = await bench.request_response(args.host, args.port, **common)
        else:
            result = await bench.throughput(args.host, args.port, reverse=args.reverse,
                                            **common)
    except socket.gaierror as exc:
        raise CliError(f"cannot resolve {args.host!r}: {exc.strerror}") from None
    except (OSError, asyncio.IncompleteReadError) as exc:
        raise CliError(f"bench {args.test} against {where} failed: "
                       f"{bench.failure_cause(exc)}") from None
    stdout.line(json.dumps(result) if args.json else bench.summary(result))


# ------------------------------------------------------------------ parser


def _number(kind: type, what: str, ok: Callable[[Any], bool],
            wrong: str) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)``, or the usage errors "not <what>" and ``wrong``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(wrong.format(text))
        return value

    return parse


_port = _number(int, "a port number", lambda v: 0 <= v <= 65535, "port out of range 0-65535: {}")
_positive = _number(float, "a number", lambda v: v > 0, "must be more than 0: {}")
_count = _number(int, "a whole number", lambda v: v >= 0, "must be 0 or more: {}")
_positive_int = _number(int, "a whole number", lambda v: v >= 1, "must be 1 or more: {}")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows each option's default, where it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" not in text and default not in (None, False, argparse.SUPPRESS)
                and (action.option_strings or action.nargs in ("?", "*"))):
            text += " (default: %(default)s)"
        return text


# Connection options the command line exposes: flag, Options field, type, metavar, help.
_TUNABLES: tuple[tuple[str, str, Any, str, str], ...] = (
    ("--mss", "mss", int, "BYTES", "largest segment payload to accept (default: 1452; 1432 "
                                   "over IPv6)"),
    ("--rcv-buf", "rcv_buf", int, "BYTES", "receive buffer: sets the window, and grows from "
                                           "there while the application keeps up "
                                           "(default: 262144)"),
    ("--rcv-buf-max", "rcv_buf_max", int, "BYTES", "the most the receive buffer grows to; 0 "
                                                   "keeps it at --rcv-buf (default: 6291456)"),
    ("--syn-retries", "syn_retries", _count, "N", "SYN retransmissions before giving up "
                                                  "(default: %s)"),
    ("--data-retries", "data_retries", _count, "N", "retransmissions of data or FIN before "
                                                    "giving up (default: 15)"),
    ("--msl", "msl", _positive, "SECONDS", "maximum segment lifetime; TIME-WAIT lasts 2 x MSL "
                                           "(default: 30)"),
    ("--keepalive", "keepalive_idle", _positive, "SECONDS",
     "send keepalive probes after this long idle (default: off)"),
    ("--keepalive-interval", "keepalive_interval", _positive, "SECONDS",
     "time between keepalive probes (default: 75)"),
    ("--keepalive-count", "keepalive_count", int, "N",
     "unanswered keepalive probes that end the connection (default: 9)"),
    ("--nat-keepalive", "nat_keepalive", _positive, "SECONDS",
     "probe after this long without hearing the peer, to keep a NAT's mapping "
     "(e.g. 25; default: off)"),
)
#: SYN retries where a person waits for the answer: 3, about 15 s (else 6, about 2 min).
_INTERACTIVE_SYN_RETRIES = 3


def _common(sp: argparse.ArgumentParser, *, tunables: bool = True, trace: bool = True,
            interactive: bool = False) -> None:
    sp.add_argument("--uvloop", action="store_true", help="run on uvloop")
    if trace:
        sp.add_argument("--trace", action="store_true",
                        help="print each connection's segments and states live, as a "
                             "ladder, on stderr (rows labelled with time and peer)")
        sp.add_argument("--trace-file", metavar="FILE",
                        help="write that trace to FILE (appending) instead of stderr")
        sp.add_argument("--pcap", metavar="FILE",
                        help="write every segment to FILE as a pcap capture of plain "
                             "TCP/IP, for Wireshark or tshark")
    if tunables:
        group = sp.add_argument_group("connection options")
        syn = "3, about 15 s" if interactive else "6, about 2 minutes"
        for flag, _, kind, metavar, text in _TUNABLES:
            group.add_argument(flag, type=kind, default=None, metavar=metavar,
                               help=text % syn if "%s" in text else text)
        group.add_argument("--no-timestamps", action="store_true",
                           help="offer no RFC 7323 timestamps")


def _server_limits(sp: argparse.ArgumentParser) -> None:
    group = sp.add_argument_group("server limits")
    group.add_argument("--max-connections", type=_positive_int, default=None, metavar="N",
                       help="connections held at once; SYNs beyond are dropped "
                            "(default: 262144)")
    group.add_argument("--max-per-host", type=_positive_int, default=None, metavar="N",
                       help="connections held at once from one IP address (default: 131072)")
    group.add_argument("--max-receive-memory", type=_count, default=None, metavar="BYTES",
                       help="bytes all connections may hold unread or ahead of holes; "
                            "windows shrink from three quarters of it (default: 134217728)")
    group.add_argument("--zero-window-timeout", type=_positive, default=None, metavar="SEC",
                       help="while memory is short, reset a connection whose application "
                            "has not read for this long (default: 60)")
    group.add_argument("--no-syn-cookies", action="store_true",
                       help="drop SYNs past the backlog instead of answering with SYN "
                            "cookies")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="utcp", formatter_class=_Formatter, description=(
        "TCP in user space over UDP: an echo server and client, nc-style streams, "
        "benchmarks, a relay that impairs the path, and a demo that draws the handshake "
        "and the close as a ladder diagram."))
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__} ("
                   f"{'core compiled with mypyc' if compiled else 'pure Python'})")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def parser(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, formatter_class=_Formatter)

    s = parser("echo-server", "echo every byte back to each client")
    s.add_argument("--host", default="0.0.0.0", help="address to listen on")
    s.add_argument("--port", type=_port, default=DEFAULT_PORT, help="UDP and TCP port")
    s.add_argument("--kernel-port", type=_port, default=None, metavar="N",
                   help="also serve the kernel's TCP on ports N (echo), N+1 (discard) and "
                        "N+2 (source), for 'utcp bench --kernel'")
    _common(s)
    _server_limits(s)

    c = parser("echo-client", "send stdin to an echo server as it is read, and print the "
                              "echo")
    c.add_argument("host", help="server host name or address")
    c.add_argument("port", type=_port, nargs="?", default=DEFAULT_PORT, help="server port")
    c.add_argument("--message", help="send this text and a newline instead of stdin")
    c.add_argument("--count", type=_count, default=None,
                   help="how often to send --message (default: 1)")
    _common(c, interactive=True)

    k = parser("connect", "copy stdin to a utcp server and what it sends to stdout, both "
                          "ways at once; half-close when stdin ends (like nc -N)")
    k.add_argument("host", help="server host name or address")
    k.add_argument("port", type=_port, help="server port")
    _common(k, interactive=True)

    ls = parser("listen", "accept one connection and copy it to stdout and stdin to it "
                          "(like nc -l); with --exec, serve every connection with a program")
    ls.add_argument("port", type=_port, help="UDP and TCP port (0: any free one)")
    ls.add_argument("--host", default="0.0.0.0", help="address to listen on")
    ls.add_argument("--exec", metavar="CMD", dest="exec_command",
                    help="run CMD for each connection, its stdin and stdout joined to the "
                         "connection (split as a shell would, but run without one)")
    _common(ls)
    _server_limits(ls)

    t = parser("tunnel", "carry kernel TCP over utcp and back: accept on SOURCE, and "
                         "connect each connection on to TARGET")
    t.add_argument("source", help="where to accept: tcp:HOST:PORT or utcp:HOST:PORT")
    t.add_argument("target", help="where to connect each: utcp:HOST:PORT or tcp:HOST:PORT")
    _common(t)

    st = parser("stat", "list a running server's connections and counters, as ss -ti and "
                        "nstat do (servers of echo-server, listen and tunnel)")
    st.add_argument("port", type=_port, nargs="?", default=None,
                    help="the server's port (default: every running utcp server of yours)")
    st.add_argument("--json", action="store_true", help="print JSON instead of the table")

    im = parser("impair", "relay UDP to another address through a bad path on purpose: "
                          "delay, jitter, loss, reordering, duplication, corruption, a "
                          "bottleneck, blackouts, per direction and seeded")
    impair_arguments(im)
    _common(im, tunables=False, trace=False)

    b = parser("bench", "measure a path to an echo server: connections per second, round "
                        "trips, throughput")
    bsub = b.add_subparsers(dest="test", metavar="TEST", required=True)

    def bench_parser(name: str, text: str) -> argparse.ArgumentParser:
        sp = bsub.add_parser(name, help=text, description=text, formatter_class=_Formatter)
        sp.add_argument("host", help="host of a running 'utcp echo-server'")
        sp.add_argument("port", type=_port, nargs="?", default=DEFAULT_PORT,
                        help="its echo port")
        sp.add_argument("--duration", type=_positive, default=10.0, help="seconds to run")
        sp.add_argument("--kernel", action="store_true",
                        help="the same over the kernel's TCP, to 'utcp echo-server "
                             "--kernel-port' (PORT is then that port)")
        sp.add_argument("--json", action="store_true",
                        help="print one JSON object instead of the summary")
        sp.add_argument("--pcap", metavar="FILE",
                        help="write every segment to FILE as a pcap capture (utcp only; "
                             "it slows the measurement down)")
        _common(sp, tunables=False, trace=False)
        return sp

    bc = bench_parser("connect", "whole connections per second (open, echo, close)")
    bc.add_argument("--concurrency", type=_count, default=64,
                    help="connections in flight at once")
    bc.add_argument("--message-size", type=_count, default=16,
                    help="bytes echoed on each connection")
    bench_parser("rr", "round trips per second of a 1-byte request/response")
    bt = bench_parser("throughput", "MB/s one way (to the server's discard port)")
    bt.add_argument("--reverse", action="store_true",
                    help="from the server (its source port) instead")

    d = parser("demo", "client and server in one process, drawn as a ladder on stdout")
    d.add_argument("--trace", action="store_true",
                   help="also print the ladder live, row by row, as it happens")
    d.add_argument("--pcap", metavar="FILE",
                   help="write every segment to FILE as a pcap capture of plain TCP/IP")
    d.add_argument("--msl", type=_positive, default=0.5,
                   help="maximum segment lifetime, seconds (TIME-WAIT = 2 x MSL)")
    d.add_argument("--uvloop", action="store_true", help="run on uvloop")
    return p


def _options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The connection options the arguments set, validated as the library would."""
    options: dict[str, Any] = {}
    for flag, name, _, _, _ in _TUNABLES:
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None:
            options[name] = value
    if "keepalive_idle" in options:
        options["keepalive"] = True
    if getattr(args, "no_timestamps", False):
        options["timestamps"] = False
    if args.command in ("echo-client", "connect") and "syn_retries" not in options:
        options["syn_retries"] = _INTERACTIVE_SYN_RETRIES
    try:
        Options(**options)  # out-of-range values are usage errors, not tracebacks
    except ValueError as exc:
        parser.error(str(exc))
    if getattr(args, "max_connections", None) is not None:
        options["max_connections"] = args.max_connections
    if getattr(args, "max_per_host", None) is not None:
        options["max_connections_per_host"] = args.max_per_host
    if getattr(args, "no_syn_cookies", False):
        options["syn_cookies"] = False
    if getattr(args, "max_receive_memory", None) is not None:
        options["max_receive_memory"] = args.max_receive_memory
    if getattr(args, "zero_window_timeout", None) is not None:
        options["zero_window_timeout"] = args.zero_window_timeout
    return options


# -------------------------------------------------------------------- run


class _Run:
    """How the main task ended: SIGTERM, or a reader gone from stdout."""

    terminated = False


async def _as_main_task(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` as the task that a closed stdout or SIGTERM cancels; either
    cancellation ends it normally, after the coroutine's own cleanup (a server
    sends its clients FIN, as on Ctrl-C)."""
    task = asyncio.current_task()
    assert task is not None
    stdout.main_task = task
    loop = asyncio.get_running_loop()

    def terminate() -> None:
        _Run.terminated = True
        task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, terminate)
    except (NotImplementedError, RuntimeError):  # pragma: no cover - not on this platform
        pass
    try:
        await coro
    except asyncio.CancelledError:
        if not (stdout.closed or _Run.terminated):
            raise  # Ctrl-C: asyncio turns this into KeyboardInterrupt
    finally:
        stdout.main_task = None
        try:
            loop.remove_signal_handler(signal.SIGTERM)
        except (NotImplementedError, RuntimeError):  # pragma: no cover
            pass


def run(coro: Coroutine[Any, Any, None], use_uvloop: bool) -> None:
    """Run ``coro`` on asyncio's default loop or on uvloop."""
    if not use_uvloop:
        asyncio.run(_as_main_task(coro))
        return
    try:
        import uvloop
    except ImportError:
        coro.close()
        raise CliError("uvloop is not installed: pip install 'utcp[uvloop]'") from None
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_as_main_task(coro))
    else:  # pragma: no cover - Python 3.10
        uvloop.install()
        asyncio.run(_as_main_task(coro))


def main(argv: list[str] | None = None) -> int:
    """The ``utcp`` command; returns its exit status."""
    try:
        return _main(argv)
    except BrokenPipeError:  # a write not made through stdout, outside any observer
        stdout.reader_gone()
        return 141


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    options = _options(args, parser)
    if args.command == "echo-client":
        if args.count is not None and args.message is None:
            parser.error("--count repeats --message: give --message too")
        if args.count is None:
            args.count = 1
    if args.command in ("echo-client", "connect", "bench") and args.port == 0:
        parser.error("the server port must not be 0")
    if args.command == "bench" and args.kernel and args.pcap is not None:
        parser.error("--pcap captures utcp's segments; for the kernel's TCP use tcpdump")
    if args.command == "bench" and args.test == "connect" and args.concurrency == 0:
        parser.error("--concurrency must be at least 1")
    if args.command == "impair":
        try:
            up, down = directions(args)
        except ValueError as exc:
            parser.error(str(exc))
    observing = Observing()
    try:
        if getattr(args, "pcap", None) is not None:
            observing.pcap = open_pcap(args.pcap)
        if getattr(args, "trace_file", None) is not None or (
                args.command != "demo" and getattr(args, "trace", False)):
            observing.trace = TraceSink(args.trace_file)
        if args.command == "echo-server":
            run(echo_server(args.host, args.port, observing, options, args.kernel_port),
                args.uvloop)
        elif args.command == "echo-client":
            run(echo_client(args.host, args.port, args.message, args.count, observing,
                            options), args.uvloop)
        elif args.command == "connect":
            run(connect_command(args.host, args.port, observing, options), args.uvloop)
        elif args.command == "listen":
            run(listen_command(args.host, args.port, args.exec_command, observing, options),
                args.uvloop)
        elif args.command == "stat":
            run(stat_command(args.port, args.json), False)
        elif args.command == "tunnel":
            run(tunnel(args.source, args.target, observing, options), args.uvloop)
        elif args.command == "impair":
            run(impair_command(args, up, down), args.uvloop)
        elif args.command == "bench":
            run(run_bench(args, options, observing), args.uvloop)
        else:
            run(demo(options.pop("msl"), args.trace, options, observing.pcap), args.uvloop)
    except CliError as exc:
        print(f"utcp: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("utcp: interrupted", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        # stdout closed by the coroutine's last write: the task was cancelled as it
        # returned, too late for _as_main_task to see.
        if not (stdout.closed or _Run.terminated):
            raise
    finally:
        observing.close()
    if _Run.terminated:
        return 143  # 128 + SIGTERM, as a shell reports it; the connections were closed
    # 141 = 128 + SIGPIPE: what a shell reports for a command stopped by a closed pipe.
    return 141 if stdout.closed else 0
