"""Mask R-CNN on a timm ResNet with RCCA / non-local / nothing after stage 4, and its FPN."""

from __future__ import annotations

import pytest
import timm
import torch
from instance_helpers import TINY_DETECTOR
from torchvision.models.detection import maskrcnn_resnet50_fpn
from torchvision.ops.misc import FrozenBatchNorm2d

from src.models.context import build_context
from src.models.mask_rcnn import RCCAMaskRCNN, TimmFPNBackbone, create_body


def test_stage4_context_variants():
    x = torch.randn(2, 16, 5, 7)
    for context, recurrence in (("rcca", 2), ("nonlocal", 2), ("none", 2), ("rcca", 0)):
        module = build_context(context, 16, recurrence).eval()
        torch.testing.assert_close(module(x), x)  # gamma / the BN scale start at 0: identity
    assert not list(build_context("none", 16).parameters())  # the plain Mask R-CNN
    assert not any(p.requires_grad for p in build_context("rcca", 16, 0).parameters())
    with pytest.raises(ValueError, match="model.context"):
        TimmFPNBackbone("resnet10t", context="aspp")


def test_rcca_recurrence_shares_one_module():
    torch.manual_seed(0)
    once, twice = build_context("rcca", 8, 1), build_context("rcca", 8, 2)
    twice.load_state_dict(once.state_dict())
    with torch.no_grad():
        once.cca.gamma.fill_(0.5)
        twice.cca.gamma.fill_(0.5)
    x = torch.randn(1, 8, 6, 5)
    torch.testing.assert_close(twice(x), once(once(x)))
    assert sum(p.numel() for p in once.parameters()) == sum(p.numel() for p in twice.parameters())


def test_backbone_pyramid_with_context_on_stage4():
    backbone = TimmFPNBackbone("resnet10t", context="rcca", recurrence=2, out_channels=16)
    seen = []
    backbone.context.register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
    features = backbone(torch.randn(1, 3, 64, 96))
    assert list(features) == ["0", "1", "2", "3", "pool"]
    assert [tuple(f.shape[-2:]) for f in features.values()] == [
        (16, 24), (8, 12), (4, 6), (2, 3), (1, 2),
    ]  # fmt: skip
    assert all(f.shape[1] == 16 for f in features.values()) and backbone.out_channels == 16
    assert seen == [torch.Size([1, 512, 2, 3])]  # stage 4 (stride 32, 512 channels)


def test_frozen_stages_and_batchnorm():
    backbone = TimmFPNBackbone("resnet10t", trainable_stages=3, freeze_bn=True)
    body = backbone.body
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    trains = {name: any(p.requires_grad for p in child.parameters())
              for name, child in body.named_children() if list(child.parameters())}  # fmt: skip
    assert trains == {"conv1": False, "layer1": False, "layer2": True, "layer3": True,
                      "layer4": True}  # fmt: skip
    everything = TimmFPNBackbone("resnet10t", trainable_stages=5, freeze_bn=False)
    assert all(p.requires_grad for p in everything.parameters())
    with pytest.raises(ValueError, match="trainable_stages"):
        TimmFPNBackbone("resnet10t", trainable_stages=6)


def test_local_weights_are_loaded_and_checked(tmp_path):
    source = timm.create_model("resnet10t")
    path = tmp_path / "resnet10t.pth"
    torch.save(source.state_dict(), path)
    body = create_body("resnet10t", path)
    expected = source.state_dict()
    for key, value in body.state_dict().items():
        torch.testing.assert_close(value, expected[key])
    other = tmp_path / "resnet18d.pth"
    torch.save(timm.create_model("resnet18d").state_dict(), other)
    with pytest.raises(ValueError, match="does not fit"):
        create_body("resnet10t", other)
    with pytest.raises(FileNotFoundError):
        create_body("resnet10t", tmp_path / "missing.pth")


def test_non_resnet_backbones_are_refused():
    with pytest.raises(ValueError, match="not a timm model"):
        create_body("resnet_does_not_exist")
    with pytest.raises(ValueError, match="ResNet-family"):
        create_body("mobilenetv3_small_050")


def _targets():
    masks = torch.zeros(2, 64, 80, dtype=torch.uint8)
    masks[0, 5:30, 5:30] = 1
    masks[1, 20:45, 40:70] = 1
    return [
        {"boxes": torch.tensor([[5.0, 5, 30, 30], [40, 20, 70, 45]]),
         "labels": torch.tensor([1, 3]), "masks": masks},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
         "masks": torch.zeros(0, 48, 64, dtype=torch.uint8)},
    ]  # fmt: skip


def test_mask_rcnn_trains_and_detects():
    torch.manual_seed(0)
    net = RCCAMaskRCNN(num_classes=4, context="rcca", recurrence=2, **TINY_DETECTOR)
    images = [torch.rand(3, 64, 80), torch.rand(3, 48, 64)]
    losses = net(images, _targets())
    assert set(losses) == {
        "loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg",
    }  # fmt: skip
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    gamma = net.backbone.context.cca.gamma
    assert net.no_weight_decay() == {"backbone.context.cca.gamma"}
    assert gamma.grad is not None and gamma.grad.abs().item() > 0  # RCCA is in the graph
    net.eval()
    with torch.no_grad():
        outputs = net(images)
    for image, out in zip(images, outputs):
        count = len(out["scores"])
        assert out["boxes"].shape == (count, 4) and out["labels"].shape == (count,)
        assert out["masks"].shape == (count, 1, *image.shape[1:])  # at the input's size
        assert count <= TINY_DETECTOR["box_detections_per_img"]
        assert ((out["labels"] >= 1) & (out["labels"] <= 3)).all()


def test_baseline_is_torchvisions_mask_rcnn_architecture():
    """Without context, the detector has exactly torchvision's maskrcnn_resnet50_fpn
    parameters (same shapes in backbone, FPN, RPN and heads)."""
    ours = RCCAMaskRCNN(91, "resnet50", context="none", trainable_stages=5, freeze_bn=False)
    reference = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)

    def shapes(model: torch.nn.Module) -> list[tuple[int, ...]]:
        return sorted(tuple(p.shape) for p in model.parameters())

    assert shapes(ours.backbone) == shapes(reference.backbone)
    assert shapes(ours.rpn) == shapes(reference.rpn)
    assert shapes(ours.roi_heads) == shapes(reference.roi_heads)
    rcca = RCCAMaskRCNN(91, "resnet50", context="rcca", trainable_stages=5, freeze_bn=False)
    extra = sum(p.numel() for p in rcca.parameters()) - sum(p.numel() for p in ours.parameters())
    assert extra == 2 * (2048 * 256 + 256) + 2048 * 2048 + 2048 + 1  # Q, K, V and gamma
