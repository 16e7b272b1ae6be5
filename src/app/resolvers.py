"""OmegaConf resolvers used by ``conf/``; registered when ``src.app`` is imported.

``${launch_dir:}`` is the directory the command was started from. Unlike
``${hydra:runtime.cwd}`` it resolves before Hydra has set its runtime config, which the
multirun sweeper needs: it resolves ``hydra.sweep.dir`` (under ``paths.log_dir``) before any job
starts.

``${run_name:}`` names a run's folder after its experiment (``experiment=NAME``), or
``default`` without one; read from the composed config itself, for the same reason.
"""

from __future__ import annotations

import os
from typing import Any

from omegaconf import OmegaConf

# Taken at import, before Hydra could change the working directory (hydra.job.chdir=true).
LAUNCH_DIR = os.getcwd()


def run_name(*, _root_: Any) -> str:
    """The experiment this run composes (``hydra.runtime.choices.experiment``), else
    ``default``. Eval, predict and export of a checkpoint without ``experiment=`` on the
    command line take the checkpoint's own experiment (they rebuild its config from it)."""
    choice = OmegaConf.select(_root_, "hydra.runtime.choices.experiment", default=None)
    overrides = OmegaConf.select(_root_, "hydra.overrides.task", default=None) or []
    given = any(str(o).split("=", 1)[0].lstrip("+~") == "experiment" for o in overrides)
    if not given and OmegaConf.select(_root_, "task_name", default=None) != "train":
        choice = _checkpoint_experiment(_root_) or choice
    return str(choice) if choice not in (None, "null") else "default"


def _checkpoint_experiment(root: Any) -> str | None:
    """The experiment in ``ckpt_path``'s launch record, when it is a readable file, or of
    its model-zoo entry, when it is a zoo name."""
    path = OmegaConf.select(root, "ckpt_path", default=None, throw_on_missing=False)
    if not isinstance(path, str):
        return None
    from src.models.pretrained import ZOO, is_source_name  # a zoo name: its entry's experiment

    if is_source_name(path):
        return ZOO[path].experiment
    if not os.path.isfile(path):
        return None
    from src.app.launch import saved_launch  # only for runs given a checkpoint

    try:
        launch = saved_launch(path)
    except ValueError:  # not a readable checkpoint: the run itself reports it
        return None
    return launch.get("experiment") if isinstance(launch, dict) else None


def register_resolvers() -> None:
    """Register the project's resolvers (idempotent)."""
    OmegaConf.register_new_resolver("launch_dir", lambda: LAUNCH_DIR, replace=True)
    OmegaConf.register_new_resolver("run_name", run_name, replace=True)


register_resolvers()
