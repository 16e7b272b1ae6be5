"""Read a SegmentationModule checkpoint outside Lightning: the one place checkpoints are loaded.

``src.predict`` and ``src.export`` rebuild the net from the ``model:`` config and the
checkpoint's weights; the class facts (``num_classes``, ``class_names``, ``flip_pairs``) come
from the hyperparameters the module saved. Loading uses ``torch.load(weights_only=True)``, so a
checkpoint can hold tensors and plain values but never runs code when read.

:func:`check_checkpoint_fits` compares what a checkpoint was trained with (its classes and
the ``model:`` config SegmentationModule saves as ``model_config``) with what the config
asks for, so a resume, eval, predict or export with the wrong experiment fails up front with
the differences named, not deep in ``load_state_dict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from torch import nn

from src.models.pretrained import read_weights_file

NET_PREFIX = "net."

# model: keys that decide which parameters a net has; the others (recurrence, dropout,
# pretrained, detector thresholds...) change no weight shape and may differ from training.
ARCHITECTURE_KEYS = (
    "target",
    "backbone",
    "context",
    "aux",
    "embed_dim",
    "channels",
    "aux_channels",
    "fpn_channels",
    "box_head_dim",
    "mask_head_channels",
)


INITIAL_WEIGHTS = {"pretrained": False, "init_from": None}
"""``model:`` keys that only say where the initial weights come from: off when a checkpoint's
weights replace them (no download, no reading a second file)."""


def without_initial_weights(model_cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Overrides that turn off the initial-weight keys ``model_cfg`` has."""
    return {k: v for k, v in INITIAL_WEIGHTS.items() if k in model_cfg}


class CheckpointMismatchError(ValueError):
    """A checkpoint holds weights for another model or another number of classes."""


def load_checkpoint(path: str | Path, key: str = "ckpt_path", mmap: bool = False) -> dict[str, Any]:
    """The checkpoint at ``path`` as a dict on the CPU; errors name the config ``key``.

    ``mmap=True`` maps the tensors instead of reading them: cheap for looking at the
    hyperparameters of a large checkpoint.
    """
    if path is None or str(path) in ("", "???"):
        raise ValueError(f"{key} is required: pass {key}=PATH to a .ckpt file")
    checkpoint = read_weights_file(path, key, mmap=mmap)
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise ValueError(f"{key}={str(path)!r} is not a Lightning checkpoint (no 'state_dict')")
    return dict(checkpoint)


def checkpoint_hparams(checkpoint: Mapping[str, Any], key: str = "ckpt_path") -> dict[str, Any]:
    """The module's saved hyperparameters, checked to hold what inference needs."""
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    num_classes = hparams.get("num_classes")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"{key}: the checkpoint's hyper_parameters have no num_classes; was it saved by "
            "src.tasks.semantic.module.SegmentationModule?"
        )
    names = list(hparams.get("class_names") or [f"class_{i}" for i in range(num_classes)])
    if len(names) != num_classes:
        raise ValueError(f"{key}: {len(names)} class_names for {num_classes} classes")
    hparams["class_names"] = names
    hparams["flip_pairs"] = [tuple(p) for p in hparams.get("flip_pairs") or []]
    return hparams


