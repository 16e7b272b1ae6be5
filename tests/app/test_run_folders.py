"""Run folders by experiment (logs/<task>/runs/<experiment>/<time>/) and ckpt_path=auto, the
newest last.ckpt of the same experiment, as a user meets them from a fresh working folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from app_helpers import TINY
from cli_helpers import run_cli, run_cli_status

FAST = [*TINY]


def _run_dirs(root: Path, task: str) -> list[Path]:
    return sorted((root / "logs" / task / "runs" / "synthetic").iterdir())


@pytest.mark.slow  # four CLI runs (~1-2 minutes)
def test_runs_are_foldered_by_experiment_and_auto_resumes_the_newest(tmp_path: Path):
    run_cli("train", *FAST, "trainer.max_steps=2", "trainer.val_check_interval=2", cwd=tmp_path)
    first = _run_dirs(tmp_path, "train")
    assert len(first) == 1 and (first[0] / "checkpoints" / "last.ckpt").is_file()

    output = run_cli(
        "train", *FAST, "ckpt_path=auto", "trainer.max_steps=4", "trainer.val_check_interval=2",
        cwd=tmp_path,
    )  # fmt: skip
    assert f"ckpt_path=auto: {first[0] / 'checkpoints' / 'last.ckpt'}" in output
    second = [d for d in _run_dirs(tmp_path, "train") if d not in first]
    results = json.loads((second[0] / "results.json").read_text())
    assert results["global_step"] == 4  # continued from step 2, not from scratch

    run_cli("eval", *FAST, "ckpt_path=auto", cwd=tmp_path)
    assert len(_run_dirs(tmp_path, "eval")) == 1


def test_auto_without_a_run_is_a_one_line_config_error(tmp_path: Path):
    code, output = run_cli_status("eval", "ckpt_path=auto", cwd=tmp_path, full_error=False)
    assert code == 2
    assert "invalid config: ckpt_path=auto: no last.ckpt under" in output
    assert "Traceback" not in output
