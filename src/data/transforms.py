"""Albumentations (2.x) pipelines: the CCNet/mmseg training augmentation (its settings and
their defaults in :class:`Augmentation`) and the evaluation one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
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


@dataclass(frozen=True)
class Augmentation:
    """The training augmentation's settings, and the one home of their defaults (mmseg's
    Cityscapes recipe: random scale 0.5–2.0, flip, PhotoMetricDistortion).

    ``conf/data/base/segmentation.yaml`` restates these defaults as the ``data.augmentation``
    node (a test keeps the two equal field by field). Values are normalised on construction
    (ranges to float tuples), so an instance built from a Hydra node holds plain values.

    - ``scale_range``: (low, high) of the random rescale before the crop, 0 < low ≤ high;
    - ``flip_prob``: probability of the horizontal flip (left/right label pairs swap);
    - ``photometric``: whether to distort colours at all; then ``brightness_delta`` (± of 255,
      additive), ``contrast_range`` (multiplicative), ``saturation_range``, ``hue_delta``
      (± in OpenCV's 0–180 hue units), each applied with ``photometric_prob``.
    """

    scale_range: tuple[float, float] = (0.5, 2.0)
    flip_prob: float = 0.5
    photometric: bool = True
    brightness_delta: float = 32.0
    contrast_range: tuple[float, float] = (0.5, 1.5)
    saturation_range: tuple[float, float] = (0.5, 1.5)
    hue_delta: float = 18.0
    photometric_prob: float = 0.5

    def __post_init__(self) -> None:
        for name in ("scale_range", "contrast_range", "saturation_range"):
            low, high = (float(v) for v in getattr(self, name))
            object.__setattr__(self, name, (low, high))
        for name in ("flip_prob", "brightness_delta", "hue_delta", "photometric_prob"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "photometric", bool(self.photometric))
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {self.scale_range}")

    @classmethod
    def from_config(
        cls, values: Mapping[str, Any] | Augmentation | None, where: str = "augmentation"
    ) -> Augmentation:
        """An ``Augmentation`` from an instance (as is), ``None`` (the defaults) or a mapping
        of some fields (e.g. a config node; the others keep their defaults)."""
        if isinstance(values, Augmentation):
            return values
        return cls().with_settings(values or {}, where)

    def with_settings(self, values: Mapping[str, Any], where: str = "augmentation") -> Augmentation:
        """A copy with ``values`` in place of those fields; an unknown key is an error that
        names it as ``<where>.<key>`` (e.g. ``data.augmentation.flip``)."""
        known = [f.name for f in fields(self)]
        unknown = [str(key) for key in values if key not in known]
        if unknown:
            names = ", ".join(f"{where}.{key}" for key in unknown)
            raise ValueError(f"unknown augmentation setting {names}; the settings are {known}")
        return replace(self, **values)


def photometric_distortion(augmentation: Augmentation) -> list[A.BasicTransform]:
    """mmseg's PhotoMetricDistortion in albumentations terms: additive brightness (±delta of
    255), multiplicative contrast, then saturation and hue (delta in OpenCV's 0–180 units)."""
    brightness, hue = augmentation.brightness_delta / 255, augmentation.hue_delta / 180
    low, high = augmentation.contrast_range
    return [
        A.RandomBrightnessContrast(
            brightness_limit=(-brightness, brightness),
            contrast_limit=(low - 1, high - 1),
            brightness_by_max=True,
            p=augmentation.photometric_prob,
        ),
        A.ColorJitter(
            brightness=(1.0, 1.0),
            contrast=(1.0, 1.0),
            saturation=augmentation.saturation_range,
            hue=(-hue, hue),
            p=augmentation.photometric_prob,
        ),
    ]


def train_transform(
    crop_size: Sequence[int],
    *,
    augmentation: Augmentation | None = None,
    flip_pairs: Sequence[Sequence[int]] = (),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    ignore_index: int = IGNORE_INDEX,
    **settings: Any,
) -> A.Compose:
    """Random scale, pad (image 0, mask ``ignore_index``) and crop to ``crop_size`` (h, w),
    flip with left/right label swaps, photometric distortion, normalise, to tensors.

    The settings are ``augmentation`` (default :class:`Augmentation`'s defaults) with any of
    its fields given by name in ``settings`` in their place, e.g. ``photometric=False``.
    """
    aug = Augmentation.from_config(augmentation).with_settings(settings)
    crop_h, crop_w = (int(s) for s in crop_size)
    low, high = aug.scale_range
    steps: list[A.BasicTransform] = [
        A.RandomScale(
            scale_limit=(low - 1, high - 1),
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
        PairSwappingHorizontalFlip(flip_pairs, p=aug.flip_prob),
    ]
    if aug.photometric:
        steps += photometric_distortion(aug)
    steps += [A.Normalize(mean=tuple(mean), std=tuple(std)), ToTensorV2()]
    return A.Compose(steps)


def eval_transform(
    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> A.Compose:
    """Normalise the full image and convert to tensors; no resizing (inference tiles it)."""
    return A.Compose([A.Normalize(mean=tuple(mean), std=tuple(std)), ToTensorV2()])
