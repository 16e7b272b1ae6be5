"""CityscapesDataset on the fake layout: shapes, names, classes and the labelId → trainId map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import labels
from PIL import Image

from src.data.base import lookup_labels
from src.data.cityscapes import (
    LABEL_ID_TO_TRAIN_ID,
    TRAIN_ID_TO_LABEL_ID,
    CityscapesDataset,
    train_ids_to_label_ids,
)
from src.data.fake import write_fake_cityscapes


def official_train_id(label_id: int) -> int:
    """trainId of a labelId straight from cityscapesscripts; no trainId or unknown → 255."""
    for lab in labels:
        if lab.id == label_id:
            return lab.trainId if 0 <= lab.trainId <= 18 else 255
    return 255


def test_reads_train_split(fake_data):
    ds = CityscapesDataset(fake_data["cityscapes"], "train")
    assert len(ds) == 4
    assert ds.num_classes == 19 == len(ds.class_names) == len(ds.palette)
    assert ds.class_names[0] == "road" and ds.class_names[18] == "bicycle"
    assert ds.palette[0] == [128, 64, 128]
    assert ds.flip_pairs == []
    sample = ds[0]
    assert sample["image"].shape == (3, 64, 128) and sample["image"].dtype == torch.float32
    assert sample["mask"].shape == (64, 128) and sample["mask"].dtype == torch.int64
    assert 1 < sample["image"].max() <= 255  # raw RGB, not normalised
    assert [ds[i]["name"] for i in range(len(ds))] == [
        "aachen_000000_000019",
        "aachen_000001_000020",
        "bochum_000000_000019",
        "bochum_000001_000020",
    ]


def test_mask_follows_official_table(fake_data):
    ds = CityscapesDataset(fake_data["cityscapes"], "val")
    sample = ds[1]
    city = sample["name"].split("_")[0]
    raw_dir = fake_data["cityscapes"] / "gtFine/val" / city
    raw = np.array(Image.open(raw_dir / f"{sample['name']}_gtFine_labelIds.png"))
    expected = np.vectorize(official_train_id)(raw)
    np.testing.assert_array_equal(sample["mask"].numpy(), expected)
    # The fake labels hold ids that map to 255 as well as valid ones.
    assert (expected == 255).any() and (expected < 19).any()


def test_lookup_table_covers_every_byte():
    assert LABEL_ID_TO_TRAIN_ID.shape == (256,)
    for value in range(256):
        assert LABEL_ID_TO_TRAIN_ID[value] == official_train_id(value), value
    assert not LABEL_ID_TO_TRAIN_ID.flags.writeable


def test_out_of_table_label_values_become_ignore(tmp_path):
    root = write_fake_cityscapes(tmp_path, splits=("val",), images_per_city=1)
    label_path = next((root / "gtFine/val").rglob("*_gtFine_labelIds.png"))
    label = np.zeros((64, 128), dtype=np.uint8)
    label[0, :6] = [7, 26, 34, 200, 255, 33]  # road, car, beyond the table ×3, bicycle
    Image.fromarray(label).save(label_path)
    ds = CityscapesDataset(root, "val")
    index = [s[1] for s in ds.samples].index(label_path)
    assert ds[index]["mask"][0, :6].tolist() == [0, 13, 255, 255, 255, 18]


def test_test_split_has_ignore_masks(fake_data):
    ds = CityscapesDataset(fake_data["cityscapes"], "test")
    assert len(ds) == 4
    sample = ds[3]
    assert sample["name"] == "bonn_000001_000020"
    assert torch.all(sample["mask"] == 255) and sample["mask"].shape == sample["image"].shape[1:]


def test_train_id_to_label_id_inverts_the_table():
    for train_id, label_id in enumerate(TRAIN_ID_TO_LABEL_ID):
        assert LABEL_ID_TO_TRAIN_ID[label_id] == train_id
    pred = np.array([[0, 13, 18], [255, 5, 19]])
    np.testing.assert_array_equal(train_ids_to_label_ids(pred), [[7, 26, 33], [0, 17, 0]])


@pytest.mark.parametrize("split", ["train", "val"])
def test_labelled_splits_pair_every_image_with_its_label(fake_data, split):
    ds = CityscapesDataset(fake_data["cityscapes"], split)
    for image, label, name in ds.samples:
        assert image.name == f"{name}_leftImg8bit.png"
        assert label.name == f"{name}_gtFine_labelIds.png"
        assert label.parent.name == image.parent.name


def test_wide_label_types_map_out_of_range_values_to_ignore():
    wide = np.array([[7, 300, -1, 70000], [26, 33, 255, 0]], dtype=np.int32)
    np.testing.assert_array_equal(
        lookup_labels(wide, LABEL_ID_TO_TRAIN_ID), [[0, 255, 255, 255], [13, 18, 255, 255]]
    )
