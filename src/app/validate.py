"""Check the composed config before any heavy work: one clear line naming the key.

Hydra's struct mode already rejects a misspelt override of an existing key
(``model.recurence=2``: "Could not override 'model.recurence'"). What it cannot know is the
meaning of values, and keys added with ``+``. :func:`validate_config` checks those right after
Hydra composes the config, before a dataset is scanned or a backbone built:

- every key of a ``_target_`` node (model, module, loss, data, data.dataset, trainer) is an
  argument of the class it names (a ``+model.recurence=2`` would only fail deep inside);
- ``model.backbone`` is a timm model name, and for CCNet one that runs dilated at output
  stride 8 (built on the meta device: :func:`src.models.backbone.check_dilated_backbone`);
  ``model.context`` and ``model.recurrence`` pass the models' own checks
  (:mod:`src.models.context`: a known context, an int >= 0);
- ``data.crop_size`` is two positive ints. Any such crop is possible: the training pipeline
  pads images smaller than the crop (with the ignore label), so "a crop larger than the
  image" is not an error. The real limit is BatchNorm: training needs more than one value
  per channel, so ``data.batch_size`` x ceil(h/8) x ceil(w/8) (the feature map at output
  stride 8) must be at least 2;
- ``model.num_classes`` / ``module.num_classes``, when someone sets them, agree with the
  dataset's classes (the code takes the class count from the data; a different number would
  silently be ignored);
- ``inference.*`` builds an :class:`src.core.inference.InferenceConfig` (its checks: positive
  tiles, a stride no larger than the tile...); that object is returned in a
  :class:`CheckedConfig` and passed on, so the run never builds or checks it again;
- a training run has a finite length (``trainer.max_steps``, or ``max_epochs``): the poly
  schedule needs one;
- ``ckpt_path``, when given, is a file.

The entry points call it through :func:`src.app.run.run_task`: an invalid config logs
``invalid config: <key>...`` and ends the process with exit code 2; a valid one gives the
:class:`CheckedConfig` the run goes on with.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from src.core.inference import InferenceConfig
from src.models.attention import check_kernel
from src.models.backbone import OUTPUT_STRIDE, check_backbone_name, check_dilated_backbone
from src.models.ccnet3d import check_target_frame
from src.models.context import check_context, check_recurrence
from src.models.heads import check_activation

TARGET_NODES = ("model", "module", "loss", "data", "data.dataset", "trainer")
EXIT_CODE = 2


class ConfigError(ValueError):
    """An invalid config value; the message names the key."""


@dataclass(frozen=True)
class CheckedConfig:
    """What checking the config built on the way, passed on so that nothing rebuilds (and
    re-checks) it: the ``inference:`` settings (None when the config has no such group)."""

    inference: InferenceConfig | None = None


def validate_config(cfg: DictConfig) -> CheckedConfig:
    """Raise :class:`ConfigError` for the first invalid setting (see the module docstring)."""
    _check_arguments(cfg)
    _check_model(cfg)
    _check_data(cfg)
    _check_num_classes(cfg)
    inference = _build_inference(cfg)
    _check_length(cfg)
    _check_ckpt_path(cfg)
    return CheckedConfig(inference=inference)


def _value(cfg: DictConfig, key: str) -> Any:
    """The resolved value at ``key`` as plain Python (None when absent or missing)."""
    value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return None if value == "???" else value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_arguments(cfg: DictConfig) -> None:
    """Each key of a ``_target_`` node must be an argument of its target."""
    for path in TARGET_NODES:
        node = OmegaConf.select(cfg, path, default=None)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        try:
            target = hydra.utils.get_object(node._target_)
        except Exception as err:  # noqa: BLE001 - any import failure is the same config error
            message = f"{path}._target_={node._target_!r} cannot be imported: {err}"
            raise ConfigError(message) from err
        accepted = _arguments(target)
        if accepted is None:
            continue
        for key in node:
            if str(key).startswith("_") or key in accepted:
                continue
            raise ConfigError(
                f"{path}.{key} is not an argument of {node._target_}{_suggest(key, accepted)}"
            )


def _arguments(target: Any) -> set[str] | None:
    """The keyword names ``target`` accepts; None when it takes ``**kwargs`` or is opaque."""
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def _suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the closest choices, or nothing."""
    close = difflib.get_close_matches(str(word), sorted(choices), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _check_model(cfg: DictConfig) -> None:
    """``model.recurrence``, ``model.context`` and ``model.backbone`` by the models' own checks;
    the backbone of a CCNet (a ``_target_`` in ``src.models.ccnet*``) must also run dilated at
    output stride 8 (the Mask R-CNN takes its ResNet undilated)."""
    dilated = str(_value(cfg, "model._target_") or "").startswith("src.models.ccnet")
    checks = (
        ("model.recurrence", check_recurrence),
        ("model.context", check_context),
        ("model.head_activation", check_activation),
        ("model.attention_kernel", check_kernel),
        ("model.target_frame", check_target_frame),
        ("model.backbone", check_dilated_backbone if dilated else check_backbone_name),
    )
    for key, check in checks:
        value = _value(cfg, key)
        if value is not None:
            try:
                check(value)
            except ValueError as err:
                raise ConfigError(str(err)) from err


def _check_data(cfg: DictConfig) -> None:
    crop = _value(cfg, "data.crop_size")
    if crop is None:
        return
    if not (isinstance(crop, list) and len(crop) == 2 and all(_is_int(c) and c > 0 for c in crop)):
        raise ConfigError(f"data.crop_size must be two positive ints [height, width]; got {crop}")
    batch = _value(cfg, "data.batch_size")
    if not (_is_int(batch) and batch >= 1):
        raise ConfigError(f"data.batch_size must be an int >= 1; got {batch!r}")
    features = math.ceil(crop[0] / OUTPUT_STRIDE) * math.ceil(crop[1] / OUTPUT_STRIDE)
    if cfg.get("train") and batch * features < 2:
        raise ConfigError(
            f"data.crop_size={crop} with data.batch_size={batch} gives one feature pixel per "
            f"batch at output stride {OUTPUT_STRIDE}: BatchNorm cannot train on it (needs >= 2 "
            "values per channel); use a larger crop or batch"
        )


def dataset_num_classes(cfg: DictConfig) -> int | None:
    """The dataset's class count when the config alone tells it (a class-level list of
    names, or a ``num_classes`` argument); None when only reading the data would."""
    target = _value(cfg, "data.dataset._target_")
    if target is None:
        return None
    try:
        names = getattr(hydra.utils.get_class(target), "class_names", None)
    except Exception:  # noqa: BLE001 - reported by _check_arguments
        return None
    if isinstance(names, list | tuple) and names:
        return len(names)
    count = _value(cfg, "data.dataset.num_classes")
    return count if _is_int(count) else None


def _check_num_classes(cfg: DictConfig) -> None:
    for key in ("model.num_classes", "module.num_classes"):
        given = _value(cfg, key)
        if given is None:
            continue
        expected = dataset_num_classes(cfg)
        if expected is not None and given != expected:
            raise ConfigError(
                f"{key}={given!r} disagrees with the dataset's {expected} classes (data); the "
                f"class count comes from the data: remove {key}"
            )


def _build_inference(cfg: DictConfig) -> InferenceConfig | None:
    """The run's :class:`InferenceConfig`, built (and so checked) once, here."""
    node = OmegaConf.select(cfg, "inference", default=None)
    if not isinstance(node, DictConfig):
        return None
    try:
        return InferenceConfig.from_config(node)
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from err


def _check_length(cfg: DictConfig) -> None:
    if not cfg.get("train") or "trainer" not in cfg:
        return
    max_steps, max_epochs = _value(cfg, "trainer.max_steps"), _value(cfg, "trainer.max_epochs")
    if _is_int(max_steps) and max_steps > 0:
        return
    if max_steps in (None, -1) and _is_int(max_epochs) and max_epochs > 0:
        return
    raise ConfigError(
        f"trainer.max_steps must be a positive int (or -1 with trainer.max_epochs > 0): the "
        f"poly schedule needs a finite length; got max_steps={max_steps!r}, "
        f"max_epochs={max_epochs!r}"
    )


def _check_ckpt_path(cfg: DictConfig) -> None:
    ckpt_path = _value(cfg, "ckpt_path")
    if ckpt_path not in (None, "") and not Path(str(ckpt_path)).is_file():
        raise ConfigError(f"ckpt_path={str(ckpt_path)!r} is not a file")
