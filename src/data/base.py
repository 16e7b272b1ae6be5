"""What every segmentation dataset shares: file readers, label lookup, errors, sample assembly."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

IGNORE_INDEX = 255
"""Label of pixels that take no part in the loss or the metrics."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset root, split folder or index file is missing or empty."""


class ImageReadError(OSError):
    """An image or label file exists but cannot be decoded."""


def dataset_not_found(path: Path, what: str, layout: str, source: str) -> DatasetNotFoundError:
    """An error that names the missing path, the layout we expected and where to download it."""
    return DatasetNotFoundError(
        f"{what} not found: {path}\nExpected layout under the dataset root:\n{layout}\n"
        f"Download the dataset from {source} and point data.root at it."
    )


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file as an H×W×3 uint8 RGB array (grayscale images are expanded)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageReadError(f"cannot decode image file {path} (corrupt or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: str | Path) -> np.ndarray:
    """Decode a single-channel label image (grayscale or palette PNG) as an H×W integer array."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    try:
        with Image.open(path) as img:
            label = np.array(img)
    except (UnidentifiedImageError, OSError) as err:
        raise ImageReadError(f"cannot decode label file {path}: {err}") from err
    if label.ndim != 2:
        raise ImageReadError(
            f"label file {path} has shape {label.shape}; expected one channel of class ids"
        )
    return label


def lookup_labels(label: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Map raw label values through ``table``; values outside it become IGNORE_INDEX."""
    if label.dtype == np.uint8 and len(table) == 256:
        return table[label]
    out = np.full(label.shape, IGNORE_INDEX, dtype=np.uint8)
    inside = (label >= 0) & (label < len(table))
    out[inside] = table[label[inside]]
    return out


def check_same_size(
    image: np.ndarray, mask: np.ndarray, image_path: Path, label_path: Path
) -> None:
    """Raise if an image and its label differ in height or width."""
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(
            f"image {image_path} is {image.shape[:2]} but its label {label_path} is "
            f"{mask.shape[:2]} (height, width)"
        )


def to_sample(
    image: np.ndarray, mask: np.ndarray, name: str, transform: Callable | None
) -> dict[str, Any]:
    """Apply an albumentations transform (or none) and return the agreed sample dict."""
    if transform is not None:
        out = transform(image=image, mask=mask)
        image, mask = out["image"], out["mask"]
    image_t = torch.as_tensor(image)
    if isinstance(image, np.ndarray):  # HWC array from a pipeline without ToTensorV2
        image_t = image_t.permute(2, 0, 1)
    return {
        "image": image_t.float().contiguous(),
        "mask": torch.as_tensor(mask).long(),
        "name": name,
    }


class SegmentationDataset(Dataset, ABC):
    """A dataset of (image, semantic mask, name); subclasses say how one sample is read.

    Subclasses set ``class_names``, ``palette`` and optionally ``flip_pairs`` and implement
    ``read(index) -> (image HWC uint8 RGB, mask HW uint8, name)``.
    """

    class_names: Sequence[str] = ()
    palette: Sequence[Sequence[int]] = ()
    flip_pairs: Sequence[tuple[int, int]] = ()

    def __init__(self, transform: Callable | None = None) -> None:
        self.transform = transform

    @property
    def num_classes(self) -> int:
        """Number of classes scored (the ignore label is not one)."""
        return len(self.class_names)

    @abstractmethod
    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        """Sample ``index`` as (image H×W×3 uint8 RGB, mask H×W uint8, name)."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of samples."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        image, mask, name = self.read(index)
        return to_sample(image, mask, name, self.transform)


def bit_palette(num_classes: int) -> list[list[int]]:
    """Distinct colours for any number of classes (class 0 black), spreading each id's bits
    over the high bits of R, G and B as PASCAL VOC's colour map does."""
    palette = []
    for class_id in range(num_classes):
        rgb = [0, 0, 0]
        value, shift = class_id, 7
        while value and shift >= 0:
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
            shift -= 1
        palette.append(rgb)
    return palette
