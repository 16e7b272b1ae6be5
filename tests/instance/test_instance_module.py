"""InstanceSegmentationModule: the lr schedule, and a few training steps with validation."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from instance_helpers import TINY_DETECTOR

from src.models.mask_rcnn import RCCAMaskRCNN
from src.tasks.instance.datamodule import InstanceDataModule
from src.tasks.instance.module import InstanceSegmentationModule


def test_module_checks_classes():
    net = RCCAMaskRCNN(num_classes=4, **TINY_DETECTOR)
    with pytest.raises(ValueError, match="predicts 4 classes"):
        InstanceSegmentationModule(net, num_classes=5)
    with pytest.raises(ValueError, match="class_names"):
        InstanceSegmentationModule(net, num_classes=4, class_names=["a", "b"])


def test_fit_logs_losses_and_coco_ap(fake_coco, tmp_path):
    pl.seed_everything(0)
    datamodule = InstanceDataModule(str(fake_coco), batch_size=1, seed=0)
    net = RCCAMaskRCNN(num_classes=datamodule.num_classes, **TINY_DETECTOR)
    module = InstanceSegmentationModule(
        net,
        num_classes=datamodule.num_classes,
        class_names=datamodule.class_names,
        lr=0.01,
        warmup_steps=2,
        class_metrics=True,
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=2,
        val_check_interval=2,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=datamodule)
    metrics = trainer.callback_metrics
    for name in ("loss", "loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness"):
        assert math.isfinite(metrics[f"train/{name}"].item())
    # step 1 (the lr logged last): half-way through the warmup, and past the first
    # milestone (round(2/3 x 2 steps) = 1): 0.01 x 0.5005 x 0.1
    assert metrics["train/lr"].item() == pytest.approx(0.01 * (0.001 * 0.5 + 0.5) * 0.1)
    for iou_type in ("bbox", "segm"):
        for key in ("mAP", "mAP_50", "mAP_75", "mAP_small", "mAR_100"):
            value = metrics[f"val/{iou_type}_{key}"].item()
            assert value == -1.0 or 0.0 <= value <= 1.0  # -1: COCOeval had nothing to score
    assert metrics["val/segm_mAP_best"].item() == metrics["val/segm_mAP"].item()
    assert module.per_class_iou == {}
    per_class = [k for k in metrics if k.startswith("val/segm_AP/")]
    # every class with ground truth in val is scored (class_metrics=True)
    assert set(per_class) == {f"val/segm_AP/{n}" for n in ("person", "car", "dog")}
    assert torch.isfinite(torch.tensor([metrics[k].item() for k in per_class])).all()
