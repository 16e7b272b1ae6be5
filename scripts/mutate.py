"""``make mutate``: mutation testing of the core modules, each against only its own fast tests.

Each target below (``TARGETS``, the one home of the module → tests map) is run by mutmut 3 in
a scratch copy of the project, ``.mutmut/<target>/`` (git-ignored): the source is snapshotted
there, so the working tree is never mutated and other work on it goes on meanwhile. mutmut
runs the target's tests once to learn which test calls which function, then runs each mutant
(in a process forked from one that has imported torch and the tests already) against the
tests that call the mutated function only, under a per-mutant time limit.

Only in-process tests are mapped: a test that runs ``python -m src.train`` in a subprocess
would not see the mutant (mutmut switches mutants inside the test process).

mutmut 3 strips a leading ``src.`` from module names (it assumes a ``src/`` layout holding a
package), while this project's package *is* ``src``; :func:`_patch_mutmut_for_src_package`
makes it keep the prefix (two small patches, checked against the mutmut version pinned in
pyproject.toml's dev extras).

    python scripts/mutate.py                    # every target, summary in logs/mutate/
    python scripts/mutate.py --module losses    # one target (repeatable)
    python scripts/mutate.py --list             # the targets, their files and tests

The summary (``logs/mutate/summary.{json,md}``) has per target the mutants, killed, survived,
timeouts, no-tests, the score (killed + timeout over all mutants) and the runtime; the
Markdown also shows the diff of every mutant that was not killed. docs/mutation.md explains
the survivors that remain.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / ".mutmut"
LOGS = ROOT / "logs" / "mutate"
MUTMUT_SERIES = "3.8."  # the patches below are checked against this series (pyproject pins it)


@dataclass(frozen=True)
class Target:
    """What one target mutates and the tests that judge it.

    ``functions`` (optional) limits the mutants to those functions: ``{path: (name, ...)}``
    with ``name`` a function or ``Class.method``; other files of ``paths`` are mutated whole.
    ``deselect`` is a pytest ``-k`` expression, ``exclude`` test node ids: tests left out
    (slow ones: compile, ONNX export, DataLoader worker processes; CLI runs in a subprocess).
    ``skip`` (same form) lists functions mutmut must leave alone entirely, not even wrap in
    its trampoline: the staged copy gets mutmut's ``# pragma: no mutate block`` on them.
    """

    paths: tuple[str, ...]
    tests: tuple[str, ...]
    functions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    skip: dict[str, tuple[str, ...]] = field(default_factory=dict)
    deselect: str = ""
    exclude: tuple[str, ...] = ()
    note: str = ""


TARGETS: dict[str, Target] = {
    "losses": Target(
        paths=("src/core/losses.py",),
        tests=("tests/core/test_losses.py",),
        note="src/losses.py only re-exports src.core.losses (no code to mutate)",
    ),
    "inference": Target(
        paths=("src/core/inference.py",),
        tests=("tests/core/test_inference.py", "tests/core/test_inference_mutants.py"),
        deselect="not benchmark",
    ),
    "optim": Target(
        paths=("src/core/optim.py",),
        tests=("tests/core/test_optim.py",),
    ),
    "module": Target(
        paths=("src/tasks/semantic/module.py", "src/core/module.py"),
        tests=("tests/app/test_app_module.py", "tests/core/test_module_mutants.py"),
        functions={
            "src/tasks/semantic/module.py": (
                "SegmentationModule.validation_step",
                "SegmentationModule.test_step",
                "SegmentationModule.on_validation_start",
                "SegmentationModule.on_test_start",
                "SegmentationModule.on_validation_epoch_end",
                "SegmentationModule.on_test_epoch_end",
                "SegmentationModule.lr_schedule",
                "SegmentationModule._evaluate",
                "SegmentationModule._log_iou",
                "SegmentationModule._keep_confusion",
                "warn_if_padded",
            ),
            "src/core/module.py": (
                "metric_key",
                "class_names_for",
                "check_optimiser_settings",
                "TaskModule.configure_optimizers",
                "TaskModule.log_learning_rates",
                "TaskModule.on_train_start",
            ),
        },
        # Lightning's save_hyperparameters reads the arguments from the calling __init__'s
        # frame, which mutmut's trampoline would replace (every test would fail)
        skip={"src/tasks/semantic/module.py": ("SegmentationModule.__init__",)},
        note="the metrics (IoU, confusion counts, best mIoU) and the optimiser and its schedule",
    ),
    "resumable": Target(
        paths=("src/data/resumable.py",),
        tests=("tests/reliability/test_resumable_loader.py",),
        # the same test with 0 workers stays: 2 worker processes per mutant cost 3 s each
        exclude=(
            "tests/reliability/test_resumable_loader.py::test_restored_loader_continues_mid_epoch[2]",
        ),
    ),
    "last_checkpoint": Target(
        paths=("src/callbacks/last_checkpoint.py", "src/callbacks/lightning_internals.py"),
        tests=(
            "tests/callbacks/test_checkpoint_choice.py",
            "tests/callbacks/test_lightning_internals.py",
        ),
    ),
    "labels": Target(
        paths=(
            "src/data/base.py",
            "src/data/cityscapes.py",
            "src/data/lip.py",
            "src/data/ade20k.py",
        ),
        tests=(
            "tests/data/test_cityscapes.py",
            "tests/data/test_lip.py",
            "tests/data/test_ade20k.py",
            "tests/data/test_data_errors.py",
            "tests/data/test_labels_mutants.py",
        ),
        deselect="not one_training_step",  # a CLI run in a subprocess
        functions={
            "src/data/base.py": ("lookup_labels",),
            "src/data/cityscapes.py": (
                "_label_id_to_train_id",
                "train_ids_to_label_ids",
                "CityscapesDataset.read",
            ),
            "src/data/lip.py": ("LIPDataset.read",),
            "src/data/ade20k.py": ("layout_root", "ADE20KDataset.read"),
        },
        note="the label mappings and the reads that apply them (not the file discovery)",
    ),
    # last: src/models/attention.py is the file most often edited
    "attention": Target(
        paths=("src/models/attention.py",),
        tests=(
            "tests/test_attention.py",
            "tests/test_attention_fused.py",
            "tests/test_attention_mutants.py",
        ),
        # torch.compile tests: slow, and dynamo cannot trace mutmut's trampoline
        deselect="not compiled and not traced_fused and not onnx_export_matches and not benchmark",
        skip={
            "src/models/attention.py": (
                "_attend_cuda",  # the CUDA kernel's call: no CUDA device here
                "_fused_backend",  # which kernel runs (same results by design; CUDA branch)
                "_batch_dims_mergeable",  # a view or a copy: same values, only speed differs
            )
        },
    ),
}

# Lines whose expressions are not mutated: error and warning text (what a message says is not
# behaviour; the condition that raises it, on another line, is still mutated). mutmut skips
# every expression that *starts* on a matching line, so `raise X(` covers a multi-line message.
DO_NOT_MUTATE_PATTERNS = (
    r"^\s*raise \w+\(",  # the exception and its message (the raise itself is kept)
    r"rank_zero_warn\(|warnings\.warn\(",
)

# Plugins are not auto-loaded (PYTEST_DISABLE_PLUGIN_AUTOLOAD, set below: the tests need none);
# the unraisable-exception plugin's two full garbage collections at exit would be half of
# each mutant's pytest run (0.3 s over torch's heap).
PYTEST_ARGS = ("-p", "no:cacheprovider", "-p", "no:unraisableexception", "-m", "not slow")

# Status of each mutmut exit code (mutmut.stats.status_by_exit_code, grouped for the table)
KILLED, SURVIVED, TIMEOUT, NO_TESTS, OTHER = "killed", "survived", "timeout", "no tests", "other"


# ----------------------------------------------------------------------------- staging


def mutant_patterns(target: Target) -> list[str]:
    """mutmut mutant-name globs for the target's ``functions`` limits (none: all mutants)."""
    if not target.functions:
        return []
    patterns = []
    for path in target.paths:
        module = path.removesuffix(".py").replace("/", ".")
        names = target.functions.get(path)
        if names is None:
            patterns.append(f"{module}.x*")
            continue
        for name in names:
            cls, _, func = name.rpartition(".")
            mangled = f"x\u01c1{cls}\u01c1{func}" if cls else f"x_{func}"
            patterns.append(f"{module}.{mangled}__mutmut_*")
    return patterns


