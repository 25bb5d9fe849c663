"""Run a fuzzing target under atheris (libFuzzer), growing its corpus in the repository.

    .venv/bin/pip install -e '.[fuzz]'
    .venv/bin/python tests/fuzz/run.py decode -max_total_time=60
    .venv/bin/python tests/fuzz/run.py stack -max_total_time=60

Other arguments are libFuzzer's (``-jobs``, ``-max_len``, ...). A crash leaves its
input in ``crash-*`` here and exits non-zero; add that input to the corpus once
fixed, and the test suite replays it from then on.
"""

from __future__ import annotations

import pathlib
import sys

import atheris

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

with atheris.instrument_imports(include=["utcp", "targets"]):
    import targets


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in targets.TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(targets.TARGETS)}}} [libFuzzer options]")
    name = sys.argv[1]
    corpus = targets.CORPUS / name
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for k, seed in enumerate(targets.seeds()[name]):
            (corpus / f"seed-{k}").write_bytes(seed)
    atheris.Setup([sys.argv[0], *sys.argv[2:], str(corpus)], targets.TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
