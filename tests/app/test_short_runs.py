"""Every training run validates at its last step (src/callbacks/validate_at_last_step.py),
whatever its length against ``trainer.val_check_interval``, through the real CLI."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from app_helpers import TINY, read_results
from cli_helpers import run_cli

from src.callbacks.validate_at_last_step import is_last_step

# 8 training samples at batch 2: 4 steps an epoch, so 7 steps cross an epoch boundary.
LONG_INTERVAL = "trainer.val_check_interval=100"


def validation_steps(run_dir: Path) -> list[int]:
    """The step of every validation the CSV logger recorded, repeats included."""
    with open(run_dir / "csv" / "metrics.csv") as f:
        return [int(row["step"]) for row in csv.DictReader(f) if row.get("val/mIoU")]


def assert_finished_with_validation(run_dir: Path, steps: int) -> None:
    """exit 0 happened (run_cli checks); results.json, last.ckpt and a best checkpoint."""
    results = read_results(run_dir)
    assert results["global_step"] == steps
    assert math.isfinite(results["metrics"]["val/mIoU"])
    assert results["optimized_value"] == results["metrics"]["val/mIoU_best"]
    checkpoints = run_dir / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file()
    assert len(list(checkpoints.glob("best_*.ckpt"))) == 1


@pytest.mark.parametrize("steps", [pytest.param(1, marks=pytest.mark.slow), 7])
def test_run_shorter_than_the_interval_validates_at_its_end(steps, tmp_path):
    run_dir = tmp_path / f"steps{steps}"
    run_cli("train", *TINY, f"trainer.max_steps={steps}", LONG_INTERVAL, f"hydra.run.dir={run_dir}")
    assert_finished_with_validation(run_dir, steps)
    assert validation_steps(run_dir) == [steps - 1]  # once, after the last step


def test_step_based_last_checkpoint_waits_for_the_final_validation(tmp_path):
    """A 2-step run with last.ckpt every step: the save at the last step comes after the
    validation that step triggers (LastCheckpoint defers it), so the file holds the validated
    state, as a resume needs."""
    run_dir = tmp_path / "every_step"
    run_cli(
        "train",
        *TINY,
        "trainer.max_steps=2",
        LONG_INTERVAL,
        "callbacks.last_checkpoint.every_n_train_steps=1",
        f"hydra.run.dir={run_dir}",
    )
    assert_finished_with_validation(run_dir, 2)
    assert validation_steps(run_dir) == [1]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2
    val_progress = last["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]
    assert val_progress["total"]["completed"] == 2  # the 4 val images at batch 2


def test_last_step_on_the_interval_validates_once(trained_run):
    """4 steps, validation every 2 (the shared run of tests/app/conftest.py): the last step is
    a validation step anyway, and validates once, not twice."""
    assert_finished_with_validation(trained_run, 4)
    assert validation_steps(trained_run) == [1, 3]


@pytest.mark.slow  # two processes; the DDP path itself runs in tests/app/test_app_ddp.py
def test_ddp_sim_short_run_validates_at_its_end(tmp_path):
    run_dir = tmp_path / "ddp"
    run_cli(
        "train",
        *TINY,
        "trainer=ddp_sim",
        "trainer.max_steps=3",
        LONG_INTERVAL,
        f"hydra.run.dir={run_dir}",
    )
    assert_finished_with_validation(run_dir, 3)
    assert read_results(run_dir)["world_size"] == 2
    assert validation_steps(run_dir) == [2]


def _trainer(**state) -> SimpleNamespace:
    defaults = dict(max_steps=-1, max_epochs=None, num_training_batches=4, current_epoch=0)
    return SimpleNamespace(**{**defaults, **state})


@pytest.mark.parametrize(
    "state, batch_idx, last",
    [
        (dict(max_steps=5, global_step=4), 0, False),
        (dict(max_steps=5, global_step=5), 0, True),
        (dict(max_epochs=2, current_epoch=0), 3, False),  # epoch-based: end of epoch 1 of 2
        (dict(max_epochs=2, current_epoch=1), 2, False),
        (dict(max_epochs=2, current_epoch=1), 3, True),
        (dict(max_epochs=-1), 3, False),  # endless: never
        (dict(max_epochs=1, num_training_batches=float("inf")), 3, False),
    ],
)
def test_is_last_step(state, batch_idx, last):
    assert is_last_step(_trainer(**state), batch_idx) is last