def mark_no_mutate(path: Path, names: tuple[str, ...]) -> None:
    """Put ``# pragma: no mutate block`` on the header of the functions ``names`` (``func`` or
    ``Class.method``) in ``path``: mutmut then neither mutates nor wraps them."""
    import libcst as cst  # mutmut's own dependency

    class Marker(cst.CSTTransformer):
        def __init__(self) -> None:
            self.scope: list[str] = []
            self.found: set[str] = set()

        def visit_ClassDef(self, node: cst.ClassDef) -> bool:
            self.scope.append(node.name.value)
            return True

        def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
            self.scope.pop()
            return updated

        def leave_FunctionDef(
            self, original: cst.FunctionDef, updated: cst.FunctionDef
        ) -> cst.FunctionDef:
            name = ".".join([*self.scope, original.name.value])
            if name not in names or not isinstance(updated.body, cst.IndentedBlock):
                return updated
            self.found.add(name)
            header = updated.body.header.with_changes(
                whitespace=cst.SimpleWhitespace("  "),
                comment=cst.Comment("# pragma: no mutate block"),
            )
            return updated.with_changes(body=updated.body.with_changes(header=header))

    marker = Marker()
    path.write_text(cst.parse_module(path.read_text()).visit(marker).code)
    missing = set(names) - marker.found
    if missing:
        raise SystemExit(f"scripts/mutate.py: no function {sorted(missing)} in {path.name}")


