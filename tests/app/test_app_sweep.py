"""A 2-job multirun with W&B offline: sweep summary, and one complete W&B run per job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from app_helpers import TINY, read_results
from cli_helpers import run_cli, wandb_config, wandb_summary

from src.data.synthetic import SyntheticSegmentationDataset

CLASS_NAMES = SyntheticSegmentationDataset(num_samples=1).class_names


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Started from an empty folder with the default sweep folder, as `make sweep` does: the
    # sweeper resolves hydra.sweep.dir (under paths.log_dir) before any job has started.
    launch_dir = tmp_path_factory.mktemp("sweep")
    run_cli(
        "train",
        "-m",
        *TINY,
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "model.recurrence=0,1",
        "logger=wandb",
        cwd=launch_dir,
    )
    (sweep,) = (launch_dir / "logs" / "train" / "multiruns" / "synthetic").iterdir()
    return sweep


def test_sweep_writes_a_summary_of_every_job(sweep_dir):
    jobs = [read_results(sweep_dir / str(i)) for i in range(2)]
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["metric"] == "val/mIoU_best" and summary["swept"] == ["model.recurrence"]
    assert [r["model.recurrence"] for r in summary["runs"]] == ["0", "1"]
    assert [r["val/mIoU_best"] for r in summary["runs"]] == [
        job["metrics"]["val/mIoU_best"] for job in jobs
    ]
    table = (sweep_dir / "summary.md").read_text()
    assert "model.recurrence" in table and len(table.strip().splitlines()) == 4
    assert (sweep_dir / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [job["config"]["model.recurrence"] for job in jobs] == [0, 1]


def test_each_job_has_its_own_complete_wandb_run(sweep_dir):
    """wandb.finish() between jobs: two runs, each finished, with its own metrics and media."""
    run_ids = set()
    for job in range(2):
        (run_dir,) = (sweep_dir / str(job) / "wandb").glob("offline-run-*")
        info = wandb_summary(run_dir)
        run_ids.add(info["run_id"])
        assert info["state"] == "finished"
        results = read_results(sweep_dir / str(job))
        summary = info["summary"]
        assert summary["val/mIoU"] == pytest.approx(results["metrics"]["val/mIoU"])
        assert summary["train/loss"] == pytest.approx(results["metrics"]["train/loss"])
        assert "train/lr" in summary and "val/IoU/background" in summary
        assert info["config"]["model"]["recurrence"] == job  # the resolved config

        files = run_dir / "files"
        predictions = summary["val/predictions"]
        assert len(list((files / "media" / "images" / "val").glob("*.png"))) == 4
        for masks in predictions["all_masks"]:
            assert set(masks) == {"prediction", "ground_truth"}
            assert all((files / m["path"]).is_file() for m in masks.values())
        table = json.loads((files / summary["val/per_class_iou"]["path"]).read_text())
        assert table["columns"] == ["class", "IoU"]
        assert [row[0] for row in table["data"]] == CLASS_NAMES
    assert len(run_ids) == 2


def test_each_job_logs_every_loss_term_and_overlays_labelled_with_the_class_names(sweep_dir):
    """README (Weights & Biases): "every loss term" (here seg and aux; the CCL terms: a slow
    test in test_readme_promises.py) and "prediction overlays (... predicted and
    ground-truth masks and class labels)"."""
    expected = {**{str(i): name for i, name in enumerate(CLASS_NAMES)}, "255": "ignore"}
    for job in range(2):
        (run_dir,) = (sweep_dir / str(job) / "wandb").glob("offline-run-*")
        results = read_results(sweep_dir / str(job))
        terms = {k for k in results["metrics"] if k.startswith("train/") and k != "train/lr"}
        assert terms == {"train/loss", "train/seg", "train/aux"}
        summary = wandb_summary(run_dir)["summary"]
        for key in terms:
            assert summary[key] == pytest.approx(results["metrics"][key]), key
        labels = wandb_config(run_dir)["_wandb"]["mask/class_labels"]
        for layer in ("prediction", "ground_truth"):
            assert labels[f"val/predictions_wandb_delimeter_{layer}"]["value"] == expected
