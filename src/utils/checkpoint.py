"""Read a SegmentationModule checkpoint outside Lightning: the one place checkpoints are loaded.

``src.predict`` and ``src.export`` rebuild the net from the ``model:`` config and the
checkpoint's weights; the class facts (``num_classes``, ``class_names``, ``flip_pairs``) come
from the hyperparameters the module saved. Loading uses ``torch.load(weights_only=True)``, so a
checkpoint can hold tensors and plain values but never runs code when read.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

NET_PREFIX = "net."


def load_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """The checkpoint at ``path`` as a dict on the CPU; errors name the config ``key``."""
    if path is None or str(path) in ("", "???"):
        raise ValueError(f"{key} is required: pass {key}=PATH to a .ckpt file")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}={str(path)!r} is not a file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{key}={str(path)!r} holds objects that weights_only loading refuses "
            f"(it would run code to rebuild them): {err}"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        message = f"{key}={str(path)!r} is not a readable PyTorch checkpoint: {err}"
        raise ValueError(message) from err
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
            "src.module.SegmentationModule?"
        )
    names = list(hparams.get("class_names") or [f"class_{i}" for i in range(num_classes)])
    if len(names) != num_classes:
        raise ValueError(f"{key}: {len(names)} class_names for {num_classes} classes")
    hparams["class_names"] = names
    hparams["flip_pairs"] = [tuple(p) for p in hparams.get("flip_pairs") or []]
    return hparams


def net_state_dict(checkpoint: Mapping[str, Any], prefix: str = NET_PREFIX) -> dict[str, Any]:
    """The weights of the module's ``net`` (the ``net.`` entries, prefix removed)."""
    state = checkpoint["state_dict"]
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def net_from_checkpoint(
    model_cfg: DictConfig, checkpoint: Mapping[str, Any], key: str = "ckpt_path"
) -> nn.Module:
    """Build ``model_cfg`` for the checkpoint's classes and load its weights (strictly).

    Pretrained backbone weights are not loaded (the checkpoint overwrites them, and fetching
    them could need the network). The net is returned in eval mode on the CPU.
    """
    hparams = checkpoint_hparams(checkpoint, key)
    overrides: dict[str, Any] = {"num_classes": hparams["num_classes"]}
    if "pretrained" in model_cfg:
        overrides["pretrained"] = False
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
