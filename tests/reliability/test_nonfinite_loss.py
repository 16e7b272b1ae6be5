"""A NaN/inf loss stops training naming the step and the loss term, or (module.skip_nonfinite)
skips the batch without a trace and counts it: both through the CLI, and "without a trace"
bit for bit in this process (weights, BatchNorm buffers and optimiser state before and after
the skipped batch)."""

from __future__ import annotations

import copy
import math
import re

import pytest
import pytorch_lightning as pl
import torch
from app_helpers import TINY, read_results
from cli_helpers import run_cli
from reliability_helpers import differing_tensors, load
from tiny_nets import TinyNet
from torch.utils.data import DataLoader

from src.core.losses import CCNetLoss
from src.tasks.semantic.module import SegmentationModule

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


class StateAroundBatches(pl.Callback):
    """The module's state dict and the optimiser's state before and after every batch."""

    def __init__(self) -> None:
        self.before: dict[int, tuple] = {}
        self.after: dict[int, tuple] = {}

    @staticmethod
    def _state(trainer: pl.Trainer, module: pl.LightningModule) -> tuple:
        optimiser = trainer.optimizers[0].state_dict()["state"]
        return copy.deepcopy(module.state_dict()), copy.deepcopy(optimiser)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.before[batch_idx] = self._state(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.after[batch_idx] = self._state(trainer, pl_module)


def test_a_skipped_batch_leaves_weights_buffers_and_optimiser_bit_identical(tmp_path):
    """Three batches, the middle one with a NaN pixel, on a net with BatchNorm: across the
    skipped batch every weight, every buffer (running mean and variance, batches tracked) and
    the SGD momentum are bit-identical before and after; across the others they all change.
    The run goes on, and counts the skipped batch."""
    torch.manual_seed(0)
    batches = [
        {"image": torch.randn(2, 3, 8, 8), "mask": torch.randint(0, 3, (2, 8, 8))} for _ in range(3)
    ]
    batches[1]["image"][1, 0, 4, 4] = float("nan")
    module = SegmentationModule(TinyNet(), CCNetLoss(), num_classes=3, skip_nonfinite=True)
    watch = StateAroundBatches()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
        callbacks=[watch],
    )
    with pytest.warns(UserWarning, match="skipped the batch of training step 1"):
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    assert module.skipped_batches == 1 and trainer.global_step == 3  # the skipped one counts

    (weights_before, optimiser_before), (weights_after, optimiser_after) = (
        watch.before[1],
        watch.after[1],
    )
    assert differing_tensors(weights_before, weights_after) == []
    assert differing_tensors(optimiser_before, optimiser_after) == []
    assert optimiser_before, "no momentum yet: the comparison above would be empty"
    buffers = [name for name, _ in module.named_buffers()]
    assert {"net.backbone.1.running_mean", "net.backbone.1.num_batches_tracked"} <= set(buffers)
    for good in (0, 2):  # the check sees changes where there are some
        changed = set(differing_tensors(watch.before[good][0], watch.after[good][0]))
        assert {f".{name}" for name in buffers} <= changed
        assert ".net.classifier.weight" in changed
