"""The long-range-context toy: determinism, splits, geometry and the key → label rule."""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.data.base import IGNORE_INDEX
from src.data.context_toy import KEY_COLOURS, ContextToyDataset, draw
from src.data.transforms import eval_transform

DATA_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "data" / "context_toy.yaml"


def small(split: str = "train", **kwargs) -> ContextToyDataset:
    return ContextToyDataset(split=split, num_samples=16, **kwargs)


def test_class_attributes() -> None:
    assert ContextToyDataset.num_classes == 1 + len(KEY_COLOURS) == 5
    assert ContextToyDataset.class_names[0] == "background"
    assert len(ContextToyDataset.class_names) == ContextToyDataset.num_classes
    assert len(set(ContextToyDataset.class_names)) == ContextToyDataset.num_classes
    palette = np.asarray(ContextToyDataset.palette)
    assert palette.shape == (ContextToyDataset.num_classes, 3)
    assert palette.min() >= 0 and palette.max() <= 255
    assert len({tuple(c) for c in ContextToyDataset.palette}) == ContextToyDataset.num_classes
    assert ContextToyDataset.flip_pairs == []
    assert small().num_classes == 5


def test_sample_shapes_and_dtypes() -> None:
    dataset = small(image_size=(128, 160))
    sample = dataset[3]
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, 128, 160)
    assert sample["mask"].dtype == torch.int64 and sample["mask"].shape == (128, 160)
    assert sample["name"] == "context_toy_train_00003"
    labels = set(sample["mask"].unique().tolist())
    assert len(labels) == 2 and 0 in labels and labels <= {0, 1, 2, 3, 4}
    normalised = small(image_size=(128, 160), transform=eval_transform())[3]["image"]
    assert normalised.shape == (3, 128, 160) and normalised.min() < 0
    with pytest.raises(IndexError):
        dataset[16]


def test_deterministic_by_seed() -> None:
    a, b, other = small(seed=7), small(seed=7), small(seed=8)
    for index in (0, 5):
        assert torch.equal(a[index]["image"], b[index]["image"])
        assert torch.equal(a[index]["mask"], b[index]["mask"])
    assert not torch.equal(a[0]["image"], other[0]["image"])


def test_splits_differ() -> None:
    train, val = small("train"), small("val")
    assert all(not torch.equal(train[i]["image"], val[i]["image"]) for i in range(4))
    assert train[0]["name"] != val[0]["name"]
    sized = ContextToyDataset(split="val", num_samples={"train": 40, "val": 6})
    assert len(sized) == 6
    with pytest.raises(ValueError, match="split 'test'"):
        ContextToyDataset(split="test", num_samples={"train": 40, "val": 6})


def test_every_shape_takes_the_key_class() -> None:
    dataset = small()
    for index in range(len(dataset)):
        layout = dataset.layout(index)
        _, mask = dataset.render(layout)
        key = layout.key
        assert (mask[key.top : key.bottom, key.left : key.right] == layout.key_class).all()
        assert set(np.unique(mask).tolist()) == {0, layout.key_class}


def test_changing_only_the_key_changes_the_labels() -> None:
    dataset = small()
    layout = dataset.layout(2)
    image, mask = dataset.render(layout)
    key = layout.key
    outside = np.ones(mask.shape, dtype=bool)
    outside[key.top : key.bottom, key.left : key.right] = False
    labelled = mask != 0
    for key_class in range(1, dataset.num_classes):
        if key_class == layout.key_class:
            continue
        new_image, new_mask = dataset.render(replace(layout, key_class=key_class))
        assert np.array_equal(new_image[outside], image[outside])  # only the key's pixels…
        assert not np.array_equal(new_image[~outside], image[~outside])  # …change colour
        assert (new_mask[labelled] == key_class).all()
        assert (mask[labelled] == layout.key_class).all()
        assert np.array_equal(new_mask[~labelled], mask[~labelled])


