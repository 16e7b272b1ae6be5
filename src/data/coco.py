"""COCO-format instance annotations rendered as semantic masks (0 = background, 1…K)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from src.data.base import IGNORE_INDEX, SegmentationDataset, bit_palette
from src.data.coco_files import CocoFiles, load_coco, sorted_categories


def semantic_mask(coco: COCO, image_id: int, label_of: Mapping[int, int]) -> np.ndarray:
    """Render one image's instances as classes; crowds and two-category overlaps become 255."""
    info = coco.imgs[image_id]
    mask = np.zeros((info["height"], info["width"]), dtype=np.uint8)
    clash = np.zeros(mask.shape, dtype=bool)
    crowd = np.zeros(mask.shape, dtype=bool)
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=None)):
        pixels = coco.annToMask(ann).astype(bool)
        if ann.get("iscrowd", 0):
            crowd |= pixels
            continue
        label = label_of[ann["category_id"]]
        # A pixel already claimed by another category is ambiguous, whatever the order.
        clash |= pixels & (mask != 0) & (mask != label)
        mask[pixels] = label
    mask[clash | crowd] = IGNORE_INDEX
    return mask


class CocoSegmentationDataset(SegmentationDataset):
    """Semantic segmentation from a COCO instances json: background 0, then each category in
    ascending id order as 1…K (names from the json). Crowd regions and pixels covered by two
    different categories are 255. Polygons, RLE and uncompressed RLE all decode via pycocotools.

    ``root`` holds COCO's layout (``annotations/instances_<split>.json`` and ``<split>/``);
    ``ann_file`` / ``image_dir`` point at any other COCO-format export instead.
    """

    flip_pairs: list[tuple[int, int]] = []

    def __init__(
        self,
        root: str | Path | None,
        split: str,
        transform: Callable | None = None,
        ann_file: str | Path | None = None,
        image_dir: str | Path | None = None,
    ) -> None:
        super().__init__(transform)
        self.split = split
        self.files = CocoFiles.locate(root, split, ann_file, image_dir)
        self.coco = load_coco(self.files.ann_file)
        categories = sorted_categories(self.coco)
        if len(categories) + 1 >= IGNORE_INDEX:
            raise ValueError(
                f"{self.files.ann_file} has {len(categories)} categories; at most "
                f"{IGNORE_INDEX - 2} fit beside background and the ignore label"
            )
        self.category_ids = [cat["id"] for cat in categories]
        self.label_of = {cat_id: i + 1 for i, cat_id in enumerate(self.category_ids)}
        self.class_names = ["background"] + [cat["name"] for cat in categories]
        self.palette = bit_palette(len(self.class_names))
        self.image_ids = sorted(self.coco.getImgIds())
        if not self.image_ids:
            raise ValueError(f"COCO annotation file {self.files.ann_file} lists no images")

    def __len__(self) -> int:
        return len(self.image_ids)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        image_id = self.image_ids[index]
        image, path = self.files.read_image(self.coco, image_id)
        return image, semantic_mask(self.coco, image_id, self.label_of), Path(path).stem
