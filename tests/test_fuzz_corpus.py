"""The fuzzing corpus, replayed: every input the coverage-guided fuzzer kept (and every
crash it found, once fixed and added) runs through its target without an exception.

The targets and how to run the fuzzer are in tests/fuzz/.
"""

from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "fuzz"))

import targets  # noqa: E402


def inputs() -> list:
    found = []
    for name in sorted(targets.TARGETS):
        files = sorted((targets.CORPUS / name).iterdir())
        assert files, f"the {name} corpus is empty"
        found += [pytest.param(name, f, id=f"{name}/{f.name[:12]}") for f in files]
    return found


@pytest.mark.parametrize(("name", "path"), inputs())
def test_corpus_input_runs_clean(name: str, path: pathlib.Path) -> None:
    targets.TARGETS[name](path.read_bytes())


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_seeds_run_clean(name: str) -> None:
    for seed in targets.seeds()[name]:
        targets.TARGETS[name](seed)
