"""Cost benchmarks: ``python -m src.bench {attention,model,data,inference,all} [options]``.

Each benchmark lives in its own module of this package with a ``main(argv) -> dict`` that
prints a table and writes its JSON under ``--out`` (default ``bench_results/``).
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("attention", "model", "data", "inference")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("benchmarks:", ", ".join(BENCHMARKS))
        return
    name, rest = argv[0], argv[1:]
    names = BENCHMARKS if name == "all" else (name,)
    for bench in names:
        if bench not in BENCHMARKS:
            sys.exit(f"unknown benchmark {bench!r}; choose one of {', '.join(BENCHMARKS)} or all")
        importlib.import_module(f"src.bench.{bench}").main(rest)


if __name__ == "__main__":
    main()
