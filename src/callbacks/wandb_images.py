"""W&B: a few validation predictions as mask overlays, the per-class IoU table, image files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning import Callback
from pytorch_lightning.loggers import WandbLogger
from torch import Tensor

from src.data.clips import labelled_frame


def wandb_logger(trainer: pl.Trainer) -> WandbLogger | None:
    """The trainer's W&B logger, or None when W&B is not among its loggers."""
    return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)


def log_image_files(trainer: pl.Trainer, images: Mapping[str, str | Path]) -> bool:
    """Log image files (e.g. evaluation plots) as ``wandb.Image`` under their keys.

    Does nothing (and returns False) without a W&B logger or off rank 0, so entry points
    call it unconditionally.
    """
    logger = wandb_logger(trainer)
    if logger is None or not trainer.is_global_zero or not images:
        return False
    import wandb

    payload = {key: wandb.Image(str(path), caption=Path(path).name) for key, path in images.items()}
    logger.log_metrics(payload, step=trainer.global_step)
    return True


def to_uint8_image(image: Tensor) -> np.ndarray:
    """A normalised C×H×W float image as H×W×3 uint8, stretched to its own min–max range.

    Stretching needs no knowledge of the dataset's mean/std and is only for display.
    """
    image = image.detach().float().cpu()
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    low, high = image.min(), image.max()
    image = (image - low) / (high - low).clamp(min=1e-6)
    return (image[:3] * 255).round().byte().permute(1, 2, 0).numpy()


def clip_target(trainer: pl.Trainer, pl_module: pl.LightningModule) -> str:
    """Where the labelled frame sits in the clips of a video run: the model's
    ``target_frame`` (the frame it predicts), else the data module's ``clip.target``."""
    target = getattr(getattr(pl_module, "net", None), "target_frame", None)
    if target is None:
        clip = getattr(getattr(trainer, "datamodule", None), "clip", None)
        target = getattr(clip, "target", None)
    if target is None:
        raise ValueError(
            "a batch of clips (B, T, C, H, W), but neither the model (target_frame) nor the "
            "data (data.clip.target) says which frame of a clip is labelled"
        )
    return target


class WandbSegmentationLogger(Callback):
    """After each validation, log ``num_images`` overlays and the per-class IoU to W&B.

    Each overlay is a ``wandb.Image`` with ``prediction`` and ``ground_truth`` masks labelled
    with the class names (W&B draws them as toggleable layers); for clips, the image is the
    clip's labelled frame (:func:`clip_target`), the one the mask and prediction are of.
    Without a W&B logger this callback does nothing, so it can stay in the default callbacks.
    """

    def __init__(self, num_images: int = 4) -> None:
        if num_images < 0:
            raise ValueError(f"callbacks.wandb_images.num_images must be >= 0; got {num_images}")
        self.num_images = num_images
        self._samples: list[dict[str, Any]] = []

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._samples = []

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Mapping[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self._active(trainer) or len(self._samples) >= self.num_images:
            return
        if not isinstance(outputs, Mapping) or "preds" not in outputs:
            return
        images = batch["image"]
        if images.dim() == 5:  # clips: the prediction and the mask are the labelled frame's
            images = labelled_frame(images, clip_target(trainer, pl_module))
        names: Sequence[str] = batch.get("name") or [""] * len(images)
        for image, mask, pred, name in zip(images, batch["mask"], outputs["preds"], names):
            if len(self._samples) >= self.num_images:
                break
            self._samples.append(
                {
                    "image": to_uint8_image(image),
                    "mask": mask.detach().cpu().numpy().astype(np.uint8),
                    "pred": pred.detach().cpu().numpy().astype(np.uint8),
                    "name": str(name),
                }
            )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._active(trainer):
            return
        import wandb

        class_names = list(pl_module.hparams.get("class_names") or [])
        labels = dict(enumerate(class_names))
        labels[int(pl_module.hparams.ignore_index)] = "ignore"
        payload: dict[str, Any] = {}
        if self._samples:
            payload["val/predictions"] = [
                wandb.Image(
                    s["image"],
                    masks={
                        "prediction": {"mask_data": s["pred"], "class_labels": labels},
                        "ground_truth": {"mask_data": s["mask"], "class_labels": labels},
                    },
                    caption=s["name"],
                )
                for s in self._samples
            ]
        per_class = getattr(pl_module, "per_class_iou", {}).get("val")
        if per_class:
            rows = [[name, _finite_or_none(v)] for name, v in per_class.items()]
            payload["val/per_class_iou"] = wandb.Table(columns=["class", "IoU"], data=rows)
        if payload:
            wandb_logger(trainer).log_metrics(payload, step=trainer.global_step)
        self._samples = []

    def _active(self, trainer: pl.Trainer) -> bool:
        """Log only on rank 0, outside the sanity check, when a W&B logger exists."""
        return (
            trainer.is_global_zero
            and not trainer.sanity_checking
            and wandb_logger(trainer) is not None
        )


def _finite_or_none(value: float | Tensor) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
