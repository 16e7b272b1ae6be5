"""The private Lightning attributes this project relies on, and nowhere else.

Lightning offers no public way to (a) ask whether the fit loop validates after the training
step that just ended, or (b) make a ``ModelCheckpoint`` postpone a step-based save until that
validation. :class:`src.callbacks.last_checkpoint.LastCheckpoint` needs both. The names below
are checked by ``tests/callbacks/test_lightning_internals.py``, which fails on a Lightning
upgrade that renames or removes any of them (checked on pytorch-lightning 2.6).
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

CHECKPOINT_ATTRIBUTES = ("_every_n_train_steps", "_defer_save_until_validation")
"""Private attributes of ``ModelCheckpoint`` read or written here."""
LOOP_ATTRIBUTES = {"fit_loop": ("_data_fetcher",), "fit_loop.epoch_loop": ("_should_check_val_fx",)}
"""Private attributes of the trainer's loops read here."""


def every_n_train_steps(callback: ModelCheckpoint) -> int:
    """The callback's ``every_n_train_steps`` (stored privately; 0 when unused)."""
    return int(callback._every_n_train_steps)


def defer_save_until_validation(callback: ModelCheckpoint) -> None:
    """Make ``callback`` save in its ``on_validation_end`` instead of now (the deferral
    ``ModelCheckpoint`` itself uses for metrics only validation logs)."""
    callback._defer_save_until_validation = True


def validation_follows(trainer: pl.Trainer) -> bool:
    """Whether the fit loop validates after the training step that just ended (the check the
    loop itself makes next; it only reads the loop's counters)."""
    loop = trainer.fit_loop.epoch_loop
    return bool(loop._should_check_val_fx(trainer.fit_loop._data_fetcher))
