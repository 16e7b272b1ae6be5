"""The private Lightning names src/callbacks/lightning_internals.py uses still exist: this test
fails loudly on a Lightning upgrade that renames them, instead of a resume silently missing a
validation."""

from __future__ import annotations

import inspect

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

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
