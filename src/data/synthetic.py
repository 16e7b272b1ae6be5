"""Procedural shapes with a colour and texture per class: a dataset that needs no download.

Every sample is drawn from its own random stream seeded by (seed, split, index), so it is the
same in every process and run, different between splits, and nothing is kept on disk.
"""

from __future__ import annotations

import colorsys
import zlib
from collections.abc import Callable, Mapping, Sequence

import cv2
import numpy as np

from src.data.base import SegmentationDataset

TEXTURES = ("hstripes", "checker", "vstripes", "dots", "diagonal", "plain")
BACKGROUND_COLOUR = (96, 96, 96)


def class_colours(num_classes: int) -> list[list[int]]:
    """Background grey, then evenly spaced saturated hues for the shape classes."""
    colours = [list(BACKGROUND_COLOUR)]
    for k in range(1, num_classes):
        r, g, b = colorsys.hsv_to_rgb((k - 1) / (num_classes - 1), 0.75, 0.9)
        colours.append([round(255 * r), round(255 * g), round(255 * b)])
    return colours


def texture(kind: str, height: int, width: int, period: float, rng: np.random.Generator):
    """A pattern in [-1, 1] over the whole image, with a random phase."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y += rng.uniform(0, period)
    x += rng.uniform(0, period)
    w = 2 * np.pi / period
    if kind == "hstripes":
        return np.sign(np.sin(w * y))
    if kind == "vstripes":
        return np.sign(np.sin(w * x))
    if kind == "checker":
        return np.sign(np.sin(w * x) * np.sin(w * y))
    if kind == "dots":
        return np.where(np.cos(w * x) * np.cos(w * y) > 0.5, 1.0, -0.4)
    if kind == "diagonal":
        return np.sign(np.sin(w * (x + y) / np.sqrt(2)))
    return np.zeros((height, width), dtype=np.float32)


def draw_shape(canvas: np.ndarray, value: int, rng: np.random.Generator) -> None:
    """Fill a random rectangle, ellipse or triangle of ``canvas`` with ``value``."""
    h, w = canvas.shape
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    ry, rx = rng.uniform(0.1, 0.3) * h, rng.uniform(0.1, 0.3) * w
    kind = rng.integers(3)
    if kind == 0:
        top_left = (int(cx - rx), int(cy - ry))
        cv2.rectangle(canvas, top_left, (int(cx + rx), int(cy + ry)), value, thickness=-1)
    elif kind == 1:
        angle = float(rng.uniform(0, 180))
        axes = (int(rx), int(ry))
        cv2.ellipse(canvas, (int(cx), int(cy)), axes, angle, 0, 360, value, thickness=-1)
    else:
        angles = rng.uniform(0, 2 * np.pi, 3)
        points = np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)
        cv2.fillPoly(canvas, [points.round().astype(np.int32)], value)


class SyntheticSegmentationDataset(SegmentationDataset):
    """Random rectangles, ellipses and triangles on a blotchy grey background.

    Class k ≥ 1 has its own hue and texture (stripes, checks, dots…), with per-shape colour
    jitter and pixel noise so the task needs more than one pixel's colour but is learnable
    from appearance by a small network. ``num_samples`` is one count for every split or a
    mapping split → count.
    """

    flip_pairs: list[tuple[int, int]] = []

    def __init__(
        self,
        root: str | None = None,
        split: str = "train",
        transform: Callable | None = None,
        num_samples: int | Mapping[str, int] = 64,
        image_size: Sequence[int] = (128, 128),
        num_classes: int = 5,
        seed: int = 0,
        shapes_per_image: Sequence[int] = (3, 7),
        noise_std: float = 12.0,
    ) -> None:
        super().__init__(transform)
        del root  # accepted so that every dataset is built the same way; nothing is read
        if isinstance(num_samples, Mapping):
            if split not in num_samples:
                raise ValueError(
                    f"synthetic split '{split}' has no sample count; num_samples gives "
                    f"{sorted(num_samples)}"
                )
            num_samples = num_samples[split]
        if num_samples < 1 or num_classes < 2 or len(image_size) != 2 or min(image_size) < 8:
            raise ValueError(
                f"synthetic data needs num_samples ≥ 1, num_classes ≥ 2 and an image_size of "
                f"two sides ≥ 8; got {num_samples}, {num_classes}, {image_size}"
            )
        self.split = split
        self.num_samples = int(num_samples)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.seed = seed
        self.shapes_per_image = (int(shapes_per_image[0]), int(shapes_per_image[1]))
        self.noise_std = noise_std
        self.class_names = ["background"] + [
            f"{TEXTURES[(k - 1) % len(TEXTURES)]}_{k}" for k in range(1, num_classes)
        ]
        self.palette = class_colours(num_classes)
        self._split_code = zlib.crc32(split.encode())

    def __len__(self) -> int:
        return self.num_samples

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        rng = np.random.default_rng([self.seed, self._split_code, index])
        h, w = self.image_size
        k = self.num_classes
        instances = np.zeros((h, w), dtype=np.int32)
        num_shapes = int(rng.integers(self.shapes_per_image[0], self.shapes_per_image[1] + 1))
        shape_class = rng.integers(1, k, size=num_shapes)
        for i in range(num_shapes):  # later shapes cover earlier ones
            draw_shape(instances, i + 1, rng)
        mask = np.concatenate([[0], shape_class])[instances].astype(np.uint8)

        # Background: grey with smooth blotches (low-resolution noise, upsampled).
        blotches = cv2.resize(rng.normal(0, 20, (h // 8 + 1, w // 8 + 1, 3)), (w, h))
        image = np.asarray(BACKGROUND_COLOUR, dtype=np.float32) + blotches.astype(np.float32)
        palette = np.asarray(self.palette, dtype=np.float32)
        for i, cls in enumerate(shape_class):
            region = instances == i + 1
            if not region.any():
                continue
            kind = TEXTURES[(cls - 1) % len(TEXTURES)]
            period = 6.0 + 2.0 * ((cls - 1) // len(TEXTURES)) + rng.uniform(-1, 1)
            pattern = texture(kind, h, w, period, rng)[region][:, None]
            colour = palette[cls] + rng.normal(0, 12, 3)
            image[region] = colour + 45.0 * pattern
        image += rng.normal(0, self.noise_std, image.shape)
        image = np.clip(image, 0, 255).round().astype(np.uint8)
        return image, mask, f"synthetic_{self.split}_{index:05d}"
