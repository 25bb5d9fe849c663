"""The benchmark scripts still run (tiny sizes; no figure is asserted)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.parametrize("args", [
    ["bench_bulk.py", "--size", "1", "--repeat", "1"],
    ["bench_rr.py", "--duration", "0.3", "--repeat", "1"],
    ["bench_bulk.py", "--size", "1", "--repeat", "1", "--processes", "2", "--offload", "both"],
    ["bench_connect.py", "--duration", "0.3", "--concurrency", "4", "--repeat", "1",
     "--calls", "20", "--tw-memory", "50"],
    ["bench_rr.py", "--cpu", "50", "--calls", "20", "--repeat", "1"],
    ["bench_reassembly.py", "--holes", "10", "100", "--number", "20"],
    ["bench_recovery.py", "--seeds", "1", "--size", "0.1", "--requests", "5"],
    ["bench_synflood.py", "--rates", "1000", "--duration", "0.3", "--fill", "0.1",
     "--cookies", "on"],
    ["bench_noread.py", "--attackers", "2", "--timeout", "0.5", "--duration", "1"],
    ["bench_core_bulk.py", "--size", "1", "--repeat", "1"],
])
def test_benchmark_script_runs(args: list[str]) -> None:
    result = subprocess.run([sys.executable, str(BENCH / args[0]), *args[1:]],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    assert "utcp" in result.stdout and "Traceback" not in result.stderr
    if args[0] == "bench_connect.py":
        assert "utcp/floor3" in result.stdout  # the floor ran beside the stacks
    if args[:2] == ["bench_rr.py", "--duration"]:
        assert "asyncio  core" in result.stdout  # the core's thinnest shell ran too


def test_bench_vs_linux_runs() -> None:
    # Namespaces, TUN devices and a forwarder: one row, tiny transfers.
    if os.geteuid() != 0:
        pytest.skip("bench_vs_linux.py needs root (network namespaces, TUN devices)")
    if shutil.which("ip") is None or shutil.which("tc") is None \
            or not os.path.exists("/dev/net/tun"):
        pytest.skip("bench_vs_linux.py needs iproute2 (ip, tc) and /dev/net/tun")
    result = subprocess.run([sys.executable, str(BENCH / "bench_vs_linux.py"), "--rows", "clean",
                             "--size", "0.1"], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| clean |")]
    assert len(rows) >= 2 and not any("failed" in r or "stalled" in r for r in rows), \
        result.stdout
    assert "Traceback" not in result.stderr


# As if uvloop were not installed: importing it fails.
_NO_UVLOOP = """
import runpy, sys
sys.modules["uvloop"] = None
sys.argv = sys.argv[1:]
sys.path.insert(0, sys.argv[0].rsplit("/", 1)[0])
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("script", ["bench_bulk.py", "bench_connect.py", "bench_rr.py",
                                    "bench_endurance.py"])
def test_uvloop_missing_is_a_usage_error_before_anything_runs(script: str) -> None:
    result = subprocess.run([sys.executable, "-c", _NO_UVLOOP, str(BENCH / script), "--uvloop"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "uvloop is not installed" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
