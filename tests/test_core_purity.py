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


# ------------------------------------------------ the core's privates stay inside

# The repository this test is in (the package under test may be installed elsewhere,
# compiled, without the benchmarks and examples).
ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = sorted(p for folder in ("utcp", "benchmarks", "examples")
                 for p in (ROOT / folder).rglob("*.py") if ROOT / "utcp" / "core" not in p.parents)


def core_private_names() -> set[str]:
    """Every underscore name a core class defines: slots, methods, self._x fields."""
    names: set[str] = set()
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "self":
                names.add(node.attr)
            elif isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets):
                names.update(c.value for c in ast.walk(node.value)
                             if isinstance(c, ast.Constant) and isinstance(c.value, str))
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def reaches_into_core(tree: ast.AST, private: set[str]) -> list[str]:
    """``x._name`` where ``_name`` is private to a core class and ``x`` is not self."""
    return [f"line {node.lineno}: {ast.unparse(node)}" for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in private
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))]


def test_outside_modules_found():
    assert {"endpoint.py", "transport.py", "streams.py"} <= {p.name for p in OUTSIDE}
    assert {"_out", "_events", "_sndbuf", "_ack_at_batch_end"} <= core_private_names()


@pytest.mark.parametrize("path", OUTSIDE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_code_outside_the_core_touches_its_private_attributes(path):
    # The shell reads the core through its public methods only (aioquic's shell
    # uses five of its core's and nothing else); the core may change its insides.
    bad = reaches_into_core(ast.parse(path.read_text()), core_private_names())
    assert bad == [], f"{path.name} reaches into the core: {bad}"


def test_checker_catches_a_reach_into_the_core():
    src = "def f(conn, stack):\n    conn._out.clear()\n    return stack._conns, self._out\n"
    assert sorted(reaches_into_core(ast.parse(src), {"_out", "_conns"})) == [
        "line 2: conn._out", "line 3: stack._conns"]
