"""Data errors met through ``python -m src.train``: exit code != 0, a message naming the
file, and no results.json that could be mistaken for a finished run's."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import run_cli

from src.data.fake import write_fake_cityscapes

CITYSCAPES = [
    "data=cityscapes",
    "data.crop_size=[64,64]",
    "data.batch_size=2",
    "data.val_batch_size=1",
    "data.num_workers=0",
    "data.persistent_workers=false",
    "model.backbone=resnet10t",
    "model.channels=16",
    "model.aux_channels=16",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.num_sanity_val_steps=0",
]


def test_unreadable_training_image_names_the_file(tmp_path: Path):
    root = write_fake_cityscapes(
        tmp_path / "cityscapes", images_per_city=2, splits=("train", "val")
    )
    broken = sorted((root / "leftImg8bit" / "train").rglob("*.png"))[1]
    broken.write_bytes(b"not a png")
    run_dir = tmp_path / "run"
    output = run_cli(
        "train", *CITYSCAPES, f"data.root={root}", f"hydra.run.dir={run_dir}", check=False
    )
    assert "ImageReadError" in output and str(broken) in output
    assert not (run_dir / "results.json").exists()


@pytest.mark.slow  # the dataset-level error itself: tests/data/test_data_errors.py
def test_missing_dataset_root_names_the_path(tmp_path: Path):
    root = tmp_path / "nowhere"
    run_dir = tmp_path / "run"
    output = run_cli(
        "train", *CITYSCAPES, f"data.root={root}", f"hydra.run.dir={run_dir}", check=False
    )
    assert "DatasetNotFoundError" in output and str(root) in output
    assert not (run_dir / "results.json").exists() and not (run_dir / "checkpoints").exists()
