"""``utcp impair``: a UDP relay that makes a path bad on purpose, for real traffic.

    utcp impair --listen 9000 --to SERVER:7007 --delay 20ms --loss 2%
    utcp echo-client RELAY 9000

Clients send to the relay instead of the server; each direction crosses the
emulator's impaired path (:class:`utcp.emulator.Relay`). The flags set both
directions; ``--up`` and ``--down`` take ``key=value`` words with the same names
and units and override one direction. Values have units: durations ``15ms``,
``0.5s``, ``200us`` (a bare number is milliseconds, but for ``--blackout`` and
``--idle-timeout``, seconds), fractions ``2%`` or ``0.02``, rates ``10mbit``,
``500kbit``, ``1gbit`` (a bare number is bit/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import socket
import sys
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from ..bench import Progress
from ..emulator.impairments import Impairments
from ..emulator.relay import PATH_COUNTERS, Relay
from .output import CliError, address_text, error_line, reason, stdout

#: How often the live counters are redrawn on a terminal, in seconds.
STATUS_INTERVAL = 1.0

# ------------------------------------------------------------------ values

_NUMBER = r"((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
_DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
_RATE_UNITS = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}


def _split(text: str) -> tuple[float, str] | None:
    """``15ms`` as (15.0, "ms"); None if it does not start with a plain number."""
    m = re.fullmatch(_NUMBER + r"\s*([a-zA-Zµ%]*)", text.strip())
    if m is None:
        return None
    value = float(m.group(1))  # 1e400 is inf: refused below
    return (value, m.group(2).lower()) if math.isfinite(value) else None


def duration(text: str, bare: str = "ms") -> float:
    """Seconds, from ``15ms``, ``0.5s``, ``200us``; a bare number is in ``bare``."""
    parts = _split(text)
    if parts is None or (parts[1] or bare) not in _DURATION_UNITS:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (give 15ms, 0.5s or 200us; a bare number is "
            f"{'milliseconds' if bare == 'ms' else 'seconds'})")
    return parts[0] * _DURATION_UNITS[parts[1] or bare]


def _seconds(text: str) -> float:
    return duration(text, "s")


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text}")
    return value


def fraction(text: str) -> float:
    """A fraction from 0 to 1, from ``2%`` or ``0.02``."""
    parts = _split(text)
    if parts is None or parts[1] not in ("", "%"):
        raise argparse.ArgumentTypeError(f"not a fraction: {text!r} (give 2% or 0.02)")
    value = parts[0] / 100 if parts[1] == "%" else parts[0]
    if value > 1:
        raise argparse.ArgumentTypeError(f"a fraction is from 0 to 1 (0% to 100%): {text}")
    return value


def rate(text: str) -> float:
    """Bits per second, from ``10mbit``, ``500kbit``, ``1gbit`` or a bare number."""
    parts = _split(text)
    if parts is None or (parts[1] or "bit") not in _RATE_UNITS:
        raise argparse.ArgumentTypeError(
            f"not a rate: {text!r} (give 10mbit, 500kbit, 1gbit; a bare number is bit/s)")
    value = parts[0] * _RATE_UNITS[parts[1] or "bit"]
    if not value > 0:
        raise argparse.ArgumentTypeError(f"a rate must be more than 0: {text}")
    return value


def _whole(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text}")
    return value


def _burst(text: str) -> float:
    parts = _split(text)
    if parts is None or parts[1]:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    if parts[0] < 1:
        raise argparse.ArgumentTypeError(f"a mean burst length is 1 or more: {text}")
    return parts[0]


def blackout(text: str) -> tuple[float, float]:
    """``UP:DOWN``: seconds of service, then seconds of silence (suffixes allowed)."""
    up, sep, down = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(
            f"not UP:DOWN: {text!r} (give 10:2 for 10 s up, then 2 s down)")
    return _positive_seconds(up), _positive_seconds(down)


#: Each impairment: its flag and ``--up``/``--down`` key, its Impairments field,
#: the parser of its value, its metavar and help.
SETTINGS: tuple[tuple[str, str, Callable[[str], Any], str, str], ...] = (
    ("delay", "delay", duration, "TIME", "one-way delay (15ms, 0.5s, 200us; bare: ms)"),
    ("jitter", "jitter", duration, "TIME", "plus up to this much more, drawn uniformly; "
                                           "jitter alone does not reorder"),
    ("loss", "loss", fraction, "FRACTION", "datagrams lost (2%% or 0.02)"),
    ("burst", "burst", _burst, "N", "mean length of a burst of losses (Gilbert-Elliott), at "
                                    "the same mean loss (default: 1, independent losses)"),
    ("max-burst", "max_burst", _whole, "N", "at most N datagrams lost in a row; the next gets "
                                            "through (the QUIC interop runner's drop-rate "
                                            "network; default: no cap)"),
    ("reorder", "reorder", fraction, "FRACTION", "datagrams held back so that later ones "
                                                 "overtake them"),
    ("reorder-delay", "reorder_delay", duration, "TIME", "how long they are held back "
                                                         "(default: the delay, at least 1ms)"),
    ("duplicate", "duplicate", fraction, "FRACTION", "datagrams delivered twice"),
    ("corrupt", "corrupt", fraction, "FRACTION", "datagrams delivered with one bit flipped"),
    ("rate", "rate", rate, "RATE", "a bottleneck of this many bits per second (10mbit, "
                                   "500kbit, 1gbit; bare: bit/s)"),
    ("queue", "queue", _whole, "N", "datagrams that may wait at the bottleneck; more are "
                                    "dropped (default: 1000)"),
    ("mtu", "mtu", _whole, "BYTES", "datagrams longer than this are dropped"),
    ("blackout", "blackout", blackout, "UP:DOWN", "carry nothing for DOWN seconds after "
                                                  "every UP seconds (10:2; suffixes allowed)"),
)
_BY_KEY = {key: (field, parse) for key, field, parse, _, _ in SETTINGS}


def direction_spec(text: str) -> dict[str, Any]:
    """``--up``/``--down``: ``key=value`` words (``loss=2% delay=20ms``) as
    Impairments fields; the word ``clean`` first resets every setting."""
    settings: dict[str, Any] = {}
    for word in text.replace(",", " ").split():
        if word == "clean":
            settings = {f.name: f.default for f in fields(Impairments)}
            continue
        key, sep, value = word.partition("=")
        key = key.replace("_", "-")
        if not sep or key not in _BY_KEY:
            raise argparse.ArgumentTypeError(
                f"not key=value: {word!r} (keys: {', '.join(_BY_KEY)}; or 'clean')")
        field, parse = _BY_KEY[key]
        try:
            settings[field] = parse(value)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{key}: {exc}") from None
    return settings


def add_arguments(sp: argparse.ArgumentParser) -> None:
    """The arguments of ``utcp impair``."""
    sp.add_argument("--listen", required=True, type=listen_address, metavar="[HOST:]PORT",
                    help="where clients send to (HOST defaults to 0.0.0.0: every IPv4 "
                         "interface; port 0: any free one)")
    sp.add_argument("--to", required=True, type=target_address, metavar="HOST:PORT",
                    dest="target", help="where to relay to (IPv6 in brackets)")
    group = sp.add_argument_group("impairments, both directions (default: none)")
    for key, _, parse, metavar, text in SETTINGS:
        group.add_argument(f"--{key}", type=parse, metavar=metavar, default=None, help=text)
    group.add_argument("--up", type=direction_spec, action="append", default=None,
                       metavar="SPEC", help="override client-to-target only, with key=value "
                                            "words of the same names and units: "
                                            "--up 'loss=2%% delay=20ms' ('clean' resets)")
    group.add_argument("--down", type=direction_spec, action="append", default=None,
                       metavar="SPEC", help="the same for target-to-client")
    sp.add_argument("--seed", type=int, default=None, metavar="N",
                    help="seed of the random draws, per direction, to repeat a run "
                         "(default: a random one, printed at start)")
    sp.add_argument("--idle-timeout", type=_positive_seconds, default=120.0, metavar="SEC",
                    help="forget a client silent this long; its next datagram gets a new "
                         "upstream port, as after a NAT rebinding")
    sp.add_argument("--rebind-every", type=_positive_seconds, default=None, metavar="SEC",
                    help="forget every client's mapping every SEC seconds, as a NAT that "
                         "reassigns them: each client's next datagram reaches the target "
                         "from a new port (default: never)")
    sp.add_argument("--max-clients", type=_whole, default=1024, metavar="N",
                    help="the most clients with a mapping at once; a new client's "
                         "datagrams are dropped while that many have one (a NAT's "
                         "full table)")
    sp.add_argument("--no-port-rewrite", action="store_true",
                    help="leave the bytes alone: relay another protocol than utcp (utcp "
                         "segments carry the port the client dialled; by default the "
                         "relay rewrites it when its port is not the target's)")
    sp.add_argument("--json", action="store_true",
                    help="at exit, print the counters as one JSON object instead of the "
                         "summary")


def directions(args: argparse.Namespace) -> tuple[Impairments, Impairments]:
    """The two directions the arguments ask for; ValueError says what is wrong."""
    both = {field: getattr(args, field) for _, field, _, _, _ in SETTINGS
            if getattr(args, field) is not None}
    Impairments(**both)  # a mistake in the shared flags is reported as such
    out = []
    for name in ("up", "down"):
        settings = dict(both)
        for spec in getattr(args, name) or ():
            settings.update(spec)
        try:
            out.append(Impairments(**settings))
        except ValueError as exc:
            raise ValueError(f"--{name}: {exc}") from None
    return out[0], out[1]


def _host_port(text: str, default_host: str | None) -> tuple[str, int]:
    if default_host is not None and text.isdigit():
        host, port_text = default_host, text
    else:
        host, sep, port_text = text.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or ":" in host and not text.startswith("["):
            form = "[HOST:]PORT" if default_host is not None else "HOST:PORT"
            raise argparse.ArgumentTypeError(f"not {form}: {text!r} (IPv6 in brackets: "
                                             "[::1]:9000)")
    low = 0 if default_host is not None else 1
    if not port_text.isdigit() or not low <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range {low}-65535: {text}")
    return host, int(port_text)


def listen_address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT``, the host 0.0.0.0 if left out."""
    return _host_port(text, "0.0.0.0")


