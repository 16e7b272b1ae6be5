"""scripts/context_probe.py --sweep scores a finished context-toy sweep's checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from app_helpers import ROOT, read_results
from cli_helpers import run_cli

TINY_CONTEXT = [
    "experiment=context_toy",
    "model.channels=16",
    "model.aux_channels=16",
    "data.dataset.num_samples={train:4,val:2,test:2}",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory):
    sweep = tmp_path_factory.mktemp("context_sweep") / "sweep"
    run_cli("train", "-m", *TINY_CONTEXT, "model.recurrence=0,2", f"hydra.sweep.dir={sweep}")
    return sweep


@pytest.mark.slow  # a three-job sweep and the probe (~1 minute)
def test_probe_scores_every_job_like_the_app(sweep_dir, tmp_path):
    out = tmp_path / "scores.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "scripts/context_probe.py", "--sweep", str(sweep_dir), "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    scores = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(s["job"], s["recurrence"], s["seed"]) for s in scores] == [("0", 0, 42), ("1", 2, 42)]
    for score in scores:
        results = read_results(sweep_dir / score["job"])
        assert score["checkpoint"] == results["best_model_path"]
        # The same checkpoint on the same validation images: the app's mIoU.
        assert score["mIoU"] / 100 == pytest.approx(results["metrics"]["val/mIoU_best"], abs=1e-4)
        assert 0 <= score["acc_aligned"] <= 100 and 0 <= score["acc_off_band"] <= 100
    assert "job 1 (R=2, seed 42): mIoU" in proc.stdout
