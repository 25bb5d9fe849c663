"""The sans-I/O TCP core: wire format, sequence arithmetic, the connection, and the
stack that carries many connections behind one datagram socket.

Nothing in this package reads a clock, sleeps, or touches a socket: it takes
segments, application calls and the current time, and returns segments to send,
the next deadline and events for the application.

Installed with ``UTCP_COMPILE=1``, its per-segment modules are compiled with
mypyc from this same source (see setup.py); :func:`compiled_modules` tells
which of them are.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.machinery import EXTENSION_SUFFIXES


def compiled_modules() -> tuple[str, ...]:
    """The modules of this package that were loaded from C extensions (compiled by
    mypyc), by full name; empty for the pure-Python package."""
    suffixes = tuple(EXTENSION_SUFFIXES)
    names = []
    for info in pkgutil.walk_packages(__path__, __name__ + "."):
        module = importlib.import_module(info.name)
        if (getattr(module, "__file__", None) or "").endswith(suffixes):
            names.append(info.name)
    return tuple(sorted(names))
