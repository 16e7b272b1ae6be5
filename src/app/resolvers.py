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
    ``default``."""
    choice = OmegaConf.select(_root_, "hydra.runtime.choices.experiment", default=None)
    return str(choice) if choice not in (None, "null") else "default"


def register_resolvers() -> None:
    """Register the project's resolvers (idempotent)."""
    OmegaConf.register_new_resolver("launch_dir", lambda: LAUNCH_DIR, replace=True)
    OmegaConf.register_new_resolver("run_name", run_name, replace=True)


register_resolvers()
