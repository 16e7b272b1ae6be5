"""InstanceSegmentationModule: trains a torchvision-style Mask R-CNN, scores COCO box/mask AP.

The optimiser is the Mask R-CNN 1x recipe: SGD (lr 0.02 for 16 images, momentum 0.9, weight
decay 1e-4), linear warmup from 0.001× over the first 1000 iterations, then ×0.1 at 2/3 and
8/9 of training (or a poly decay). Validation and test score every detection with
torchmetrics' ``MeanAveragePrecision`` on the pycocotools backend, i.e. COCOeval itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR
from torchmetrics import MaxMetric
from torchmetrics.detection import MeanAveragePrecision

from src.tasks.semantic.module import metric_key

SCHEDULES = ("step", "poly")
IOU_TYPES = ("bbox", "segm")
TRAIN_KEYS = ("boxes", "labels", "masks")
"""The target entries the detector trains on (the rest are for evaluation)."""


class WarmupSchedule:
    """The lr factor of a step: linear warmup from ``warmup_factor`` to 1 over
    ``warmup_steps``, times a step decay (``gamma`` at each milestone, given as fractions of
    ``total_steps``) or a poly decay ``(1 - step / total) ** power``.

    A callable object, not a lambda, so ``LambdaLR.state_dict`` saves it and resuming works.
    """

    def __init__(
        self,
        total_steps: int,
        warmup_steps: int = 1000,
        warmup_factor: float = 0.001,
        schedule: str = "step",
        milestones: Sequence[float] = (2 / 3, 8 / 9),
        gamma: float = 0.1,
        power: float = 0.9,
    ) -> None:
        if total_steps < 1:
            raise ValueError(f"the schedule needs at least one step; got {total_steps}")
        if schedule not in SCHEDULES:
            raise ValueError(f"module.schedule must be one of {SCHEDULES}; got {schedule!r}")
        if any(not 0 < m < 1 for m in milestones):
            raise ValueError(
                f"module.milestones are fractions of training in (0, 1); got {milestones}"
            )
        if warmup_steps < 0 or not 0 < warmup_factor <= 1:
            raise ValueError(
                f"need module.warmup_steps >= 0 and 0 < module.warmup_factor <= 1; "
                f"got {warmup_steps}, {warmup_factor}"
            )
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = float(warmup_factor)
        self.schedule = schedule
        self.milestone_steps = sorted(round(m * self.total_steps) for m in milestones)
        self.gamma = float(gamma)
        self.power = float(power)

    def __call__(self, step: int) -> float:
        if self.schedule == "step":
            decay = self.gamma ** sum(step >= m for m in self.milestone_steps)
        else:
            decay = (1.0 - min(step, self.total_steps) / self.total_steps) ** self.power
        if step >= self.warmup_steps:
            return decay
        alpha = step / self.warmup_steps
        return (self.warmup_factor * (1.0 - alpha) + alpha) * decay


def _plain(value: Any) -> Any:
    """OmegaConf containers as plain Python, so hparams never hold a ListConfig (resume)."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def detections_for_metric(outputs: Sequence[Mapping[str, Tensor]], mask_threshold: float):
    """Detector outputs as ``MeanAveragePrecision`` predictions: soft (N, 1, H, W) masks
    binarised at ``mask_threshold`` (COCO's and torchvision's 0.5)."""
    return [
        {
            "boxes": out["boxes"],
            "scores": out["scores"],
            "labels": out["labels"],
            "masks": out["masks"][:, 0] > mask_threshold,
        }
        for out in outputs
    ]


def targets_for_metric(targets: Sequence[Mapping[str, Tensor]]) -> list[dict[str, Tensor]]:
    """Evaluation targets as ``MeanAveragePrecision`` ground truth (crowds and json areas kept,
    so it scores exactly as COCOeval on the annotation file)."""
    return [
        {
            "boxes": t["boxes"],
            "labels": t["labels"],
            "masks": t["masks"].bool(),
            "iscrowd": t["iscrowd"],
            "area": t["area"],
        }
        for t in targets
    ]


def coco_map(class_metrics: bool = False) -> MeanAveragePrecision:
    """COCO box and mask AP/AR computed by pycocotools' COCOeval (xyxy boxes)."""
    return MeanAveragePrecision(
        box_format="xyxy",
        iou_type=IOU_TYPES,
        backend="pycocotools",
        class_metrics=class_metrics,
    )


