"""The entry points run as a user runs them, in a subprocess, for every test folder.

``run_cli`` / ``run_cli_status`` start ``python -m src.<entry> [overrides]`` on one intra-op
thread (tiny models gain nothing from more, and on a shared 2-core machine OpenMP threads
spinning at barriers slow every process down) with W&B offline; ``wandb_summary`` reads an
offline W&B run back through W&B's own CLI. ``tests/conftest.py`` puts this folder on
``sys.path`` so that tests in subfolders import it too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_cli_status(
    entry: str,
    *overrides: str,
    timeout: int = 300,
    cwd: Path = ROOT,
    wandb_mode: str = "offline",
    full_error: bool = True,
) -> tuple[int, str]:
    """Run ``python -m src.<entry> [overrides]`` from ``cwd``; return (exit code, output).
    From another folder than the repository the repository is put on PYTHONPATH, as for an
    outside user. ``full_error``: tracebacks on the console (``HYDRA_FULL_ERROR=1``, handy
    when a test fails); False runs as a user does, with the one-line error report."""
    env = {**os.environ, "WANDB_MODE": wandb_mode, "OMP_NUM_THREADS": "1"}
    env["HYDRA_FULL_ERROR"] = "1" if full_error else "0"
    if Path(cwd) != ROOT:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", f"src.{entry}", *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout + proc.stderr


def run_cli(
    entry: str,
    *overrides: str,
    timeout: int = 300,
    check: bool = True,
    cwd: Path = ROOT,
    wandb_mode: str = "offline",
) -> str:
    """:func:`run_cli_status` that fails the test unless the exit code is 0 (``check``) or,
    with ``check=False``, unless it is not 0; returns the output."""
    code, output = run_cli_status(
        entry, *overrides, timeout=timeout, cwd=cwd, wandb_mode=wandb_mode
    )
    if check and code != 0:
        raise AssertionError(f"src.{entry} failed ({code}):\n{output[-6000:]}")
    if not check and code == 0:
        raise AssertionError(f"src.{entry} was expected to fail:\n{output[-3000:]}")
    return output


def wandb_summary(run_dir: Path) -> dict[str, Any]:
    """The offline run's summary and config, read back from its .wandb file by W&B's CLI."""
    wandb_cli = Path(sys.executable).with_name("wandb")
    proc = subprocess.run(
        [str(wandb_cli), "leet", "inspect", "--summary", "--json", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def wandb_config(run_dir: Path) -> dict[str, Any]:
    """The offline run's last config record as W&B's CLI prints it, ``_wandb`` included
    (``--summary`` leaves that out; the class labels of image masks live in it, under
    ``mask/class_labels``)."""
    wandb_cli = Path(sys.executable).with_name("wandb")
    proc = subprocess.run(
        [str(wandb_cli), "leet", "inspect", "--json", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines() if '"type":"config"' in line]
    assert records, f"no config record in {run_dir}"
    return records[-1]["config"]["update"]
