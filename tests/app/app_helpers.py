"""Helpers of the application tests: a tiny CPU configuration and the real CLI in a subprocess.

Every run here uses a small backbone (resnet10t), 16-channel heads and 64×64 synthetic images
for a few steps, so the whole file set stays within a few minutes on two cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"

# A few-second model and data set; train/val/test sizes are even (two-process validation).
TINY = [
    "model.backbone=resnet10t",
    "model.channels=16",
    "model.aux_channels=16",
    "data.dataset.num_samples={train:8,val:4,test:4}",
    "data.dataset.image_size=[64,64]",
    "data.crop_size=[64,64]",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
]


def run_cli(
    entry: str, *overrides: str, timeout: int = 300, check: bool = True, cwd: Path = ROOT
) -> str:
    """Run ``python -m src.<entry> [overrides]`` from ``cwd`` (the repository root); return its
    output. From another folder the repository is put on PYTHONPATH, as for an outside user."""
    # One intra-op thread: tiny models gain nothing from more, and on a shared 2-core machine
    # OpenMP threads spinning at barriers slow every process down.
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1", "OMP_NUM_THREADS": "1"}
    if Path(cwd) != ROOT:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", f"src.{entry}", *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(f"src.{entry} failed ({proc.returncode}):\n{output[-6000:]}")
    if not check and proc.returncode == 0:
        raise AssertionError(f"src.{entry} was expected to fail:\n{output[-3000:]}")
    return output


def read_results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())
