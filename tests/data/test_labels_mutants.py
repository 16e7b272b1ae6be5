"""The label mappings: the edges that `make mutate` found no test pinning down — the Cityscapes
table as its builder makes it, lookups of wider integer labels and of short tables, the masks'
byte dtype, errors naming both files, and where an ADE20K root's folders are looked up."""

from __future__ import annotations

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import labels as CITYSCAPES_LABELS
from PIL import Image

from src.data import cityscapes
from src.data.ade20k import FOLDER, ADE20KDataset, layout_root
from src.data.base import lookup_labels
from src.data.cityscapes import CityscapesDataset, train_ids_to_label_ids
from src.data.fake import write_fake_ade20k, write_fake_cityscapes, write_fake_lip
from src.data.lip import LIPDataset


def test_the_cityscapes_table_is_built_from_the_official_labels():
    """Every labelId with a trainId 0..18 maps to it (road, labelId 7, to 0 included); every
    other byte to 255."""
    official = {lab.id: lab.trainId for lab in CITYSCAPES_LABELS if 0 <= lab.trainId < 255}
    table = cityscapes._label_id_to_train_id()  # the builder of LABEL_ID_TO_TRAIN_ID
    assert table.dtype == np.uint8 and table.shape == (256,)
    assert table.tolist() == [official.get(value, 255) for value in range(256)]
    assert table[7] == 0


def test_lookup_of_wider_integer_labels():
    """A 16/32-bit label (or one with negative values) maps value by value; values outside
    the table, 0 excluded, become 255; the mask is bytes."""
    table = np.array([3, 4, 5], dtype=np.uint8)
    label = np.array([[0, 1, 2, 3, -1, 300]], dtype=np.int32)
    out = lookup_labels(label, table)
    assert out.dtype == np.uint8 and out.tolist() == [[3, 4, 5, 255, 255, 255]]


def test_lookup_of_bytes_with_a_table_shorter_than_256():
    table = np.arange(20, dtype=np.uint8)
    label = np.array([[0, 19, 20, 200]], dtype=np.uint8)
    assert lookup_labels(label, table).tolist() == [[0, 19, 255, 255]]


def test_predictions_become_official_label_id_bytes():
    out = train_ids_to_label_ids(np.array([[0, 18, 255, -1]]))
    assert out.dtype == np.uint8 and out.tolist() == [[7, 33, 0, 0]]


def test_every_dataset_reads_byte_masks(fake_data):
    datasets = [
        CityscapesDataset(fake_data["cityscapes"], "val"),
        CityscapesDataset(fake_data["cityscapes"], "test"),  # no labels: all 255
        LIPDataset(fake_data["lip"], "val"),
        ADE20KDataset(fake_data["ade20k"], "val"),
    ]
    for dataset in datasets:
        image, mask, _ = dataset.read(0)
        assert mask.dtype == np.uint8 and mask.shape == image.shape[:2], type(dataset)
    assert (datasets[1].read(0)[1] == 255).all()


def _cityscapes(tmp_path):
    return CityscapesDataset(
        write_fake_cityscapes(tmp_path, splits=("val",), images_per_city=1), "val"
    )


def _lip(tmp_path):
    return LIPDataset(write_fake_lip(tmp_path, counts={"val": 1}), "val")


def _ade20k(tmp_path):
    return ADE20KDataset(write_fake_ade20k(tmp_path, counts={"val": 1}), "val")


@pytest.mark.parametrize("make", [_cityscapes, _lip, _ade20k], ids=["cityscapes", "lip", "ade20k"])
def test_a_label_of_another_size_names_the_image_and_the_label(tmp_path, make):
    dataset = make(tmp_path)
    image, label, _ = dataset.samples[0]
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(label)
    with pytest.raises(ValueError) as err:
        dataset[0]
    assert image.name in str(err.value) and label.name in str(err.value)


def test_an_ade20k_root_holding_images_is_the_release_folder_itself(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / FOLDER).mkdir()
    assert layout_root(tmp_path) == tmp_path  # images/ here wins over a nested release
    (tmp_path / "images").rmdir()
    assert layout_root(tmp_path) == tmp_path / FOLDER


@pytest.mark.parametrize(("count", "more"), [(8, False), (9, True)])
def test_ade20k_names_at_most_eight_values_beyond_150(tmp_path, count, more):
    dataset = _ade20k(tmp_path)
    label_path = dataset.samples[0][1]
    label = np.array(Image.open(label_path))
    label[0, :count] = np.arange(151, 151 + count)
    Image.fromarray(label).save(label_path)
    with pytest.raises(ValueError, match="above 150") as err:
        dataset[0]
    shown = ", ".join(str(v) for v in range(151, 159)) + (", ..." if more else "")
    assert f"({shown})" in str(err.value)
