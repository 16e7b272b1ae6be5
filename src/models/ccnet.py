"""CCNet = dilated backbone + context head (see :mod:`src.models.context`) + auxiliary FCN head.

Training mode returns ``out`` (main logits), ``aux`` (stage-3 logits) and, with ``embed_dim``,
the ``embedding`` for the category-consistent loss; eval mode returns only ``out``. All at
1/8 of the input resolution (ceil for odd sizes).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from .backbone import create_backbone
from .context import build_context, check_context, check_recurrence, gamma_names
from .heads import ContextHead, FCNHead


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
        context = check_context(context)  # fail before building a large backbone
        recurrence = check_recurrence(recurrence)
        self.num_classes = num_classes
        self.context = context
        self.backbone = create_backbone(backbone, pretrained)
        stage3, stage4 = self.backbone.feature_info.channels()
        module = build_context(context, channels, recurrence)
        self.head = ContextHead(stage4, channels, num_classes, module, dropout)
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

    def no_weight_decay(self) -> set[str]:
        """Parameter names to keep out of weight decay: the attention scales γ (timm's hook)."""
        return gamma_names(self)


__all__ = ["CCNet"]
