"""CocoInstanceDataset and InstanceDataModule on the fake COCO tree (src.data.fake)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from src.data.base import DatasetNotFoundError
from src.data.coco_files import load_coco
from src.data.coco_instance import CocoInstanceDataset, apply_transform, train_transform
from src.tasks.instance.datamodule import InstanceDataModule

# The fake scene (src/data/fake.py): category ids 18 dog, 1 person, 3 car -> labels by id.
NAMES = ["background", "person", "car", "dog"]
LABEL_OF = {1: 1, 3: 2, 18: 3}


def test_eval_targets_are_the_annotation_file(fake_coco):
    dataset = CocoInstanceDataset(fake_coco, "val2017")
    coco = load_coco(fake_coco / "annotations" / "instances_val2017.json")
    assert dataset.class_names == NAMES and dataset.num_classes == 4
    assert dataset.image_ids == sorted(coco.getImgIds())
    for index, image_id in enumerate(dataset.image_ids):
        sample = dataset[index]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        info = coco.imgs[image_id]
        target = sample["target"]
        assert sample["image"].shape == (3, info["height"], info["width"])
        assert sample["image"].dtype == torch.float32
        assert sample["image"].min() >= 0.0 and sample["image"].max() <= 1.0
        assert int(target["image_id"]) == image_id
        assert target["labels"].tolist() == [LABEL_OF[a["category_id"]] for a in anns]
        assert target["iscrowd"].tolist() == [a["iscrowd"] for a in anns]
        assert target["area"].tolist() == [a["area"] for a in anns]
        xyxy = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
        assert target["boxes"].reshape(-1, 4).tolist() == xyxy
        assert target["masks"].shape == (len(anns), info["height"], info["width"])
        for mask, ann in zip(target["masks"], anns):
            np.testing.assert_array_equal(mask.numpy(), coco.annToMask(ann))
    # The scene's crowd is there, flagged, so evaluation ignores detections on it.
    assert sum(int(dataset[i]["target"]["iscrowd"].sum()) for i in range(len(dataset))) == 1


def test_training_targets_drop_crowds_and_images_without_objects(fake_coco):
    evaluation = CocoInstanceDataset(fake_coco, "train2017")
    training = CocoInstanceDataset(fake_coco, "train2017", training=True)
    assert len(evaluation) == 3 and len(training) == 2  # image 7 has no annotation
    for index, image_id in enumerate(training.image_ids):
        target = training[index]["target"]
        reference = evaluation[evaluation.image_ids.index(image_id)]["target"]
        keep = reference["iscrowd"] == 0
        assert target["iscrowd"].sum() == 0
        torch.testing.assert_close(target["labels"], reference["labels"][keep])
        torch.testing.assert_close(target["masks"], reference["masks"][keep])
        assert (target["boxes"][:, 2:] > target["boxes"][:, :2]).all()


def test_flip_moves_boxes_and_masks_together(fake_coco):
    dataset = CocoInstanceDataset(fake_coco, "val2017", training=True)
    image, target, _ = dataset.read(dataset.image_ids.index(139))
    flipped_image, flipped = apply_transform(train_transform(flip_prob=1.0), image, target)
    width = image.shape[1]
    np.testing.assert_array_equal(flipped_image, image[:, ::-1])
    np.testing.assert_array_equal(flipped["masks"], target["masks"][:, :, ::-1])
    expected = target["boxes"].copy()
    expected[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    np.testing.assert_allclose(flipped["boxes"], expected, atol=1e-3)
    np.testing.assert_array_equal(flipped["labels"], target["labels"])


def _mask_box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def test_crop_drops_hidden_objects_with_their_masks(fake_coco):
    """Boxes filtered by min_visibility take their masks along: every kept mask still lies
    in its own box, and objects that left the crop are gone from every field."""
    dataset = CocoInstanceDataset(fake_coco, "val2017", training=True)
    image, target, _ = dataset.read(dataset.image_ids.index(139))
    transform = train_transform(flip_prob=0.5, crop_size=(32, 40), min_visibility=0.3)
    transform.set_random_seed(0)
    dropped = 0
    for _ in range(30):
        out_image, out = apply_transform(transform, image, target)
        count = len(out["labels"])
        assert out_image.shape[:2] == (32, 40)
        assert out["boxes"].shape == (count, 4) and out["masks"].shape == (count, 32, 40)
        assert len(out["iscrowd"]) == len(out["area"]) == count
        dropped += len(target["labels"]) - count
        for box, mask, area in zip(out["boxes"], out["masks"], out["area"]):
            assert mask.any() and area == mask.sum()
            np.testing.assert_allclose(_mask_box(mask), box, atol=1e-3)
    assert dropped > 0  # the crops did hide objects


def test_datamodule_batches(fake_coco):
    datamodule = InstanceDataModule(str(fake_coco), batch_size=2, seed=3)
    assert datamodule.num_classes == 4 and datamodule.class_names == NAMES
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert len(batch["images"]) == len(batch["targets"]) == len(batch["names"]) == 2
    for image, target in zip(batch["images"], batch["targets"]):
        assert set(target) == {"boxes", "labels", "masks", "iscrowd", "area", "image_id"}
        assert target["masks"].shape[1:] == image.shape[1:]
        assert target["masks"].dtype == torch.uint8 and target["boxes"].dtype == torch.float32
    val = list(datamodule.val_dataloader())
    assert [len(b["images"]) for b in val] == [1, 1, 1]
    # Same seed, same batches (order and flips).
    again = InstanceDataModule(str(fake_coco), batch_size=2, seed=3)
    again.setup("fit")
    batch2 = next(iter(again.train_dataloader()))
    for a, b in zip(batch["images"], batch2["images"]):
        torch.testing.assert_close(a, b)


def test_splits_with_different_categories_are_refused(fake_coco, tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(fake_coco, root)
    ann_file = root / "annotations" / "instances_val2017.json"
    data = json.loads(ann_file.read_text())
    data["categories"] = [c for c in data["categories"] if c["id"] != 18]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] != 18]
    ann_file.write_text(json.dumps(data))
    datamodule = InstanceDataModule(str(root))
    with pytest.raises(ValueError, match="category ids"):
        datamodule.setup("fit")


def test_missing_root_names_the_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="instances_<split>.json"):
        CocoInstanceDataset(tmp_path / "nowhere", "val2017")


def test_too_small_a_train_split_and_unknown_stages_are_refused(fake_coco):
    datamodule = InstanceDataModule(str(fake_coco), batch_size=3)
    with pytest.raises(ValueError, match="'train2017' split has 2 samples, fewer than one batch"):
        datamodule.train_dataloader()
    with pytest.raises(ValueError, match="unknown stage 'predict'"):
        datamodule.setup("predict")  # no prediction split in the instance wing
