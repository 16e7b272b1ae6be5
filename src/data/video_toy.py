"""A temporal-context toy: clips whose labelled frame cannot be solved from that frame alone.

Every clip holds a few shapes of one class (the clip's). In the frames before the labelled
one the shapes are drawn in the class's colour; in the labelled (last) frame they are one
class-neutral grey. A shape pixel's label is therefore only known from earlier frames.
(All shapes of a clip share its class, as the context toy's key sets every shape's: whatever
coloured evidence attention reaches is the right one, so the toy measures reach, not choice.)

About half the shapes (``moving_fraction``) move along their row, by at least their size plus
``margin`` pixels from one frame to the next; the others stay put. Every shape has a row band
of its own. So, for 3D criss-cross attention on the labelled frame:

- a *still* shape pixel finds its colour on its time line: one pass (R=1) reaches it;
- a *moving* shape pixel's time line meets only background in the earlier frames, and the
  coloured shape lies on their rows through it: a second pass (time line, then row) is needed;
- a 2D model (clips of one frame, the labelled one) sees only grey shapes and can only guess.

A share of the training clips (``revealed_fraction``) shows the colour in every frame, the
labelled one too: as the context toy's labelled key, it gives a network trained from scratch a
local reason to encode the colours as classes, which attention can then carry to grey frames
(without it, 400 steps of R=2 did not start using the earlier frames). Validation and test
clips are never revealed, so what they score needs the earlier frames.

Each sample is a short generated video of ``video_frames`` frames whose last frame is the
labelled one; the clip spec (``data.clip``) picks the frames a model sees, ending on it: clips of
one frame (the 2D baseline) see the same labelled frames as longer clips. Every video comes
from its own random stream seeded by (seed, split, index): the same in every process and run,
different between splits, nothing kept on disk.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from src.data.clips import ClipDataset, ClipSpec
from src.data.context_toy import BACKGROUND_GREY, KEY_COLOURS, SHAPE_GREY, SHAPE_KINDS, Box, draw
from src.data.context_toy import Shape as _DrawnShape


@dataclass(frozen=True)
class MovingShape:
    """A shape of the clip: kind, side, row, and its column in each frame of the clip."""

    kind: str
    size: int
    top: int
    lefts: tuple[int, ...]

    @property
    def moving(self) -> bool:
        return len(set(self.lefts)) > 1

    def box(self, frame: int) -> Box:
        return Box(self.top, self.lefts[frame], self.size)


@dataclass(frozen=True)
class ClipLayout:
    """Everything that decides a clip: its class, the shapes and the noise seed."""

    class_id: int
    shapes: tuple[MovingShape, ...]
    noise_seed: int
    revealed: bool = False  # coloured in every frame, the labelled one too


class VideoToyDataset(ClipDataset):
    """Clips whose shapes show their class only before the labelled frame (module docstring).

    ``num_samples`` is one count for every split or a mapping split → count; ``video_frames``
    the length of each generated video (the last frame labelled); ``clip`` the clip spec
    (``data.clip``): which of those frames a sample holds (``target`` must be ``last``, the
    toy has no frames after the labelled one).
    """

    num_classes = 1 + len(KEY_COLOURS)
    class_names = ["background", *(f"shape_{name}" for name in KEY_COLOURS)]
    palette = [[0, 0, 0], *(list(colour) for colour in KEY_COLOURS.values())]
    flip_pairs: list[tuple[int, int]] = []

    def __init__(
        self,
        root: str | None = None,
        split: str = "train",
        transform: Callable | None = None,
        clip: ClipSpec | Mapping[str, Any] | None = None,
        num_samples: int | Mapping[str, int] = 1000,
        image_size: Sequence[int] = (64, 96),
        video_frames: int = 3,
        seed: int = 0,
        shape_size: Sequence[int] = (14, 18),
        shapes_per_clip: Sequence[int] = (2, 3),
        moving_fraction: float = 0.5,
        revealed_fraction: float | Mapping[str, float] = 0.0,
        margin: int = 8,
        noise_std: float = 10.0,
    ) -> None:
        super().__init__(transform, clip)
        del root  # accepted so that every dataset is built the same way; nothing is read
        if isinstance(num_samples, Mapping):
            if split not in num_samples:
                raise ValueError(
                    f"video_toy split '{split}' has no sample count; num_samples gives "
                    f"{sorted(num_samples)}"
                )
            num_samples = num_samples[split]
        if num_samples < 1 or len(image_size) != 2:
            raise ValueError(
                f"video_toy needs num_samples ≥ 1 and an image_size (h, w); got "
                f"{num_samples}, {image_size}"
            )
        if isinstance(revealed_fraction, Mapping):
            revealed_fraction = revealed_fraction.get(split, 0.0)
        for name, value in (("moving", moving_fraction), ("revealed", revealed_fraction)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}_fraction must lie in [0, 1]; got {value}")
        self.video_frames = int(video_frames)
        self._check_clip()
        self.split = split
        self.num_samples = int(num_samples)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.seed = int(seed)
        self.shape_size = (int(shape_size[0]), int(shape_size[1]))
        self.shapes_per_clip = (int(shapes_per_clip[0]), int(shapes_per_clip[1]))
        self.moving_fraction = float(moving_fraction)
        self.revealed_fraction = float(revealed_fraction)
        self.margin = int(margin)
        self.noise_std = float(noise_std)
        self._split_code = zlib.crc32(split.encode())
        self._check_room()

    def __len__(self) -> int:
        return self.num_samples

    def read_clip(self, index: int) -> tuple[list[np.ndarray], np.ndarray, str]:
        frames, mask = self.render(self.layout(index))
        return frames, mask, f"video_toy_{self.split}_{index:05d}"

    @property
    def labelled_frame(self) -> int:
        """The video frame that is labelled: the last one."""
        return self.video_frames - 1

    def _check_clip(self) -> None:
        """Fail at construction when the clip reaches outside the generated video."""
        if self.video_frames < 1:
            raise ValueError(f"video_toy needs video_frames ≥ 1; got {self.video_frames}")
        numbers = self.clip.frame_numbers(self.labelled_frame)
        if min(numbers) < 0 or max(numbers) > self.labelled_frame:
            raise ValueError(
                f"data.clip (length {self.clip.length}, target {self.clip.target}, stride "
                f"{self.clip.stride}) needs video frames {numbers}; video_toy has frames 0.."
                f"{self.labelled_frame} (dataset.video_frames), the last one labelled"
            )

    # -- layout ------------------------------------------------------------------------------
    def layout(self, index: int) -> ClipLayout:
        """The layout of clip ``index``, drawn from its own seeded stream."""
        rng = np.random.default_rng([self.seed, self._split_code, index])
        class_id = int(rng.integers(1, self.num_classes))
        count = int(rng.integers(self.shapes_per_clip[0], self.shapes_per_clip[1] + 1))
        sizes = [
            int(rng.integers(self.shape_size[0], self.shape_size[1] + 1)) for _ in range(count)
        ]
        tops = self._row_bands(rng, sizes)
        shapes = tuple(
            self._shape(rng, size, top, bool(rng.random() < self.moving_fraction))
            for size, top in zip(sizes, tops)
        )
        revealed = bool(rng.random() < self.revealed_fraction)
        return ClipLayout(class_id, shapes, int(rng.integers(2**31)), revealed)

    def _row_bands(self, rng: np.random.Generator, sizes: list[int]) -> list[int]:
        """Tops of non-overlapping row bands, 4 pixels apart at least, top to bottom."""
        height = self.image_size[0]
        slack = height - sum(sizes) - 4 * (len(sizes) - 1)
        gaps = np.sort(rng.integers(0, slack + 1, size=len(sizes)))
        tops, position = [], 0
        for size, gap, previous in zip(sizes, gaps, np.concatenate([[0], gaps[:-1]])):
            position += int(gap - previous)
            tops.append(position)
            position += size + 4
        return tops

    def _shape(self, rng: np.random.Generator, size: int, top: int, moving: bool) -> MovingShape:
        """A shape in its row band, still or moving far enough from frame to frame that the
        labelled pixels' time lines miss it in every earlier frame."""
        width, length = self.image_size[1], self.video_frames
        kind = SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))]
        target = self.labelled_frame
        if not moving or target == 0:
            left = int(rng.integers(0, width - size + 1))
            return MovingShape(kind, size, top, (left,) * length)
        step = size + self.margin  # pixels per frame: no two frames' boxes overlap
        span = step * (length - 1)
        if rng.random() < 0.5:
            step = -step
        start = int(rng.integers(0, width - size - span + 1))
        if step < 0:
            start += span
        return MovingShape(kind, size, top, tuple(start + step * i for i in range(length)))

    def _check_room(self) -> None:
        """Fail at construction when the geometry leaves no room for the shapes."""
        height, width = self.image_size
        rows = self.shapes_per_clip[1] * self.shape_size[1] + 4 * (self.shapes_per_clip[1] - 1)
        span = (self.shape_size[1] + self.margin) * (self.video_frames - 1)
        if rows > height or self.shape_size[1] + span > width:
            raise ValueError(
                f"video_toy: {self.shapes_per_clip[1]} shapes of up to {self.shape_size[1]} px "
                f"moving over {self.video_frames} frames do not fit a {self.image_size} image; "
                "use a larger image_size or smaller shapes"
            )

    # -- rendering ---------------------------------------------------------------------------
    def render(self, layout: ClipLayout) -> tuple[list[np.ndarray], np.ndarray]:
        """The clip's frames (H×W×3 uint8 RGB each) and the labelled frame's mask (H×W uint8)."""
        height, width = self.image_size
        colour = np.asarray(self.palette[layout.class_id], dtype=np.float64)
        frames = []
        for frame in self.clip.frame_numbers(self.labelled_frame):
            rng = np.random.default_rng([layout.noise_seed, frame])  # same frame, same pixels
            blotches = cv2.resize(
                rng.normal(0, 15, (height // 8 + 1, width // 8 + 1)), (width, height)
            )
            image = np.repeat((BACKGROUND_GREY + blotches)[:, :, None], 3, axis=2)
            inside = self.shape_pixels(layout, frame) > 0
            shown = layout.revealed or frame < self.labelled_frame
            image[inside] = colour if shown else SHAPE_GREY
            image += rng.normal(0, self.noise_std, image.shape)
            frames.append(np.clip(image, 0, 255).round().astype(np.uint8))
        mask = np.where(self.shape_pixels(layout, self.labelled_frame) > 0, layout.class_id, 0)
        return frames, mask.astype(np.uint8)

    def shape_pixels(self, layout: ClipLayout, frame: int) -> np.ndarray:
        """H×W map of the shapes in ``frame``: 0 background, 1 a still shape, 2 a moving one."""
        canvas = np.zeros(self.image_size, dtype=np.uint8)
        for shape in layout.shapes:
            drawn = np.zeros_like(canvas)
            draw(drawn, _DrawnShape(shape.kind, shape.box(frame), False))
            canvas[drawn > 0] = 2 if shape.moving else 1
        return canvas

    def motion_map(self, index: int) -> np.ndarray:
        """The labelled frame's shape pixels of clip ``index``: 0 background, 1 still, 2
        moving (to score still and moving shapes apart)."""
        return self.shape_pixels(self.layout(index), self.labelled_frame)


__all__ = ["ClipLayout", "MovingShape", "VideoToyDataset"]