def toml_list(values: tuple[str, ...] | list[str]) -> str:
    return json.dumps(list(values))  # a JSON array of strings is a TOML array


def stage(name: str, target: Target, timeout_multiplier: float, timeout_constant: float) -> Path:
    """A fresh ``.mutmut/<name>/`` holding a snapshot of src/, tests/, conf/ and the config."""
    work = STAGE / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    for folder in ("src", "tests", "conf"):
        shutil.copytree(ROOT / folder, work / folder, ignore=skip)
    for path, names in target.skip.items():
        mark_no_mutate(work / path, names)
    selection = list(target.tests) + (["-k", target.deselect] if target.deselect else [])
    selection += [arg for node in target.exclude for arg in ("--deselect", node)]
    (work / "pyproject.toml").write_text(
        f"""# generated by scripts/mutate.py for the target "{name}"
[tool.mutmut]
source_paths = ["src"]
only_mutate = {toml_list(target.paths)}
also_copy = ["conf"]
pytest_add_cli_args = {toml_list(PYTEST_ARGS)}
pytest_add_cli_args_test_selection = {toml_list(selection)}
do_not_mutate_patterns = {toml_list(DO_NOT_MUTATE_PATTERNS)}
timeout_multiplier = {timeout_multiplier}
timeout_constant = {timeout_constant}
process_isolation = "forkserver"
track_dependencies = false
use_git_change_detection = false

[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = "--strict-markers"
markers = ["slow: long-running tests", "gpu: needs a CUDA device"]
filterwarnings = ["ignore::DeprecationWarning"]
"""
    )
    return work


# ----------------------------------------------------------------------------- mutmut


def _patch_mutmut_for_src_package() -> None:
    """Make mutmut 3 keep the ``src.`` prefix of module names (this project's package is
    ``src``; mutmut strips it, assuming a src-layout, and asserts no hit starts with it).

    Two patches: mutant names keep the prefix (``get_mutant_name`` strips it through
    ``format_utils.strip_prefix``), and a trampoline hit of ``src.*`` is recorded instead of
    asserted against. Checked here, so a mutmut upgrade that moves either fails loudly.
    A third one only saves time: each mutant's tests run fastest first (mutmut passes them
    in set order and stops at the first failure).
    """
    import mutmut

    if not mutmut.__version__.startswith(MUTMUT_SERIES):
        raise SystemExit(
            f"scripts/mutate.py patches mutmut {MUTMUT_SERIES}x internals; found "
            f"{mutmut.__version__}. Install the version pinned in pyproject.toml's dev extras."
        )
    from mutmut.configuration import config
    from mutmut.mutation import trampoline
    from mutmut.state import state
    from mutmut.utils import format_utils

    strip_prefix = format_utils.strip_prefix

    def keep_src(s: str, *, prefix: str, strict: bool = False) -> str:
        return s if prefix == "src." else strip_prefix(s, prefix=prefix, strict=strict)

    format_utils.strip_prefix = keep_src

    def record_trampoline_hit(name: str, caller: str | None = None) -> None:
        state()._stats.add(name)
        if caller is not None and config().track_dependencies:
            state().function_dependencies[name].add(caller)

    trampoline.record_trampoline_hit = record_trampoline_hit

    from mutmut.runners.harness import PytestRunner

    run_tests = PytestRunner.run_tests

    def fastest_first(self: PytestRunner, *, mutant_name: str | None, tests: list[str]) -> int:
        durations = state().duration_by_test
        tests = sorted(tests, key=lambda test: (durations.get(test, 0.0), test))
        return run_tests(self, mutant_name=mutant_name, tests=tests)

    PytestRunner.run_tests = fastest_first
    key = format_utils.get_mutant_name(Path("src/core/losses.py"), "x_cross_entropy__mutmut_1")
    assert key == "src.core.losses.x_cross_entropy__mutmut_1", key


