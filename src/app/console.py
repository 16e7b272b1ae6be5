"""The console and the run's log file: library messages routed into the log file, the noise a
user cannot act on filtered out, and the resolved config printed and saved at the start."""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from rich.console import Console
from rich.syntax import Syntax
from rich.tree import Tree

LIBRARY_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning")
"""Loggers that print through handlers of their own unless routed to the root logger."""
NOISE = (
    "Tip:",  # Lightning's advertisements for its own services
    "Skipping setting a default `ModelSummary`",
    "callbacks used to create the checkpoint need to be provided",  # every eval from a ckpt
    "isinstance(treespec, LeafSpec)",  # a dependency's deprecation, not ours
)
"""Messages a user cannot act on (matched as substrings)."""
CONFIG_TREE_FILE = "config_tree.log"


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in NOISE)


_DROP_NOISE = _DropNoise()  # one instance: adding it again (every job of a multirun) is a no-op


def quiet_and_route_logs() -> None:
    """Send Lightning's messages through the root logger (the console and the run's log file
    that Hydra set up), drop :data:`NOISE`, and silence dependencies' deprecation warnings."""
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                logger.removeHandler(handler)
        logger.propagate = True
        logger.addFilter(_DROP_NOISE)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DROP_NOISE)
    for text in NOISE:
        warnings.filterwarnings("ignore", message=f".*{re.escape(text)}.*")
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=r"^(?!src\.)")


def log_to_file(text: str, level: int = logging.INFO, name: str = __name__) -> str | None:
    """Write ``text`` to the run's log file(s) only, not the console (tracebacks, tables the
    console already shows); the first file's path, or None without a log file."""
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    record = logging.getLogger(name).makeRecord(name, level, __file__, 0, text, None, None)
    for handler in files:
        handler.handle(record)
    return files[0].baseFilename if files else None


@rank_zero_only
def print_config_tree(cfg: DictConfig, output_dir: str | Path | None = None) -> None:
    """The resolved config as a tree of its top-level groups (as the lightning-hydra-template
    prints it), also saved as ``config_tree.log`` in ``output_dir``."""
    tree = Tree("config", guide_style="dim")
    for key, value in cfg.items():
        text = OmegaConf.to_yaml(value, resolve=True) if OmegaConf.is_config(value) else str(value)
        tree.add(str(key)).add(Syntax(text.rstrip(), "yaml", theme="ansi_dark"))
    Console().print(tree)
    if output_dir is not None:
        with open(Path(output_dir) / CONFIG_TREE_FILE, "w") as file:
            Console(file=file, width=100, color_system=None).print(tree)