class InstanceSegmentationModule(pl.LightningModule):
    """Training, validation and test of a detector that returns torchvision's loss dict in
    training and a list of ``boxes/scores/labels/masks`` dicts in evaluation.

    Logs ``train/loss`` (and each loss term), ``{val,test}/{bbox,segm}_mAP`` with the other
    COCO numbers (``_mAP_50``, ``_mAP_75``, ``_mAP_small``, …, ``_mAR_100``; −1 where COCOeval
    has nothing to score), ``val/segm_mAP_best``, and per-class AP with ``class_metrics``.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        lr: float = 0.02,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        warmup_steps: int = 1000,
        warmup_factor: float = 0.001,
        schedule: str = "step",
        milestones: Sequence[float] = (2 / 3, 8 / 9),
        gamma: float = 0.1,
        poly_power: float = 0.9,
        mask_threshold: float = 0.5,
        class_metrics: bool = False,
    ) -> None:
        super().__init__()
        class_names = list(_plain(class_names) or [f"class_{i}" for i in range(num_classes)])
        milestones = [float(m) for m in _plain(milestones)]
        if len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names for {num_classes} classes")
        net_classes = getattr(net, "num_classes", num_classes)
        if net_classes != num_classes:
            raise ValueError(
                f"the model predicts {net_classes} classes, the data has {num_classes}"
            )
        if not lr > 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(
                "need module.lr > 0, module.momentum >= 0 and module.weight_decay >= 0; got "
                f"{lr}, {momentum}, {weight_decay}"
            )
        self.save_hyperparameters(ignore=["net"], logger=False)
        self.net = net
        self.val_map = coco_map(class_metrics)
        self.test_map = coco_map(class_metrics)
        # Persistent, so a resumed run remembers the best mask AP reached before the restart.
        self.val_segm_map_best = MaxMetric()
        self.val_segm_map_best.persistent(True)
        # What the app's results.json reads: semantic IoU has no meaning here (AP is logged).
        self.per_class_iou: dict[str, dict[str, float]] = {}
        self.checkpoint_global_step: int | None = None

    def forward(self, images: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        """Detections of a list of 3×H×W images in [0, 1], at each image's own size."""
        return self.net(list(images))

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        images = batch["images"]
        targets = [{k: t[k] for k in TRAIN_KEYS} for t in batch["targets"]]
        losses = self.net(images, targets)
        loss = sum(losses.values())
        size = len(images)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=size)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=size)
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._update(batch, self.val_map)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._update(batch, self.test_map)

    def on_validation_epoch_end(self) -> None:
        segm_map = self._log_map(self.val_map, "val")
        if not self.trainer.sanity_checking:
            self.val_segm_map_best.update(segm_map)
            self.log("val/segm_mAP_best", self.val_segm_map_best.compute(), sync_dist=True)

    def on_test_epoch_end(self) -> None:
        self._log_map(self.test_map, "test")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Remember the step the loaded checkpoint was saved at (eval reports it)."""
        self.checkpoint_global_step = checkpoint.get("global_step")

    def configure_optimizers(self) -> dict[str, Any]:
        """SGD over the trainable parameters; warmup + step/poly decay every iteration."""
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total) or total < 1:
            raise ValueError(
                "the lr schedule needs a finite length: set trainer.max_steps "
                f"(the trainer estimates {total} steps)"
            )
        hp = self.hparams
        params = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(
            params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
        )
        schedule = WarmupSchedule(
            int(total),
            hp.warmup_steps,
            hp.warmup_factor,
            hp.schedule,
            hp.milestones,
            hp.gamma,
            hp.poly_power,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": LambdaLR(optimizer, schedule),
                "interval": "step",
                "frequency": 1,
            },
        }

    def _update(self, batch: Mapping[str, Any], metric: MeanAveragePrecision) -> None:
        outputs = self.net(batch["images"])
        metric.update(
            detections_for_metric(outputs, self.hparams.mask_threshold),
            targets_for_metric(batch["targets"]),
        )

    def _log_map(self, metric: MeanAveragePrecision, stage: str) -> Tensor:
        """Log COCO's AP/AR numbers for boxes and masks; returns the mask mAP."""
        results = metric.compute()
        metric.reset()
        for iou_type in IOU_TYPES:
            prefix = f"{iou_type}_"
            for key, value in results.items():
                if not key.startswith(prefix) or value.numel() != 1 or "per_class" in key:
                    continue
                name = key[len(prefix) :].replace("map", "mAP").replace("mar", "mAR")
                self.log(f"{stage}/{iou_type}_{name}", value.float(), sync_dist=True)
            if self.hparams.class_metrics:
                self._log_per_class(results, iou_type, stage)
        return results["segm_map"].float()

    def _log_per_class(self, results: Mapping[str, Tensor], iou_type: str, stage: str) -> None:
        """``{stage}/{iou_type}_AP/<class name>`` for every class scored."""
        labels = results["classes"].reshape(-1).tolist()
        values = results[f"{iou_type}_map_per_class"].reshape(-1).tolist()
        for label, value in zip(labels, values):
            name = metric_key(self.hparams.class_names[int(label)])
            self.log(f"{stage}/{iou_type}_AP/{name}", float(value), sync_dist=True)
