"""Eval, predict and export rebuild the training config from the checkpoint alone; what the
user gives on top wins; a real conflict is still the clear mismatch error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli, run_cli_status

TRAIN = [
    "experiment=context_toy",  # not the entry points' default experiment (synthetic)
    "data.dataset.num_samples={train: 8, val: 2, test: 2}",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "model.backbone=resnet10t",
    "model.channels=16",
    "model.aux_channels=16",
    "model.recurrence=1",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.num_sanity_val_steps=0",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("trained")
    run_cli("train", *TRAIN, f"hydra.run.dir={run_dir}")
    return run_dir / "checkpoints" / "last.ckpt"


def test_the_checkpoint_keeps_its_launch_record(checkpoint: Path):
    launch = torch.load(checkpoint, weights_only=True)["launch"]
    assert launch["experiment"] == "context_toy"
    assert "model.channels=16" in launch["overrides"]
    assert not any(o.startswith("trainer.") for o in launch["overrides"])


def test_eval_needs_only_the_checkpoint(checkpoint: Path, tmp_path: Path):
    run_cli("eval", f"ckpt_path={checkpoint}", cwd=tmp_path)
    # the run folder is named after the checkpoint's experiment, not the default one
    (run_dir,) = (tmp_path / "logs" / "eval" / "runs" / "context_toy").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["config"]["model.recurrence"] == 1
    assert results["config"]["inference"]["mode"] == "whole"
    assert results["metrics"]["val/mIoU"] is not None


def test_overrides_on_top_win(checkpoint: Path, tmp_path: Path):
    run_cli(
        "eval",
        f"ckpt_path={checkpoint}",
        "inference=slide",
        "inference.crop_size=[32,32]",
        "inference.stride=[16,16]",
        "model.recurrence=2",  # changes no weight shape: allowed
        f"hydra.run.dir={tmp_path}",
    )
    config = json.loads((tmp_path / "results.json").read_text())["config"]
    assert config["inference"]["mode"] == "slide" and config["inference"]["crop_size"] == [32, 32]
    assert config["model.recurrence"] == 2


def test_a_real_conflict_is_the_clear_mismatch_error(checkpoint: Path, tmp_path: Path):
    code, output = run_cli_status(
        "eval", f"ckpt_path={checkpoint}", "model.channels=32", f"hydra.run.dir={tmp_path}",
        full_error=False,
    )  # fmt: skip
    assert code == 1
    assert "was trained with channels 16" in output and "model.channels" in output


@pytest.mark.slow  # the same rebuild (src.app.run) as eval's, tested above by default
def test_predict_and_export_need_only_the_checkpoint(checkpoint: Path, tmp_path: Path):
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    Image.new("RGB", (48, 40), (120, 30, 200)).save(images / "a.png")
    run_cli(
        "predict",
        f"ckpt_path={checkpoint}",
        f"input={images}",
        f"output={tmp_path / 'out'}",
        f"hydra.run.dir={tmp_path / 'p'}",
    )
    assert (tmp_path / "out" / "a.png").is_file()
    run_cli(
        "export",
        f"ckpt_path={checkpoint}",
        f"output={tmp_path / 'm.onnx'}",
        "input_size=[64,64]",
        f"hydra.run.dir={tmp_path / 'e'}",
    )
    assert (tmp_path / "m.onnx").is_file()