def test_geometry_far_key_and_bands() -> None:
    dataset = ContextToyDataset(num_samples=200, min_gap=32, band_margin=8)
    aligned = []
    for index in range(len(dataset)):
        layout = dataset.layout(index)
        assert 2 <= len(layout.shapes) <= 3
        for shape in layout.shapes:
            assert shape.box.gap(layout.key) >= 32
            in_band = shape.box.rows_overlap(layout.key) or shape.box.cols_overlap(layout.key)
            near_band = shape.box.rows_overlap(layout.key, 8) or shape.box.cols_overlap(
                layout.key, 8
            )
            assert in_band if shape.aligned else not near_band
            aligned.append(shape.aligned)
        boxes = [s.box for s in layout.shapes]
        assert all(a.gap(b) >= 4 for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert 0.4 < np.mean(aligned) < 0.6


def test_reach_on_the_stride_8_feature_map() -> None:
    """What the sweep relies on, at the model's output stride 8: every feature position of an
    off-band shape has no key position on its row or column (one criss-cross pass cannot see
    the key), while most positions of an aligned shape do (one pass can)."""
    dataset = ContextToyDataset(num_samples=200)
    stride = 8
    h, w = (n // stride for n in dataset.image_size)
    hits = {True: [], False: []}
    for index in range(len(dataset)):
        layout = dataset.layout(index)
        key = np.zeros(dataset.image_size, np.uint8)
        key[layout.key.top : layout.key.bottom, layout.key.left : layout.key.right] = 1
        key_cells = key[stride // 2 :: stride, stride // 2 :: stride] > 0
        key_rows, key_cols = key_cells.any(1), key_cells.any(0)
        for shape in layout.shapes:
            canvas = np.zeros(dataset.image_size, np.uint8)
            draw(canvas, shape)
            rows, cols = np.nonzero(canvas[stride // 2 :: stride, stride // 2 :: stride])
            assert rows.size and rows.max() < h and cols.max() < w
            hits[shape.aligned].extend(key_rows[rows] | key_cols[cols])
    assert not any(hits[False]), "an off-band shape position sees the key in one pass"
    assert np.mean(hits[True]) > 0.9


def test_aligned_fraction_extremes() -> None:
    for fraction in (0.0, 1.0):
        dataset = small(aligned_fraction=fraction)
        shapes = [s for i in range(len(dataset)) for s in dataset.layout(i).shapes]
        assert all(s.aligned == bool(fraction) for s in shapes)


def test_draw_fills_inside_its_box() -> None:
    dataset = small()
    for shape in dataset.layout(0).shapes:
        canvas = np.zeros(dataset.image_size, dtype=np.uint8)
        draw(canvas, shape)
        box = shape.box
        assert canvas.sum() == canvas[box.top : box.bottom, box.left : box.right].sum() > 0


def test_impossible_geometry_fails_early() -> None:
    with pytest.raises(ValueError, match="no room|could not place"):
        ContextToyDataset(image_size=(48, 48), min_gap=40)


def test_data_config_keeps_the_whole_image() -> None:
    """conf/data/context_toy.yaml: training batches are whole images, no crop or rescale
    (the key must stay in the picture), so no pixel is padding (ignored)."""
    overrides = ["+data=context_toy", "+seed=7", "data.batch_size=4"]
    with initialize_config_dir(config_dir=str(DATA_CONFIG.parents[1]), version_base="1.3"):
        config = compose(overrides=[*overrides, "data.dataset.num_samples={train:8,val:2,test:2}"])
    datamodule = instantiate(config.data)
    datamodule.setup("fit")
    assert datamodule.num_classes == 5
    size = tuple(datamodule.info_dataset.image_size)
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (4, 3, *size) and batch["mask"].shape == (4, *size)
    assert (batch["mask"] != IGNORE_INDEX).all()
    keys = (batch["mask"] != 0).sum(dim=(1, 2))
    assert (keys > datamodule.info_dataset.key_size**2).all()  # the key and some shapes


def test_data_config_matches_the_class_defaults() -> None:
    """scripts/context_probe.py builds the dataset from the class defaults; `make sweep` from
    conf/data/context_toy.yaml. They must describe the same data (e.g. the 40-pixel key)."""
    dataset = OmegaConf.to_container(OmegaConf.load(DATA_CONFIG).dataset)
    defaults = inspect.signature(ContextToyDataset).parameters
    geometry = {k: v for k, v in dataset.items() if k in defaults and k != "num_samples"}
    assert geometry["key_size"] == 40 and len(geometry) >= 10
    for key, value in geometry.items():
        default = defaults[key].default
        expected = list(default) if isinstance(default, tuple) else default
        assert value == expected, f"context_toy.yaml {key}={value}, class default {default}"
