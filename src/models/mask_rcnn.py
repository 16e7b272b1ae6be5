"""Mask R-CNN on a timm ResNet whose last stage is followed by a context module (RCCA…).

The paper's COCO experiment: torchvision's Mask R-CNN with an FPN over ResNet stages 1–4 at
strides 4–32 (not the dilated stride-8 backbone of :mod:`src.models.backbone`), with the
context module of :mod:`src.models.context` applied to the stage-4 features before they
enter the FPN (``context="none"``: the plain Mask R-CNN).
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import nullcontext
from pathlib import Path

import timm
from timm.layers import freeze_batch_norm_2d
from timm.models import get_pretrained_cfg_value, load_state_dict
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from src.models.backbone import check_backbone_name, check_weights, timm_download
from src.models.context import build_context, check_context, check_recurrence, gamma_names

STAGES = ("layer1", "layer2", "layer3", "layer4")
"""The ResNet stages whose outputs (strides 4, 8, 16, 32) feed the FPN."""


def _load_local_weights(body: nn.Module, name: str, path: Path) -> None:
    """Load a local ``state_dict`` of ``timm.create_model(name)`` into the feature extractor,
    checked key by key and shape by shape first (the classifier may be extra)."""
    state = load_state_dict(str(path))
    expected = body.state_dict()
    classifier = get_pretrained_cfg_value(name, "classifier") or ()
    prefixes = tuple(
        f"{c}." for c in ((classifier,) if isinstance(classifier, str) else classifier)
    )
    check_weights(expected, state, name, path, ignore_prefixes=prefixes)
    body.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


def create_body(name: str, pretrained: bool | str | Path = False) -> nn.Module:
    """A timm ResNet as a feature extractor of stages 1–4 (strides 4, 8, 16, 32).

    ``pretrained``: False (random init), True (timm's own source, needs a network) or a path to
    a local ``.pth`` / ``.safetensors`` state_dict of ``timm.create_model(name)``.
    """
    check_backbone_name(name)
    online = pretrained is True
    with timm_download(name) if online else nullcontext():
        body = timm.create_model(
            name, features_only=True, out_indices=(1, 2, 3, 4), pretrained=online
        )
    if body.feature_info.reduction() != [4, 8, 16, 32] or not all(
        hasattr(body, stage) for stage in STAGES
    ):
        raise ValueError(
            f"model.backbone={name!r} is not a ResNet-family model with stages {STAGES} at "
            f"strides 4–32 (got strides {body.feature_info.reduction()})"
        )
    if pretrained not in (None, False, True):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model.pretrained={str(pretrained)!r}: no weights file there")
        _load_local_weights(body, name, path)
    return body


def freeze_stages(body: nn.Module, trainable_stages: int) -> None:
    """Freeze all but the last ``trainable_stages`` of (stem, layer1, …, layer4), counting from
    layer4 — torchvision's ``trainable_layers`` (5: all train, 0: none; its default is 3)."""
    if not 0 <= trainable_stages <= 5:
        raise ValueError(f"model.trainable_stages must be in 0..5; got {trainable_stages}")
    trainable = set(list(reversed(STAGES))[:trainable_stages])
    if trainable_stages == 5:
        trainable.add("stem")
    for child_name, child in body.named_children():
        part = child_name if child_name in STAGES else "stem"
        child.requires_grad_(part in trainable)


class TimmFPNBackbone(nn.Module):
    """timm ResNet stages 1–4 → context module on stage 4 → torchvision FPN (+ max-pool level).

    Returns the ``OrderedDict`` of 5 pyramid levels (``"0"``…``"3"``, ``"pool"``) that
    torchvision's detection heads read; ``out_channels`` is the FPN width.
    """

    def __init__(
        self,
        name: str = "resnet50",
        pretrained: bool | str | Path = False,
        context: str = "rcca",
        recurrence: int = 2,
        out_channels: int = 256,
        trainable_stages: int = 3,
        freeze_bn: bool = True,
    ) -> None:
        super().__init__()
        context, recurrence = check_context(context), check_recurrence(recurrence)  # before timm
        body = create_body(name, pretrained)
        if freeze_bn:  # after loading: frozen BN keeps the loaded statistics
            body = freeze_batch_norm_2d(body)
        freeze_stages(body, trainable_stages)
        self.body = body
        channels = body.feature_info.channels()
        self.context = build_context(context, channels[-1], recurrence)
        self.fpn = FeaturePyramidNetwork(channels, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        features = self.body(images)
        features[-1] = self.context(features[-1])
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(features)))


class RCCAMaskRCNN(MaskRCNN):
    """torchvision's Mask R-CNN on :class:`TimmFPNBackbone`.

    ``num_classes`` counts the background (K categories → K + 1). The box head (two FC layers
    of ``box_head_dim``) and mask head (four 3×3 convs of ``mask_head_channels``) are
    torchvision's own, at its default widths 1024 and 256 unless made smaller (CPU tests).
    Every other keyword is torchvision's ``MaskRCNN`` argument (``min_size``, ``max_size``,
    RPN/ROI sample counts…). Input images are float RGB in [0, 1]; the detector normalises
    and resizes them itself.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet50",
        pretrained: bool | str | Path = False,
        context: str = "rcca",
        recurrence: int = 2,
        fpn_channels: int = 256,
        trainable_stages: int = 3,
        freeze_bn: bool = True,
        box_head_dim: int = 1024,
        mask_head_channels: int = 256,
        **detector_kwargs,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background, so it is >= 2; got {num_classes}")
        fpn = TimmFPNBackbone(
            backbone, pretrained, context, recurrence, fpn_channels, trainable_stages, freeze_bn
        )
        super().__init__(
            fpn,
            box_head=TwoMLPHead(fpn_channels * 7 * 7, box_head_dim),  # 7×7 RoIAlign output
            box_predictor=FastRCNNPredictor(box_head_dim, num_classes),
            mask_head=MaskRCNNHeads(fpn_channels, (mask_head_channels,) * 4, dilation=1),
            mask_predictor=MaskRCNNPredictor(mask_head_channels, mask_head_channels, num_classes),
            **detector_kwargs,
        )
        self.num_classes = num_classes

    def no_weight_decay(self) -> set[str]:
        """Parameter names to keep out of weight decay: the attention scales γ (timm's hook)."""
        return gamma_names(self)


__all__ = [
    "RCCAMaskRCNN",
    "TimmFPNBackbone",
    "create_body",
    "freeze_stages",
]
