"""What every task's LightningModule shares: the checks, the optimiser and its schedule.

:class:`TaskModule` holds the net, checks the settings every task has (classes, lr, momentum,
weight decay), builds SGD over :func:`src.core.optim.parameter_groups` with a per-iteration
closed-form schedule (the subclass says which, in :meth:`TaskModule.lr_schedule`), re-aims
that schedule when a resumed run is longer, and remembers the step a loaded checkpoint was
saved at. A task wing subclasses it with its own steps and metrics.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from src.core.optim import parameter_groups, retarget_schedules

CONVERTED_KEY = "converted_from"
"""The checkpoint entry that marks a checkpoint converted from other weights (its source and
format): it holds the net's tensors and nothing of a training run."""


COMPILE_OPTIONS = ("mode", "fullgraph", "backend", "dynamic", "options")
"""The ``torch.compile`` arguments ``module.compile`` may set."""


def compile_options(value: bool | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``module.compile`` as ``torch.compile`` keyword arguments (None: not compiled)."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in COMPILE_OPTIONS]
        if unknown:
            raise ValueError(
                f"module.compile.{unknown[0]} is not a torch.compile argument "
                f"(known: {', '.join(COMPILE_OPTIONS)})"
            )
        return dict(value)
    raise ValueError(
        f"module.compile must be true, false or torch.compile arguments; got {value!r}"
    )


def plain(value: Any) -> Any:
    """OmegaConf containers as plain Python, so hparams never hold a ListConfig (resume)."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def metric_key(class_name: str) -> str:
    """A class name as a logger-friendly key part ("traffic light" -> "traffic_light")."""
    return re.sub(r"[^0-9A-Za-z_\-]+", "_", class_name).strip("_") or "class"


def class_names_for(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    """The class names as a plain list (``class_<i>`` when none are given), one per class."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2; got {num_classes!r}")
    names = list(plain(class_names) or [f"class_{i}" for i in range(num_classes)])
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} names for {num_classes} classes")
    return names


def check_optimiser_settings(**settings: float) -> None:
    """``module.lr`` and ``module.head_lr_mult`` positive, the others (momentum, weight decay)
    non-negative; the error names the config key."""
    for key, value in settings.items():
        positive = key in ("lr", "head_lr_mult")
        if not (value > 0 if positive else value >= 0):
            bound = "positive" if positive else ">= 0"
            raise ValueError(f"module.{key} must be {bound}; got {value!r}")


def to_channels_last(net: nn.Module) -> nn.Module:
    """``net`` with its 4D tensors (2D conv weights) channels-last and its 5D ones (a video
    model's 3D conv weights) channels-last-3d, in place; ``net.to(memory_format=
    torch.channels_last)`` fails on 5D tensors."""

    def convert(t: Tensor) -> Tensor:
        if t.dim() == 4:
            return t.contiguous(memory_format=torch.channels_last)
        if t.dim() == 5:
            return t.contiguous(memory_format=torch.channels_last_3d)
        return t

    return net._apply(convert)


class TaskModule(pl.LightningModule):
    """A LightningModule around ``net`` trained by SGD with a per-iteration schedule.

    Subclasses call ``super().__init__`` with the net and the shared settings, then
    ``save_hyperparameters``; they define :meth:`lr_schedule` and their steps and metrics.
    The parameter groups follow one rule for every task (:mod:`src.core.optim`).
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        lr: float,
        momentum: float,
        weight_decay: float,
        head_lr_mult: float = 1.0,
        compile: bool | Mapping[str, Any] = False,
        channels_last: bool = False,
    ) -> None:
        """``compile``: run the net through ``torch.compile`` (True, or its keyword
        arguments: ``mode``, ``fullgraph``, ``backend``, ``dynamic``); compiled in place
        (``nn.Module.compile``), so checkpoints keep the plain parameter names and resume
        either way. ``channels_last``: the net's weights and every batch's images in the
        channels-last layout (faster convolutions on GPUs; same results)."""
        super().__init__()
        self.compile_options = compile_options(compile)
        self.channels_last = bool(channels_last)
        self._speed_applied = False
        check_optimiser_settings(
            lr=lr, momentum=momentum, weight_decay=weight_decay, head_lr_mult=head_lr_mult
        )
        net_classes = getattr(net, "num_classes", num_classes)
        if net_classes != num_classes:
            raise ValueError(
                f"the model predicts {net_classes} classes, the data has {num_classes}"
            )
        self.net = net
        self.checkpoint_global_step: int | None = None
        # How the run was launched (experiment, overrides), set by the app; kept in every
        # checkpoint so that eval / predict / export rebuild the config from it alone.
        self.launch: dict[str, Any] | None = None

    def configure_model(self) -> None:
        """Apply ``channels_last`` and ``compile`` once, on the net's device."""
        if self._speed_applied:
            return
        self._speed_applied = True
        if self.channels_last:
            to_channels_last(self.net)
        if self.compile_options is not None:
            self.net.compile(**self.compile_options)

    def in_layout(self, images: Tensor) -> Tensor:
        """A batch of images (B×C×H×W) in channels-last layout when ``channels_last`` is on.
        Clips (B×T×C×H×W) stay as they are: a video model flattens them to frames itself, and
        its channels-last weights make the convolutions channels-last from the first one."""
        if self.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def lr_schedule(self, total_steps: int) -> Callable[[int], float]:
        """The lr factor of each step over ``total_steps`` (a closed-form object that
        ``LambdaLR`` can save, e.g. :class:`src.core.optim.PolyDecay`)."""
        raise NotImplementedError

    def configure_optimizers(self) -> dict[str, Any]:
        """SGD over the backbone/head groups, the schedule stepped every iteration."""
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total) or total < 1:
            raise ValueError(
                "the lr schedule needs a finite length: set trainer.max_steps "
                f"(the trainer estimates {total} steps)"
            )
        hp = self.hparams
        groups = parameter_groups(
            self.net, hp.lr, hp.weight_decay, hp.head_lr_mult, hp.exempt_norm_and_gamma
        )
        optimizer = torch.optim.SGD(
            groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
        )
        scheduler = LambdaLR(optimizer, self.lr_schedule(int(total)))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }

    def log_learning_rates(self, batch_size: int) -> None:
        """``train/lr`` (the backbone's) and, when the head's differs, ``train/lr_head``."""
        groups = self.trainer.optimizers[0].param_groups
        self.log("train/lr", groups[0]["lr"], batch_size=batch_size)
        if self.hparams.head_lr_mult != 1.0:
            self.log("train/lr_head", groups[-1]["lr"], batch_size=batch_size)

    def on_train_start(self) -> None:
        """End the schedule at this trainer's last step, also when resuming a shorter run."""
        retarget_schedules(self.trainer)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the launch record (plain values) beside the weights."""
        if self.launch is not None:
            checkpoint["launch"] = self.launch

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Remember the step the loaded checkpoint was saved at (eval reports it). A checkpoint
        converted from other weights (:data:`CONVERTED_KEY`) holds only the net's tensors: the
        module's own states (e.g. the best mIoU so far) keep their fresh values."""
        self.checkpoint_global_step = checkpoint.get("global_step")
        if checkpoint.get(CONVERTED_KEY):
            state = checkpoint["state_dict"]
            for name, value in self.state_dict().items():
                if not name.startswith("net."):
                    state.setdefault(name, value)


__all__ = [
    "COMPILE_OPTIONS",
    "CONVERTED_KEY",
    "TaskModule",
    "check_optimiser_settings",
    "compile_options",
    "class_names_for",
    "metric_key",
    "plain",
    "to_channels_last",
]
