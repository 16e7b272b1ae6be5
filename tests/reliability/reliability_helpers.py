"""Helpers of the reliability tests: a CLI run that can be killed, checkpoint comparison."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from app_helpers import ROOT, TINY

# The resume tests' run: 12 steps, epochs of 4 batches (8 samples / batch 2), last.ckpt every
# 3 steps (always mid-epoch before the end), validation every 6 (so saves at 6 and 12 wait
# for it), deterministic kernels.
STEPS, EVERY, EPOCH, VALIDATE = 12, 3, 4, 6
VAL_BATCHES = 2  # TINY: 4 validation samples, batches of 2
RESUMABLE = [
    f"trainer.max_steps={STEPS}",
    f"trainer.val_check_interval={VALIDATE}",
    "trainer.deterministic=true",
    f"callbacks.last_checkpoint.every_n_train_steps={EVERY}",
    "seed=7",
]
RESUMABLE_RUN = [*TINY, *RESUMABLE]
# The same schedule for video training: the video toy's clips of 3 frames (64x96) through
# CCNet3D (its tiny test_resnet, 16-channel heads), split sizes and batches as TINY's.
RESUMABLE_VIDEO_RUN = [
    "experiment=video_toy",
    "model.channels=16",
    "model.aux_channels=16",
    "data.dataset.num_samples={train:8,val:4,test:4}",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    *RESUMABLE,
]


def start_cli(entry: str, *overrides: str, log: Path) -> subprocess.Popen:
    """Start ``python -m src.<entry>`` in the background, output into ``log``."""
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", f"src.{entry}", *overrides],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for_file(path: Path, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    """Poll until ``path`` exists; fail if the process ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (code {proc.returncode}) before {path} appeared")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.01)


def load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def differing_tensors(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Paths of the entries where two nested structures of tensors differ (bit-exactly)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
        )
        return [] if same else [prefix]
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{prefix} keys {sorted(set(a) ^ set(b), key=str)}"]
        return [d for k in a for d in differing_tensors(a[k], b[k], f"{prefix}.{k}")]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return [f"{prefix} length"]
        return [
            d
            for i, (x, y) in enumerate(zip(a, b))
            for d in differing_tensors(x, y, f"{prefix}[{i}]")
        ]
    return [] if a == b else [f"{prefix}: {a!r} != {b!r}"]
