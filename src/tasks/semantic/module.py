"""SegmentationModule: trains a segmentation net with SGD + poly decay, scores full-res IoU.

The optimiser is the CCNet recipe (SGD lr 0.01, momentum 0.9, weight decay 5e-4, poly decay
of power 0.9 stepped every iteration to the trainer's last step). Validation and test run the
shared :func:`src.core.inference.predict_logits` on full-resolution images, so the numbers logged
here are the numbers ``src.eval`` and ``src.predict`` reproduce.

A non-finite training loss stops the run with the step and the loss terms that were NaN/inf
(:class:`NonFiniteLossError`), or with ``skip_nonfinite=True`` skips the batch without a
trace (no update, BatchNorm statistics restored) and counts it as ``train/skipped_batches``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler
from torchmetrics import MaxMetric, Metric
from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex

from src.core.inference import (
    InferenceConfig,
    align_corners_of,
    check_flip_pairs,
    predict_logits_with,
)
from src.core.losses import cross_entropy
from src.core.module import TaskModule, class_names_for, metric_key, plain
from src.core.optim import PolyDecay
from src.data.base import IGNORE_INDEX


class NonFiniteLossError(FloatingPointError):
    """A training loss was NaN or infinite (and ``module.skip_nonfinite`` is false)."""


class SegmentationModule(TaskModule):
    """Training, validation and test of a CCNet-style model that returns a dict of logits.

    ``net`` and ``criterion`` are modules (kept out of the hyperparameters, so checkpoints
    load without Hydra); everything else is plain values that ``save_hyperparameters`` keeps.
    ``inference`` is an :class:`InferenceConfig` (or its plain values, as a checkpoint holds
    them), checked once when it was built. ``model_config`` is the ``model:`` config the net
    was built from: saved with the hyperparameters, so a checkpoint says which backbone and
    head it holds weights for.
    """

    def __init__(
        self,
        net: nn.Module,
        criterion: nn.Module,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        ignore_index: int = IGNORE_INDEX,
        flip_pairs: Sequence[Sequence[int]] = (),
        inference: InferenceConfig | Mapping[str, Any] | None = None,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        poly_power: float = 0.9,
        head_lr_mult: float = 1.0,
        exempt_norm_and_gamma: bool = False,
        skip_nonfinite: bool = False,
        model_config: Mapping[str, Any] | None = None,
        compile: bool | Mapping[str, Any] = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__(
            net, num_classes, lr, momentum, weight_decay, head_lr_mult, compile, channels_last
        )
        model_config = dict(plain(model_config) or {})
        class_names = class_names_for(num_classes, class_names)
        flip_pairs = [list(pair) for pair in check_flip_pairs(plain(flip_pairs), num_classes)]
        self.inference = InferenceConfig.from_config(inference)
        self.save_hyperparameters(ignore=["net", "criterion", "inference"], logger=False)
        self.hparams["inference"] = self.inference.as_dict()  # plain values in checkpoints
        self.criterion = criterion
        iou = dict(ignore_index=ignore_index, average="none", zero_division=float("nan"))
        self.val_iou = MulticlassJaccardIndex(num_classes, **iou)
        self.test_iou = MulticlassJaccardIndex(num_classes, **iou)
        # Pixel counts of the same predictions (rows: ground truth, columns: prediction), for
        # the confusion-matrix plot that src.eval writes.
        self.val_confmat = MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index)
        self.test_confmat = MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index)
        # Persistent, so a resumed run remembers the best mIoU reached before the restart.
        self.val_miou_best = MaxMetric()
        self.val_miou_best.persistent(True)
        self.per_class_iou: dict[str, dict[str, float]] = {}
        self.confusion_matrix: dict[str, Tensor] = {}
        self.skipped_batches = 0

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """The net's outputs (``out`` logits at 1/8 resolution, plus ``aux`` in training)."""
        return self.net(images)

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor | None:
        images, masks = self.in_layout(batch["image"]), batch["mask"].long()
        skip = self.hparams.skip_nonfinite
        buffers = [(b, b.detach().clone()) for b in self.net.buffers()] if skip else []
        losses = self.criterion(self.net(images), masks, align_corners_of(self.net))
        size = images.shape[0]
        if not self._finite_on_every_process(losses["loss"]):
            self._handle_nonfinite(losses, batch_idx, buffers)
            self.log("train/skipped_batches", float(self.skipped_batches), batch_size=size)
            return None  # Lightning skips backward and the update for this batch
        if skip:
            self.log("train/skipped_batches", float(self.skipped_batches), batch_size=size)
        for name, value in losses.items():
            self.log(f"train/{name}", value, prog_bar=name == "loss", batch_size=size)
        self.log_learning_rates(size)
        return losses["loss"]

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, (self.val_iou, self.val_confmat), "val")

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, (self.test_iou, self.test_confmat), "test")

    def on_validation_start(self) -> None:
        warn_if_padded(self.trainer.val_dataloaders, "val")

    def on_test_start(self) -> None:
        warn_if_padded(self.trainer.test_dataloaders, "test")

    def on_validation_epoch_end(self) -> None:
        miou = self._log_iou(self.val_iou, "val")
        self._keep_confusion(self.val_confmat, "val")
        if self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking:
            self.val_miou_best.update(miou)
            self.log("val/mIoU_best", self.val_miou_best.compute(), sync_dist=True)

    def on_test_epoch_end(self) -> None:
        self._log_iou(self.test_iou, "test")
        self._keep_confusion(self.test_confmat, "test")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the count of skipped non-finite batches across a resume."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["skipped_batches"] = self.skipped_batches

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Remember the checkpoint's step (eval reports it) and the skipped-batch count."""
        super().on_load_checkpoint(checkpoint)
        self.skipped_batches = int(checkpoint.get("skipped_batches", 0))

    def _finite_on_every_process(self, loss: Tensor) -> bool:
        """Whether the loss is finite here and on every other process (all skip together:
        one process skipping its backward alone would leave DDP's gradient sync waiting)."""
        local_bad = not bool(torch.isfinite(loss.detach()).all())
        return not self.trainer.strategy.reduce_boolean_decision(local_bad, all=False)

    def _handle_nonfinite(
        self, losses: Mapping[str, Tensor], batch_idx: int, buffers: list[tuple[Tensor, Tensor]]
    ) -> None:
        """Stop with the step and the non-finite loss terms, or (skip mode) undo the batch's
        BatchNorm updates and count it."""
        bad = {k: v.item() for k, v in losses.items() if not bool(torch.isfinite(v).all())}
        where = f"step {self.global_step} (epoch {self.current_epoch}, batch {batch_idx})"
        values = ", ".join(f"train/{k}={v}" for k, v in bad.items()) or "on another process"
        if not self.hparams.skip_nonfinite:
            raise NonFiniteLossError(
                f"non-finite loss at training {where}: {values}. Lower module.lr, check this "
                "batch's data, or set module.skip_nonfinite=true to skip such batches."
            )
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        self.skipped_batches += 1
        rank_zero_warn(
            f"skipped the batch of training {where}: {values}; "
            f"{self.skipped_batches} batch(es) skipped so far"
        )

    def lr_schedule(self, total_steps: int) -> PolyDecay:
        """The CCNet recipe's poly decay, stepped every iteration."""
        return PolyDecay(total_steps, self.hparams.poly_power)

    def _evaluate(
        self, batch: Mapping[str, Tensor], metrics: Sequence[Metric], stage: str
    ) -> dict[str, Tensor]:
        """Full-resolution logits (whole / sliding, scales, flips) -> metric states (IoU,
        confusion counts) and CE loss."""
        images, masks = self.in_layout(batch["image"]), batch["mask"].long()
        logits = predict_logits_with(
            self.net, images, self.inference, self.hparams.flip_pairs, self.hparams.num_classes
        )
        if logits.shape[-2:] != masks.shape[-2:]:
            raise ValueError(
                f"{stage} logits are {tuple(logits.shape[-2:])} but masks are "
                f"{tuple(masks.shape[-2:])}: {stage} must run on full-resolution images"
            )
        preds = logits.argmax(dim=1)
        for metric in metrics:
            metric.update(preds, masks)
        self.log(
            f"{stage}/loss",
            cross_entropy(logits, masks, self.hparams.ignore_index),
            sync_dist=True,
            batch_size=images.shape[0],
        )
        return {"preds": preds}

    def _log_iou(self, metric: MulticlassJaccardIndex, stage: str) -> Tensor:
        """Log mIoU and per-class IoU (classes with no pixel in target or prediction: NaN).

        The mean skips those NaN classes, exactly as the official Cityscapes evaluation does.
        """
        per_class = metric.compute()
        metric.reset()
        miou = torch.nanmean(per_class)
        self.log(f"{stage}/mIoU", miou, prog_bar=True, sync_dist=True)
        for name, value in zip(self.hparams.class_names, per_class):
            self.log(f"{stage}/IoU/{metric_key(name)}", value, sync_dist=True)
        if not self.trainer.sanity_checking:
            values = per_class.tolist()
            self.per_class_iou[stage] = dict(zip(self.hparams.class_names, values))
        return miou

    def _keep_confusion(self, metric: MulticlassConfusionMatrix, stage: str) -> None:
        """Keep the epoch's confusion counts (summed over processes) for plots; reset."""
        counts = metric.compute()
        metric.reset()
        if not self.trainer.sanity_checking:
            self.confusion_matrix[stage] = counts.detach().cpu()


def warn_if_padded(loaders: DataLoader | Sequence[DataLoader] | None, stage: str) -> bool:
    """Warn (and return True) when a DistributedSampler pads the split with repeated samples.

    DistributedSampler makes every rank see the same number of samples by repeating the first
    ones; repeated images would count twice in the confusion matrix, so the mIoU of a
    multi-process run would differ from a single-process one. A split whose size divides by
    the number of processes is not padded.
    """
    if loaders is None:
        return False
    padded = False
    for loader in loaders if isinstance(loaders, Sequence) else [loaders]:
        sampler = getattr(loader, "sampler", None)
        if isinstance(sampler, DistributedSampler):
            size = len(sampler.dataset)
            if sampler.total_size > size:
                rank_zero_warn(
                    f"{stage}: DistributedSampler pads {size} samples to {sampler.total_size} "
                    f"over {sampler.num_replicas} processes; {sampler.total_size - size} "
                    "images count twice in the IoU. Use a split size divisible by the number "
                    "of processes for exact multi-process metrics."
                )
                padded = True
    return padded
