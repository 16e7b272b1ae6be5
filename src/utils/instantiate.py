"""Build the objects the config groups name: callbacks, loggers and the LightningModule."""

from __future__ import annotations

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning import Callback
from pytorch_lightning.loggers import Logger


def _instantiate_all(cfg: DictConfig | None, key: str, kind: type) -> list:
    """Instantiate every ``_target_`` node under ``cfg`` and check each is a ``kind``."""
    if not cfg:
        return []
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"{key} must be a mapping of named {kind.__name__} configs")
    objects = []
    for name, node in cfg.items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        obj = hydra.utils.instantiate(node, _convert_="all")
        if not isinstance(obj, kind):
            raise TypeError(f"{key}.{name} builds a {type(obj).__name__}, not a {kind.__name__}")
        objects.append(obj)
    return objects


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    """The Lightning callbacks of the ``callbacks:`` config node (empty when it is null)."""
    return _instantiate_all(cfg, "callbacks", Callback)


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    """The Lightning loggers of the ``logger:`` config node (empty for ``logger=none``)."""
    return _instantiate_all(cfg, "logger", Logger)


def instantiate_module(cfg: DictConfig, datamodule: pl.LightningDataModule) -> pl.LightningModule:
    """The ``module:`` LightningModule around ``model:`` and ``loss:``, sized by the data.

    The number of classes, class names, ignore label and flip pairs come from the data module,
    so a model config never repeats (and never contradicts) what the dataset knows.
    """
    if cfg.loss.get("ccl") and not cfg.model.get("embed_dim"):
        raise ValueError("loss.ccl=true needs an embedding: set model.embed_dim (e.g. 16)")
    net = hydra.utils.instantiate(cfg.model, num_classes=datamodule.num_classes)
    criterion = hydra.utils.instantiate(cfg.loss, ignore_index=datamodule.ignore_index)
    return hydra.utils.instantiate(
        cfg.module,
        net=net,
        criterion=criterion,
        num_classes=datamodule.num_classes,
        class_names=list(datamodule.class_names),
        ignore_index=datamodule.ignore_index,
        flip_pairs=[list(pair) for pair in datamodule.flip_pairs],
    )
