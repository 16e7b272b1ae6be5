"""Fixtures of the application tests (helpers in app_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_helpers import TINY
from cli_helpers import run_cli


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short training run (4 steps, validation every 2, then test), shared by the tests."""
    run_dir = tmp_path_factory.mktemp("train") / "run"
    run_cli(
        "train",
        *TINY,
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "trainer.deterministic=warn",
        "test=true",
        f"hydra.run.dir={run_dir}",
    )
    return run_dir
