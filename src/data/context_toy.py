"""A long-range-context toy: grey shapes whose class is set by a coloured key far away.

Every image holds one small coloured square, the *key*, near a random corner, and a few
shapes drawn in one class-neutral grey. The key and all shapes of an image take the class of
the key's colour. A shape pixel's label therefore depends on evidence outside any local
receptive field: every shape keeps at least ``min_gap`` pixels from the key. (The key is
labelled, not ignored, so that a network trained from scratch has a local reason to encode
the key's colour; only then can attention carry it to the shapes.)

About half the shapes (``aligned_fraction``) share the key's row or column band, so one
criss-cross step (R=1) reaches the key from them; the others lie off both bands, so only two
steps (R=2) reach it. A model without long-range context can only guess among the key
classes, R=1 solves the aligned shapes, R=2 all of them.

The key is 40 pixels wide, 5 cells of a stride-8 feature map: even the near-uniform attention
of an untrained model then gives it 5 of the 31 positions of a 16×16 map's cross, enough signal
for R=1 to engage within the 1000 steps of ``experiment=context_toy``. With smaller keys it
engaged for some seeds only and otherwise stayed at R=0's level (24 pixels: 1 seed of 4;
32 pixels: 2 of 3). A wider key also puts more of each aligned shape in line with it: 99.5 %
of the aligned shapes' feature positions have a key position on their row or column with
40 pixels, 88 % with 24 (none of the off-band shapes' positions do).

Every sample comes from its own random stream seeded by (seed, split, index): the same in
every process and run, different between splits, nothing kept on disk.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from src.data.base import SegmentationDataset

KEY_COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 230),
    "yellow": (230, 210, 40),
}
SHAPE_KINDS = ("disk", "square", "diamond")
BACKGROUND_GREY = 80
SHAPE_GREY = 175


@dataclass(frozen=True)
class Box:
    """An axis-aligned square: top-left corner and side, in pixels."""

    top: int
    left: int
    size: int

    @property
    def bottom(self) -> int:
        return self.top + self.size

    @property
    def right(self) -> int:
        return self.left + self.size

    def gap(self, other: Box) -> float:
        """Euclidean distance between the two boxes (0 when they touch or overlap)."""
        dy = max(0, other.top - self.bottom, self.top - other.bottom)
        dx = max(0, other.left - self.right, self.left - other.right)
        return math.hypot(dy, dx)

    def rows_overlap(self, other: Box, margin: int = 0) -> bool:
        """True when the row ranges meet, each widened by ``margin`` pixels."""
        return self.top - margin < other.bottom and other.top - margin < self.bottom

    def cols_overlap(self, other: Box, margin: int = 0) -> bool:
        """True when the column ranges meet, each widened by ``margin`` pixels."""
        return self.left - margin < other.right and other.left - margin < self.right


@dataclass(frozen=True)
class Shape:
    """One grey shape; ``aligned`` when it was placed in the key's row or column band."""

    kind: str
    box: Box
    aligned: bool


@dataclass(frozen=True)
class Layout:
    """Everything that decides a sample: the key's class and box, the shapes, the noise seed."""

    key_class: int
    key: Box
    shapes: tuple[Shape, ...]
    noise_seed: int


