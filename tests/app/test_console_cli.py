"""The console and the log file of a run, as a user sees them: one progress bar counting steps
against max_steps, no FLOPs column, none of the libraries' noise, the config tree printed and
saved, the whole console log in the run's log file, and one IoU table from eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from app_helpers import TINY
from cli_helpers import run_cli

FAST = [*TINY, "trainer.max_steps=4", "trainer.val_check_interval=4"]
NOISE = ("Epoch 0/-2", "FLOPs", "Tip:", "LeafSpec", "callbacks used to create the checkpoint")


@pytest.mark.slow  # a training and an eval CLI run (~1 minute)
def test_train_and_eval_console_and_log_file(tmp_path: Path):
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    output = run_cli("train", *FAST, f"hydra.run.dir={train_dir}")
    assert "train" in output and "4/4" in output  # steps against max_steps
    assert not [text for text in NOISE if text in output]
    tree = (train_dir / "config_tree.log").read_text()
    assert "model" in tree and "backbone: resnet10t" in tree
    log = (train_dir / "train.log").read_text()
    assert "GPU available" in log and "results written to" in log  # Lightning's lines too
    # one scale for mIoU where a person reads it: the best checkpoint's name is in percent
    results = json.loads((train_dir / "results.json").read_text())
    (best,) = (train_dir / "checkpoints").glob("best_*.ckpt")
    assert best.name == f"best_step000004_miou{results['metrics']['val/mIoU'] * 100:.2f}.ckpt"

    output = run_cli(
        "eval", f"ckpt_path={train_dir / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={eval_dir}"
    )
    assert "IoU %" in output and "Validate metric" not in output  # ours, not Lightning's
    assert not [text for text in NOISE if text in output]
    assert "IoU %" in (eval_dir / "eval.log").read_text()
