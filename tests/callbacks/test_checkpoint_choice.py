"""The two checkpoint callbacks of ``conf/callbacks`` against runs whose answer is known.

A scripted LightningModule (one weight; ``val/mIoU`` a fixed value per validation; a count of
the validations that ran, kept in checkpoints) trains in this process with the callbacks the
app builds from ``conf/callbacks/*.yaml``:

- ``last_checkpoint`` saves every N steps but, at a step that validates, only after that
  validation: a run killed after such a save and resumed from ``last.ckpt`` runs every
  validation an uninterrupted run does (README: "a resume misses no validation");
- ``model_checkpoint`` keeps the checkpoint of the highest ``val/mIoU`` (not the lowest, not
  the last), its file named with the mIoU in percent.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import hydra
import pytest
import pytorch_lightning as pl
import torch
from prediction_helpers import compose_config
from torch import nn
from torch.utils.data import DataLoader

from src.callbacks.validate_at_last_step import ValidateAtLastStep

# val/mIoU of the 1st, 2nd, 3rd … validation: the best is neither the first, the last, the
# highest index nor the lowest value.
MIOU = (0.20, 0.75, 0.40, 0.10)


class ScriptedModule(pl.LightningModule):
    """One weight fitted to constants; ``val/mIoU`` = MIOU[number of validations so far]."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        # persistent: the count a checkpoint holds is the validations run before it was saved
        self.register_buffer("validations", torch.zeros((), dtype=torch.long))
        self.validations_this_process = 0

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return (self.weight - batch).square().mean()

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        pass

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        miou = MIOU[int(self.validations) % len(MIOU)]
        self.log("val/mIoU", torch.tensor(miou))
        self.validations += 1
        self.validations_this_process += 1

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loaders() -> tuple[DataLoader, DataLoader]:
    """64 equal training batches (no epoch ends in these runs: the loader need not resume)
    and one validation batch."""
    return DataLoader(torch.ones(64), batch_size=1), DataLoader(torch.zeros(1), batch_size=1)


def callback_from_conf(name: str, dirpath: Path, **overrides: object):
    """``callbacks.<name>`` of the train config, built as the app builds it, saving into
    ``dirpath``."""
    settings = [f"callbacks.{name}.{key}={value}" for key, value in overrides.items()]
    node = compose_config("train", settings).callbacks[name]
    node.dirpath = str(dirpath)
    return hydra.utils.instantiate(node, _convert_="all")


class CopyCheckpointAt(pl.Callback):
    """Copy ``source`` to ``target`` when the batch after step ``step`` starts: the
    checkpoint a SIGKILL at that moment leaves behind."""

    def __init__(self, step: int, source: Path, target: Path) -> None:
        self.step, self.source, self.target = step, source, target

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            shutil.copyfile(self.source, self.target)


def trainer(callbacks: list[pl.Callback], max_steps: int, val_every: int, root: Path):
    return pl.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        val_check_interval=val_every,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=[*callbacks, ValidateAtLastStep()],  # as src.train adds it
    )


def validations_in(path: Path) -> int:
    return int(torch.load(path, weights_only=True)["state_dict"]["validations"])


def test_a_resume_from_a_step_save_misses_no_validation(tmp_path):
    """last.ckpt every 3 steps, validation every 3 steps, 6 steps. A run "killed" as step 4
    starts leaves the step-3 save; that save must hold step 3's validation, and the resumed
    run (which Lightning starts after that validation) must end with both validations run,
    as the uninterrupted run does."""
    steps, every = 6, 3
    full_dir, killed = tmp_path / "full", tmp_path / "killed_at_step3.ckpt"
    last = callback_from_conf("last_checkpoint", full_dir, every_n_train_steps=every)
    copy = CopyCheckpointAt(every, full_dir / "last.ckpt", killed)
    module = ScriptedModule()
    trainer([last, copy], steps, every, tmp_path).fit(module, *loaders())
    assert int(module.validations) == 2 == steps // every  # the uninterrupted run

    resumed_dir = tmp_path / "resumed"
    last = callback_from_conf("last_checkpoint", resumed_dir, every_n_train_steps=every)
    resumed = ScriptedModule()
    trainer([last], steps, every, tmp_path).fit(resumed, *loaders(), ckpt_path=killed)
    assert torch.load(killed, weights_only=True)["global_step"] == every
    assert resumed.validations_this_process == 1  # step 6 only: step 3's ran before the kill
    assert int(resumed.validations) == int(module.validations), (
        "the resumed run missed a validation: the step-3 save was made before step 3's"
    )
    assert validations_in(killed) == 1
    assert validations_in(full_dir / "last.ckpt") == validations_in(resumed_dir / "last.ckpt") == 2
    assert torch.equal(resumed.weight, module.weight)


