"""The core is sans-I/O: no module under utcp/core may import a clock, a socket
or an event loop (DESIGN.md: "it never reads a clock and never touches a socket")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import utcp.core

FORBIDDEN = {"asyncio", "socket", "time", "select", "selectors"}
CORE = Path(utcp.core.__file__).parent
MODULES = sorted(CORE.rglob("*.py"))


def imported_modules(tree: ast.AST) -> list[str]:
    """Every module an import statement names, anywhere in the tree (also inside
    functions and ``if TYPE_CHECKING`` blocks)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            names += [a.value for a in node.args[:1] if isinstance(a, ast.Constant)]
    return names


def test_core_modules_found():
    assert {"connection.py", "seq.py", "isn.py", "wire.py"} <= {m.name for m in MODULES}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_core_module_imports_no_io(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = [n for n in imported_modules(tree) if n.split(".")[0] in FORBIDDEN]
    assert bad == [], f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_core_module_stays_in_core(path):
    # Data flows down: the core never reaches up into the endpoint or streams.
    tree = ast.parse(path.read_text(), filename=str(path))
    up = [n for n in imported_modules(tree)
          if n.startswith("utcp.") and not n.startswith("utcp.core")]
    relative_up = [node.module for node in ast.walk(tree)
                   if isinstance(node, ast.ImportFrom) and node.level > 1]
    assert up == [] and relative_up == [], f"{path.name} imports {up + relative_up}"


def test_checker_catches_forbidden_imports():
    src = ("import os, time\nfrom asyncio import sleep\n"
           "def f():\n    import socket.x\n    __import__('select')\n")
    bad = [n for n in imported_modules(ast.parse(src)) if n.split(".")[0] in FORBIDDEN]
    assert sorted(bad) == ["asyncio", "select", "socket.x", "time"]
