"""Albumentations (2.x) pipelines: the CCNet/mmseg training augmentation and the eval one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
from albumentations.pytorch import ToTensorV2

from src.data.base import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PairSwappingHorizontalFlip(A.HorizontalFlip):
    """Horizontal flip that also swaps the labels of left/right class pairs in the mask
    (LIP's Left-arm ↔ Right-arm, …), so a mirrored person keeps correct sides."""

    def __init__(self, flip_pairs: Sequence[Sequence[int]] = (), p: float = 0.5) -> None:
        super().__init__(p=p)
        self.flip_pairs = [(int(a), int(b)) for a, b in flip_pairs]
        self._swap = np.arange(256, dtype=np.uint8)
        for a, b in self.flip_pairs:
            if not (0 <= a < 256 and 0 <= b < 256):
                raise ValueError(f"flip pair {(a, b)} must hold labels in 0..255")
            self._swap[a], self._swap[b] = b, a

    def apply_to_mask(self, mask: np.ndarray, **params: Any) -> np.ndarray:
        flipped = super().apply_to_mask(mask, **params)
        if not self.flip_pairs:
            return flipped
        if flipped.dtype != np.uint8:
            raise TypeError(f"flip-pair swapping expects a uint8 mask, got {flipped.dtype}")
        return self._swap[flipped]

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("flip_pairs",)


def photometric_distortion(
    brightness_delta: float = 32,
    contrast_range: Sequence[float] = (0.5, 1.5),
    saturation_range: Sequence[float] = (0.5, 1.5),
    hue_delta: float = 18,
    p: float = 0.5,
) -> list[A.BasicTransform]:
    """mmseg's PhotoMetricDistortion in albumentations terms: additive brightness (±delta of
    255), multiplicative contrast, then saturation and hue (delta in OpenCV's 0–180 units)."""
    lo, hi = contrast_range
    return [
        A.RandomBrightnessContrast(
            brightness_limit=(-brightness_delta / 255, brightness_delta / 255),
            contrast_limit=(lo - 1, hi - 1),
            brightness_by_max=True,
            p=p,
        ),
        A.ColorJitter(
            brightness=(1.0, 1.0),
            contrast=(1.0, 1.0),
            saturation=tuple(saturation_range),
            hue=(-hue_delta / 180, hue_delta / 180),
            p=p,
        ),
    ]


def train_transform(
    crop_size: Sequence[int],
    scale_range: Sequence[float] = (0.5, 2.0),
    flip_prob: float = 0.5,
    flip_pairs: Sequence[Sequence[int]] = (),
    photometric: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    ignore_index: int = IGNORE_INDEX,
    brightness_delta: float = 32,
    contrast_range: Sequence[float] = (0.5, 1.5),
    saturation_range: Sequence[float] = (0.5, 1.5),
    hue_delta: float = 18,
    photometric_prob: float = 0.5,
) -> A.Compose:
    """Random scale, pad (image 0, mask ``ignore_index``) and crop to ``crop_size`` (h, w),
    flip with left/right label swaps, photometric distortion, normalise, to tensors."""
    crop_h, crop_w = (int(s) for s in crop_size)
    lo, hi = (float(s) for s in scale_range)
    if not 0 < lo <= hi:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
    steps: list[A.BasicTransform] = [
        A.RandomScale(
            scale_limit=(lo - 1, hi - 1),
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
            p=1.0,
        ),
        A.PadIfNeeded(
            min_height=crop_h,
            min_width=crop_w,
            position="top_left",
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=ignore_index,
        ),
        A.RandomCrop(height=crop_h, width=crop_w),
        PairSwappingHorizontalFlip(flip_pairs, p=flip_prob),
    ]
    if photometric:
        steps += photometric_distortion(
            brightness_delta, contrast_range, saturation_range, hue_delta, photometric_prob
        )
    steps += [A.Normalize(mean=tuple(mean), std=tuple(std)), ToTensorV2()]
    return A.Compose(steps)


def eval_transform(
    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> A.Compose:
    """Normalise the full image and convert to tensors; no resizing (inference tiles it)."""
    return A.Compose([A.Normalize(mean=tuple(mean), std=tuple(std)), ToTensorV2()])
