"""The optimiser pieces every task shares: parameter groups and per-iteration lr schedules.

One rule for the groups, whatever the task: the backbone (``net.backbone``) trains at ``lr``,
everything else at ``lr × head_lr_mult``; with ``exempt_norm_and_gamma`` the tensors timm
exempts from weight decay get none — 1-D tensors (norm weights and biases, conv biases, the
attention's γ) and the names the model lists in ``no_weight_decay()`` (timm's hook). The
official recipe decays every tensor, hence off by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

GROUP_ORDER = ("backbone", "backbone_no_decay", "head", "head_no_decay")


def no_weight_decay_names(net: nn.Module) -> set[str]:
    """Parameter names that take no weight decay: 1-D tensors and ``net.no_weight_decay()``."""
    listed = set(net.no_weight_decay()) if hasattr(net, "no_weight_decay") else set()
    return {name for name, p in net.named_parameters() if p.ndim <= 1 or name in listed}


def parameter_groups(
    net: nn.Module,
    lr: float,
    weight_decay: float,
    head_lr_mult: float = 1.0,
    exempt_norm_and_gamma: bool = False,
) -> list[dict[str, Any]]:
    """SGD parameter groups (named for logging); frozen parameters are left out.

    ``net.backbone`` trains at ``lr``, the rest at ``lr * head_lr_mult``. With
    ``exempt_norm_and_gamma``, :func:`no_weight_decay_names` get weight decay 0.
    """
    backbone = getattr(net, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise TypeError(f"{type(net).__name__} has no `backbone` module for the parameter groups")
    backbone_ids = {id(p) for p in backbone.parameters()}
    exempt = no_weight_decay_names(net) if exempt_norm_and_gamma else set()
    groups: dict[str, dict[str, Any]] = {}
    for name, param in net.named_parameters():
        if not param.requires_grad:
            continue
        part = "backbone" if id(param) in backbone_ids else "head"
        key = f"{part}_no_decay" if name in exempt else part
        group = groups.setdefault(
            key,
            {
                "name": key,
                "params": [],
                "lr": lr * (1.0 if part == "backbone" else head_lr_mult),
                "weight_decay": 0.0 if name in exempt else weight_decay,
            },
        )
        group["params"].append(param)
    return [groups[key] for key in GROUP_ORDER if key in groups]


def poly_factor(step: int, total_steps: int, power: float) -> float:
    """``(1 - step / total_steps) ** power``, held at 0 past the end."""
    return (1.0 - min(step, total_steps) / total_steps) ** power


class PolyDecay:
    """The poly schedule's lr factor ``(1 - step / total_steps) ** power`` (0 at the end).

    Why not ``torch.optim.lr_scheduler.PolynomialLR``: that scheduler is chainable (each lr is
    the previous one times a ratio), so its length cannot be changed mid-run. A resume with a
    longer ``trainer.max_steps`` must continue the curve to the new end
    (:func:`retarget_schedules`), which this closed form allows: ``LambdaLR`` evaluates it
    afresh at every step, and being an object (not a lambda) it is saved in the checkpoint.
    """

    def __init__(self, total_steps: int, power: float = 0.9) -> None:
        if total_steps < 1:
            raise ValueError(f"poly decay needs at least one step; got {total_steps}")
        self.total_steps = int(total_steps)
        self.power = float(power)

    def __call__(self, step: int) -> float:
        return poly_factor(step, self.total_steps, self.power)


class WarmupSchedule:
    """Linear warmup from ``warmup_factor`` to 1 over ``warmup_steps``, times a step decay
    (``gamma`` at each milestone, given as fractions of ``total_steps``) or a :class:`PolyDecay`.

    Like :class:`PolyDecay`, a closed form whose ``total_steps`` a resume may move; its state
    is plain numbers (``LambdaLR`` saves it in checkpoints, which load with weights_only).
    """

    SCHEDULES = ("step", "poly")

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
        if schedule not in self.SCHEDULES:
            raise ValueError(f"module.schedule must be one of {self.SCHEDULES}; got {schedule!r}")
        if any(not 0 < m < 1 for m in milestones):
            raise ValueError(
                f"module.milestones are fractions of training in (0, 1); got {list(milestones)}"
            )
        if warmup_steps < 0 or not 0 < warmup_factor <= 1:
            raise ValueError(
                "need module.warmup_steps >= 0 and 0 < module.warmup_factor <= 1; "
                f"got {warmup_steps}, {warmup_factor}"
            )
        if total_steps < 1:
            raise ValueError(f"the schedule needs at least one step; got {total_steps}")
        self.total_steps = int(total_steps)
        self.power = float(power)
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = float(warmup_factor)
        self.schedule = schedule
        self.milestones = sorted(float(m) for m in milestones)
        self.gamma = float(gamma)

    @property
    def milestone_steps(self) -> list[int]:
        """The steps at which the step decay multiplies the lr by ``gamma``."""
        return [round(m * self.total_steps) for m in self.milestones]

    def __call__(self, step: int) -> float:
        if self.schedule == "step":
            decay = self.gamma ** sum(step >= m for m in self.milestone_steps)
        else:
            decay = poly_factor(step, self.total_steps, self.power)
        if step >= self.warmup_steps:
            return decay
        alpha = step / self.warmup_steps
        return (self.warmup_factor * (1.0 - alpha) + alpha) * decay


def retarget_schedules(trainer: pl.Trainer) -> None:
    """End every closed-form schedule at this trainer's last step, also when resuming a run
    that had a shorter ``max_steps`` (its restored schedule would otherwise sit at its end)."""
    total = int(trainer.estimated_stepping_batches)
    for config in trainer.lr_scheduler_configs:
        scheduler = config.scheduler
        if not isinstance(scheduler, LambdaLR):
            continue
        groups = scheduler.optimizer.param_groups
        for group, base_lr, factor in zip(groups, scheduler.base_lrs, scheduler.lr_lambdas):
            if isinstance(factor, PolyDecay | WarmupSchedule):
                factor.total_steps = total
                group["lr"] = base_lr * factor(scheduler.last_epoch)
