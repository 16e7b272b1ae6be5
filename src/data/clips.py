"""Clips for video segmentation: which frames make a clip around its labelled frame, and the
dataset base class every video dataset shares.

A clip is ``length`` frames taken every ``stride`` frames, the labelled (*target*) frame
``last`` (causal use: only past frames) or in the ``centre`` (odd lengths; even ones put it
just after the middle). A sample is ``{"image": (T, 3, H, W), "mask": (H, W), "name"}``: the
mask and the name are the target frame's. One albumentations call transforms every frame and
the mask together (its ``images`` target), so a clip is flipped, scaled and cropped as one.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src.data.base import SegmentationDataset, read_image

TARGETS = ("last", "centre")


@dataclass(frozen=True)
class ClipSpec:
    """How a clip is cut around its labelled frame (the config's ``data.clip`` node).

    - ``length``: frames per clip, T ≥ 1 (1: the labelled frame alone, the 2D case);
    - ``target``: where the labelled frame sits, ``last`` or ``centre``;
    - ``stride``: frames between two clip frames in the source video, ≥ 1;
    - ``pad``: a neighbouring frame missing from the disk repeats the nearest frame of the
      clip that exists instead of raising (the video's first or last frames).
    """

    length: int = 1
    target: str = "last"
    stride: int = 1
    pad: bool = False

    def __post_init__(self) -> None:
        for name in ("length", "stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"data.clip.{name} must be an int >= 1; got {value!r}")
        if self.target not in TARGETS:
            raise ValueError(f"data.clip.target must be one of {TARGETS}; got {self.target!r}")
        object.__setattr__(self, "pad", bool(self.pad))

    @classmethod
    def from_config(cls, node: ClipSpec | Mapping[str, Any] | None) -> ClipSpec:
        """A spec from an instance, a mapping of some fields (e.g. ``data.clip``) or None (T=1)."""
        if isinstance(node, ClipSpec):
            return node
        node = dict(node or {})
        known = [f.name for f in fields(cls)]
        unknown = [k for k in node if k not in known]
        if unknown:
            raise ValueError(
                f"unknown clip setting {', '.join(f'data.clip.{k}' for k in unknown)}; "
                f"the settings are {known}"
            )
        return cls(**node)

    @property
    def target_index(self) -> int:
        """Position of the labelled frame in the clip (0-based)."""
        return target_index(self.length, self.target)

    def offsets(self) -> list[int]:
        """Frame-number offsets of the clip's frames from the labelled frame, in time order."""
        first = -self.target_index
        return [(first + i) * self.stride for i in range(self.length)]

    def frame_numbers(self, target_frame: int) -> list[int]:
        """The source-video frame numbers of the clip around ``target_frame``."""
        return [target_frame + offset for offset in self.offsets()]


def target_index(length: int, target: str) -> int:
    """Index of the labelled frame in a clip of ``length`` frames (``last`` or ``centre``)."""
    if target not in TARGETS:
        raise ValueError(f"clip target must be one of {TARGETS}; got {target!r}")
    return length - 1 if target == "last" else length // 2


def labelled_frame(images: torch.Tensor, target: str) -> torch.Tensor:
    """The labelled frame of each clip of a batch: clips (B, T, C, H, W) give their frame at
    :func:`target_index` (``target``: ``last`` or ``centre``, the model's ``target_frame``,
    the data's ``clip.target``) as (B, C, H, W); an image batch (B, C, H, W) is returned as
    is. What a video model predicts is that frame: show, compare or save it with the
    prediction."""
    if images.dim() == 4:
        return images
    if images.dim() != 5:
        raise ValueError(
            f"expected images (B, C, H, W) or clips (B, T, C, H, W); got {tuple(images.shape)}"
        )
    return images[:, target_index(images.shape[1], target)]


def pad_missing(frames: Sequence[np.ndarray | None]) -> list[np.ndarray]:
    """Replace each missing frame (None) by the nearest present one (earlier on ties)."""
    present = [i for i, frame in enumerate(frames) if frame is not None]
    if not present:
        raise ValueError("a clip needs at least one frame on disk")
    return [frames[min(present, key=lambda j: (abs(j - i), j))] for i in range(len(frames))]


def missing_frame_error(path: Path, frame: int, target: Path, layout: str) -> FileNotFoundError:
    """The error of a clip frame absent from the disk, with the two ways out."""
    where = " (before the video's first frame)" if frame < 0 else ""
    return FileNotFoundError(
        f"clip frame {frame}{where} of the clip around {target} not found: expected {path}\n"
        "Extract the video's frames (see the layout below), or set data.clip.pad=true to repeat "
        f"the nearest frame of the clip instead.\nExpected layout under the dataset root:\n{layout}"
    )


def read_clip_frames(
    frames: Sequence[tuple[int, Path]],
    target_index: int,
    target: tuple[np.ndarray, Path],
    pad: bool,
    layout: str,
    size_hint: str = "",
) -> list[np.ndarray]:
    """The clip's frames in time order: ``target`` (image, path) at ``target_index``, the others
    read from ``frames`` ((frame number, file) each; a negative number is before the video).

    A missing frame raises :func:`missing_frame_error`, or with ``pad`` is replaced by the
    nearest frame present (:func:`src.data.clips.pad_missing`); a frame of another size than the
    target is an error naming both files.
    """
    image, image_path = target
    out: list[np.ndarray | None] = []
    for i, (number, path) in enumerate(frames):
        if i == target_index:
            out.append(image)
        elif number < 0 or not path.is_file():
            if not pad:
                raise missing_frame_error(path, number, image_path, layout)
            out.append(None)
        else:
            frame = read_image(path)
            if frame.shape != image.shape:
                raise ValueError(
                    f"clip frame {path} is {frame.shape[:2]} but the labelled image {image_path} "
                    f"is {image.shape[:2]} (height, width); {size_hint or 'frames must match it'}"
                )
            out.append(frame)
    return pad_missing(out)


def to_clip_sample(
    frames: Sequence[np.ndarray], mask: np.ndarray, name: str, transform: Callable | None
) -> dict[str, Any]:
    """Transform the frames (H×W×3 uint8 each) and the mask as one, return the sample dict
    with ``image`` (T, 3, H, W) float."""
    stack = np.stack(list(frames))
    if stack.ndim != 4 or stack.shape[-1] != 3:
        raise ValueError(f"clip frames must be H×W×3 images of one size; got {stack.shape}")
    if transform is not None:
        out = transform(images=stack, mask=mask)
        images, mask = out["images"], out["mask"]
    else:
        images = stack
    images_t = torch.as_tensor(images)
    if isinstance(images, np.ndarray):  # T×H×W×C array from a pipeline without ToTensorV2
        images_t = images_t.permute(0, 3, 1, 2)
    return {
        "image": images_t.float().contiguous(),
        "mask": torch.as_tensor(mask).long(),
        "name": name,
    }


class ClipDataset(SegmentationDataset):
    """A video dataset: sample ``index`` is a clip (``self.clip``) around a labelled frame.

    Subclasses implement :meth:`read_clip`; ``read`` (the labelled frame alone) comes free.
    """

    def __init__(
        self, transform: Callable | None = None, clip: ClipSpec | Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(transform)
        self.clip = ClipSpec.from_config(clip)

    @abstractmethod
    def read_clip(self, index: int) -> tuple[list[np.ndarray], np.ndarray, str]:
        """Clip ``index`` as (frames H×W×3 uint8 RGB in time order, target mask H×W, name)."""

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        frames, mask, name = self.read_clip(index)
        return frames[self.clip.target_index], mask, name

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        frames, mask, name = self.read_clip(index)
        return to_clip_sample(frames, mask, name, self.transform)


__all__ = [
    "ClipDataset",
    "ClipSpec",
    "TARGETS",
    "labelled_frame",
    "missing_frame_error",
    "pad_missing",
    "read_clip_frames",
    "target_index",
    "to_clip_sample",
]
