"""A NaN/inf loss stops training naming the step and the loss term, or (module.skip_nonfinite)
skips the batch without a trace and counts it; both through the CLI."""

from __future__ import annotations

import math
import re

import torch
from app_helpers import TINY, read_results
from cli_helpers import run_cli
from reliability_helpers import load

POISONED = [
    "data.dataset._target_=poisoned_data.PoisonedSynthetic",
    "+data.dataset.poisoned=[5]",
]


def test_exploding_loss_stops_with_the_step_and_the_term(tmp_path):
    run_dir = tmp_path / "explode"
    output = run_cli(
        "train",
        *TINY,
        "module.lr=1e30",
        "trainer.max_steps=6",
        "trainer.val_check_interval=6",
        f"hydra.run.dir={run_dir}",
        check=False,
    )
    match = re.search(r"NonFiniteLossError: non-finite loss at training step (\d+) .*", output)
    assert match, output[-3000:]
    assert int(match.group(1)) >= 1  # the first step's loss is finite; its update explodes
    assert "train/seg=" in match.group(0) and "module.skip_nonfinite=true" in match.group(0)
    assert not (run_dir / "results.json").exists()


def test_skip_mode_skips_and_counts_the_poisoned_batch(tmp_path):
    """One epoch (4 batches) with one NaN image: exactly one batch is skipped, leaving no NaN
    in the weights or the BatchNorm statistics, and the run finishes normally."""
    run_dir = tmp_path / "skip"
    output = run_cli(
        "train",
        *TINY,
        *POISONED,
        "module.skip_nonfinite=true",
        "trainer.max_steps=4",
        "trainer.val_check_interval=4",
        f"hydra.run.dir={run_dir}",
    )
    assert "skipped the batch of training step" in output
    results = read_results(run_dir)
    assert results["global_step"] == 4
    assert results["metrics"]["train/skipped_batches"] == 1
    assert math.isfinite(results["metrics"]["val/mIoU"])
    state = load(run_dir / "checkpoints" / "last.ckpt")
    assert state["skipped_batches"] == 1
    assert all(torch.isfinite(v.float()).all() for v in state["state_dict"].values())