def target_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``."""
    return _host_port(text, None)


# ------------------------------------------------------------------ text


def _time_text(seconds: float) -> str:
    if seconds and seconds < 1e-3:
        return f"{seconds * 1e6:g}us"
    if seconds < 1:
        return f"{seconds * 1e3:g}ms"
    return f"{seconds:g}s"


def _rate_text(bits: float) -> str:
    for unit, size in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if bits >= size:
            return f"{bits / size:g}{unit}"
    return f"{bits:g}bit"


def describe(imp: Impairments) -> str:
    """``imp`` as ``--up`` words (``delay=20ms loss=2%``), or ``clean``."""
    base = Impairments()
    words = []
    for key, field, parse, _, _ in SETTINGS:
        value = getattr(imp, field)
        if value == getattr(base, field):
            continue
        if parse is duration:
            text = _time_text(value)
        elif parse is fraction:
            text = f"{value * 100:g}%"
        elif parse is rate:
            text = _rate_text(value)
        elif parse is blackout:
            text = f"{_time_text(value[0])}:{_time_text(value[1])}"
        else:
            text = str(value) if isinstance(value, int) else f"{value:g}"
        words.append(f"{key}={text}")
    return " ".join(words) or "clean"


def _settings(imp: Impairments) -> dict[str, Any]:
    base = Impairments()
    return {f.name: getattr(imp, f.name) for f in fields(imp)
            if getattr(imp, f.name) != getattr(base, f.name)}


def _counts(counts: dict[str, int], *, always: tuple[str, ...] = ("sent", "delivered"),
            sep: str = " ") -> str:
    return sep.join(f"{counts[name]} {name}" for name in PATH_COUNTERS
                    if counts[name] or name in always)


def _many(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _width() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns or 80  # 0: not set
    except (OSError, ValueError):
        return 80


# ------------------------------------------------------------------ command


async def impair_command(args: argparse.Namespace, up: Impairments,
                         down: Impairments) -> None:
    """Relay until cancelled (Ctrl-C or SIGTERM), then report."""
    loop = asyncio.get_running_loop()
    host, port = args.target
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise CliError(f"cannot resolve {host!r}: {exc.strerror}") from None
    target = infos[0][4][:2]
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    relay = Relay(target, listen=args.listen, up=up, down=down, seed=seed,
                  idle_timeout=args.idle_timeout, max_clients=args.max_clients,
                  rewrite_ports=not args.no_port_rewrite)
    where = address_text(*args.listen)
    try:
        await relay.start()
    except socket.gaierror as exc:
        raise CliError(f"cannot resolve {args.listen[0]!r}: {exc.strerror}") from None
    except OSError as exc:
        raise CliError(f"cannot listen on {where}: {reason(exc)}") from None
    listening = address_text(relay.address[0], relay.port)
    to = address_text(*target)
    error_line(f"utcp: relaying UDP {listening} -> {to} (up: {describe(up)}, "
               f"down: {describe(down)}, seed {seed})")

    def status(elapsed: float) -> str:
        stats = relay.statistics()
        text = (f"up: {_counts(stats['up'])} | down: {_counts(stats['down'])} | "
                f"{_many(stats['mappings'], 'client')}")
        if stats["strangers"]:
            text += f", {_many(stats['strangers'], 'stranger')}"
        return text[:_width() - 1]

    rebinding: asyncio.TimerHandle | None = None

    def rebind() -> None:
        nonlocal rebinding
        relay.rebind()
        rebinding = loop.call_later(args.rebind_every, rebind)

    if args.rebind_every:
        rebinding = loop.call_later(args.rebind_every, rebind)
    start = loop.time()
    try:
        with Progress(status, interval=STATUS_INTERVAL):  # on a terminal only
            await loop.create_future()  # until Ctrl-C or SIGTERM
    finally:
        if rebinding is not None:
            rebinding.cancel()
        stats = relay.statistics()  # mappings: those open at the end
        relay.close()
        seconds = loop.time() - start
        if args.json:
            summary = {"listen": listening, "target": to, "seed": seed,
                       "seconds": round(seconds, 3),
                       "up": {"impairments": _settings(up), **stats["up"]},
                       "down": {"impairments": _settings(down), **stats["down"]},
                       **{k: v for k, v in stats.items() if k not in ("up", "down")}}
            stdout.line(json.dumps(summary))
        else:
            stdout.line(f"relayed {listening} -> {to} for {seconds:.1f} s: "
                        f"{_many(stats['clients'], 'client')}, "
                        f"{_many(stats['expired'], 'mapping')} expired, "
                        + (f"{_many(stats['rebound'], 'mapping')} rebound, "
                           if args.rebind_every else "") +
                        f"{_many(stats['strangers'], 'datagram')} from strangers"
                        + (f", {_many(stats['table-full'], 'datagram')} from new clients "
                           "dropped (table full)" if stats["table-full"] else ""))
            for name, imp in (("up", up), ("down", down)):
                stdout.line(f"  {name:<4} ({describe(imp)}): "
                            f"{_counts(stats[name], sep=', ')}")
