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

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, DistributedSampler
from torchmetrics import MaxMetric, Metric
from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex

from src.core.inference import InferenceConfig, predict_logits_with

NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm,
)


class NonFiniteLossError(FloatingPointError):
    """A training loss was NaN or infinite (and ``module.skip_nonfinite`` is false)."""


class PolyDecay:
    """The poly schedule's lr factor ``(1 - step / total_steps) ** power`` (0 at the end).

    A callable object rather than a lambda, so ``LambdaLR.state_dict`` saves it and a resumed
    run continues the same curve (``SegmentationModule`` re-aims it at the trainer's current
    ``max_steps`` when training starts, so a resume with a longer run does not stall at 0).
    """

    def __init__(self, total_steps: int, power: float = 0.9) -> None:
        if total_steps < 1:
            raise ValueError(f"poly decay needs at least one step; got {total_steps}")
        self.total_steps = int(total_steps)
        self.power = float(power)

    def __call__(self, step: int) -> float:
        progress = min(step, self.total_steps) / self.total_steps
        return (1.0 - progress) ** self.power


def parameter_groups(
    net: nn.Module,
    lr: float,
    weight_decay: float,
    head_lr_mult: float = 1.0,
    exempt_norm_and_gamma: bool = False,
) -> list[dict[str, Any]]:
    """SGD parameter groups: the backbone at ``lr``, everything else at ``lr * head_lr_mult``.

    With ``exempt_norm_and_gamma``, normalisation weights/biases and the attention's ``gamma``
    scalars get no weight decay (decaying them only pulls BN scales and γ towards zero).
    """
    backbone = getattr(net, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise TypeError(f"{type(net).__name__} has no `backbone` module for the parameter groups")
    backbone_ids = {id(p) for p in backbone.parameters()}
    exempt_ids = _norm_and_gamma_ids(net) if exempt_norm_and_gamma else set()

    groups: dict[str, dict[str, Any]] = {}
    for param in net.parameters():
        if not param.requires_grad:
            continue
        part = "backbone" if id(param) in backbone_ids else "head"
        exempt = id(param) in exempt_ids
        name = f"{part}_no_decay" if exempt else part
        group = groups.setdefault(
            name,
            {
                "name": name,
                "params": [],
                "lr": lr * (1.0 if part == "backbone" else head_lr_mult),
                "weight_decay": 0.0 if exempt else weight_decay,
            },
        )
        group["params"].append(param)
    order = ("backbone", "backbone_no_decay", "head", "head_no_decay")
    return [groups[name] for name in order if name in groups]


def _norm_and_gamma_ids(net: nn.Module) -> set[int]:
    """Ids of the parameters of normalisation layers and of parameters named ``gamma``."""
    ids = set()
    for module in net.modules():
        if isinstance(module, NORM_TYPES):
            ids.update(id(p) for p in module.parameters(recurse=False))
    for name, param in net.named_parameters():
        if name.rsplit(".", 1)[-1] == "gamma":
            ids.add(id(param))
    return ids


def metric_key(class_name: str) -> str:
    """A class name as a logger-friendly key part ("traffic light" -> "traffic_light")."""
    return re.sub(r"[^0-9A-Za-z_\-]+", "_", class_name).strip("_") or "class"


def _plain(value: Any) -> Any:
    """OmegaConf containers as plain Python, so hparams never hold a ListConfig (resume)."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


class SegmentationModule(pl.LightningModule):
    """Training, validation and test of a CCNet-style model that returns a dict of logits.

    ``net`` and ``criterion`` are modules (kept out of the hyperparameters, so checkpoints
    load without Hydra); everything else is plain values that ``save_hyperparameters`` keeps.
    ``model_config`` is the ``model:`` config the net was built from: saved with the
    hyperparameters, so a checkpoint says which backbone and head it holds weights for.
    """

    def __init__(
        self,
        net: nn.Module,
        criterion: nn.Module,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        ignore_index: int = 255,
        flip_pairs: Sequence[Sequence[int]] = (),
        inference: Mapping[str, Any] | None = None,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        poly_power: float = 0.9,
        head_lr_mult: float = 1.0,
        exempt_norm_and_gamma: bool = False,
        skip_nonfinite: bool = False,
        model_config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        model_config = dict(_plain(model_config) or {})
        class_names = list(_plain(class_names) or [f"class_{i}" for i in range(num_classes)])
        flip_pairs = [list(pair) for pair in _plain(flip_pairs)]
        inference = dict(_plain(inference) or {})
        _check_args(num_classes, class_names, net, lr, momentum, weight_decay, head_lr_mult)
        self.save_hyperparameters(ignore=["net", "criterion"], logger=False)

        self.net = net
        self.criterion = criterion
        try:
            self.inference = InferenceConfig(**inference)
        except TypeError as err:
            raise ValueError(
                f"inference: {err} (known keys: mode, crop_size, stride, "
                "scales, flip, tile_batch_size)"
            ) from err
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
        self.checkpoint_global_step: int | None = None
        self.skipped_batches = 0

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """The net's outputs (``out`` logits at 1/8 resolution, plus ``aux`` in training)."""
        return self.net(images)

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor | None:
        images, masks = batch["image"], batch["mask"].long()
        skip = self.hparams.skip_nonfinite
        buffers = [(b, b.detach().clone()) for b in self.net.buffers()] if skip else []
        losses = self.criterion(self.net(images), masks)
        size = images.shape[0]
        if not self._finite_on_every_process(losses["loss"]):
            self._handle_nonfinite(losses, batch_idx, buffers)
            self.log("train/skipped_batches", float(self.skipped_batches), batch_size=size)
            return None  # Lightning skips backward and the update for this batch
        if skip:
            self.log("train/skipped_batches", float(self.skipped_batches), batch_size=size)
        for name, value in losses.items():
            self.log(f"train/{name}", value, prog_bar=name == "loss", batch_size=size)
        optimizer = self.trainer.optimizers[0]
        self.log("train/lr", optimizer.param_groups[0]["lr"], batch_size=size)
        if self.hparams.head_lr_mult != 1.0:
            self.log("train/lr_head", optimizer.param_groups[-1]["lr"], batch_size=size)
        return losses["loss"]

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, (self.val_iou, self.val_confmat), "val")

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, (self.test_iou, self.test_confmat), "test")

    def on_train_start(self) -> None:
        """End the poly curve at this trainer's last step, also when resuming a run that had
        a shorter ``max_steps`` (its restored schedule would otherwise sit at lr 0)."""
        total = int(self.trainer.estimated_stepping_batches)
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if not isinstance(scheduler, LambdaLR):
                continue
            groups = scheduler.optimizer.param_groups
            for group, base_lr, factor in zip(groups, scheduler.base_lrs, scheduler.lr_lambdas):
                if isinstance(factor, PolyDecay):
                    factor.total_steps = total
                    group["lr"] = base_lr * factor(scheduler.last_epoch)

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
        checkpoint["skipped_batches"] = self.skipped_batches

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Remember the step the loaded checkpoint was saved at (eval reports it)."""
        self.checkpoint_global_step = checkpoint.get("global_step")
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

    def configure_optimizers(self) -> dict[str, Any]:
        """SGD over the backbone/head groups, poly decay stepped every iteration."""
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total) or total < 1:
            raise ValueError(
                "the poly schedule needs a finite length: set trainer.max_steps "
                f"(the trainer estimates {total} steps)"
            )
        hp = self.hparams
        groups = parameter_groups(
            self.net, hp.lr, hp.weight_decay, hp.head_lr_mult, hp.exempt_norm_and_gamma
        )
        optimizer = torch.optim.SGD(
            groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
        )
        scheduler = LambdaLR(optimizer, PolyDecay(int(total), hp.poly_power))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }

    def _evaluate(
        self, batch: Mapping[str, Tensor], metrics: Sequence[Metric], stage: str
    ) -> dict[str, Tensor]:
        """Full-resolution logits (whole / sliding, scales, flips) -> metric states (IoU,
        confusion counts) and CE loss."""
        images, masks = batch["image"], batch["mask"].long()
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
            self._mean_ce(logits, masks),
            sync_dist=True,
            batch_size=images.shape[0],
        )
        return {"preds": preds}

    def _mean_ce(self, logits: Tensor, masks: Tensor) -> Tensor:
        """Cross-entropy over the labelled pixels (0 when an image has none, never NaN)."""
        ignore = self.hparams.ignore_index
        total = F.cross_entropy(logits, masks, ignore_index=ignore, reduction="sum")
        return total / (masks != ignore).sum().clamp(min=1)

    def _log_iou(self, metric: MulticlassJaccardIndex, stage: str) -> Tensor:
        """Log mIoU and per-class IoU (classes with no pixel in target or prediction: NaN).

        The mean skips those NaN classes, exactly as the official Cityscapes evaluation does.
        """
        per_class = metric.compute()
        metric.reset()
        miou = _nanmean(per_class)
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


def _nanmean(values: Tensor) -> Tensor:
    """The mean of the finite entries; NaN when there are none."""
    valid = ~values.isnan()
    if not valid.any():
        return values.new_tensor(float("nan"))
    return values[valid].mean()


def _check_args(
    num_classes: int,
    class_names: Iterable[str],
    net: nn.Module,
    lr: float,
    momentum: float,
    weight_decay: float,
    head_lr_mult: float,
) -> None:
    """Clear errors, naming the config key, for settings that cannot train."""
    names = list(class_names)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2; got {num_classes!r}")
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} names for {num_classes} classes")
    net_classes = getattr(net, "num_classes", num_classes)
    if net_classes != num_classes:
        raise ValueError(f"the model predicts {net_classes} classes, the data has {num_classes}")
    for key, value in (("module.lr", lr), ("module.head_lr_mult", head_lr_mult)):
        if not value > 0:
            raise ValueError(f"{key} must be positive; got {value!r}")
    for key, value in (("module.momentum", momentum), ("module.weight_decay", weight_decay)):
        if not value >= 0:
            raise ValueError(f"{key} must be >= 0; got {value!r}")
