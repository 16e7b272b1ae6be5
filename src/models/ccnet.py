"""CCNet = dilated backbone + context head (RCCA, non-local or none) + auxiliary FCN head.

Training mode returns ``out`` (main logits), ``aux`` (stage-3 logits) and, with ``embed_dim``,
the ``embedding`` for the category-consistent loss; eval mode returns only ``out``. All at
1/8 of the input resolution (ceil for odd sizes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from .backbone import create_backbone
from .heads import ContextHead, FCNHead, NonLocalHead, RCCAHead

CONTEXTS = ("rcca", "nonlocal", "none")


def build_context_head(
    context: str,
    in_channels: int,
    channels: int,
    num_classes: int,
    recurrence: int = 2,
    dropout: float = 0.1,
) -> ContextHead:
    """The main head for ``context``: "rcca", "nonlocal", or "none" (RCCA convs with R = 0)."""
    if context == "rcca":
        return RCCAHead(in_channels, channels, num_classes, recurrence, dropout)
    if context == "none":
        return RCCAHead(in_channels, channels, num_classes, 0, dropout)
    if context == "nonlocal":
        return NonLocalHead(in_channels, channels, num_classes, dropout)
    raise ValueError(f"model.context must be one of {', '.join(CONTEXTS)}; got {context!r}")


class CCNet(nn.Module):
    """Criss-cross network for semantic segmentation (Huang et al., ICCV 2019 / TPAMI 2020)."""

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet101c",
        pretrained: bool | str | Path = False,
        context: str = "rcca",
        recurrence: int = 2,
        aux: bool = True,
        embed_dim: int | None = None,
        channels: int = 512,
        dropout: float = 0.1,
        aux_channels: int = 256,
    ) -> None:
        super().__init__()
        if context not in CONTEXTS:  # fail before building a large backbone
            raise ValueError(f"model.context must be one of {', '.join(CONTEXTS)}; got {context!r}")
        self.num_classes = num_classes
        self.context = context
        self.backbone = create_backbone(backbone, pretrained)
        stage3, stage4 = self.backbone.feature_info.channels()
        self.head = build_context_head(context, stage4, channels, num_classes, recurrence, dropout)
        self.aux_head = FCNHead(stage3, aux_channels, num_classes) if aux else None
        self.embed = None
        if embed_dim:
            self.embed = nn.Conv2d(channels, embed_dim, 1)
            nn.init.kaiming_normal_(self.embed.weight, nonlinearity="linear")
            nn.init.zeros_(self.embed.bias)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        stage3, stage4 = self.backbone(images)
        with_embedding = self.training and self.embed is not None
        if with_embedding:
            logits, features = self.head(stage4, return_features=True)
        else:
            logits = self.head(stage4)
        outputs = {"out": logits}
        if self.training and self.aux_head is not None:
            outputs["aux"] = self.aux_head(stage3)
        if with_embedding:
            outputs["embedding"] = self.embed(features)
        return outputs

    def param_groups(
        self, lr: float, weight_decay: float, head_lr_mult: float = 1.0
    ) -> list[dict[str, Any]]:
        """Optimiser parameter groups: backbone at ``lr``, everything else (heads, embedding) at
        ``lr * head_lr_mult``; norms, biases and gamma (tensors with ndim <= 1) get no weight
        decay. Frozen parameters are left out. Each group carries a ``name`` for logging."""
        groups: dict[str, dict[str, Any]] = {}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            part = "backbone" if name.startswith("backbone.") else "head"
            decay = param.ndim > 1
            key = f"{part}/{'decay' if decay else 'no_decay'}"
            group = groups.setdefault(
                key,
                {
                    "name": key,
                    "params": [],
                    "lr": lr * (1.0 if part == "backbone" else head_lr_mult),
                    "weight_decay": weight_decay if decay else 0.0,
                },
            )
            group["params"].append(param)
        return list(groups.values())


__all__ = ["CCNet", "CONTEXTS", "build_context_head"]
