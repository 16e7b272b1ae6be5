"""Score a checkpoint: ``python -m src.eval experiment=NAME ckpt_path=PATH [split=val|test]``.

Runs the experiment's inference (whole / sliding, scales, flip) on the full-resolution
images of the split, prints a per-class IoU table and writes ``results.json`` (with the
split's confusion counts, rows ground truth, columns prediction) and, next to it,
``per_class_iou.png`` and ``confusion_matrix.png`` (also logged to W&B with ``logger=wandb``). With
``export.dir=D export.format=cityscapes|trainid|color`` it also writes one prediction PNG per
image into ``D`` (``cityscapes``: labelIds the official evaluator and test server accept).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor

from src.app import (
    collect_results,
    instantiate_callbacks,
    instantiate_loggers,
    instantiate_module,
    log_hyperparameters,
    task_wrapper,
    write_results,
)
from src.app.checkpoint import check_checkpoint_fits, load_checkpoint
from src.app.plots import save_evaluation_plots
from src.app.report import iou_table, print_table
from src.app.run import run_task
from src.app.validate import CheckedConfig
from src.callbacks.prediction_writer import prediction_writer
from src.callbacks.wandb_images import log_image_files

log = logging.getLogger(__name__)

SPLITS = ("val", "test")


@task_wrapper
def evaluate(cfg: DictConfig, checked: CheckedConfig | None = None) -> dict[str, Any]:
    """Build data, model and trainer; validate or test the checkpoint; return the results."""
    start = time.perf_counter()
    ckpt_path = _checked_inputs(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)
    checkpoint = load_checkpoint(ckpt_path, mmap=True)
    check_checkpoint_fits(checkpoint, cfg.model, datamodule.num_classes, path=ckpt_path)
    del checkpoint
    module = instantiate_module(
        cfg, datamodule, checked.inference if checked else None, from_checkpoint=True
    )
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    writer = prediction_writer(cfg.get("export"), datamodule)
    if writer is not None:
        callbacks.append(writer)
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False
    )
    log_hyperparameters(cfg, loggers, module)

    run = trainer.validate if cfg.split == "val" else trainer.test
    run(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True, verbose=False)

    results = collect_results(
        cfg,
        trainer,
        trainer.callback_metrics,
        module.per_class_iou,
        time.perf_counter() - start,
    )
    results["checkpoint_global_step"] = module.checkpoint_global_step
    if writer is not None:
        results["export"] = writer.summary()
    # detectors have no confusion matrix: plots and counts are for semantic segmentation
    confusion = getattr(module, "confusion_matrix", {}).get(cfg.split)
    if confusion is not None:
        results["confusion_matrix"] = {cfg.split: confusion.long().tolist()}
    _print_results(results, cfg.split)
    path = write_results(results, cfg.paths.output_dir)
    if path is not None:
        log.info("results written to %s", path)
    if confusion is not None:
        _write_plots(results, confusion, module.hparams.class_names, cfg, trainer)
    return results


def _checked_inputs(cfg: DictConfig) -> str:
    """The checkpoint path, after clear errors for a missing checkpoint or a bad split."""
    ckpt_path = OmegaConf.select(cfg, "ckpt_path", default=None, throw_on_missing=False)
    if not ckpt_path or ckpt_path == "???":
        raise ValueError("ckpt_path is required: python -m src.eval experiment=NAME ckpt_path=PATH")
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path!r} is not a file")
    if cfg.get("split") not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {cfg.get('split')!r}")
    return str(ckpt_path)


@rank_zero_only
def _print_results(results: dict[str, Any], split: str) -> None:
    """The per-class IoU table of the split."""
    per_class = results["per_class_iou"].get(split, {})
    miou = results["metrics"].get(f"{split}/mIoU")
    print_table(iou_table(per_class, miou, title=f"{split} IoU"))


@rank_zero_only
def _write_plots(
    results: dict[str, Any],
    confusion: Tensor,
    class_names: list[str],
    cfg: DictConfig,
    trainer: pl.Trainer,
) -> None:
    """The split's per-class IoU chart and confusion matrix as PNGs in the run folder, and
    as images in the W&B run when that logger is on."""
    split = cfg.split
    paths = save_evaluation_plots(
        cfg.paths.output_dir,
        results["per_class_iou"].get(split, {}),
        results["metrics"].get(f"{split}/mIoU"),
        confusion,
        class_names,
        split,
    )
    log.info("plots written to %s", ", ".join(str(p) for p in paths.values()))
    log_image_files(trainer, {f"{split}/plots/{name}": path for name, path in paths.items()})


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the split's mIoU."""

    def score(cfg: DictConfig, checked: CheckedConfig) -> float | None:
        return evaluate(cfg, checked)["metrics"].get(f"{cfg.split}/mIoU")

    return run_task(score, cfg, config_from_ckpt=True)


if __name__ == "__main__":
    main()
