"""Segmentation heads: the CCNet head around a context module, and the auxiliary FCN head.

Norms are plain ``nn.BatchNorm2d`` with a separate activation so that
``nn.SyncBatchNorm.convert_sync_batchnorm`` converts them without losing it (timm's fused
``BatchNormAct2d`` would silently drop its ReLU in that conversion). The activation is ReLU
(mmseg, and this project's default) or LeakyReLU(0.01), what the official code's InPlaceABN
applies after the head's norms (``model.head_activation``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .context import build_context

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),  # InPlaceABN's default
}
"""``model.head_activation`` name → the activation after each norm of the heads."""


def check_activation(name: Any) -> str:
    """``name`` if it is a known head activation (a key of :data:`ACTIVATIONS`)."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(
            f"model.head_activation must be one of {', '.join(ACTIVATIONS)}; got {name!r}"
        )
    return name


class ConvBNReLU(nn.Sequential):
    """k×k conv (no bias) → BatchNorm2d → activation (ReLU by default), with 'same' padding."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, activation: str = "relu"
    ) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            ACTIVATIONS[check_activation(activation)](),
        )


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convs (fan_out, ReLU), unit/zero BatchNorm, small-normal classifiers."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ContextHead(nn.Module):
    """The CCNet head around a context module (as released).

    3×3 conv in→C + BN + ReLU → context → 3×3 conv C→C + BN + ReLU → concat with the input
    (input first) → 3×3 conv in+C→C + BN + ReLU → Dropout2d → 1×1 classifier.
    ``context`` maps (B, C, H, W) → (B, C, H, W); see :func:`src.models.context.build_context`.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        context: nn.Module,
        dropout: float = 0.1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.reduce = ConvBNReLU(in_channels, channels, activation=activation)
        self.context = context
        self.project = ConvBNReLU(channels, channels, activation=activation)
        self.fuse = ConvBNReLU(in_channels + channels, channels, activation=activation)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        for part in (self.reduce, self.project, self.fuse, self.classifier):
            init_weights(part)  # the context module keeps its own init (e.g. gamma = 0)
        nn.init.normal_(self.classifier.weight, std=0.01)

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Logits at the input's resolution; with ``return_features`` also the context
        features after the projection conv (the input of the CCL embedding)."""
        features = self.project(self.context(self.reduce(x)))
        logits = self.classify(x, features)
        return (logits, features) if return_features else logits

    def classify(self, x: Tensor, features: Tensor) -> Tensor:
        """The logits from the head's input ``x`` and its projected context ``features``
        (input first in the concatenation); the 3D model calls it on its labelled frame."""
        fused = self.fuse(torch.cat([x, features], dim=1))
        return self.classifier(self.dropout(fused))


class RCCAHead(ContextHead):
    """The CCNet head with RCCA: one shared CCA module applied ``recurrence`` times.

    ``recurrence=0`` is the FCN baseline (same convs and parameter count, attention frozen);
    reading or setting ``recurrence`` goes to the context module.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        recurrence: int = 2,
        dropout: float = 0.1,
    ) -> None:
        context = build_context("rcca", channels, recurrence)
        super().__init__(in_channels, channels, num_classes, context, dropout)

    @property
    def recurrence(self) -> int:
        return self.context.recurrence

    @recurrence.setter
    def recurrence(self, value: int) -> None:
        self.context.recurrence = value

    def extra_repr(self) -> str:
        return f"recurrence={self.recurrence}"


class NonLocalHead(ContextHead):
    """The CCNet head with an embedded-Gaussian non-local block in place of RCCA."""

    def __init__(
        self, in_channels: int, channels: int, num_classes: int, dropout: float = 0.1
    ) -> None:
        context = build_context("nonlocal", channels)
        super().__init__(in_channels, channels, num_classes, context, dropout)


class FCNHead(nn.Module):
    """Auxiliary FCN head: 3×3 conv + BN + ReLU → Dropout2d → 1×1 classifier."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        dropout: float = 0.1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, channels, activation=activation)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        init_weights(self)
        nn.init.normal_(self.classifier.weight, std=0.01)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.dropout(self.conv(x)))


__all__ = [
    "ACTIVATIONS",
    "ConvBNReLU",
    "check_activation",
    "ContextHead",
    "FCNHead",
    "NonLocalHead",
    "RCCAHead",
    "init_weights",
]
