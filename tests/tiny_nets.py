"""Small nets with known structure for the module and optimiser tests, and a quiet CPU trainer
to run them."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn


class TinyNet(nn.Module):
    """A backbone, a head with BatchNorm and an attention-like ``gamma``, and a classifier."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.head = nn.Sequential(nn.Conv2d(4, 4, 1), nn.GroupNorm(2, 4))
        self.gamma = nn.Parameter(torch.zeros(1))
        self.scale = nn.Parameter(torch.ones(2, 2))  # 2-D, but listed by the model's hook
        self.aux_head = nn.Conv2d(4, num_classes, 1)
        self.classifier = nn.Conv2d(4, num_classes, 1)

    def no_weight_decay(self) -> set[str]:
        return {"scale"}

    def forward(self, images):
        features = self.head(self.backbone(images)) * (1 + self.gamma)
        return {"out": self.classifier(features)}


class OneHotNet(nn.Module):
    """Returns its input as logits: each "image" is the one-hot map of a fixed prediction."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = nn.Identity()

    def forward(self, images):
        return {"out": images}


def quiet_trainer(**kwargs) -> pl.Trainer:
    """A CPU Trainer without logger, checkpoints, progress bar or model summary; ``kwargs``
    add to or override these."""
    settings = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return pl.Trainer(**{**settings, **kwargs})
