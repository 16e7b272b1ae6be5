"""Independent references of the two foreign CCNet networks, written for the tests from what
their published source computes (not from this project's modules), with their own key names:

- mmsegmentation: ResNetV1c (stem 32-32-64, ``contract_dilation``), ``CCHead`` (an FCNHead
  with two convs, criss-cross attention between them, ``conv_cat``), the auxiliary
  ``FCNHead`` (one conv, no concat), mmcv's criss-cross attention (``gamma`` a 0-dim
  ``Scale``), ConvModule = conv → ``bn`` → ReLU;
- the official code (speedinghzl/CCNet ``networks/ccnet.py``): a ResNet with a 64-64-128 stem
  (``conv1..3``/``bn1..3``), max-pool with ``ceil_mode=True``, no dilation contraction,
  InPlaceABN norms in eval mode (scale ``|weight| + eps``; identity activation in the
  backbone, LeakyReLU(0.01) in the heads), ``head`` = RCCAModule, ``dsn`` = a 1024→512 conv
  with bias; input BGR, 0–255, minus the mean.

Attention follows the published formula: energies of each position against its column (all
H) and its row without itself (W − 1), one softmax over the H + W − 1, gamma·out + x.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def reference_cca(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Criss-cross aggregation by the formula (einsum with the centre masked in the rows)."""
    _, _, h, w = q.shape
    energy_col = torch.einsum("bchw,bciw->bhwi", q, k)  # against (i, x): all H
    energy_row = torch.einsum("bchw,bchj->bhwj", q, k)  # against (y, j)
    eye = torch.eye(w, dtype=torch.bool, device=q.device)
    energy_row = energy_row.masked_fill(eye[None, None], float("-inf"))  # centre counted once
    attention = torch.softmax(torch.cat([energy_col, energy_row], dim=-1), dim=-1)
    out = torch.einsum("bciw,bhwi->bchw", v, attention[..., :h])
    return out + torch.einsum("bchj,bhwj->bchw", v, attention[..., h:])


class MmcvCrissCross(nn.Module):
    """mmcv's CrissCrossAttention: query/key at C/8, value at C, ``gamma`` a Scale (0-dim)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.query_conv = nn.Conv2d(channels, channels // 8, 1)
        self.key_conv = nn.Conv2d(channels, channels // 8, 1)
        self.value_conv = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Module()
        self.gamma.scale = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: Tensor) -> Tensor:
        out = reference_cca(self.query_conv(x), self.key_conv(x), self.value_conv(x))
        return self.gamma.scale * out + x


class OfficialCrissCross(MmcvCrissCross):
    """The official CCA: the same computation, ``gamma`` a 1-element parameter."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        del self.gamma
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        out = reference_cca(self.query_conv(x), self.key_conv(x), self.value_conv(x))
        return self.gamma * out + x


class InPlaceABN(nn.Module):
    """InPlaceABN in eval mode: (x − mean) / sqrt(var + eps) · (|weight| + eps) + bias, then
    the activation (identity or leaky ReLU 0.01)."""

    def __init__(self, channels: int, activation: str = "leaky_relu", eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.activation, self.eps = activation, eps

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1, 1, 1)
        scale = (self.weight.abs() + self.eps) / torch.sqrt(self.running_var + self.eps)
        y = (x - self.running_mean.view(shape)) * scale.view(shape) + self.bias.view(shape)
        return F.leaky_relu(y, 0.01) if self.activation == "leaky_relu" else y


class Bottleneck(nn.Module):
    """The torchvision-style bottleneck both codes use (stride on the 3×3 conv)."""

    def __init__(self, inplanes, planes, stride, dilation, downsample, norm) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn2 = norm(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = norm(planes * 4)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.downsample(x) if self.downsample is not None else x
        return F.relu(out + identity)


def _layers(module: nn.Module, depth: int, inplanes: int, norm, contract: bool) -> None:
    """layer1..4 at strides 1, 2, 1, 1 and dilations 1, 1, 2, 4."""
    for index, (blocks, planes, stride, dilation) in enumerate(
        zip(DEPTHS[depth], (64, 128, 256, 512), (1, 2, 1, 1), (1, 1, 2, 4), strict=True), 1
    ):
        downsample = None
        if stride != 1 or inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), norm(planes * 4)
            )
        first = dilation // 2 if contract and dilation > 1 else dilation
        layer = [Bottleneck(inplanes, planes, stride, first, downsample, norm)]
        inplanes = planes * 4
        layer += [Bottleneck(inplanes, planes, 1, dilation, None, norm) for _ in range(blocks - 1)]
        setattr(module, f"layer{index}", nn.Sequential(*layer))


