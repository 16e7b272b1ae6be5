"""Train a segmentation model: ``python -m src.train [experiment=NAME] [overrides]``.

Fits (``train=true``), optionally tests the best checkpoint (``test=true``), and writes
``results.json`` into the run's output folder. ``ckpt_path=.../last.ckpt`` resumes a run:
with the same config and seed, it ends with the weights of an uninterrupted run (the data
order, the generators and the poly schedule continue exactly; README: Reliability).

The config is checked before anything heavy happens (:mod:`src.app.validate`), and a
checkpoint is checked against the model and data before training from it. A run that fails
writes no ``results.json``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig

from src.app import (
    checkpoint_paths,
    collect_results,
    instantiate_callbacks,
    instantiate_loggers,
    instantiate_module,
    log_hyperparameters,
    task_wrapper,
    write_results,
)
from src.app.checkpoint import check_checkpoint_fits, load_checkpoint
from src.app.launch import launch_record
from src.app.run import run_task
from src.app.validate import CheckedConfig
from src.callbacks.validate_at_last_step import ValidateAtLastStep

log = logging.getLogger(__name__)


@task_wrapper
def train(cfg: DictConfig, checked: CheckedConfig | None = None) -> dict[str, Any]:
    """Seed, build data, model, callbacks, loggers and trainer; fit; test; return the results."""
    start = time.perf_counter()
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path:  # before building the model: a mismatch names the keys, not tensor shapes
        checkpoint = load_checkpoint(ckpt_path, mmap=True)
        check_checkpoint_fits(checkpoint, cfg.model, datamodule.num_classes, path=ckpt_path)
        del checkpoint
    module = instantiate_module(cfg, datamodule, checked.inference if checked else None)
    module.launch = launch_record()  # kept in checkpoints: eval rebuilds the config from it
    # every run validates (and so checkpoints) at its last step, whatever callbacks= says
    callbacks = [*instantiate_callbacks(cfg.get("callbacks")), ValidateAtLastStep()]
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False
    )
    log_hyperparameters(cfg, loggers, module)

    if cfg.get("train"):
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = dict(trainer.callback_metrics)
    checkpoints = checkpoint_paths(trainer)

    if cfg.get("test"):
        test_ckpt = _test_checkpoint(cfg, trainer)
        trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, weights_only=True)
        metrics.update(trainer.callback_metrics)

    wall_time = time.perf_counter() - start
    results = collect_results(cfg, trainer, metrics, module.per_class_iou, wall_time, checkpoints)
    path = write_results(results, cfg.paths.output_dir)
    if path is not None:
        log.info("results written to %s", path)
    return results


def _test_checkpoint(cfg: DictConfig, trainer: pl.Trainer) -> str | None:
    """The best checkpoint of this run; without training, the given ``ckpt_path``."""
    if not cfg.get("train"):
        return cfg.get("ckpt_path")
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    if not best:
        log.warning("no best checkpoint was saved: testing the weights as they are now")
    return best or None


def optimized_value(cfg: DictConfig, results: dict[str, Any]) -> float | None:
    """The metric a sweeper optimises (``optimized_metric``); NaN when it was never finite.

    A training run that never logged it is an error (a sweep would optimise nothing); a
    test-only run (``train=false``) returns None.
    """
    name = cfg.get("optimized_metric")
    if not name or (name not in results["metrics"] and not cfg.get("train")):
        return None
    if name not in results["metrics"]:
        raise KeyError(
            f"optimized_metric={name!r} was not logged; logged metrics: "
            f"{', '.join(sorted(results['metrics']))}"
        )
    value = results["metrics"][name]
    return math.nan if value is None else value


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the optimised metric for sweepers."""
    return run_task(lambda cfg, checked: optimized_value(cfg, train(cfg, checked)), cfg)


if __name__ == "__main__":
    main()
