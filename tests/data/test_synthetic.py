"""SyntheticSegmentationDataset: deterministic by (seed, split, index) and learnable."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from src.data.synthetic import SyntheticSegmentationDataset


def test_samples_shapes_and_names():
    ds = SyntheticSegmentationDataset(split="val", num_samples=13, image_size=(48, 64))
    assert len(ds) == 13 and ds.num_classes == 5
    assert len(ds.class_names) == len(ds.palette) == 5 and ds.class_names[0] == "background"
    sample = ds[12]
    assert sample["name"] == "synthetic_val_00012"
    assert sample["image"].shape == (3, 48, 64) and sample["image"].dtype == torch.float32
    assert sample["mask"].shape == (48, 64) and sample["mask"].dtype == torch.int64
    assert sample["mask"].min() >= 0 and sample["mask"].max() < 5


def test_deterministic_by_seed_and_split():
    def make(split="train", seed=0):
        return SyntheticSegmentationDataset(split=split, seed=seed, image_size=(32, 32))

    a, b = make()[3], make()[3]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert not torch.equal(a["image"], make("val")[3]["image"])
    assert not torch.equal(a["image"], make(seed=1)[3]["image"])
    assert not torch.equal(a["image"], make()[4]["image"])


def test_per_split_sample_counts():
    counts = {"train": 7, "val": 2}
    assert len(SyntheticSegmentationDataset(split="train", num_samples=counts)) == 7
    assert len(SyntheticSegmentationDataset(split="val", num_samples=counts)) == 2
    with pytest.raises(ValueError, match="'test'"):
        SyntheticSegmentationDataset(split="test", num_samples=counts)


def test_classes_are_separable_by_local_appearance():
    """A nearest-mean classifier on blurred colour (fit on train, scored on val) must beat
    always answering the most frequent class by a wide margin: appearance carries the class."""

    def features(ds):
        xs, ys = [], []
        for i in range(len(ds)):
            image, mask, _ = ds.read(i)
            xs.append(cv2.blur(image.astype(np.float32), (5, 5)).reshape(-1, 3))
            ys.append(mask.reshape(-1))
        return np.concatenate(xs), np.concatenate(ys)

    kwargs = {"num_samples": 8, "image_size": (64, 64), "num_classes": 5}
    x_train, y_train = features(SyntheticSegmentationDataset(split="train", **kwargs))
    x_val, y_val = features(SyntheticSegmentationDataset(split="val", **kwargs))
    assert set(np.unique(y_train)) == set(range(5))
    means = np.stack([x_train[y_train == k].mean(0) for k in range(5)])
    predicted = np.argmin(((x_val[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    accuracy = (predicted == y_val).mean()
    majority = np.bincount(y_val).max() / y_val.size
    assert accuracy > majority + 0.5 * (1 - majority)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticSegmentationDataset(num_classes=1)
