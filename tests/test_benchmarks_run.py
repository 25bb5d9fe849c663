"""The benchmark scripts still run (tiny sizes; no figure is asserted)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.parametrize("args", [
    ["bench_bulk.py", "--size", "1", "--repeat", "1"],
    ["bench_connect.py", "--duration", "0.3", "--concurrency", "4", "--repeat", "1",
     "--calls", "20", "--tw-memory", "50"],
])
def test_benchmark_script_runs(args: list[str]) -> None:
    result = subprocess.run([sys.executable, str(BENCH / args[0]), *args[1:]],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    assert "utcp" in result.stdout and "Traceback" not in result.stderr
