"""Build hook for the optional compiled core (pyproject.toml holds everything else).

By default utcp installs as pure Python and needs no C compiler. With the
environment variable ``UTCP_COMPILE=1`` at install time, the modules of the
sans-I/O core named in ``COMPILED`` are compiled with mypyc, from the same
source, into C extensions that are imported in place of the ``.py`` files::

    UTCP_COMPILE=1 pip install '.[test]'

That needs a C compiler and the Python headers; pip fetches the pinned mypy
into the isolated build environment by itself. If compiling was asked for and
fails, the install fails and says why: it never falls back quietly.
``utcp.compiled`` (and ``utcp --version``) tell which build is loaded.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

#: The mypy (and so mypyc) that compiles the core: pinned, as the generated C is
#: only as tested as the compiler that made it.
MYPY = "mypy==2.4.1"

#: The modules compiled: the per-segment path (wire, seq, connection and what it
#: calls for every segment) and the stack around it. The rest of the core (events,
#: states, options, the observer protocol, ISNs, SYN cookies) is called at most
#: once per connection and stays Python, as does everything above the core.
COMPILED = [
    "utcp/core/autotune.py",
    "utcp/core/buffers.py",
    "utcp/core/congestion/bbr.py",
    "utcp/core/congestion/cubic.py",
    "utcp/core/congestion/newreno.py",
    "utcp/core/connection.py",
    "utcp/core/rack.py",
    "utcp/core/rate.py",
    "utcp/core/recovery.py",
    "utcp/core/rtt.py",
    "utcp/core/sack.py",
    "utcp/core/seq.py",
    "utcp/core/stack.py",
    "utcp/core/timers.py",
    "utcp/core/timewait.py",
    "utcp/core/wire.py",
]

#: The shared library that holds the compiled modules: <GROUP>__mypyc.<suffix>.
GROUP = "utcp_core"


def _wanted() -> bool:
    value = os.environ.get("UTCP_COMPILE", "").strip().lower()
    if value in ("", "0", "no", "false", "off"):
        return False
    if value in ("1", "yes", "true", "on"):
        return True
    sys.exit(f"UTCP_COMPILE={value!r}: use 1 to compile the core with mypyc, 0 (or unset) "
             f"for the pure-Python package")


class _BuildExt(build_ext):
    """build_ext that names the cause when the C compiler fails."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            raise SystemExit(
                f"UTCP_COMPILE=1: compiling utcp's core with mypyc failed: {exc}\n"
                f"It needs a C compiler and the Python headers (e.g. apt-get install "
                f"gcc python3-dev). Install without UTCP_COMPILE for the pure-Python "
                f"package.") from exc


def _compiled() -> dict[str, object]:
    """setup() arguments for the compiled build."""
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        # pip first runs this file to ask what the build needs (setup_requires
        # answers, and setuptools stops there); only a build without isolation
        # reaches a real build with no mypy, and must not quietly build pure.
        why = str(exc)

        class _NoMypyc(build_ext):
            def run(self) -> None:
                raise SystemExit(
                    f"UTCP_COMPILE=1 but mypyc cannot be imported ({why}): install "
                    f"{MYPY} in the build environment (pip does, unless run with "
                    f"--no-build-isolation), or install without UTCP_COMPILE.")

        from setuptools import Extension

        # One placeholder extension so that build_ext runs, and stops the build.
        return {"setup_requires": [MYPY], "cmdclass": {"build_ext": _NoMypyc},
                "ext_modules": [Extension("utcp._no_mypyc", sources=[])]}
    # setuptools packages whatever its platform build directory holds: an extension
    # left there by an earlier build, of a module no longer in COMPILED, would come
    # back. Each compiled build starts from an empty one.
    for stale in (Path(__file__).resolve().parent / "build").glob("lib.*"):
        shutil.rmtree(stale)
    return {
        "setup_requires": [MYPY],
        "cmdclass": {"build_ext": _BuildExt},
        "ext_modules": mypycify(COMPILED, opt_level="3", group_name=GROUP),
    }


def _pure() -> dict[str, object]:
    """setup() arguments for the pure-Python package (none), once the extensions an
    editable compiled install built into the source tree are gone: they would be
    imported in place of the sources, and fail without the shared library that
    only the compiled install puts on the path."""
    root = Path(__file__).resolve().parent
    built = [root.glob(f"{GROUP}__mypyc.*")]
    built += [(root / path).parent.glob(Path(path).stem + ".*") for path in COMPILED]
    for found in built:
        for stale in found:
            if stale.suffix in (".so", ".pyd"):
                stale.unlink()
    return {}


setup(**(_compiled() if _wanted() else _pure()))
