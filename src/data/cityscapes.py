"""Cityscapes fine annotations as distributed: labelIds mapped to the 19 official trainIds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.labels import labels as CITYSCAPES_LABELS

from src.data.base import (
    IGNORE_INDEX,
    SegmentationDataset,
    check_same_size,
    dataset_not_found,
    lookup_labels,
    read_image,
    read_label,
)

_EVAL_LABELS = sorted(
    (lab for lab in CITYSCAPES_LABELS if 0 <= lab.trainId < IGNORE_INDEX),
    key=lambda lab: lab.trainId,
)
CLASS_NAMES: list[str] = [lab.name for lab in _EVAL_LABELS]
PALETTE: list[list[int]] = [list(lab.color) for lab in _EVAL_LABELS]


def _label_id_to_train_id() -> np.ndarray:
    """256-entry table labelId → trainId; every id without a trainId (or outside 0..255) → 255."""
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for lab in CITYSCAPES_LABELS:
        if 0 <= lab.id < 256 and 0 <= lab.trainId < IGNORE_INDEX:
            table[lab.id] = lab.trainId
    return table


LABEL_ID_TO_TRAIN_ID: np.ndarray = _label_id_to_train_id()
"""Lookup table applied to ``*_gtFine_labelIds.png``; read-only."""
LABEL_ID_TO_TRAIN_ID.flags.writeable = False

TRAIN_ID_TO_LABEL_ID: np.ndarray = np.array([lab.id for lab in _EVAL_LABELS], dtype=np.uint8)
"""trainId (0..18) → official labelId, for writing predictions the official evaluator reads."""
TRAIN_ID_TO_LABEL_ID.flags.writeable = False

LAYOUT = """\
  leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png"""
SOURCE = (
    "https://www.cityscapes-dataset.com (leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip)"
)
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
UNLABELLED_SPLITS = ("test",)


def train_ids_to_label_ids(prediction: np.ndarray) -> np.ndarray:
    """Convert a trainId map to official labelIds (ignore/unknown trainIds → 0, 'unlabeled')."""
    prediction = np.asarray(prediction)
    out = np.zeros(prediction.shape, dtype=np.uint8)
    valid = (prediction >= 0) & (prediction < len(TRAIN_ID_TO_LABEL_ID))
    out[valid] = TRAIN_ID_TO_LABEL_ID[prediction[valid]]
    return out


class CityscapesDataset(SegmentationDataset):
    """Cityscapes ``leftImg8bit`` images with ``gtFine`` labels mapped labelId → trainId.

    The ``test`` split has no public labels: it serves prediction, and its masks are all 255
    (ignore) so that batches collate like the labelled splits. ``name`` is the image stem
    without ``_leftImg8bit`` (e.g. ``frankfurt_000000_000294``), as the official export needs.
    """

    class_names = CLASS_NAMES
    palette = PALETTE
    flip_pairs: list[tuple[int, int]] = []
    num_classes = len(CLASS_NAMES)

    def __init__(self, root: str | Path, split: str, transform: Callable | None = None) -> None:
        super().__init__(transform)
        self.root = Path(root)
        self.split = split
        self.labelled = split not in UNLABELLED_SPLITS
        self.samples = self._scan()

    def _scan(self) -> list[tuple[Path, Path | None, str]]:
        """List (image, label or None, name) for every image of the split, checking labels."""
        if not self.root.is_dir():
            raise dataset_not_found(self.root, "Cityscapes root", LAYOUT, SOURCE)
        image_dir = self.root / "leftImg8bit" / self.split
        if not image_dir.is_dir():
            raise dataset_not_found(image_dir, f"Cityscapes split '{self.split}'", LAYOUT, SOURCE)
        images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
        if not images:
            raise dataset_not_found(
                image_dir / f"<city>/*{IMAGE_SUFFIX}", "Cityscapes images", LAYOUT, SOURCE
            )
        samples = []
        for image in images:
            name = image.name[: -len(IMAGE_SUFFIX)]
            label = None
            if self.labelled:
                city = image.parent.name
                label = self.root / "gtFine" / self.split / city / f"{name}{LABEL_SUFFIX}"
                if not label.is_file():
                    raise FileNotFoundError(
                        f"image {image} has no label: expected {label}\n"
                        f"Expected layout under the dataset root:\n{LAYOUT}"
                    )
            samples.append((image, label, name))
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        image_path, label_path, name = self.samples[index]
        image = read_image(image_path)
        if label_path is None:
            mask = np.full(image.shape[:2], IGNORE_INDEX, dtype=np.uint8)
        else:
            mask = lookup_labels(read_label(label_path), LABEL_ID_TO_TRAIN_ID)
            check_same_size(image, mask, image_path, label_path)
        return image, mask, name