def test_step_saves_between_validations_are_made_at_their_step(tmp_path):
    """A save due at a step that does not validate is not deferred: with saves every 2 steps
    and validation every 3, the save of step 4 holds step 3's validation only."""
    run_dir, copy_to = tmp_path / "run", tmp_path / "step4.ckpt"
    last = callback_from_conf("last_checkpoint", run_dir, every_n_train_steps=2)
    copy = CopyCheckpointAt(4, run_dir / "last.ckpt", copy_to)
    trainer([last, copy], 6, 3, tmp_path).fit(ScriptedModule(), *loaders())
    saved = torch.load(copy_to, weights_only=True)
    assert saved["global_step"] == 4 and int(saved["state_dict"]["validations"]) == 1
    assert validations_in(run_dir / "last.ckpt") == 2


def test_saves_every_step_wait_for_the_validation_of_their_step(tmp_path):
    """``every_n_train_steps=1``, validation every 2 steps: the save of step 2 is made after
    step 2's validation (the boundary of "a step-based save is due")."""
    run_dir, copy_to = tmp_path / "run", tmp_path / "step2.ckpt"
    last = callback_from_conf("last_checkpoint", run_dir, every_n_train_steps=1)
    copy = CopyCheckpointAt(2, run_dir / "last.ckpt", copy_to)
    trainer([last, copy], 4, 2, tmp_path).fit(ScriptedModule(), *loaders())
    saved = torch.load(copy_to, weights_only=True)
    assert saved["global_step"] == 2 and int(saved["state_dict"]["validations"]) == 1


def test_the_default_last_checkpoint_saves_at_each_validation(tmp_path):
    """The config's default (``every_n_train_steps: null``): no step-based saves, last.ckpt
    rewritten at every validation."""
    run_dir, copy_to = tmp_path / "run", tmp_path / "step3.ckpt"
    last = callback_from_conf("last_checkpoint", run_dir)
    copy = CopyCheckpointAt(3, run_dir / "last.ckpt", copy_to)
    trainer([last, copy], 4, 2, tmp_path).fit(ScriptedModule(), *loaders())
    saved = torch.load(copy_to, weights_only=True)
    assert saved["global_step"] == 2 and int(saved["state_dict"]["validations"]) == 1
    assert validations_in(run_dir / "last.ckpt") == 2


def test_best_checkpoint_keeps_the_highest_miou(tmp_path):
    """Validations after steps 2, 4, 6, 8 score MIOU: the best checkpoint is step 4's (0.75),
    named with the mIoU in percent, and it is the only best_* file left. (Not every step:
    ModelCheckpoint takes ``val_check_interval=1`` for 1.0, once an epoch, and then saves at
    the epoch's end only.)"""
    best = callback_from_conf("model_checkpoint", tmp_path / "checkpoints")
    every = 2
    trainer([best], every * len(MIOU), every, tmp_path).fit(ScriptedModule(), *loaders())
    best_index = max(range(len(MIOU)), key=MIOU.__getitem__)
    expected = f"best_step{every * (best_index + 1):06d}_miou{100 * MIOU[best_index]:.2f}.ckpt"
    assert Path(best.best_model_path).name == expected == "best_step000004_miou75.00.ckpt"
    assert best.best_model_score.item() == pytest.approx(max(MIOU))
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [expected]
    assert validations_in(tmp_path / "checkpoints" / expected) == best_index + 1
