"""What the console shows while a run trains: one progress bar for the whole run and a model
summary without the FLOPs column (always 0 here: the model has no example input).

:class:`RunProgressBar` counts optimiser steps against ``trainer.max_steps`` (not batches of
an epoch: training here is iteration-based, where Lightning's bars read ``Epoch 0/-2``), with
the elapsed time, the time left for the whole run and the latest logged values; a validation
shows a bar of its own while it runs.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, RichModelSummary
from pytorch_lightning.utilities.model_summary import get_formatted_model_size
from pytorch_lightning.utilities.model_summary.model_summary import get_human_readable_count
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

SHOWN_METRICS = {"train/loss": "loss", "val/mIoU": "mIoU", "val/mIoU_best": "best"}
"""The logged values the bar shows (when logged), by the short label it shows them with;
mIoU values in percent, as every table shows them."""


class RunProgressBar(ProgressBar):
    """Step N / max_steps with the run's ETA, then one bar per validation (rank 0 only)."""

    def __init__(self, metrics: dict[str, str] | None = None) -> None:
        super().__init__()
        self.metrics = dict(SHOWN_METRICS if metrics is None else metrics)
        self._enabled = True
        self._progress: Progress | None = None
        self._train: TaskID | None = None
        self._val: TaskID | None = None

    # -- ProgressBar interface -------------------------------------------------------------
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled and self._progress is not None

    # -- training --------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._start(trainer):
            return
        total = trainer.max_steps if trainer.max_steps > 0 else None
        self._train = self._progress.add_task(
            "train", total=total, completed=trainer.global_step, values=""
        )

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any
    ) -> None:
        if self._progress is not None and self._train is not None:
            self._progress.update(
                self._train, completed=trainer.global_step, values=self._values(trainer)
            )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop()

    # -- validation (during fit, and src.eval's trainer.validate / test) --------------------
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_start(trainer, "sanity check" if trainer.sanity_checking else "validate")

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_start(trainer, "test")

    def on_validation_batch_end(self, trainer: pl.Trainer, *_: Any, **__: Any) -> None:
        self._advance_eval()

    def on_test_batch_end(self, trainer: pl.Trainer, *_: Any, **__: Any) -> None:
        self._advance_eval()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_end(trainer)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_end(trainer)

    # -- helpers ---------------------------------------------------------------------------
    def _start(self, trainer: pl.Trainer) -> bool:
        """Start the rich display once (rank 0, enabled); whether it runs."""
        if self._progress is None and self._enabled and trainer.is_global_zero:
            self._progress = Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[values]}"),
                console=Console(stderr=False),
            )
            self._progress.start()
        return self._progress is not None

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress, self._train, self._val = None, None, None

    def _eval_start(self, trainer: pl.Trainer, description: str) -> None:
        if not self._start(trainer):
            return
        batches = trainer.num_sanity_val_steps if trainer.sanity_checking else None
        totals = trainer.num_val_batches if description != "test" else trainer.num_test_batches
        total = sum(totals) if totals else None
        if batches is not None and total is not None:
            total = min(total, batches * max(len(totals), 1))
        self._val = self._progress.add_task(description, total=total, values="")

    def _advance_eval(self) -> None:
        if self._progress is not None and self._val is not None:
            self._progress.advance(self._val)

    def _eval_end(self, trainer: pl.Trainer) -> None:
        if self._progress is None or self._val is None:
            return
        self._progress.remove_task(self._val)
        self._val = None
        if self._train is None:  # validate / test alone: nothing more to show
            self._stop()
        else:
            self._progress.update(self._train, values=self._values(trainer))

    def _values(self, trainer: pl.Trainer) -> str:
        """The shown metrics as ``label value`` pairs (mIoU in percent)."""
        logged = trainer.callback_metrics
        parts = []
        for name, label in self.metrics.items():
            value = logged.get(name)
            if value is None or value.numel() != 1:
                continue
            number = float(value)
            parts.append(
                f"{label} {number * 100:.1f}%" if "mIoU" in name else f"{label} {number:.3g}"
            )
        return " ".join(parts)


class ParameterSummary(RichModelSummary):
    """Lightning's rich model summary without the FLOPs column and line."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int = 0,
        **summarize_kwargs: Any,
    ) -> None:
        from rich import get_console

        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for name, _ in columns:
            numeric = name not in ("", " ", "Name", "Type", "Mode")
            table.add_column(name or " ", justify="right" if numeric else "left")
        for row in zip(*(values for _, values in columns)):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        frozen = total_parameters - trainable_parameters
        console.print(
            f"[bold]Trainable params[/]: {get_human_readable_count(int(trainable_parameters))}  "
            f"[bold]Frozen[/]: {get_human_readable_count(int(frozen))}  "
            f"[bold]Total[/]: {get_human_readable_count(int(total_parameters))}  "
            f"[bold]Size[/]: {get_formatted_model_size(model_size)} MB"
        )
