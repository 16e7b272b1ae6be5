"""The command a training run was launched with, kept in its checkpoints, so that eval,
predict and export rebuild the run's config from the checkpoint alone.

A checkpoint's ``launch`` entry holds the experiment and the command-line overrides that
shape the model, the data and the inference (``model*``, ``data*``, ``inference*``,
``loss*``, ``module*``, ``debug``, ``paths.data_dir``). ``python -m src.eval ckpt_path=PATH``
composes its config again from them; whatever the user gives on top (``experiment=``,
``data.root=``, ``inference=whole``…) wins over the saved values it names. A real conflict
(weights for another backbone or class count) stays the clear error of
:func:`src.app.checkpoint.check_checkpoint_fits`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from src.app.checkpoint import load_checkpoint

log = logging.getLogger(__name__)

LAUNCH_KEY = "launch"
"""The checkpoint entry holding the launch record."""
SAVED_PREFIXES = ("model", "data", "inference", "loss", "module", "debug", "paths.data_dir")
"""Overrides (by key) that decide what a checkpoint is and how it predicts."""


def override_key(override: str) -> str:
    """``"+model.x=1"`` -> ``"model.x"``; ``"inference=slide"`` -> ``"inference"``."""
    return override.split("=", 1)[0].lstrip("+~")


def _names(key: str, prefix: str) -> bool:
    """Whether ``key`` is ``prefix`` or lies under it (``model.backbone`` under ``model``)."""
    return key == prefix or key.startswith(prefix + ".") or key.startswith(prefix + "/")


def launch_record() -> dict[str, Any] | None:
    """This Hydra job's experiment and its model/data/inference overrides (plain values, as
    a checkpoint holds them); None outside Hydra."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    kept = [
        o
        for o in hydra_cfg.overrides.task
        if any(_names(override_key(o), p) for p in SAVED_PREFIXES)
    ]
    return {"experiment": hydra_cfg.runtime.choices.get("experiment"), "overrides": kept}


def launch_overrides(saved: dict[str, Any], given: Sequence[str]) -> list[str]:
    """The overrides that rebuild a saved run's config with ``given`` on top: the saved
    experiment unless one is given, the saved overrides that ``given`` does not name (a group
    chosen again drops the saved values under it), then ``given``."""
    given_keys = [override_key(o) for o in given]
    overrides = []
    if saved.get("experiment") and "experiment" not in given_keys:
        overrides.append(f"experiment={saved['experiment']}")
    for override in saved.get("overrides") or []:
        key = override_key(override)
        if not any(_names(key, g) for g in given_keys):
            overrides.append(override)
    return [*overrides, *given]


def saved_launch(path: str | Path) -> dict[str, Any] | None:
    """The launch record of the checkpoint at ``path`` (None in one written before records
    were kept). Read once per file version: the run folder's name (``${run_name:}``) and the
    config rebuild both ask for it."""
    path = Path(path)
    stat = path.stat()
    return _read_launch(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _read_launch(path: str, mtime_ns: int, size: int) -> dict[str, Any] | None:
    """:func:`saved_launch` for one version of a file (the cache key includes its mtime)."""
    return load_checkpoint(path, mmap=True).get(LAUNCH_KEY)


def config_from_checkpoint(cfg: DictConfig) -> DictConfig:
    """``cfg`` composed again for ``cfg.ckpt_path``'s launch record (see the module
    docstring); ``cfg`` itself for a checkpoint without one (trained before it was saved:
    then the experiment and overrides must be given)."""
    path = cfg.get("ckpt_path")
    if not path or not HydraConfig.initialized() or not Path(str(path)).is_file():
        return cfg  # the config check names a missing file
    saved = saved_launch(path)
    if not saved:
        return cfg
    hydra_cfg = HydraConfig.get()
    overrides = launch_overrides(saved, list(hydra_cfg.overrides.task))
    log.info("config of %s: %s", path, " ".join(overrides))
    rebuilt = compose(config_name=hydra_cfg.job.config_name, overrides=overrides)
    with open_dict(rebuilt):
        rebuilt.ckpt_path = str(path)
    return rebuilt
