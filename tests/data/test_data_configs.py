"""conf/data/*.yaml instantiate the DataModule with the stable keys, on the fake layouts."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[2] / "conf" / "data"
STABLE_KEYS = ("root", "batch_size", "crop_size", "num_workers")


def load(name: str, data_dir: Path, **overrides):
    """The data config as it sits in the composed app config (with paths.data_dir and seed)."""
    data = OmegaConf.load(CONF / f"{name}.yaml")
    cfg = OmegaConf.create({"paths": {"data_dir": str(data_dir)}, "seed": 7, "data": data})
    for key, value in overrides.items():
        OmegaConf.update(cfg, f"data.{key}", value)
    return cfg


@pytest.mark.parametrize(
    "name, classes, val_names",
    [
        ("synthetic", 5, ["synthetic_val_00000"]),
        ("cityscapes", 19, ["frankfurt_000000_000019"]),
        ("lip", 20, None),
        ("coco", 4, ["000000000007"]),
    ],
)
def test_config_builds_a_working_datamodule(fake_data, name, classes, val_names):
    data_dir = next(iter(fake_data.values())).parent
    cfg = load(name, data_dir, num_workers=0, crop_size=[32, 32], batch_size=2)
    assert all(key in cfg.data for key in STABLE_KEYS)
    assert cfg.data.dataset._partial_ is True
    dm = hydra.utils.instantiate(cfg.data)
    assert dm.num_classes == classes and dm.ignore_index == 255 and dm.seed == 7
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    assert train["image"].shape == (2, 3, 32, 32)
    val = next(iter(dm.val_dataloader()))
    if val_names is not None:
        assert val["name"][: len(val_names)] == val_names


def test_default_roots_follow_paths_data_dir(tmp_path):
    for name in ("cityscapes", "lip", "coco"):
        cfg = load(name, tmp_path)
        assert cfg.data.root == f"{tmp_path}/{name}"
