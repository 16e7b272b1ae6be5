"""Cost benchmarks: ``python -m src.bench {attention,model,data,inference,all,gpu} [options]``.

Each benchmark lives in its own module of this package with a ``main(argv) -> dict`` that
prints a table and writes its JSON under ``--out`` (default ``bench_results/``). ``all`` runs
the CPU-sized ones; ``gpu`` is the one-GPU speed run (``--device cpu --quick`` to try it).
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("attention", "model", "data", "inference")
SEPARATE = ("gpu",)
"""Benchmarks that ``all`` leaves out (sized for a GPU)."""


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("benchmarks:", ", ".join(BENCHMARKS + SEPARATE))
        return
    name, rest = argv[0], argv[1:]
    names = BENCHMARKS if name == "all" else (name,)
    for bench in names:
        if bench not in BENCHMARKS + SEPARATE:
            known = ", ".join(BENCHMARKS + SEPARATE)
            sys.exit(f"unknown benchmark {bench!r}; choose one of {known} or all")
        importlib.import_module(f"src.bench.{bench}").main(rest)


if __name__ == "__main__":
    main()