class ContextToyDataset(SegmentationDataset):
    """Grey shapes labelled by a far-away coloured key (see the module docstring).

    ``num_samples`` is one count for every split or a mapping split → count. ``min_gap`` is
    the least distance in pixels between the key and any shape; ``band_margin`` how far an
    off-band shape keeps from the key's row and column band.
    """

    num_classes = 1 + len(KEY_COLOURS)
    class_names = ["background", *(f"key_{name}" for name in KEY_COLOURS)]
    palette = [[0, 0, 0], *(list(colour) for colour in KEY_COLOURS.values())]
    flip_pairs: list[tuple[int, int]] = []

    def __init__(
        self,
        root: str | None = None,
        split: str = "train",
        transform: Callable | None = None,
        num_samples: int | Mapping[str, int] = 1000,
        image_size: Sequence[int] = (128, 128),
        seed: int = 0,
        key_size: int = 40,
        shape_size: Sequence[int] = (20, 28),
        shapes_per_image: Sequence[int] = (2, 3),
        aligned_fraction: float = 0.5,
        min_gap: int = 32,
        band_margin: int = 8,
        corner_jitter: int = 16,
        noise_std: float = 10.0,
    ) -> None:
        super().__init__(transform)
        del root  # accepted so that every dataset is built the same way; nothing is read
        if isinstance(num_samples, Mapping):
            if split not in num_samples:
                raise ValueError(
                    f"context_toy split '{split}' has no sample count; num_samples gives "
                    f"{sorted(num_samples)}"
                )
            num_samples = num_samples[split]
        if num_samples < 1 or len(image_size) != 2:
            raise ValueError(
                f"context_toy needs num_samples ≥ 1 and an image_size (h, w); got "
                f"{num_samples}, {image_size}"
            )
        if not 0.0 <= aligned_fraction <= 1.0:
            raise ValueError(f"aligned_fraction must lie in [0, 1]; got {aligned_fraction}")
        self.split = split
        self.num_samples = int(num_samples)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.seed = int(seed)
        self.key_size = int(key_size)
        self.shape_size = (int(shape_size[0]), int(shape_size[1]))
        self.shapes_per_image = (int(shapes_per_image[0]), int(shapes_per_image[1]))
        self.aligned_fraction = float(aligned_fraction)
        self.min_gap = int(min_gap)
        self.band_margin = int(band_margin)
        self.corner_jitter = int(corner_jitter)
        self.noise_std = float(noise_std)
        self._split_code = zlib.crc32(split.encode())
        self._check_room()

    def __len__(self) -> int:
        return self.num_samples

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        image, mask = self.render(self.layout(index))
        return image, mask, f"context_toy_{self.split}_{index:05d}"

    # -- layout ------------------------------------------------------------------------------
    def layout(self, index: int) -> Layout:
        """The layout of sample ``index``, drawn from its own seeded stream (retries included)."""
        rng = np.random.default_rng([self.seed, self._split_code, index])
        for _ in range(100):
            layout = self._try_layout(rng)
            if layout is not None:
                return layout
        raise RuntimeError(
            f"context_toy could not place {self.shapes_per_image[0]} shapes in a "
            f"{self.image_size} image (sample {index}); use a larger image or a smaller min_gap"
        )

    def _try_layout(self, rng: np.random.Generator) -> Layout | None:
        h, w = self.image_size
        k = self.key_size
        dy, dx = (int(v) for v in rng.integers(2, 2 + self.corner_jitter + 1, size=2))
        bottom, right = (bool(v) for v in rng.integers(0, 2, size=2))
        key = Box(h - k - dy if bottom else dy, w - k - dx if right else dx, k)
        key_class = int(rng.integers(1, len(KEY_COLOURS) + 1))
        count = int(rng.integers(self.shapes_per_image[0], self.shapes_per_image[1] + 1))
        shapes: list[Shape] = []
        for _ in range(count):
            aligned = bool(rng.random() < self.aligned_fraction)
            box = self._place(rng, key, [s.box for s in shapes], aligned)
            if box is None:
                continue
            shapes.append(Shape(SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))], box, aligned))
        if len(shapes) < self.shapes_per_image[0]:
            return None
        return Layout(key_class, key, tuple(shapes), int(rng.integers(2**31)))

    def _place(
        self, rng: np.random.Generator, key: Box, others: list[Box], aligned: bool
    ) -> Box | None:
        """A shape box far from the key, in (``aligned``) or off its row/column band."""
        h, w = self.image_size
        for _ in range(50):
            size = int(rng.integers(self.shape_size[0], self.shape_size[1] + 1))
            top = int(rng.integers(0, h - size + 1))
            left = int(rng.integers(0, w - size + 1))
            if aligned:  # centre the shape on the key's row (or column) band, with jitter
                shift = int(rng.integers(-(key.size // 4), key.size // 4 + 1))
                if rng.random() < 0.5:
                    top = min(max(key.top + (key.size - size) // 2 + shift, 0), h - size)
                else:
                    left = min(max(key.left + (key.size - size) // 2 + shift, 0), w - size)
            box = Box(top, left, size)
            if box.gap(key) < self.min_gap:
                continue
            in_band = box.rows_overlap(key, self.band_margin) or box.cols_overlap(
                key, self.band_margin
            )
            if not aligned and in_band:
                continue
            if any(box.gap(other) < 4 for other in others):
                continue
            return box
        return None

    def _check_room(self) -> None:
        """Fail at construction when the geometry leaves no room for shapes."""
        try:
            self.layout(0)
        except RuntimeError as err:
            raise ValueError(str(err)) from None

    # -- rendering ---------------------------------------------------------------------------
    def render(self, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
        """Image (H×W×3 uint8 RGB) and mask (H×W uint8) of a layout.

        The noise depends only on ``layout.noise_seed`` and the shapes' pixels only on their
        boxes, so two layouts that differ only in ``key_class`` give images that differ only
        inside the key and masks that differ only on the shapes.
        """
        h, w = self.image_size
        rng = np.random.default_rng(layout.noise_seed)
        blotches = cv2.resize(rng.normal(0, 15, (h // 8 + 1, w // 8 + 1)), (w, h))
        grey = BACKGROUND_GREY + blotches
        mask = np.zeros((h, w), dtype=np.uint8)
        shapes = np.zeros((h, w), dtype=np.uint8)
        for shape in layout.shapes:
            draw(shapes, shape)
        grey = np.where(shapes > 0, SHAPE_GREY, grey)
        mask[shapes > 0] = layout.key_class
        image = np.repeat(grey[:, :, None], 3, axis=2)
        key = layout.key
        colour = np.asarray(self.palette[layout.key_class], dtype=np.float64)
        image[key.top : key.bottom, key.left : key.right] = colour
        mask[key.top : key.bottom, key.left : key.right] = layout.key_class
        image += rng.normal(0, self.noise_std, image.shape)
        return np.clip(image, 0, 255).round().astype(np.uint8), mask


def draw(canvas: np.ndarray, shape: Shape) -> None:
    """Fill ``shape`` with 1 on ``canvas`` (disk, square or diamond inside its box)."""
    box = shape.box
    if shape.kind == "square":
        canvas[box.top : box.bottom, box.left : box.right] = 1
        return
    yy, xx = np.mgrid[box.top : box.bottom, box.left : box.right].astype(np.float64)
    centre = (box.size - 1) / 2
    dy, dx = yy - box.top - centre, xx - box.left - centre
    radius = box.size / 2
    inside = dy**2 + dx**2 <= radius**2 if shape.kind == "disk" else abs(dy) + abs(dx) <= radius
    canvas[box.top : box.bottom, box.left : box.right][inside] = 1


__all__ = ["ContextToyDataset", "KEY_COLOURS", "Box", "Layout", "Shape", "draw"]
