"""The best checkpoint by a monitored metric, its file named with mIoU in percent (as every
table shows it): ``best_step000300_miou87.03.ckpt``."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.callbacks import ModelCheckpoint
from torch import Tensor


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose file name shows the ``percent_metrics`` ×100."""

    def __init__(self, *args: Any, percent_metrics: tuple[str, ...] = ("val/mIoU",), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.percent_metrics = tuple(percent_metrics)

    def format_checkpoint_name(
        self, metrics: dict[str, Tensor], filename: str | None = None, *args: Any, **kwargs: Any
    ) -> str:
        shown = {k: v * 100 if k in self.percent_metrics else v for k, v in metrics.items()}
        return super().format_checkpoint_name(shown, filename, *args, **kwargs)
