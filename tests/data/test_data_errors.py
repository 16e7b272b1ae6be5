"""Bad input: missing roots/splits, images without labels, unreadable files, size mismatches."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from src.data.ade20k import FOLDER as ADE20K_FOLDER
from src.data.ade20k import ADE20KDataset
from src.data.base import DatasetNotFoundError, ImageReadError
from src.data.cityscapes import CityscapesDataset
from src.data.coco import CocoSegmentationDataset
from src.data.fake import write_fake_ade20k, write_fake_cityscapes, write_fake_lip
from src.data.lip import LIPDataset

MISSING_ROOT = [
    (CityscapesDataset, "cityscapes-dataset.com", "leftImg8bit/"),
    (LIPDataset, "sysu-hcp.net/lip", "TrainVal_images/"),
    (CocoSegmentationDataset, "cocodataset.org", "annotations/instances_<split>.json"),
    (ADE20KDataset, "ADEChallengeData2016.zip", "ADEChallengeData2016/images/"),
]


@pytest.mark.parametrize("cls, url, layout", MISSING_ROOT, ids=lambda v: getattr(v, "__name__", ""))
def test_missing_root_names_path_layout_and_download(tmp_path, cls, url, layout):
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as err:
        cls(root, "val")
    message = str(err.value)
    assert str(root) in message and url in message and layout in message
    assert isinstance(err.value, FileNotFoundError)


@pytest.mark.parametrize(
    "key, cls, split, missing",
    [
        ("cityscapes", CityscapesDataset, "extra", "leftImg8bit/extra"),
        ("lip", LIPDataset, "test", "test_id.txt"),
        ("coco", CocoSegmentationDataset, "test2017", "instances_test2017.json"),
    ],
)
def test_missing_split_names_the_path(fake_data, key, cls, split, missing):
    with pytest.raises(DatasetNotFoundError, match=missing):
        cls(fake_data[key], split)


def test_cityscapes_image_without_label(tmp_path):
    root = write_fake_cityscapes(tmp_path, splits=("train",), images_per_city=1)
    label = root / "gtFine/train/bochum/bochum_000000_000019_gtFine_labelIds.png"
    label.unlink()
    with pytest.raises(FileNotFoundError, match="bochum_000000_000019_leftImg8bit.png") as err:
        CityscapesDataset(root, "train")
    assert str(label) in str(err.value)


def test_lip_image_without_label(tmp_path):
    root = write_fake_lip(tmp_path, counts={"train": 2})
    sample_id = (root / "train_id.txt").read_text().split()[1]
    (root / "TrainVal_parsing_annotations/train_segmentations" / f"{sample_id}.png").unlink()
    with pytest.raises(FileNotFoundError, match=f"{sample_id}.png"):
        LIPDataset(root, "train")


def test_unreadable_image_is_named_when_read(tmp_path):
    root = write_fake_cityscapes(tmp_path, splits=("val",), images_per_city=1)
    image = root / "leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png"
    image.write_bytes(b"not a png at all")
    ds = CityscapesDataset(root, "val")  # listing succeeds; reading fails
    ds[0]
    with pytest.raises(ImageReadError, match="lindau_000000_000019_leftImg8bit.png"):
        ds[1]


def test_unreadable_label_is_named_when_read(tmp_path):
    root = write_fake_lip(tmp_path, counts={"val": 1})
    sample_id = (root / "val_id.txt").read_text().split()[0]
    label = root / "TrainVal_parsing_annotations/val_segmentations" / f"{sample_id}.png"
    label.write_bytes(b"\x89PNG broken")
    with pytest.raises(ImageReadError, match=f"{sample_id}.png"):
        LIPDataset(root, "val")[0]


def test_label_of_another_size_is_named(tmp_path):
    root = write_fake_cityscapes(tmp_path, splits=("val",), images_per_city=1)
    label = root / "gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelIds.png"
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(label)
    with pytest.raises(ValueError, match="frankfurt_000000_000019_gtFine_labelIds.png"):
        CityscapesDataset(root, "val")[0]


def test_empty_split_folder(tmp_path):
    (tmp_path / "leftImg8bit/train/aachen").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="leftImg8bit"):
        CityscapesDataset(tmp_path, "train")


def test_ade20k_unknown_split_lists_the_splits(fake_data):
    with pytest.raises(ValueError, match="unknown ADE20K split 'test'") as err:
        ADE20KDataset(fake_data["ade20k"], "test")
    assert "'train' (training/)" in str(err.value) and "'val' (validation/)" in str(err.value)


@pytest.mark.parametrize("folder", ["images/validation", "annotations/validation"])
def test_ade20k_missing_split_folder_is_named(tmp_path, folder):
    root = write_fake_ade20k(tmp_path, counts={"val": 1})
    shutil.rmtree(root / ADE20K_FOLDER / folder)
    with pytest.raises(DatasetNotFoundError, match=folder) as err:
        ADE20KDataset(root, "val")
    assert "sceneparsing.csail.mit.edu" in str(err.value)


def test_ade20k_empty_image_folder(tmp_path):
    for kind in ("images", "annotations"):
        (tmp_path / ADE20K_FOLDER / kind / "training").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match=r"images/training/\*\.jpg"):
        ADE20KDataset(tmp_path, "train")


def test_ade20k_image_without_annotation(tmp_path):
    root = write_fake_ade20k(tmp_path, counts={"train": 2})
    label = root / ADE20K_FOLDER / "annotations/training/ADE_train_00000002.png"
    label.unlink()
    with pytest.raises(FileNotFoundError, match="ADE_train_00000002.jpg") as err:
        ADE20KDataset(root, "train")
    assert str(label) in str(err.value)


@pytest.mark.parametrize(
    "path, content",
    [
        ("images/validation/ADE_val_00000001.jpg", b"not a jpeg at all"),
        ("annotations/validation/ADE_val_00000001.png", b"\x89PNG broken"),
    ],
)
def test_ade20k_unreadable_file_is_named_when_read(tmp_path, path, content):
    root = write_fake_ade20k(tmp_path, counts={"val": 1})
    (root / ADE20K_FOLDER / path).write_bytes(content)
    ds = ADE20KDataset(root, "val")  # listing succeeds; reading fails
    with pytest.raises(ImageReadError, match=path.rsplit("/", 1)[1]):
        ds[0]


def test_ade20k_colour_annotation_is_named(tmp_path):
    """An RGB (e.g. colourised) annotation is not class ids: one channel is expected."""
    root = write_fake_ade20k(tmp_path, counts={"val": 1})
    label = root / ADE20K_FOLDER / "annotations/validation/ADE_val_00000001.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(label)
    with pytest.raises(ImageReadError, match="ADE_val_00000001.png.*one channel"):
        ADE20KDataset(root, "val")[0]


@pytest.mark.parametrize("value, dtype", [(151, np.uint8), (255, np.uint8), (3000, np.uint16)])
def test_ade20k_label_beyond_150_is_named(tmp_path, value, dtype):
    root = write_fake_ade20k(tmp_path, counts={"val": 1})
    label_path = root / ADE20K_FOLDER / "annotations/validation/ADE_val_00000001.png"
    label = np.array(Image.open(label_path)).astype(dtype)
    label[0, 0] = value
    Image.fromarray(label).save(label_path)
    with pytest.raises(
        ValueError, match=f"ADE_val_00000001.png holds values above 150 \\({value}\\)"
    ):
        ADE20KDataset(root, "val")[0]


def test_ade20k_annotation_of_another_size_is_named(tmp_path):
    root = write_fake_ade20k(tmp_path, counts={"val": 1})
    label = root / ADE20K_FOLDER / "annotations/validation/ADE_val_00000001.png"
    Image.fromarray(np.ones((10, 10), dtype=np.uint8)).save(label)
    with pytest.raises(ValueError, match="ADE_val_00000001.png"):
        ADE20KDataset(root, "val")[0]
