"""Reliability tests: kill and resume, atomic writes, non-finite losses, config and data errors.

They reuse the application tests' tiny configuration and CLI helpers (tests/app/app_helpers.py)
and this folder's own helpers (reliability_helpers.py); poisoned_data.py is imported by the CLI
subprocesses through PYTHONPATH (a NaN-injecting dataset).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent / "app"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture(scope="session", autouse=True)
def _cli_environment() -> Iterator[None]:
    """CLI subprocesses import this folder's helpers and run on one intra-op thread: fast on
    a busy 2-core machine, and bit-exact comparisons need every run on the same thread
    count (it changes the order of float reductions). Session-wide, so module fixtures that
    run the CLI get it too."""
    with pytest.MonkeyPatch.context() as patch:
        path = os.environ.get("PYTHONPATH")
        patch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(HERE), path) if p))
        patch.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="session")
def uninterrupted_run(tmp_path_factory: pytest.TempPathFactory, _cli_environment) -> Path:
    """The resume tests' run, trained without interruption (its last.ckpt is also the
    checkpoint the mismatch tests load with another model or data)."""
    from cli_helpers import run_cli
    from reliability_helpers import RESUMABLE_RUN

    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    run_cli("train", *RESUMABLE_RUN, f"hydra.run.dir={run_dir}")
    return run_dir


@pytest.fixture(scope="session")
def uninterrupted_video_run(tmp_path_factory: pytest.TempPathFactory, _cli_environment) -> Path:
    """The resume tests' schedule on clips (the video toy through CCNet3D), uninterrupted."""
    from cli_helpers import run_cli
    from reliability_helpers import RESUMABLE_VIDEO_RUN

    run_dir = tmp_path_factory.mktemp("uninterrupted_video") / "run"
    run_cli("train", *RESUMABLE_VIDEO_RUN, f"hydra.run.dir={run_dir}")
    return run_dir
