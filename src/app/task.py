"""Wrappers every entry point shares: clean shutdown between jobs, config logging."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger
from torch import nn

log = logging.getLogger(__name__)


def task_wrapper(task: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``task(cfg, ...)`` and always close W&B afterwards (failures propagate; the
    entry points report them once, through :func:`src.app.run.run_task`).

    Closing the W&B run matters in multirun: every job of a sweep runs in the same process,
    and without ``wandb.finish()`` the next job would keep logging into the previous run.
    """

    @functools.wraps(task)
    def wrapped(cfg: DictConfig, *args: Any, **kwargs: Any) -> Any:
        try:
            return task(cfg, *args, **kwargs)
        finally:
            finish_wandb()

    return wrapped


def finish_wandb() -> None:
    """Close the active W&B run, if W&B was imported at all (importing it costs a second)."""
    if "wandb" not in sys.modules:
        return
    import wandb

    if wandb.run is not None:
        wandb.finish()


def log_hyperparameters(cfg: DictConfig, loggers: list[Logger], model: nn.Module) -> None:
    """Send the resolved config and the parameter counts to every logger (W&B's run config)."""
    if not loggers:
        return
    hparams = OmegaConf.to_container(cfg, resolve=True)
    hparams["params"] = {
        "total": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    for logger in loggers:
        logger.log_hyperparams(hparams)
