"""OmegaConf resolvers used by ``conf/``; registered when ``src.app`` is imported.

``${launch_dir:}`` is the directory the command was started from. Unlike
``${hydra:runtime.cwd}`` it resolves before Hydra has set its runtime config, which the
multirun sweeper needs: it resolves ``hydra.sweep.dir`` (under ``paths.log_dir``) before any job
starts.
"""

from __future__ import annotations

import os

from omegaconf import OmegaConf

# Taken at import, before Hydra could change the working directory (hydra.job.chdir=true).
LAUNCH_DIR = os.getcwd()


def register_resolvers() -> None:
    """Register the project's resolvers (idempotent)."""
    OmegaConf.register_new_resolver("launch_dir", lambda: LAUNCH_DIR, replace=True)


register_resolvers()
