"""CCNet = dilated backbone + context head (see :mod:`src.models.context`) + auxiliary FCN head.

Training mode returns ``out`` (main logits), ``aux`` (stage-3 logits) and, with ``embed_dim``,
the ``embedding`` for the category-consistent loss; eval mode returns only ``out``. All at
1/8 of the input resolution (ceil for odd sizes).

Trained weights: :meth:`CCNet.from_pretrained` reads this project's checkpoints,
mmsegmentation's and the official code's (see :mod:`src.models.pretrained`); ``init_from``
starts a new network (e.g. for another class count) from them.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from .backbone import create_backbone
from .context import build_context, check_context, check_recurrence, gamma_names
from .heads import ContextHead, FCNHead, check_activation
from .pretrained import load_pretrained

log = logging.getLogger(__name__)


_NOT_COMPARED = (
    "num_classes",
    "recurrence",
    "dropout",
    "embed_dim",
    "attention_kernel",
)  # free in fine-tuning


class CCNet(nn.Module):
    """Criss-cross network for semantic segmentation (Huang et al., ICCV 2019 / TPAMI 2020)."""

    context_dims = 2  # spatial axes the context module attends over (CCNet3D: T, H, W)

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
        align_corners: bool = False,
        contract_dilation: bool = True,
        pool_ceil_mode: bool = False,
        head_activation: str = "relu",
        init_from: str | Path | None = None,
        attention_kernel: str = "lines",
    ) -> None:
        """``align_corners``: how every bilinear resize of the logits is done (training loss,
        inference, export; mmseg's Cityscapes 769×769 models and the official code use True).
        ``contract_dilation=False``, ``pool_ceil_mode=True`` and ``head_activation=
        "leaky_relu"`` build the official code's network (see :mod:`src.models.backbone`,
        :mod:`src.models.heads`). ``init_from``: a checkpoint of any format
        :meth:`from_pretrained` reads, or a zoo name, whose weights replace the initial ones
        (its architecture must match; classifiers for another class count start fresh).
        ``attention_kernel``: the criss-cross op's forward path, ``lines`` or ``fused`` (same
        weights and results; see :func:`src.models.attention.criss_cross_attention`)."""
        super().__init__()
        context = check_context(context)  # fail before building a large backbone
        recurrence = check_recurrence(recurrence)
        check_activation(head_activation)
        weights = load_pretrained(init_from, key="model.init_from") if init_from else None
        self.num_classes = num_classes
        self.context = context
        self.align_corners = bool(align_corners)
        self.backbone = create_backbone(
            backbone,
            False if weights else pretrained,  # init_from replaces every backbone weight
            contract_dilation=contract_dilation,
            pool_ceil_mode=pool_ceil_mode,
        )
        stage3, stage4 = self.backbone.feature_info.channels()
        module = build_context(
            context, channels, recurrence, dims=self.context_dims, kernel=attention_kernel
        )
        self.head = ContextHead(stage4, channels, num_classes, module, dropout, head_activation)
        self.aux_head = (
            FCNHead(stage3, aux_channels, num_classes, activation=head_activation) if aux else None
        )
        self.embed = None
        if embed_dim:
            self.embed = nn.Conv2d(channels, embed_dim, 1)
            nn.init.kaiming_normal_(self.embed.weight, nonlinearity="linear")
            nn.init.zeros_(self.embed.bias)
        self.pretrained_cfg: dict[str, Any] | None = None
        self.architecture: dict[str, Any] = dict(
            num_classes=num_classes, backbone=backbone, context=context, recurrence=recurrence,
            aux=aux, embed_dim=embed_dim, channels=channels, dropout=dropout,
            aux_channels=aux_channels, align_corners=align_corners,
            contract_dilation=contract_dilation, pool_ceil_mode=pool_ceil_mode,
            head_activation=head_activation, attention_kernel=attention_kernel,
        )  # fmt: skip
        """The arguments that built this network (weights aside), e.g. for its 3D twin."""
        if weights is not None:
            self._init_from(weights, self.architecture)

    def _init_from(self, weights: Any, arguments: dict[str, Any]) -> None:
        """Load ``init_from``'s weights after checking that they are for this architecture."""
        signature = inspect.signature(CCNet.__init__).parameters
        defaults = {name: parameter.default for name, parameter in signature.items()}
        differences = [
            f"model.{k}={weights.architecture.get(k, defaults.get(k))!r}"
            for k, v in arguments.items()
            if k not in _NOT_COMPARED and weights.architecture.get(k, defaults.get(k)) != v
        ]
        if differences:
            raise ValueError(
                f"model.init_from={weights.source!r} holds a CCNet with other settings than "
                f"this config: add {' '.join(differences)}"
            )
        fresh_classes = weights.num_classes != self.num_classes
        fresh = weights.load_into(self, fresh_classifiers=fresh_classes, optional=("embed.",))
        if fresh_classes:
            log.info(
                "model.init_from=%s: %d classes there, %d here: the classifiers (%s) start "
                "fresh", weights.source, weights.num_classes, self.num_classes,
                ", ".join(sorted({k.rsplit(".", 1)[0] for k in fresh})),
            )  # fmt: skip
        self.pretrained_cfg = weights.config()

    @classmethod
    def from_pretrained(cls, source: str | Path, **overrides: Any) -> CCNet:
        """The network for the weights at ``source`` (this project's checkpoint, an mmseg or
        official CCNet file, or a :data:`~src.models.pretrained.ZOO` name), in eval mode.

        The architecture comes from the weights; ``overrides`` change other arguments
        (``recurrence``, ``dropout``...), or ``num_classes`` (the classifiers then start
        fresh, as for fine-tuning). ``net.pretrained_cfg`` tells the input the weights
        expect (``mean``/``std``, ``None`` for ImageNet's) and their class names.
        """
        weights = load_pretrained(source)
        if "target_frame" in weights.architecture and cls is CCNet:
            raise ValueError(f"{source!r} holds a CCNet3D: load it with CCNet3D.from_pretrained")
        arguments = {**weights.architecture, **overrides, "pretrained": False}
        net = cls(**arguments)
        fresh = weights.load_into(net, fresh_classifiers=net.num_classes != weights.num_classes)
        if fresh:
            log.info("from_pretrained: %s start fresh", ", ".join(fresh))
        net.pretrained_cfg = weights.config()
        return net.eval()

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
