"""What the entry points share: config checks, instantiation, checkpoints, results, reports."""

from src.app.instantiate import (
    instantiate_callbacks,
    instantiate_loggers,
    instantiate_module,
)
from src.app.resolvers import register_resolvers
from src.app.results import checkpoint_paths, collect_results, write_results
from src.app.task import log_hyperparameters, task_wrapper

__all__ = [
    "checkpoint_paths",
    "collect_results",
    "instantiate_callbacks",
    "instantiate_loggers",
    "instantiate_module",
    "log_hyperparameters",
    "register_resolvers",
    "task_wrapper",
    "write_results",
]
