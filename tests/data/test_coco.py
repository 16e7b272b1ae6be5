"""CocoSegmentationDataset: instances → semantic classes, crowds, overlaps, RLE, other exports."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from src.data.coco import CocoSegmentationDataset
from src.data.coco_files import load_coco
from src.data.fake import COCO_IMAGES, COCO_OBJECTS, uncompressed_rle, write_fake_coco


def expected_mask(image: dict) -> np.ndarray:
    """The semantic mask by the rules, straight from the scene's boxes: ascending category ids
    1, 3, 18 → 1, 2, 3; a pixel of two categories or of a crowd → 255."""
    label_of = {1: 1, 3: 2, 18: 3}
    h, w = image["height"], image["width"]
    covering = [[set() for _ in range(w)] for _ in range(h)]
    crowd = np.zeros((h, w), dtype=bool)
    for obj in (o for o in COCO_OBJECTS if o["image_id"] == image["id"]):
        for x0, y0, x1, y1 in obj["boxes"]:
            for y in range(y0, y1):
                for x in range(x0, x1):
                    if obj.get("iscrowd"):
                        crowd[y, x] = True
                    else:
                        covering[y][x].add(label_of[obj["category_id"]])
    out = np.zeros((h, w), dtype=np.int64)
    for y in range(h):
        for x in range(w):
            cats = covering[y][x]
            out[y, x] = 255 if crowd[y, x] or len(cats) > 1 else (cats.pop() if cats else 0)
    return out


def test_classes_in_ascending_category_id_order(fake_data):
    ds = CocoSegmentationDataset(fake_data["coco"], "val2017")
    assert ds.class_names == ["background", "person", "car", "dog"]
    assert ds.num_classes == 4 and len(ds.palette) == 4 and ds.palette[0] == [0, 0, 0]
    assert ds.flip_pairs == []


def test_images_sorted_by_id_with_file_stems_as_names(fake_data):
    ds = CocoSegmentationDataset(fake_data["coco"], "val2017")
    assert [ds[i]["name"] for i in range(len(ds))] == [
        "000000000007",
        "000000000042",
        "000000000139",
    ]


@pytest.mark.parametrize("image", COCO_IMAGES, ids=lambda im: im["file_name"])
def test_semantic_masks_follow_the_rules(fake_data, image):
    ds = CocoSegmentationDataset(fake_data["coco"], "train2017")
    sample = ds[ds.image_ids.index(image["id"])]
    assert sample["image"].shape == (3, image["height"], image["width"])
    assert sample["mask"].dtype == torch.int64
    np.testing.assert_array_equal(sample["mask"].numpy(), expected_mask(image))


def test_every_encoding_is_decoded(fake_data):
    mask = CocoSegmentationDataset(fake_data["coco"], "val2017")[2]["mask"]
    assert mask[10, 10] == 1  # person, polygon
    assert mask[40, 40] == 2  # car, compressed RLE
    assert mask[15, 60] == 3  # dog, uncompressed RLE
    assert mask[50, 60] == 255  # crowd of people
    assert mask[25, 25] == 255  # person and car overlap
    assert mask[27, 10] == 1  # two persons overlap: still person
    assert mask[62, 2] == 0  # background


def test_uncompressed_rle_is_column_major_runs():
    mask = np.array([[1, 0, 0], [1, 1, 0]], dtype=np.uint8)  # columns: 11, 01, 00
    assert uncompressed_rle(mask) == {"size": [2, 3], "counts": [0, 2, 1, 1, 2]}
    assert uncompressed_rle(1 - mask)["counts"] == [2, 1, 1, 2]
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = (rng.random((7, 9)) > 0.5).astype(np.uint8)
        rle = uncompressed_rle(mask)
        decoded = mask_utils.decode(mask_utils.frPyObjects(rle, *rle["size"]))
        np.testing.assert_array_equal(decoded, mask)


def test_explicit_ann_file_and_image_dir(fake_data, tmp_path):
    export = tmp_path / "export"
    shutil.copytree(fake_data["coco"] / "val2017", export / "pictures")
    (export / "labels.json").write_bytes(
        (fake_data["coco"] / "annotations/instances_val2017.json").read_bytes()
    )
    relative = CocoSegmentationDataset(export, "any", ann_file="labels.json", image_dir="pictures")
    absolute = CocoSegmentationDataset(
        None, "any", ann_file=export / "labels.json", image_dir=export / "pictures"
    )
    reference = CocoSegmentationDataset(fake_data["coco"], "val2017")
    for ds in (relative, absolute):
        assert len(ds) == 3 and ds.class_names == reference.class_names
        assert torch.equal(ds[2]["mask"], reference[2]["mask"])


def test_missing_image_file_is_named_when_read(tmp_path):
    root = write_fake_coco(tmp_path, splits=("val2017",))
    (root / "val2017/000000000042.jpg").unlink()
    ds = CocoSegmentationDataset(root, "val2017")
    with pytest.raises(FileNotFoundError, match="000000000042.jpg"):
        ds[1]


@pytest.mark.parametrize(
    "text, reason", [("{not json", "cannot read"), ('{"images": []}', "missing keys")]
)
def test_bad_annotation_file_is_named(tmp_path, text, reason):
    ann_file = tmp_path / "broken.json"
    ann_file.write_text(text)
    with pytest.raises(ValueError, match=f"{reason}.*|.*broken.json") as err:
        load_coco(ann_file)
    assert "broken.json" in str(err.value) and reason in str(err.value)
