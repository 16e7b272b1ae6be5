"""Build the objects the config groups name: callbacks, loggers and the LightningModule."""

from __future__ import annotations

import inspect

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning import Callback
from pytorch_lightning.loggers import Logger

from src.app.checkpoint import model_description, without_initial_weights
from src.core.inference import InferenceConfig


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


def instantiate_module(
    cfg: DictConfig,
    datamodule: pl.LightningDataModule,
    inference: InferenceConfig | None = None,
    from_checkpoint: bool = False,
) -> pl.LightningModule:
    """The ``module:`` LightningModule around ``model:`` and ``loss:``, sized by the data.

    The number of classes, class names, ignore label and flip pairs come from the data module,
    so a model config never repeats (and never contradicts) what the dataset knows; the
    ignore label reaches the module and the criterion from there alone. The resolved
    ``model:`` config goes in as ``model_config`` (kept in checkpoints), and ``inference`` (the
    one the config check built; else built here from ``inference:``) as it is. Only the facts
    the module's constructor takes are passed (a detector's module has no ignore label, flip
    pairs or inference); ``loss: null`` builds no criterion, for nets that compute their own.
    ``from_checkpoint``: a checkpoint's weights will replace the net's, so its initial weights
    (``model.pretrained``, ``model.init_from``) are not fetched.
    """
    loss = cfg.get("loss")
    if loss and loss.get("ccl") and not cfg.model.get("embed_dim"):
        raise ValueError("loss.ccl=true needs an embedding: set model.embed_dim (e.g. 16)")
    accepted = _constructor_arguments(cfg.module)
    if loss and accepted is not None and "criterion" not in accepted:
        raise ValueError(f"{cfg.module._target_} takes no criterion: set loss=null")
    facts = {
        "num_classes": lambda: datamodule.num_classes,
        "class_names": lambda: list(datamodule.class_names),
        "ignore_index": lambda: datamodule.ignore_index,
        "flip_pairs": lambda: [list(pair) for pair in datamodule.flip_pairs],
        # saved in checkpoints: a resume or eval with another backbone names the difference
        "model_config": lambda: model_description(cfg.model),
        "inference": lambda: inference or InferenceConfig.from_config(cfg.get("inference")),
    }
    kwargs = {
        "net": hydra.utils.instantiate(
            cfg.model,
            num_classes=datamodule.num_classes,
            **(without_initial_weights(cfg.model) if from_checkpoint else {}),
        ),
        **{key: fact() for key, fact in facts.items() if accepted is None or key in accepted},
    }
    if loss:
        kwargs["criterion"] = hydra.utils.instantiate(loss, ignore_index=datamodule.ignore_index)
    # objects go in as they are, not through an OmegaConf merge (which would turn the
    # InferenceConfig dataclass back into a config node)
    return hydra.utils.instantiate(cfg.module, _partial_=True)(**kwargs)


def _constructor_arguments(node: DictConfig) -> set[str] | None:
    """The keyword names the ``_target_`` class of ``node`` accepts (None: any, via kwargs)."""
    parameters = inspect.signature(hydra.utils.get_class(node._target_)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}
