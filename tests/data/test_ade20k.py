"""ADE20KDataset on the fake ADEChallengeData2016 layout: names, classes, the 0 → 255 and
k → k - 1 label map, loading through the data module, and the recipe on the CPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, ListConfig, OmegaConf
from PIL import Image

from src.data.ade20k import FOLDER, LABEL_TABLE, ADE20KDataset
from src.data.fake import write_fake_ade20k
from src.tasks.semantic.datamodule import SegmentationDataModule

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_reads_both_splits_in_name_order(fake_data):
    root = fake_data["ade20k"]
    for split, count in (("train", 4), ("val", 3)):
        ds = ADE20KDataset(root, split)
        assert len(ds) == count
        assert [ds[i]["name"] for i in range(count)] == [
            f"ADE_{split}_{i:08d}" for i in range(1, count + 1)
        ]
    sample = ADE20KDataset(root, "val")[1]
    raw = np.array(Image.open(root / FOLDER / "annotations/validation/ADE_val_00000002.png"))
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, *raw.shape)
    assert sample["mask"].dtype == torch.int64 and sample["mask"].shape == raw.shape
    assert 1 < sample["image"].max() <= 255  # raw RGB, not normalised


def test_mask_is_the_annotation_minus_one_with_zero_ignored(fake_data):
    ds = ADE20KDataset(fake_data["ade20k"], "train")
    for index, (_, label, _) in enumerate(ds.samples):
        raw = np.array(Image.open(label)).astype(np.int64)
        mask = ds[index]["mask"].numpy()
        np.testing.assert_array_equal(mask, np.where(raw == 0, 255, raw - 1))
        assert (raw == 0).any() and (raw == 150).any() and len(np.unique(raw)) > 2


def test_label_values_map_one_by_one(tmp_path):
    root = write_fake_ade20k(tmp_path, counts={"val": 1})
    label_path = root / FOLDER / "annotations/validation/ADE_val_00000001.png"
    label = np.array(Image.open(label_path))
    label[0, :5] = [0, 1, 2, 149, 150]
    Image.fromarray(label).save(label_path)
    assert ADE20KDataset(root, "val")[0]["mask"][0, :5].tolist() == [255, 0, 1, 148, 149]


def test_lookup_table_covers_every_byte():
    assert LABEL_TABLE.shape == (256,) and not LABEL_TABLE.flags.writeable
    assert LABEL_TABLE[0] == 255
    assert LABEL_TABLE[1:151].tolist() == list(range(150))
    assert (LABEL_TABLE[151:] == 255).all()


def test_classes_and_palette():
    assert ADE20KDataset.num_classes == 150 == len(ADE20KDataset.class_names)
    names = ADE20KDataset.class_names
    assert names[:5] == ["wall", "building", "sky", "floor", "tree"]
    assert names[7] == "bed" and names[12] == "person" and names[20] == "car"
    assert names[-2:] == ["clock", "flag"] and len(set(names)) == 150
    palette = ADE20KDataset.palette
    assert len(palette) == 150 and all(len(c) == 3 and max(c) <= 255 for c in palette)
    assert palette[0] == [120, 120, 120] and palette[-1] == [92, 0, 255]
    assert ADE20KDataset.flip_pairs == []


def test_root_may_be_the_release_folder_itself(fake_data):
    parent = ADE20KDataset(fake_data["ade20k"], "val")
    release = ADE20KDataset(fake_data["ade20k"] / FOLDER, "val")
    assert release.samples == parent.samples


def test_fake_tree_loads_through_the_data_module(fake_data):
    dm = SegmentationDataModule(
        dataset=ADE20KDataset,
        root=str(fake_data["ade20k"]),
        crop_size=(32, 32),
        batch_size=2,
        num_workers=0,
        seed=0,
    )
    assert dm.num_classes == 150 and dm.class_names[0] == "wall" and dm.ignore_index == 255
    assert len(dm.palette) == 150 and dm.flip_pairs == []
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    assert train["image"].shape == (2, 3, 32, 32) and train["mask"].shape == (2, 32, 32)
    assert set(train["mask"].unique().tolist()) <= set(range(150)) | {255}
    val = next(iter(dm.val_dataloader()))
    assert val["name"] == ["ADE_val_00000001"] and val["image"].shape[0] == 1
    assert (val["mask"] == 255).any() and (val["mask"] == 149).any()


@pytest.mark.slow  # a CLI run; the data module on the fake tree is tested above by default
def test_one_training_step_of_the_recipe_on_the_fake_tree(fake_data, tmp_path):
    """experiment=ade20k_rcca (4 GPUs, sync BN, ImageNet weights, 512 crops) on the CPU with
    debug=tiny, cut to one step, on the fake ADEChallengeData2016 tree."""
    run_dir = tmp_path / "run"
    run_cli(
        "train",
        "experiment=ade20k_rcca",
        "debug=tiny",
        "trainer.max_steps=1",
        f"data.root={fake_data['ade20k']}",
        f"hydra.run.dir={run_dir}",
    )
    results = json.loads((run_dir / "results.json").read_text())
    assert results["global_step"] == 1 and results["world_size"] == 1
    assert math.isfinite(results["metrics"]["val/mIoU"])
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


@pytest.fixture(scope="module")
def recipe() -> DictConfig:
    """experiment=ade20k_rcca as the training CLI composes it."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=["experiment=ade20k_rcca"])


@pytest.mark.parametrize(
    "key, value",
    [
        ("data.dataset._target_", "src.data.ade20k.ADE20KDataset"),
        ("data.crop_size", [512, 512]),
        ("data.batch_size", 4),  # x 4 GPUs = 16
        ("data.augmentation.scale_range", [0.5, 2.0]),
        ("data.augmentation.flip_prob", 0.5),
        ("data.augmentation.photometric", True),
        ("model.backbone", "resnet50c"),
        ("model.pretrained", True),
        ("model.context", "rcca"),
        ("model.recurrence", 2),
        ("model.aux", True),
        ("trainer.devices", 4),
        ("trainer.strategy", "ddp"),
        ("trainer.sync_batchnorm", True),
        ("trainer.max_steps", 80000),
        ("trainer.val_check_interval", 8000),
        ("module.lr", 0.01),
        ("module.momentum", 0.9),
        ("module.weight_decay", 5e-4),
        ("module.poly_power", 0.9),
        ("loss.aux_weight", 0.4),
        ("loss.ohem", False),
        ("inference.mode", "whole"),
        ("inference.scales", [1.0]),
        ("inference.flip", False),
    ],
)
def test_the_experiment_is_mmsegs_recipe(recipe, key, value):
    found = OmegaConf.select(recipe, key)
    assert (list(found) if isinstance(found, ListConfig) else found) == value
