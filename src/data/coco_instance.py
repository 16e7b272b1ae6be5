"""COCO instance annotations as Mask R-CNN targets: the dataset and its augmentation.

Training targets drop crowd regions and degenerate boxes (as torchvision's reference does);
evaluation targets keep every annotation the json holds, crowds flagged ``iscrowd=1`` and
areas as written there, so ``MeanAveragePrecision`` scores exactly what COCOeval would.
Images stay at full resolution in [0, 1]: the detector resizes and normalises them itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from src.data.coco_files import CocoFiles, load_coco, sorted_categories


def annotation_target(
    coco: COCO, image_id: int, label_of: dict[int, int], training: bool
) -> dict[str, np.ndarray]:
    """One image's annotations as arrays: ``boxes`` (N, 4) xyxy, ``labels`` 1…K, ``masks``
    (N, H, W) uint8, ``iscrowd``, ``area``. Training drops crowds and boxes without area."""
    info = coco.imgs[image_id]
    height, width = info["height"], info["width"]
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=None))
    if training:
        anns = [a for a in anns if not a.get("iscrowd", 0) and _box_has_area(a, height, width)]
    boxes = np.array(
        [_xyxy(a["bbox"], height, width, clip=training) for a in anns], dtype=np.float32
    ).reshape(-1, 4)
    masks = np.zeros((len(anns), height, width), dtype=np.uint8)
    for i, ann in enumerate(anns):
        masks[i] = coco.annToMask(ann)
    return {
        "boxes": boxes,
        "labels": np.array([label_of[a["category_id"]] for a in anns], dtype=np.int64),
        "masks": masks,
        "iscrowd": np.array([int(a.get("iscrowd", 0)) for a in anns], dtype=np.int64),
        "area": np.array([float(a.get("area", 0.0)) for a in anns], dtype=np.float32),
    }


def _xyxy(bbox: Sequence[float], height: int, width: int, clip: bool) -> list[float]:
    """COCO's (x, y, w, h) as (x0, y0, x1, y1), clipped to the image when ``clip``."""
    x, y, w, h = (float(v) for v in bbox)
    box = [x, y, x + w, y + h]
    if clip:
        box = [min(max(box[0], 0), width), min(max(box[1], 0), height),
               min(max(box[2], 0), width), min(max(box[3], 0), height)]  # fmt: skip
    return box


def _box_has_area(ann: dict, height: int, width: int) -> bool:
    x0, y0, x1, y1 = _xyxy(ann["bbox"], height, width, clip=True)
    return x1 > x0 and y1 > y0


