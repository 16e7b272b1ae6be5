"""InstanceSegmentationModule: trains a torchvision-style Mask R-CNN, scores COCO box/mask AP.

The optimiser is the Mask R-CNN 1x recipe: SGD (lr 0.02 for 16 images, momentum 0.9, weight
decay 1e-4), linear warmup from 0.001× over the first 1000 iterations, then ×0.1 at 2/3 and
8/9 of training (or a poly decay). Validation and test score every detection with
torchmetrics' ``MeanAveragePrecision`` on the pycocotools backend, i.e. COCOeval itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn
from torchmetrics import MaxMetric
from torchmetrics.detection import MeanAveragePrecision

from src.core.module import TaskModule, class_names_for, metric_key, plain
from src.core.optim import WarmupSchedule

IOU_TYPES = ("bbox", "segm")
TRAIN_KEYS = ("boxes", "labels", "masks")
"""The target entries the detector trains on (the rest are for evaluation)."""


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


class InstanceSegmentationModule(TaskModule):
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
        head_lr_mult: float = 1.0,
        exempt_norm_and_gamma: bool = False,
        mask_threshold: float = 0.5,
        class_metrics: bool = False,
    ) -> None:
        super().__init__(net, num_classes, lr, momentum, weight_decay, head_lr_mult)
        class_names = class_names_for(num_classes, class_names)
        milestones = [float(m) for m in plain(milestones)]
        # fail now, not at the first training step, on settings the schedule rejects
        WarmupSchedule(1, warmup_steps, warmup_factor, schedule, milestones, gamma, poly_power)
        self.save_hyperparameters(ignore=["net"], logger=False)
        self.val_map = coco_map(class_metrics)
        self.test_map = coco_map(class_metrics)
        # Persistent, so a resumed run remembers the best mask AP reached before the restart.
        self.val_segm_map_best = MaxMetric()
        self.val_segm_map_best.persistent(True)
        # What the app's results.json reads: semantic IoU has no meaning here (AP is logged).
        self.per_class_iou: dict[str, dict[str, float]] = {}

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
        self.log_learning_rates(size)
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

    def lr_schedule(self, total_steps: int) -> WarmupSchedule:
        """The 1x recipe: linear warmup, then step (or poly) decay, every iteration."""
        hp = self.hparams
        return WarmupSchedule(
            total_steps,
            hp.warmup_steps,
            hp.warmup_factor,
            hp.schedule,
            hp.milestones,
            hp.gamma,
            hp.poly_power,
        )

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
