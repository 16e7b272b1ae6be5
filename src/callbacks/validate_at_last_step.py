"""Validate at the last training step, whatever ``val_check_interval`` is.

Lightning validates every ``val_check_interval`` steps only, so a run shorter than the interval
(``trainer.max_steps=20`` with the default interval of 100), or one whose length is not a
multiple of it, ends without validating its final weights: no val metric for results.json or a
sweeper, and no checkpoint from the callbacks that save after validation. At the step that ends
training, :class:`ValidateAtLastStep` sets ``trainer.should_stop``; the fit loop then validates
right after that step (as it does for early stopping), once, also when the step was a
validation step anyway. Lightning runs checkpoint callbacks after all others, so
``LastCheckpoint`` sees that validation coming and saves after it.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning import Callback


class ValidateAtLastStep(Callback):
    """Stop (and so validate) at ``trainer.max_steps``, or at the last batch of
    ``trainer.max_epochs`` for epoch-based runs (``max_steps=-1``)."""

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if is_last_step(trainer, batch_idx):
            trainer.should_stop = True


def is_last_step(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Whether the training step that just ended is the run's last one (public trainer state
    only: the optimiser steps taken, the epoch and the batch index)."""
    if trainer.max_steps is not None and trainer.max_steps >= 0:
        return trainer.global_step >= trainer.max_steps
    max_epochs, batches = trainer.max_epochs, trainer.num_training_batches
    if max_epochs is None or max_epochs < 0 or not math.isfinite(batches):
        return False
    return trainer.current_epoch + 1 >= max_epochs and batch_idx + 1 >= batches


__all__ = ["ValidateAtLastStep", "is_last_step"]
