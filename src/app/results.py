"""``results.json``: the final numbers of a run, so scripts and sweeps never parse logs."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from src.core.atomic import atomic_write_text

RESULTS_FILE = "results.json"
"""A finished run's numbers, in its run folder."""
FAILURE_FILE = "failure.json"
"""Written instead in the run folder of a run that failed: the error and the exit code."""

# The config values a reader needs to tell runs apart (missing keys are left out).
KEY_CONFIG = (
    "seed",
    "ckpt_path",
    "data.root",
    "data.crop_size",
    "data.batch_size",
    "model.backbone",
    "model.pretrained",
    "model.init_from",
    "model.align_corners",
    "model.context",
    "model.recurrence",
    "model.embed_dim",
    "loss.ohem",
    "loss.ccl",
    "module.lr",
    "module.weight_decay",
    "module.head_lr_mult",
    "module.exempt_norm_and_gamma",
    "trainer.max_steps",
    "trainer.precision",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.sync_batchnorm",
    "inference",
)


def to_number(value: Any) -> float | None:
    """A tensor or number as a plain float; NaN and infinities become None (valid JSON)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().float().item() if value.numel() == 1 else float("nan")
    value = float(value)
    return value if math.isfinite(value) else None


def key_config(cfg: DictConfig) -> dict[str, Any]:
    """The values of :data:`KEY_CONFIG` found in ``cfg``, resolved and plain."""
    values = {}
    for key in KEY_CONFIG:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        if value is not None or key in ("ckpt_path",):
            values[key] = value
    return values


def hydra_job_info() -> dict[str, Any]:
    """The experiment chosen and the command-line overrides, when Hydra runs this job."""
    if not HydraConfig.initialized():
        return {}
    hydra_cfg = HydraConfig.get()
    return {
        "experiment": hydra_cfg.runtime.choices.get("experiment"),
        "overrides": list(hydra_cfg.overrides.task),
    }


def checkpoint_paths(trainer: pl.Trainer) -> dict[str, str | None]:
    """The best checkpoint (of the first callback with a ``monitor``) and the latest one (of
    a callback without: ``last.ckpt``); None where there is none.

    Read them right after ``fit``: testing from a checkpoint restores the callbacks' state
    as it was when that checkpoint was written.
    """
    best = last = None
    for callback in trainer.checkpoint_callbacks:
        path = getattr(callback, "best_model_path", "") or None
        if getattr(callback, "monitor", None) is None:
            last = last or path
        else:
            best = best or path
        last = last or getattr(callback, "last_model_path", "") or None
    return {"best_model_path": best, "last_model_path": last}


def collect_results(
    cfg: DictConfig,
    trainer: pl.Trainer,
    metrics: Mapping[str, Any],
    per_class_iou: Mapping[str, Mapping[str, float]],
    wall_time_s: float,
    checkpoints: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """Everything ``results.json`` holds, as plain JSON-able values."""
    optimized = cfg.get("optimized_metric")
    numbers = {k: to_number(v) for k, v in sorted(metrics.items())}
    return {
        "task": cfg.get("task_name"),
        **hydra_job_info(),
        "optimized_metric": optimized,
        "optimized_value": numbers.get(optimized) if optimized else None,
        "metrics": numbers,
        "per_class_iou": {
            split: {name: to_number(v) for name, v in values.items()}
            for split, values in per_class_iou.items()
        },
        "global_step": trainer.global_step,
        "world_size": trainer.world_size,
        "wall_time_s": round(wall_time_s, 3),
        **(checkpoint_paths(trainer) if checkpoints is None else checkpoints),
        "config": key_config(cfg),
    }


@rank_zero_only
def write_results(results: Mapping[str, Any], output_dir: str | Path) -> Path:
    """Write ``results`` to ``<output_dir>/results.json`` (rank 0 only) and return its path.

    Atomically (temporary file + rename): a crash while writing never leaves a truncated
    ``results.json``, and a run that fails before this point leaves none at all.
    """
    text = json.dumps(results, indent=2, allow_nan=False) + "\n"
    return atomic_write_text(Path(output_dir) / RESULTS_FILE, text)
