"""Helpers of the application tests: a tiny CPU configuration and reading results.json
(the CLI runner is tests/cli_helpers.py).

Every run here uses a small backbone (resnet10t), 16-channel heads and 64×64 synthetic images
for a few steps, so the whole file set stays within a few minutes on two cores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cli_helpers import ROOT

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


def read_results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())
