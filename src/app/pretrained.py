"""``ckpt_path=`` with published weights: a model-zoo name, an mmseg or an official CCNet file.

Eval, predict and export read this project's checkpoints. :func:`resolve_pretrained_checkpoint`
converts any other source that :meth:`CCNet.from_pretrained` reads into one, once (cached
in torch.hub's folder, ``$TORCH_HOME/hub/checkpoints/ccnet-converted/``), and points
``ckpt_path`` at it. The converted checkpoint carries a launch record
(:mod:`src.app.launch`) with the architecture the weights need (``model.*``), the input
normalisation of the official weights (``data.mean``/``data.std``) and, for zoo names, the
experiment holding the source's evaluation protocol; what the command line gives still wins.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from src.app.checkpoint import AUTO
from src.app.launch import LAUNCH_KEY
from src.core.atomic import atomic_open
from src.core.module import CONVERTED_KEY
from src.models.ccnet import CCNet
from src.models.pretrained import (
    CCNET_TARGET,
    Pretrained,
    PretrainedFormatError,
    convert_checkpoint,
    describe_format,
    detect_format,
    is_source_name,
    load_pretrained,
    read_weights_file,
    zoo_file,
)

log = logging.getLogger(__name__)

CONVERSION_VERSION = 1
"""Bumped when the converter changes: converted files of older versions are made again."""


def dataset_class_names(dataset: str | None, num_classes: int) -> list[str] | None:
    """Class names for converted weights: the zoo entry's dataset's, else those of the one
    dataset with that many classes (Cityscapes 19, ADE20K 150); None when unknown."""
    from src.data.ade20k import ADE20KDataset
    from src.data.cityscapes import CityscapesDataset

    known = {"cityscapes": CityscapesDataset, "ade20k": ADE20KDataset}
    if dataset in known:
        return list(known[dataset].class_names)
    for cls in known.values():
        if cls.num_classes == num_classes:
            return list(cls.class_names)
    return None


def needs_conversion(source: str) -> bool:
    """Whether ``ckpt_path=source`` is a zoo name or a file in a foreign format; this
    project's checkpoints and missing paths are left to the usual checks, and a file of no
    known format is a :class:`PretrainedFormatError` naming the formats and its keys."""
    if is_source_name(source):
        return True
    path = Path(source).expanduser()
    if not path.is_file():
        return False
    checkpoint = read_weights_file(path, "ckpt_path", mmap=True)
    fmt = detect_format(checkpoint)
    if fmt is None:
        convert_checkpoint(checkpoint, source, "ckpt_path")  # raises, naming what it holds
    return fmt != "lightning"


def resolve_pretrained_checkpoint(cfg: DictConfig, task_name: str) -> None:
    """Point ``cfg.ckpt_path`` at this project's checkpoint of the weights it names, when it
    names published weights; training refuses them (``model.init_from`` starts from them)."""
    source = cfg.get("ckpt_path")
    if not isinstance(source, str) or source in ("", "???", AUTO) or not needs_conversion(source):
        return
    if task_name == "train":
        raise PretrainedFormatError(
            f"ckpt_path={source!r} holds published weights, not a run of this project to "
            f"resume: start training from them with model.init_from={source}"
        )
    path = zoo_file(source) if is_source_name(source) else Path(source).expanduser()
    target = converted_path(path)
    if not target.is_file():
        weights = load_pretrained(source, key="ckpt_path")
        write_converted_checkpoint(weights, target)
        log.info(
            "ckpt_path=%s: %s, converted to %s", source, describe_format(weights.format), target
        )
    else:
        log.info("ckpt_path=%s: converted before, reading %s", source, target)
    cfg.ckpt_path = str(target)


def converted_path(path: Path) -> Path:
    """Where the converted checkpoint of the file at ``path`` lives (one per file version)."""
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{CONVERSION_VERSION}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    folder = Path(torch.hub.get_dir()) / "checkpoints" / "ccnet-converted"
    return folder / f"{path.stem}-{digest}.ckpt"


def launch_overrides_for(weights: Pretrained) -> list[str]:
    """The overrides that build the network the weights need and feed it the input they
    expect (what a launch record holds)."""
    overrides = [
        f"model.{name}={_override_value(value)}"
        for name, value in weights.architecture.items()
        if name != "num_classes"
    ]
    for name in ("mean", "std"):
        value = getattr(weights, name)
        if value is not None:
            overrides.append(f"data.{name}={_override_value(list(value))}")
    return overrides


def write_converted_checkpoint(weights: Pretrained, path: Path) -> None:
    """This project's checkpoint of ``weights``: the net's complete state (the BatchNorm
    counters a foreign file lacks come from a fresh net), the hyperparameters eval, predict
    and export read, and a launch record."""
    net = CCNet(**{**weights.architecture, "pretrained": False})
    weights.load_into(net)
    names = weights.class_names or dataset_class_names(weights.dataset, weights.num_classes)
    checkpoint: dict[str, Any] = {
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
        "hyper_parameters": {
            "num_classes": weights.num_classes,
            "class_names": names,
            "flip_pairs": [],
            "model_config": {"target": CCNET_TARGET, **weights.architecture},
        },
        "pytorch-lightning_version": pl.__version__,
        "epoch": 0,
        "global_step": 0,
        LAUNCH_KEY: {"experiment": weights.experiment, "overrides": launch_overrides_for(weights)},
        CONVERTED_KEY: {"source": weights.source, "format": weights.format},
    }
    with atomic_open(path, "wb") as handle:
        torch.save(checkpoint, handle)


def _override_value(value: Any) -> str:
    """A plain value in Hydra's override syntax."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    return str(value)


__all__ = [
    "CONVERSION_VERSION",
    "converted_path",
    "dataset_class_names",
    "launch_overrides_for",
    "needs_conversion",
    "resolve_pretrained_checkpoint",
    "write_converted_checkpoint",
]
