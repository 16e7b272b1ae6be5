"""How every entry point runs its task: check the config, run, and fail in one clear line.

:func:`run_task` is the whole body of each ``main``. A failure prints one line on the console
(the error's own message), keeps the traceback in the run's log file only (the console gets it
too with ``HYDRA_FULL_ERROR=1``, as Hydra does), writes ``failure.json`` in the run folder (so
a failed run is recognisable: it has that file and no ``results.json``) and ends the process
with exit code 2 (invalid config) or 1. In a multirun, a failed job does not end the sweep:
the next jobs run, and the sweep summary marks the failed one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from src.app.checkpoint import AUTO, newest_last_checkpoint
from src.app.console import log_to_file, print_config_tree, quiet_and_route_logs
from src.app.launch import config_from_checkpoint
from src.app.pretrained import resolve_pretrained_checkpoint
from src.app.results import FAILURE_FILE
from src.app.validate import EXIT_CODE, CheckedConfig, ConfigError, validate_config
from src.core.atomic import atomic_write_text

log = logging.getLogger(__name__)

FAILED_VALUE = float("nan")
"""What a failed multirun job returns to the sweeper."""


def run_task(
    task: Callable[[DictConfig, CheckedConfig], Any],
    cfg: DictConfig,
    config_from_ckpt: bool = False,
) -> Any:
    """``task(cfg, checked)`` after the config check; a failure is reported once (see the
    module docstring). With ``config_from_ckpt`` (eval, predict, export), the config is first
    rebuilt from ``ckpt_path``'s launch record (:mod:`src.app.launch`). Returns the task's
    value, or :data:`FAILED_VALUE` for a failed job of a multirun."""
    quiet_and_route_logs()
    try:
        _resolve_auto_checkpoint(cfg)
        _resolve_published_weights(cfg)
        if config_from_ckpt:
            cfg = config_from_checkpoint(cfg)
        checked = validate_config(cfg)
    except ConfigError as err:
        return _fail(cfg, f"invalid config: {err}", err, EXIT_CODE)
    if cfg.get("print_config", True):
        print_config_tree(cfg, _output_dir(cfg))
    try:
        return task(cfg, checked)
    except Exception as err:
        cause = _unwrapped(err)
        return _fail(cfg, f"{type(cause).__name__}: {cause}", err, 1)


def _fail(cfg: DictConfig, message: str, err: BaseException, exit_code: int) -> float:
    """Report the failure once; exit, or return :data:`FAILED_VALUE` in a multirun. With
    ``HYDRA_FULL_ERROR=1`` the error propagates instead (Hydra prints the whole traceback)."""
    log_file = _log_traceback(err)
    output_dir = _output_dir(cfg)
    if output_dir:
        record = {"error": message, "exit_code": exit_code, "log_file": log_file}
        atomic_write_text(Path(output_dir) / FAILURE_FILE, json.dumps(record, indent=2) + "\n")
    if os.environ.get("HYDRA_FULL_ERROR") == "1" and exit_code != EXIT_CODE:
        raise err  # config errors stay one line: their traceback says nothing more
    log.error(message)
    if _multirun():
        log.error("this job failed; the sweep goes on with the next one")
        return FAILED_VALUE
    sys.exit(exit_code)


def _unwrapped(err: BaseException) -> BaseException:
    """The error a constructor raised, not Hydra's wrapper around it (which adds the target's
    path and the config key on lines of their own)."""
    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    return err


def _output_dir(cfg: DictConfig) -> str | None:
    """The run folder, when the config resolves one."""
    return OmegaConf.select(
        cfg, "paths.output_dir", default=None, throw_on_resolution_failure=False
    )


def _log_traceback(err: BaseException) -> str | None:
    """Write the traceback to the run's log file only (not the console); the file's path."""
    text = "".join(traceback.format_exception(err)).rstrip()
    return log_to_file(text, logging.ERROR, log.name)


def _resolve_published_weights(cfg: DictConfig) -> None:
    """``ckpt_path=`` naming published weights (a zoo name, an mmseg or official file)
    becomes this project's checkpoint of them; a file of no known format is a config error."""
    try:
        resolve_pretrained_checkpoint(cfg, str(cfg.get("task_name")))
    except (ValueError, OSError) as err:
        raise ConfigError(str(err)) from err


def _resolve_auto_checkpoint(cfg: DictConfig) -> None:
    """``ckpt_path=auto`` becomes the newest ``last.ckpt`` of this run's experiment."""
    if cfg.get("ckpt_path") != AUTO:
        return
    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    choices = hydra_cfg.runtime.choices if hydra_cfg else {}
    debug = choices.get("debug") not in (None, "null")
    try:
        path = newest_last_checkpoint(cfg.paths.log_dir, choices.get("experiment"), debug)
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from err
    log.info("ckpt_path=auto: %s", path)
    cfg.ckpt_path = str(path)


def _multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
