"""LIP (Look Into Person) human parsing: 20 part classes, left/right parts swap on a flip."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from src.data.base import (
    IGNORE_INDEX,
    SegmentationDataset,
    check_same_size,
    dataset_not_found,
    lookup_labels,
    read_image,
    read_label,
)

CLASS_NAMES: list[str] = [
    "Background",
    "Hat",
    "Hair",
    "Glove",
    "Sunglasses",
    "UpperClothes",
    "Dress",
    "Coat",
    "Socks",
    "Pants",
    "Jumpsuits",
    "Scarf",
    "Skirt",
    "Face",
    "Left-arm",
    "Right-arm",
    "Left-leg",
    "Right-leg",
    "Left-shoe",
    "Right-shoe",
]
# The colours LIP's own visualisations use, one per class above.
PALETTE: list[list[int]] = [
    [0, 0, 0],
    [128, 0, 0],
    [255, 0, 0],
    [0, 85, 0],
    [170, 0, 51],
    [255, 85, 0],
    [0, 0, 85],
    [0, 119, 221],
    [85, 85, 0],
    [0, 85, 85],
    [85, 51, 0],
    [52, 86, 128],
    [0, 128, 0],
    [0, 0, 255],
    [51, 170, 221],
    [0, 255, 255],
    [85, 255, 170],
    [170, 255, 85],
    [255, 255, 0],
    [255, 170, 0],
]
FLIP_PAIRS: list[tuple[int, int]] = [(14, 15), (16, 17), (18, 19)]
"""Left/right classes whose labels swap when the image is mirrored."""

LABEL_TABLE = np.full(256, IGNORE_INDEX, dtype=np.uint8)
LABEL_TABLE[: len(CLASS_NAMES)] = np.arange(len(CLASS_NAMES))
LABEL_TABLE.flags.writeable = False

LAYOUT = """\
  TrainVal_images/{train,val}_images/<id>.jpg
  TrainVal_parsing_annotations/{train,val}_segmentations/<id>.png
  train_id.txt, val_id.txt  (one <id> per line)"""
SOURCE = "https://sysu-hcp.net/lip (TrainVal_images.zip, TrainVal_parsing_annotations.zip)"


class LIPDataset(SegmentationDataset):
    """LIP single-person parsing images with their part labels (values > 19 become 255)."""

    class_names = CLASS_NAMES
    palette = PALETTE
    flip_pairs = FLIP_PAIRS
    num_classes = len(CLASS_NAMES)

    def __init__(self, root: str | Path, split: str, transform: Callable | None = None) -> None:
        super().__init__(transform)
        self.root = Path(root)
        self.split = split
        self.samples = self._scan()

    def _scan(self) -> list[tuple[Path, Path, str]]:
        """List (image, label, id) for every id of ``<split>_id.txt``, checking the files."""
        if not self.root.is_dir():
            raise dataset_not_found(self.root, "LIP root", LAYOUT, SOURCE)
        id_file = self.root / f"{self.split}_id.txt"
        if not id_file.is_file():
            raise dataset_not_found(id_file, f"LIP id list of split '{self.split}'", LAYOUT, SOURCE)
        ids = [line.strip() for line in id_file.read_text().splitlines() if line.strip()]
        if not ids:
            raise ValueError(f"LIP id list {id_file} is empty")
        image_dir = self.root / "TrainVal_images" / f"{self.split}_images"
        label_dir = self.root / "TrainVal_parsing_annotations" / f"{self.split}_segmentations"
        for folder in (image_dir, label_dir):
            if not folder.is_dir():
                raise dataset_not_found(folder, f"LIP '{self.split}' folder", LAYOUT, SOURCE)
        samples = []
        for sample_id in ids:
            image, label = image_dir / f"{sample_id}.jpg", label_dir / f"{sample_id}.png"
            if not image.is_file():
                raise FileNotFoundError(f"LIP image {image} (listed in {id_file}) is missing")
            if not label.is_file():
                raise FileNotFoundError(f"LIP image {image} has no label: expected {label}")
            samples.append((image, label, sample_id))
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        image_path, label_path, name = self.samples[index]
        image = read_image(image_path)
        mask = lookup_labels(read_label(label_path), LABEL_TABLE)
        check_same_size(image, mask, image_path, label_path)
        return image, mask, name
