"""Which build of utcp the suite runs against: the pure-Python package, or the one
whose core mypyc compiled (installed with UTCP_COMPILE=1; ``.ci/compiled`` builds it
and runs this whole suite against it, with UTCP_EXPECT_COMPILED=1)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import utcp
from utcp.core import compiled_modules

SETUP = Path(__file__).resolve().parent.parent / "setup.py"


def modules_setup_compiles() -> set[str]:
    """The modules named in setup.py's COMPILED, by full name."""
    for node in ast.parse(SETUP.read_text()).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "COMPILED" for t in node.targets):
            paths = ast.literal_eval(node.value)
            return {p.removesuffix(".py").replace("/", ".") for p in paths}
    raise AssertionError("setup.py has no COMPILED list")


def test_the_core_is_all_pure_or_all_compiled() -> None:
    # A half-built install, or compiled modules left over beside sources that have
    # since changed their list, would show here.
    assert set(compiled_modules()) in (set(), modules_setup_compiles())
    assert utcp.compiled is bool(compiled_modules())


def test_the_build_expected_is_the_one_loaded() -> None:
    expected = os.environ.get("UTCP_EXPECT_COMPILED")
    if expected is None:
        pytest.skip("UTCP_EXPECT_COMPILED is not set: either build will do")
    assert utcp.compiled is (expected == "1"), (
        f"expected the {'compiled' if expected == '1' else 'pure-Python'} build, "
        f"loaded {utcp.__file__} with compiled modules {compiled_modules()}")


def test_the_version_names_the_build() -> None:
    out = subprocess.run([sys.executable, "-m", "utcp", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith(f"utcp {utcp.__version__} (")
    assert ("core compiled with mypyc" in out) is utcp.compiled
    assert ("pure Python" in out) is not utcp.compiled
