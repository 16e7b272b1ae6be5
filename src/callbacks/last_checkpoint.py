"""``last.ckpt`` that a resume continues exactly, also when it is written every N steps.

Lightning resumes a checkpoint written at the end of a training step with the next step, and
skips the validation that was due after the saved step (it fast-forwards past it). A plain
``ModelCheckpoint(every_n_train_steps=N)`` saves before that validation, so a run resumed from
it would miss one validation: its metrics, the best-mIoU tracker and the best checkpoint would
differ from an uninterrupted run's. :class:`LastCheckpoint` makes such a save right after the
validation instead (through ``ModelCheckpoint``'s own deferral, the one it uses for metrics
that only validation logs), so every ``last.ckpt`` holds a state the run can continue from as
if it had never stopped. The private Lightning state it needs is reached only through
:mod:`src.callbacks.lightning_internals`.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from src.callbacks.lightning_internals import (
    defer_save_until_validation,
    every_n_train_steps,
    validation_follows,
)


class LastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose step-based saves wait for a validation due at the same step."""

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._step_save_due(trainer) and validation_follows(trainer):
            defer_save_until_validation(self)  # saved in on_validation_end
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def _step_save_due(self, trainer: pl.Trainer) -> bool:
        every = every_n_train_steps(self)
        return every >= 1 and trainer.global_step % every == 0