def mutmut_main(argv: list[str]) -> None:
    """``mutmut <argv>`` in this process (cwd: a staging folder), with the patches."""
    _patch_mutmut_for_src_package()
    from mutmut.__main__ import cli

    cli.main(args=argv, prog_name="mutmut")


def collect_results(out: Path, patterns: list[str]) -> None:
    """Write ``out``: every mutant of this staging folder (within ``patterns``) with its
    status, and the diff of those not killed."""
    _patch_mutmut_for_src_package()
    from mutmut.configuration import config
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code

    mutants = []
    for path in sorted(config().only_mutate):
        data = SourceFileMutationData(path=path)
        data.load()
        for key, code in sorted(data.exit_code_by_key.items()):
            if patterns and not any(fnmatch.fnmatch(key, p) for p in patterns):
                continue
            status = status_by_exit_code[code]
            entry = {"name": key, "path": path, "status": status, "exit_code": code}
            if status != KILLED:
                entry["diff"] = get_diff_for_mutant(key, path=path)
            mutants.append(entry)
    out.write_text(json.dumps(mutants, indent=1))


# ----------------------------------------------------------------------------- a target


def group(status: str) -> str:
    if status in (KILLED, "caught by type check", "segfault"):
        return KILLED  # a crash of the test process under the mutant is a detection too
    if status in (SURVIVED, TIMEOUT, NO_TESTS):
        return status
    return OTHER


def run_logged(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> int:
    """Run ``command``, its output into ``log`` and, on a terminal, onto the screen too (mutmut
    redraws one progress line)."""
    show = sys.stdout.isatty()
    with log.open("wb") as stream:
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(4096):
            stream.write(chunk)
            if show:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
    if show:
        print()
    return proc.wait()


def run_target(name: str, target: Target, args: argparse.Namespace) -> dict:
    work = STAGE / name
    results = work / "results.json"
    patterns = mutant_patterns(target)
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",  # one intra-op thread per worker: 2 workers on 2 cores, fork-safe
        MKL_NUM_THREADS="1",
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
        WANDB_MODE="offline",
        PYTEST_DEBUG_TEMPROOT=str(work / "tmp"),  # tests' tmp_path, removed with the folder
        PYTHONDONTWRITEBYTECODE="1",
    )
    script = str(Path(__file__).resolve())

    def collect() -> list[dict]:
        command = [sys.executable, script, "_results", str(results), *patterns]
        subprocess.run(command, cwd=work, env=env, check=True)
        return json.loads(results.read_text())

    again = args.rerun_survivors or args.resume
    fresh = not (again and (work / "mutants").is_dir())
    names = patterns
    if fresh:
        stage(name, target, args.timeout_multiplier, args.timeout_constant)
    else:
        # the last run's source snapshot, mutants and stats stay; the tests are refreshed
        shutil.rmtree(work / "tests")
        skip = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(ROOT / "tests", work / "tests", ignore=skip)
        shutil.rmtree(work / "tmp", ignore_errors=True)
        # mutmut tests named mutants again, whatever their last result
        keep = (KILLED,) if args.rerun_survivors else (KILLED, SURVIVED, TIMEOUT, NO_TESTS)
        names = [m["name"] for m in collect() if group(m["status"]) not in keep]
    (work / "tmp").mkdir()
    log = LOGS / f"{name}.log"
    command = [sys.executable, script, "_mutmut", "run", "--max-children", str(args.jobs)]
    started = time.monotonic()
    returncode = 0
    if fresh or names:
        returncode = run_logged([*command, *names], work, env, log)
    runtime = time.monotonic() - started
    collect()
    mutants = json.loads(results.read_text())
    counts = {s: 0 for s in (KILLED, SURVIVED, TIMEOUT, NO_TESTS, OTHER)}
    for mutant in mutants:
        counts[group(mutant["status"])] += 1
    total = len(mutants)
    score = 100.0 * (counts[KILLED] + counts[TIMEOUT]) / total if total else 0.0
    if returncode != 0 or not total:
        print(f"{name}: mutmut exited with {returncode}; see {log.relative_to(ROOT)}")
    if not args.keep:
        shutil.rmtree(work / "tmp", ignore_errors=True)
    return {
        "module": name,
        "paths": list(target.paths),
        "tests": list(target.tests),
        "mutants": total,
        **{key.replace(" ", "_"): value for key, value in counts.items()},
        "score": round(score, 1),
        "runtime_s": round(runtime, 1),
        "partial_rerun": not fresh,
        "mutmut_exit_code": returncode,
        "not_killed": [m for m in mutants if group(m["status"]) != KILLED],
    }