class CocoInstanceDataset(Dataset):
    """Instance segmentation samples from a COCO instances json.

    Categories in ascending id order become labels 1…K (0 is the background, as torchvision's
    detectors count it); ``class_names`` = ``["background", *names]``. A sample is a dict:
    ``image`` (3×H×W float in [0, 1]), ``target`` (``boxes`` xyxy float32, ``labels``,
    ``masks`` (N, H, W) uint8, ``iscrowd``, ``area``, ``image_id``) and ``name``.

    ``training=True`` drops crowds, degenerate boxes and images left without objects;
    ``transform`` is an albumentations pipeline called with ``image``, ``masks``, ``bboxes``
    (pascal_voc) and the label fields ``labels`` and ``indices``.
    """

    def __init__(
        self,
        root: str | Path | None,
        split: str,
        transform: Callable | None = None,
        training: bool = False,
        ann_file: str | Path | None = None,
        image_dir: str | Path | None = None,
    ) -> None:
        self.split = split
        self.transform = transform
        self.training = training
        self.files = CocoFiles.locate(root, split, ann_file, image_dir)
        self.coco = load_coco(self.files.ann_file)
        categories = sorted_categories(self.coco)
        if not categories:
            raise ValueError(f"COCO annotation file {self.files.ann_file} lists no categories")
        self.category_ids = [cat["id"] for cat in categories]
        self.label_of = {cat_id: i + 1 for i, cat_id in enumerate(self.category_ids)}
        self.class_names = ["background"] + [cat["name"] for cat in categories]
        image_ids = sorted(self.coco.getImgIds())
        if training:
            image_ids = [i for i in image_ids if self._has_training_object(i)]
        if not image_ids:
            what = "images with non-crowd objects" if training else "images"
            raise ValueError(f"COCO annotation file {self.files.ann_file} lists no {what}")
        self.image_ids = image_ids

    @property
    def num_classes(self) -> int:
        """Categories plus the background, as torchvision's ``num_classes`` counts them."""
        return len(self.class_names)

    def _has_training_object(self, image_id: int) -> bool:
        info = self.coco.imgs[image_id]
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[image_id], iscrowd=False))
        return any(_box_has_area(a, info["height"], info["width"]) for a in anns)

    def __len__(self) -> int:
        return len(self.image_ids)

    def read(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
        """Sample ``index`` untransformed: (image H×W×3 uint8 RGB, target arrays, name)."""
        image_id = self.image_ids[index]
        image, path = self.files.read_image(self.coco, image_id)
        target = annotation_target(self.coco, image_id, self.label_of, self.training)
        return image, target, path.stem

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        image, target, name = self.read(index)
        if self.transform is not None:
            image, target = apply_transform(self.transform, image, target)
        sample_target = {k: torch.from_numpy(v) for k, v in target.items()}
        sample_target["image_id"] = torch.tensor(self.image_ids[index])
        image_t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255
        return {"image": image_t.contiguous(), "target": sample_target, "name": name}


def apply_transform(
    transform: Callable, image: np.ndarray, target: dict[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run an albumentations pipeline on an image and its instances.

    Boxes the pipeline filters out (``min_visibility``, ``min_area``) take their masks,
    crowd flags and areas with them: the ``indices`` label field says which objects survive.
    Areas of surviving objects become their mask's pixel count in the new geometry.
    """
    count = len(target["labels"])
    inputs: dict[str, Any] = {
        "image": image,
        "bboxes": target["boxes"],
        "labels": target["labels"],
        "indices": np.arange(count),
    }
    if count:  # albumentations cannot stack an empty list of masks
        inputs["masks"] = target["masks"]
    out = transform(**inputs)
    keep = np.asarray(out["indices"], dtype=np.int64)
    height, width = out["image"].shape[:2]
    masks = np.asarray(out["masks"])[keep] if count else np.zeros((0, height, width), np.uint8)
    masks = masks.reshape(len(keep), height, width).astype(np.uint8)
    return out["image"], {
        "boxes": np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4),
        "labels": np.asarray(out["labels"], dtype=np.int64).reshape(-1),
        "masks": masks,
        "iscrowd": target["iscrowd"][keep],
        "area": masks.sum(axis=(1, 2), dtype=np.float32),
    }


def train_transform(
    flip_prob: float = 0.5,
    scale_range: Sequence[float] | None = None,
    crop_size: Sequence[int] | None = None,
    min_visibility: float = 0.0,
    min_area: float = 1.0,
) -> A.Compose:
    """Horizontal flip (the Mask R-CNN 1x recipe), optionally random scale and a random crop
    (padded with 0 when the image is smaller); boxes in pascal_voc format follow, and boxes
    keeping less than ``min_visibility`` of their area or ``min_area`` pixels are dropped."""
    ops: list[A.BasicTransform] = []
    if scale_range is not None:
        lo, hi = scale_range
        ops.append(A.RandomScale(scale_limit=(lo - 1, hi - 1), p=1.0))
    if crop_size is not None:
        ops.append(A.RandomCrop(int(crop_size[0]), int(crop_size[1]), pad_if_needed=True, p=1.0))
    ops.append(A.HorizontalFlip(p=flip_prob))
    return A.Compose(
        ops,
        bbox_params=A.BboxParams(
            format="pascal_voc",
            label_fields=["labels", "indices"],
            min_visibility=min_visibility,
            min_area=min_area,
            clip=True,
        ),
    )


def collate_instances(samples: Sequence[dict[str, Any]]) -> dict[str, list]:
    """Batch as lists: images differ in size, and the detector takes lists of them."""
    return {
        "images": [s["image"] for s in samples],
        "targets": [s["target"] for s in samples],
        "names": [s["name"] for s in samples],
    }
