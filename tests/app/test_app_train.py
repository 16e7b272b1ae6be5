"""End to end through the real CLI: train, results.json, checkpoints, resume, eval, bf16."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from app_helpers import CONF, ROOT, TINY, read_results
from cli_helpers import run_cli
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from src.data.synthetic import SyntheticSegmentationDataset

CLASS_NAMES = SyntheticSegmentationDataset(num_samples=1).class_names


def csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def logged(rows: list[dict[str, str]], key: str) -> dict[int, float]:
    """step -> value of every row where ``key`` was logged."""
    return {int(r["step"]): float(r[key]) for r in rows if r.get(key)}


def test_train_writes_results_json(trained_run):
    results = read_results(trained_run)
    assert results["task"] == "train" and results["experiment"] == "synthetic"
    assert results["global_step"] == 4 and results["world_size"] == 1
    assert results["wall_time_s"] > 0
    metrics = results["metrics"]
    for key in ("val/mIoU", "val/mIoU_best", "val/loss", "test/mIoU", "train/loss", "train/lr"):
        assert metrics[key] is not None, key
    assert results["optimized_metric"] == "val/mIoU_best"
    assert results["optimized_value"] == metrics["val/mIoU_best"]
    per_class = results["per_class_iou"]["val"]
    assert list(per_class) == CLASS_NAMES
    finite = [v for v in per_class.values() if v is not None]
    assert metrics["val/mIoU"] == pytest.approx(sum(finite) / len(finite))
    assert list(results["per_class_iou"]["test"]) == CLASS_NAMES
    config = results["config"]
    assert config["model.backbone"] == "resnet10t" and config["trainer.max_steps"] == 4
    assert config["inference"]["mode"] == "whole"


def test_train_saves_best_and_last_checkpoints(trained_run):
    checkpoints = trained_run / "checkpoints"
    best = sorted(checkpoints.glob("best_*.ckpt"))
    assert (checkpoints / "last.ckpt").is_file() and len(best) == 1
    assert [p for p in checkpoints.iterdir() if p.is_dir()] == []  # no "val/" folder from a "/"
    results = read_results(trained_run)
    assert Path(results["best_model_path"]) == best[0]
    assert Path(results["last_model_path"]) == checkpoints / "last.ckpt"
    # Plain hyperparameters: the checkpoint loads with torch's safe unpickler.
    checkpoint = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["class_names"] == CLASS_NAMES
    assert checkpoint["global_step"] == 4


def test_train_logs_every_loss_term_lr_and_per_class_iou(trained_run):
    rows = csv_rows(trained_run)
    for key in ("train/loss", "train/seg", "train/aux", "train/lr"):
        assert len(logged(rows, key)) == 4, key
    assert sorted(logged(rows, "val/mIoU")) == [1, 3]  # validation every 2 steps
    for name in CLASS_NAMES:
        assert f"val/IoU/{name}" in rows[0]
    lr = logged(rows, "train/lr")
    assert [lr[s] for s in range(4)] == pytest.approx([0.01 * (1 - s / 4) ** 0.9 for s in range(4)])


def test_resume_from_last_checkpoint_continues_the_run(trained_run, tmp_path):
    """Resume last.ckpt (step 4) with max_steps=6: the step count, weights and optimiser state
    carry on, and the poly curve is re-aimed at the new last step."""
    run_dir = tmp_path / "resumed"
    last = trained_run / "checkpoints" / "last.ckpt"
    output = run_cli(
        "train",
        *TINY,
        "trainer.max_steps=6",
        "trainer.val_check_interval=2",
        f"ckpt_path={last}",
        f"hydra.run.dir={run_dir}",
    )
    assert "Restoring states from the checkpoint" in output
    results = read_results(run_dir)
    assert results["global_step"] == 6 and results["config"]["ckpt_path"] == str(last)
    lr = logged(csv_rows(run_dir), "train/lr")
    assert sorted(lr) == [4, 5]  # no step repeated from 0
    assert [lr[4], lr[5]] == pytest.approx([0.01 * (1 - s / 6) ** 0.9 for s in (4, 5)])
    assert sorted(logged(csv_rows(run_dir), "val/mIoU")) == [5]


def test_eval_reproduces_the_final_validation(trained_run, tmp_path):
    run_dir = tmp_path / "eval"
    output = run_cli(
        "eval",
        *TINY,
        f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={run_dir}",
    )
    assert "val IoU" in output and "background" in output and "mIoU" in output
    results = read_results(run_dir)
    trained = read_results(trained_run)
    assert results["task"] == "eval" and results["checkpoint_global_step"] == 4
    assert results["metrics"]["val/mIoU"] == pytest.approx(trained["metrics"]["val/mIoU"])
    assert results["per_class_iou"]["val"] == pytest.approx(trained["per_class_iou"]["val"])
    # The 4-step model predicts mostly background, so the IoUs above would also match other
    # weights; the loss of its logits is the same only for the same weights and inference.
    assert results["metrics"]["val/loss"] == pytest.approx(trained["metrics"]["val/loss"], rel=1e-5)


def test_test_only_switch_scores_a_checkpoint(trained_run, tmp_path):
    """``train=false test=true ckpt_path=...``: the test metrics of the run's best checkpoint."""
    trained = read_results(trained_run)
    run_dir = tmp_path / "test_only"
    run_cli(
        "train",
        *TINY,
        "train=false",
        "test=true",
        f"ckpt_path={trained['best_model_path']}",
        f"hydra.run.dir={run_dir}",
    )
    results = read_results(run_dir)
    assert results["metrics"]["test/mIoU"] == pytest.approx(trained["metrics"]["test/mIoU"])
    # the loss tells weights apart where the (mostly background) IoU cannot: the best
    # checkpoint's (step 2, tested by the run itself), not the last one's
    assert results["metrics"]["test/loss"] == pytest.approx(
        trained["metrics"]["test/loss"], rel=1e-5
    )
    assert "val/mIoU" not in results["metrics"]


@pytest.mark.slow  # in-process: the op and the losses under bf16 autocast (default run)
def test_bf16_mixed_precision_trains_end_to_end(tmp_path):
    run_dir = tmp_path / "bf16"
    run_cli(
        "train",
        *TINY,
        "trainer.precision=bf16-mixed",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        f"hydra.run.dir={run_dir}",
    )
    results = read_results(run_dir)
    assert results["config"]["trainer.precision"] == "bf16-mixed"
    assert math.isfinite(results["metrics"]["train/loss"])
    assert 0.0 <= results["metrics"]["val/mIoU"] <= 1.0
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def compose_eval(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "eval",
            overrides=[
                *TINY,
                f"paths.root_dir={ROOT}",
                f"paths.output_dir={tmp_path}",
                *overrides,
            ],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_eval_without_a_checkpoint_names_ckpt_path(tmp_path):
    from src.eval import evaluate

    with pytest.raises(ValueError, match="ckpt_path is required"):
        evaluate(compose_eval(tmp_path))
    with pytest.raises(FileNotFoundError, match="ckpt_path"):
        evaluate(compose_eval(tmp_path, f"ckpt_path={tmp_path / 'missing.ckpt'}"))
    with pytest.raises(ValueError, match="split"):
        evaluate(compose_eval(tmp_path, f"ckpt_path={__file__}", "split=train"))