# ----------------------------------------------------------------------------- summary


def write_summary(rows: list[dict]) -> None:
    """Merge ``rows`` into logs/mutate/summary.json (targets run earlier are kept) and
    rewrite summary.md from it."""
    path = LOGS / "summary.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    for row in rows:
        last = previous.get(row["module"])
        if row["partial_rerun"] and last is not None:  # the runtime stays the full run's
            row["rerun_s"], row["runtime_s"] = row["runtime_s"], last["runtime_s"]
        previous[row["module"]] = row
    ordered = {name: previous[name] for name in TARGETS if name in previous}
    path.write_text(json.dumps(ordered, indent=1))
    lines = [
        "# Mutation testing summary (scripts/mutate.py)",
        "",
        table(list(ordered.values())),
        "",
    ]
    for row in ordered.values():
        if not row["not_killed"]:
            continue
        lines += [f"## {row['module']}: not killed", ""]
        for mutant in row["not_killed"]:
            lines += [f"### `{mutant['name']}` ({mutant['status']})", "", "```diff"]
            lines += [mutant.get("diff", "").rstrip(), "```", ""]
    (LOGS / "summary.md").write_text("\n".join(lines))


def table(rows: list[dict]) -> str:
    header = "| module | mutants | killed | survived | timeout | no tests | score % | runtime |"
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        minutes, seconds = divmod(int(row["runtime_s"]), 60)
        lines.append(
            f"| {row['module']} | {row['mutants']} | {row['killed']} | {row['survived']} | "
            f"{row['timeout']} | {row['no_tests']} | {row['score']:.1f} | "
            f"{minutes}m{seconds:02d}s |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_mutmut"]:  # internal: mutmut itself, in a staging folder
        mutmut_main(argv[1:])
        return 0
    if argv[:1] == ["_results"]:  # internal: the statuses of a finished staging folder
        collect_results(Path(argv[1]), argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--module", action="append", choices=list(TARGETS), help="run this target (repeatable)"
    )
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument(
        "--jobs", type=int, default=2, help="mutants tested at once (default 2: the 2 cores)"
    )
    parser.add_argument(
        "--timeout-multiplier",
        type=float,
        default=5.0,
        help="a mutant's time limit is (its tests' clean time + constant) × this (default 5)",
    )
    parser.add_argument("--timeout-constant", type=float, default=2.0, help="seconds (default 2)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the tests' temporary files in .mutmut/"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted run: test the mutants it had not tested yet",
    )
    parser.add_argument(
        "--rerun-survivors",
        action="store_true",
        help="test again only the mutants the last run did not kill, against the current "
        "tests (same source snapshot): the quick loop while writing tests",
    )
    args = parser.parse_args(argv)
    if args.list:
        for name, target in TARGETS.items():
            print(f"{name}: {', '.join(target.paths)}")
            print(
                f"    tests: {', '.join(target.tests)}"
                + (f" (-k '{target.deselect}')" if target.deselect else "")
                + "".join(f"\n    excluded: {node}" for node in target.exclude)
            )
            if target.functions:
                print(f"    only: {target.functions}")
        return 0
    LOGS.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.module or list(TARGETS):
        print(f"mutating {name} ...", flush=True)
        rows.append(run_target(name, TARGETS[name], args))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    write_summary(rows)
    print()
    print(table(rows))
    print(f"\nsummary: {LOGS.relative_to(ROOT)}/summary.md and summary.json")
    return 0 if all(row["mutmut_exit_code"] == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