def check_checkpoint_fits(
    checkpoint: Mapping[str, Any],
    model_cfg: DictConfig | Mapping[str, Any],
    num_classes: int | None = None,
    key: str = "ckpt_path",
    path: str | Path | None = None,
) -> None:
    """Raise :class:`CheckpointMismatchError` naming every difference between the checkpoint's
    classes / architecture and ``num_classes`` (from the data) / ``model_cfg``.

    Keys the checkpoint does not record (checkpoints from before ``model_config`` was saved)
    are not compared; their weights are still checked strictly when loaded.
    """
    hparams = checkpoint.get("hyper_parameters") or {}
    saved_model = hparams.get("model_config") or {}
    wanted_model = model_description(model_cfg)
    differences = []  # (what, saved, wanted, config key)
    for name in ARCHITECTURE_KEYS:
        saved, wanted = saved_model.get(name), wanted_model.get(name)
        if name in saved_model and name in wanted_model and saved != wanted:
            differences.append((name, saved, wanted, f"model.{name}"))
    saved_classes = hparams.get("num_classes")
    if num_classes is not None and saved_classes is not None and saved_classes != num_classes:
        differences.append(("classes", saved_classes, num_classes, "data"))
    if not differences:
        return
    where = f"{key}={str(path)!r}" if path is not None else f"the checkpoint of {key}"
    raise CheckpointMismatchError(
        f"{where} was trained with {_describe(differences, 1)}; the config asks for "
        f"{_describe(differences, 2)} ({', '.join(d[3] for d in differences)}): its weights "
        "do not fit the model config. Pass the experiment and the overrides it was trained with."
    )


def _describe(differences: list[tuple[str, Any, Any, str]], column: int) -> str:
    """One side of the differences (1: checkpoint, 2: config): ``backbone X and 5 classes``."""
    parts = [
        f"{d[column]} classes" if d[0] == "classes" else f"{d[0]} {d[column]}" for d in differences
    ]
    return " and ".join(parts)


def model_description(model_cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The ``model:`` config as plain values, ``_target_`` renamed ``target``: what modules
    save as ``model_config`` (Hydra would instantiate a nested ``_target_``)."""
    node = model_cfg
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    described = {k: v for k, v in dict(node).items() if not str(k).startswith("_")}
    if "_target_" in node:
        described["target"] = node["_target_"]
    return described


def net_state_dict(checkpoint: Mapping[str, Any], prefix: str = NET_PREFIX) -> dict[str, Any]:
    """The weights of the module's ``net`` (the ``net.`` entries, prefix removed)."""
    state = checkpoint["state_dict"]
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def net_from_checkpoint(
    model_cfg: DictConfig,
    checkpoint: Mapping[str, Any],
    key: str = "ckpt_path",
    path: str | Path | None = None,
) -> nn.Module:
    """Build ``model_cfg`` for the checkpoint's classes and load its weights (strictly).

    Initial weights (``model.pretrained``, ``model.init_from``) are not loaded: the
    checkpoint overwrites them, and fetching them could need the network. The net is
    returned in eval mode on the CPU.
    """
    hparams = checkpoint_hparams(checkpoint, key)
    check_checkpoint_fits(checkpoint, model_cfg, key=key, path=path)
    overrides = {"num_classes": hparams["num_classes"], **without_initial_weights(model_cfg)}
    net = hydra.utils.instantiate(model_cfg, **overrides)
    state = net_state_dict(checkpoint)
    if not state:
        raise ValueError(f"{key}: the checkpoint has no 'net.' weights")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        model = OmegaConf.to_container(model_cfg, resolve=True)
        raise ValueError(
            f"{key}: the checkpoint's weights do not fit the model config {model}; pass the "
            f"experiment and model.* overrides it was trained with.\n{err}"
        ) from err
    return net.eval()


AUTO = "auto"
"""``ckpt_path=auto``: the newest ``last.ckpt`` of the same experiment."""


def newest_last_checkpoint(
    log_dir: str | Path, experiment: str | None, debug: bool = False
) -> Path:
    """The most recently written ``last.ckpt`` under ``<log_dir>/train/runs/<experiment>/``
    (``default`` without an experiment; under ``<log_dir>/debugs/`` for a ``debug=`` run, where
    conf/debug puts those); an error naming the folder when there is none."""
    root = Path(log_dir) / "debugs" if debug else Path(log_dir)
    runs = root / "train" / "runs" / (experiment or "default")
    found = sorted(runs.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(
            f"ckpt_path=auto: no last.ckpt under {runs}/*/checkpoints/ (train "
            f"experiment={experiment or 'default'} first, or give ckpt_path=PATH)"
        )
    return found[-1]
