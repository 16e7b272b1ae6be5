"""The private Lightning names src/callbacks/lightning_internals.py uses still exist: this test
fails loudly on a Lightning upgrade that renames them, instead of a resume silently missing a
validation."""

from __future__ import annotations

import inspect

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from tiny_nets import quiet_trainer
from torch import nn
from torch.utils.data import DataLoader

from src.callbacks import lightning_internals
from src.callbacks.last_checkpoint import LastCheckpoint


def test_checkpoint_attributes_exist_and_drive_the_deferred_save():
    callback = ModelCheckpoint(every_n_train_steps=3)
    for name in lightning_internals.CHECKPOINT_ATTRIBUTES:
        assert hasattr(callback, name), f"ModelCheckpoint.{name} is gone (Lightning upgrade?)"
    assert lightning_internals.every_n_train_steps(callback) == 3
    lightning_internals.defer_save_until_validation(callback)
    assert callback._defer_save_until_validation is True
    # ModelCheckpoint itself reads the flag where validation ends: that is what saves
    assert "_defer_save_until_validation" in inspect.getsource(ModelCheckpoint.on_validation_end)


def test_loop_attributes_exist():
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, max_steps=1)
    for path, names in lightning_internals.LOOP_ATTRIBUTES.items():
        owner = trainer
        for part in path.split("."):
            owner = getattr(owner, part)
        for name in names:
            assert hasattr(owner, name), f"trainer.{path}.{name} is gone (Lightning upgrade?)"
    assert callable(trainer.fit_loop.epoch_loop._should_check_val_fx)


def test_last_checkpoint_reaches_lightning_only_through_the_adapter():
    source = inspect.getsource(inspect.getmodule(LastCheckpoint))
    for name in (*lightning_internals.CHECKPOINT_ATTRIBUTES, "_should_check_val_fx"):
        assert f".{name}" not in source


class OneWeight(pl.LightningModule):
    """One weight fitted to ones; validation does nothing (only whether it runs matters)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.weight - batch).square().mean()

    def validation_step(self, batch, batch_idx) -> None:
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class OneWeightFromIterator(OneWeight):
    """The same step in Lightning's ``dataloader_iter`` flavour: the step takes its batch."""

    def training_step(self, dataloader_iter):
        batch, _, _ = next(dataloader_iter)
        return super().training_step(batch, 0)


class ValidationRecorder(pl.Callback):
    """The steps after which ``validation_follows`` said yes, and those validated after."""

    def __init__(self) -> None:
        self.announced: list[int] = []
        self.validated: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if lightning_internals.validation_follows(trainer):
            self.announced.append(trainer.global_step)

    def on_validation_start(self, trainer, pl_module) -> None:
        self.validated.append(trainer.global_step)


@pytest.mark.parametrize(
    ("module", "validated"),
    [(OneWeight, [3]), (OneWeightFromIterator, [3, 4])],
    ids=["batch", "dataloader_iter"],
)
def test_validation_follows_announces_exactly_the_validations_the_loop_runs(
    tmp_path, module, validated
):
    """4 batches an epoch, validation every 3 steps, 4 steps: step 3 validates; the epoch's
    last step (4) validates too in the ``dataloader_iter`` flavour, which the loop tells from
    its data fetcher. ``validation_follows`` must say yes after exactly those steps (it is
    what makes ``LastCheckpoint`` wait for a validation), so it must ask with the loop's own
    fetcher."""
    recorder = ValidationRecorder()
    trainer = quiet_trainer(
        max_steps=4,
        val_check_interval=3,
        num_sanity_val_steps=0,
        callbacks=[recorder],
        default_root_dir=tmp_path,
    )
    train, val = DataLoader(torch.ones(4), batch_size=1), DataLoader(torch.zeros(1), batch_size=1)
    trainer.fit(module(), train, val)
    assert recorder.validated == validated
    assert recorder.announced == validated