class ConvModule(nn.Module):
    """mmcv's ConvModule: conv (no bias) → ``bn`` → ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class MmsegCCNet(nn.Module):
    """mmseg's EncoderDecoder with ResNetV1c, CCHead and the auxiliary FCNHead (eval)."""

    def __init__(self, depth, num_classes, channels, aux_channels, recurrence=2) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        )  # fmt: skip
        _layers(self.backbone, depth, 64, nn.BatchNorm2d, contract=True)
        self.decode_head = nn.Module()
        self.decode_head.convs = nn.Sequential(
            ConvModule(2048, channels, 3), ConvModule(channels, channels, 3)
        )
        self.decode_head.cca = MmcvCrissCross(channels)
        self.decode_head.conv_cat = ConvModule(2048 + channels, channels, 3)
        self.decode_head.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.auxiliary_head = nn.Module()
        self.auxiliary_head.convs = nn.Sequential(ConvModule(1024, aux_channels, 3))
        self.auxiliary_head.conv_seg = nn.Conv2d(aux_channels, num_classes, 1)
        self.recurrence = recurrence

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(decode logits, auxiliary logits) at 1/8."""
        b = self.backbone
        x = F.max_pool2d(b.stem(x), 3, 2, 1)
        c3 = b.layer3(b.layer2(b.layer1(x)))
        c4 = b.layer4(c3)
        head = self.decode_head
        out = head.convs[0](c4)
        for _ in range(self.recurrence):
            out = head.cca(out)
        out = head.convs[1](out)
        out = head.conv_seg(head.conv_cat(torch.cat([c4, out], dim=1)))
        aux = self.auxiliary_head.conv_seg(self.auxiliary_head.convs(c3))
        return out, aux


class OfficialCCNet(nn.Module):
    """The official ``networks/ccnet.py`` ResNet + RCCAModule + dsn (eval; InPlaceABN)."""

    def __init__(self, depth, num_classes, recurrence=2) -> None:
        super().__init__()
        backbone_norm = lambda c: InPlaceABN(c, "identity")  # noqa: E731
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = backbone_norm(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 1, 1, bias=False)
        self.bn2 = backbone_norm(64)
        self.conv3 = nn.Conv2d(64, 128, 3, 1, 1, bias=False)
        self.bn3 = backbone_norm(128)
        _layers(self, depth, 128, backbone_norm, contract=False)
        inter = 2048 // 4
        self.head = nn.Module()
        self.head.conva = nn.Sequential(
            nn.Conv2d(2048, inter, 3, padding=1, bias=False), InPlaceABN(inter)
        )
        self.head.cca = OfficialCrissCross(inter)
        self.head.convb = nn.Sequential(
            nn.Conv2d(inter, inter, 3, padding=1, bias=False), InPlaceABN(inter)
        )
        self.head.bottleneck = nn.Sequential(
            nn.Conv2d(2048 + inter, 512, 3, padding=1, bias=False), InPlaceABN(512),
            nn.Dropout2d(0.1), nn.Conv2d(512, num_classes, 1),
        )  # fmt: skip
        self.dsn = nn.Sequential(
            nn.Conv2d(1024, 512, 3, padding=1), InPlaceABN(512),
            nn.Dropout2d(0.1), nn.Conv2d(512, num_classes, 1),
        )  # fmt: skip
        self.recurrence = recurrence

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(head logits, dsn logits) at 1/8 of a BGR 0–255 mean-subtracted input."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        x = F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
        c3 = self.layer3(self.layer2(self.layer1(x)))
        dsn = self.dsn(c3)
        c4 = self.layer4(c3)
        out = self.head.conva(c4)
        for _ in range(self.recurrence):
            out = self.head.cca(out)
        out = self.head.convb(out)
        return self.head.bottleneck(torch.cat([c4, out], dim=1)), dsn


def randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and non-trivial norm statistics (negative norm weights included, so
    that InPlaceABN's |weight| matters), gammas away from 0; eval mode, float64."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean") or name.endswith("bias"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            elif tensor.dim() <= 1:  # norm weights and gammas
                sign = torch.randint(0, 2, tensor.shape, generator=gen) * 2 - 1
                tensor.copy_(sign * (torch.rand(tensor.shape, generator=gen) * 0.5 + 0.5))
            else:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2 / fan_in) ** 0.5)
    return net.double().eval()
