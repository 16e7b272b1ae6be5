"""Segmentation inference: whole image or sliding window, × scales, × horizontal flip.

One function, :func:`predict_logits`, serves validation, test, eval and predict alike, so the
numbers a run reports are the ones its predictions show. Every view (scale × flip) yields
float32 logits at the input's full resolution, and those **logits are averaged** — over tile
overlaps, scales and flips alike (as the official CCNet code does; mmseg averages softmax
probabilities instead, which changes the argmax only where views disagree).

The settings are an :class:`InferenceConfig`, checked once when it is built
(:meth:`InferenceConfig.from_config` from the ``inference:`` config group); the per-batch path
:func:`predict_logits_with` trusts it and checks nothing but the model's output.

The caller owns the model's mode: call ``model.eval()`` first (BatchNorm and Dropout behave
differently in training); this module never switches it. Gradients are off inside.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn

from src.core.losses import resize_logits

MODES = ("whole", "slide")

Pair = tuple[int, int]
Window = tuple[int, int, int, int]


@dataclass(frozen=True)
class InferenceConfig:
    """The app's ``inference:`` config group, checked once: lists and single ints become
    pairs, and every value is valid (``crop_size`` and ``stride`` matter in slide mode only).
    ``resize`` = (long, short): each image is first scaled to fit those sides (mmseg's
    ADE20K test resize, see :func:`resize_factor`); its logits still come back at full size."""

    mode: str = "whole"
    crop_size: Pair = (769, 769)
    stride: Pair = (513, 513)
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    tile_batch_size: int = 4
    resize: Pair | None = None

    def __post_init__(self) -> None:
        crop, step = _check_window(self.crop_size, self.stride)
        checked = {
            "mode": _check_mode(self.mode),
            "crop_size": crop,
            "stride": step,
            "scales": _check_scales(self.scales),
            "flip": _check_flip(self.flip),
            "tile_batch_size": _check_tile_batch_size(self.tile_batch_size),
            "resize": None if self.resize is None else _pair(self.resize, "inference.resize"),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_config(cls, node: InferenceConfig | Mapping[str, Any] | None) -> InferenceConfig:
        """The one constructor from a config node (a DictConfig, a checkpoint's plain dict, or
        None for the defaults); an unknown key is an error naming ``inference.<key>``."""
        if isinstance(node, cls):
            return node
        if node is None:
            return cls()
        if OmegaConf.is_config(node):  # plain values, interpolations resolved
            node = OmegaConf.to_container(node, resolve=True)
        known = [f.name for f in fields(cls)]
        unknown = [key for key in node if key not in known]
        if unknown:
            raise ValueError(
                f"inference.{unknown[0]} is not an inference setting (known: {', '.join(known)})"
            )
        return cls(**node)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (lists, not tuples) for hyperparameters and results files."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def predict_logits(
    model: nn.Module,
    images: Tensor,
    config: InferenceConfig | None = None,
    flip_pairs: Sequence[Sequence[int]] = (),
    num_classes: int | None = None,
    **settings: Any,
) -> Tensor:
    """B×K×H×W float32 logits of ``images`` (B×C×H×W, normalised), averaged over all views.

    The settings are an :class:`InferenceConfig` or its fields as keywords (``mode``,
    ``crop_size``, ``stride``, ``scales``, ``flip``, ``tile_batch_size``, ``resize``), checked
    here once; see :func:`predict_logits_with` for the computation. ``flip_pairs`` lists
    class pairs that swap under a horizontal flip (LIP's left/right arms, legs, shoes).
    """
    if not isinstance(config, InferenceConfig | None):
        raise TypeError(
            f"predict_logits takes an InferenceConfig or keyword settings (mode=..., "
            f"crop_size=...), not {config!r}"
        )
    if config is not None and settings:
        raise TypeError("pass either an InferenceConfig or its settings as keywords, not both")
    config = config if config is not None else InferenceConfig(**settings)
    pairs = check_flip_pairs(flip_pairs, num_classes)
    return predict_logits_with(model, images, config, pairs, num_classes)


def predict_logits_with(
    model: nn.Module,
    images: Tensor,
    config: InferenceConfig,
    flip_pairs: Sequence[Pair] = (),
    num_classes: int | None = None,
) -> Tensor:
    """:func:`predict_logits` for settings and flip pairs already checked (the per-batch path).

    ``model(x)`` returns B×K×h×w logits (any h×w, typically ceil(H/8)), or a dict holding them
    under ``out``. Clips (B×T×C×H×W, a video model's input) are tiled, flipped and scaled frame
    by frame alike; the logits are those of each clip's labelled frame. They are upsampled
    bilinearly (with the model's ``align_corners``, see :func:`align_corners_of`): in slide
    mode to the tile, whose mosaic is then resized to H×W; in whole mode straight to H×W, one
    resize instead of two for a rescaled view. Views are summed into one B×K×H×W buffer, so memory
    stays at the batch's logits plus one scaled view, whatever the scales.
    """
    if images.dim() not in (4, 5):
        raise ValueError(
            f"images must be B×C×H×W (or clips B×T×C×H×W), got shape {tuple(images.shape)}"
        )
    size = (images.shape[-2], images.shape[-1])
    flips = (False, True) if config.flip else (False,)
    corners = align_corners_of(model)
    base = resize_factor(size, config.resize)

    total: Tensor | None = None
    with torch.no_grad():
        for scale in config.scales:
            scaled = _rescale(images, base * scale)
            for flipped in flips:
                view = scaled.flip(-1) if flipped else scaled
                if config.mode == "whole":
                    logits = _forward(model, view, size, corners)
                else:
                    logits = _slide(
                        model, view, config.crop_size, config.stride, config.tile_batch_size,
                        corners,
                    )  # fmt: skip
                _check_classes(logits, num_classes)
                if flipped:
                    logits = _unflip(logits, flip_pairs)
                logits = _resize(logits, size, corners)
                if total is None:  # a copy: the model's own output must not be summed into
                    total = logits.clone(memory_format=torch.contiguous_format)
                else:
                    total += logits
                del logits
        assert total is not None
        views = len(config.scales) * len(flips)
        if views > 1:
            total /= views
    return total


def resize_factor(size: Pair, resize: Pair | None) -> float:
    """The factor that fits an image of ``size`` (h, w) into ``resize`` = (long, short) sides
    keeping its aspect ratio (mmseg's ``Resize(scale=(2048, 512), keep_ratio=True)`` test
    step, before the scales multiply it); 1 without ``resize``."""
    if resize is None:
        return 1.0
    long_side, short_side = max(resize), min(resize)
    return min(long_side / max(size), short_side / min(size))


def slide_windows(height: int, width: int, crop_size: Pair, stride: Pair) -> list[Window]:
    """Tiles (y1, y2, x1, x2) over a height×width image at least as large as the crop.

    The layout of mmseg's slide_inference: ``max(ceil((H - crop) / stride), 0) + 1`` tiles per
    axis, each ``stride`` apart, the last one shifted back to end at the border.
    """
    (crop_h, crop_w), (step_h, step_w) = crop_size, stride
    if height < crop_h or width < crop_w:
        raise ValueError(f"image {height}×{width} is smaller than the crop {crop_h}×{crop_w}")
    ys = list(_starts(height, crop_h, step_h))
    xs = list(_starts(width, crop_w, step_w))
    return [(y, y + crop_h, x, x + crop_w) for y in ys for x in xs]


def _starts(length: int, crop: int, step: int) -> Iterator[int]:
    """Start offsets of the tiles along one axis."""
    grids = max(math.ceil((length - crop) / step), 0) + 1
    for i in range(grids):
        yield min(i * step, length - crop)


def _slide(
    model: nn.Module, image: Tensor, crop: Pair, stride: Pair, batch: int, align_corners: bool
) -> Tensor:
    """Logits at ``image``'s size from overlapping crop-sized tiles, averaged by a count map.

    The tile is clamped to the view first (:func:`_view_window`): along a side shorter than the
    crop the tile is that side, so a view smaller than the crop is one tile of its own size
    (one forward, as whole-image inference) instead of a crop-sized tile of mostly zero
    padding. Tiles of every image in the batch go through the model ``batch`` at a time.
    """
    n, (height, width) = image.shape[0], image.shape[-2:]
    crop, stride = _view_window((height, width), crop, stride)
    windows = slide_windows(height, width, crop, stride)

    count = torch.zeros((1, 1, height, width), dtype=torch.float32, device=image.device)
    for y1, y2, x1, x2 in windows:
        count[..., y1:y2, x1:x2] += 1
    jobs = [(b, w) for b in range(n) for w in windows]
    total: Tensor | None = None
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        tiles = torch.stack([image[b, ..., y1:y2, x1:x2] for b, (y1, y2, x1, x2) in chunk])
        logits = _forward(model, tiles, crop, align_corners)
        if total is None:
            total = logits.new_zeros((n, logits.shape[1], height, width))
        for tile, (b, (y1, y2, x1, x2)) in zip(logits, chunk):
            total[b, :, y1:y2, x1:x2] += tile
    assert total is not None
    total /= count
    return total


def _view_window(size: Pair, crop: Pair, stride: Pair) -> tuple[Pair, Pair]:
    """The (crop, stride) one view of ``size`` (h, w) is tiled with: per side, the crop is at
    most the side and the stride at most that crop.

    A side at least the crop keeps the configured crop and stride (the tiling, and so the
    logits, are exactly those of the config); a shorter side gets one tile spanning it. Per
    view because scales change the size: at 0.75 a 64×128 image is one 48×96 tile, not a
    769×769 one padded with zeros (as mmseg's slide inference, which never pads).
    """
    tile = (min(crop[0], size[0]), min(crop[1], size[1]))
    step = (min(stride[0], tile[0]), min(stride[1], tile[1]))
    return tile, step


def align_corners_of(model: nn.Module) -> bool:
    """How the model's logits are resized: its ``align_corners`` attribute (``model.
    align_corners``, see :class:`src.models.ccnet.CCNet`), False for models without one."""
    return bool(getattr(model, "align_corners", False))


def _forward(model: nn.Module, images: Tensor, size: Pair, align_corners: bool) -> Tensor:
    """The model's main logits as float32, upsampled bilinearly to ``size``."""
    out = model(images)
    if isinstance(out, Mapping):
        out = out["out"]
    if not isinstance(out, Tensor) or out.dim() != 4 or out.shape[0] != images.shape[0]:
        raise TypeError("model must return B×K×h×w logits or a dict holding them under 'out'")
    return _resize(out.float(), size, align_corners)


def _resize(logits: Tensor, size: Pair, align_corners: bool) -> Tensor:
    """Bilinear resize in float32; a no-op when the size already fits."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    with torch.autocast(logits.device.type, enabled=False):
        return resize_logits(logits.float(), size, align_corners)


def _rescale(images: Tensor, scale: float) -> Tensor:
    """The images (or clips, frame by frame) resized bilinearly by ``scale`` (sides rounded,
    at least 1 pixel)."""
    if scale == 1.0:
        return images
    height, width = images.shape[-2:]
    size = (max(round(height * scale), 1), max(round(width * scale), 1))
    frames = images.flatten(0, -4)  # clips: B×T frames
    resized = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
    return resized.unflatten(0, images.shape[:-3])


def _unflip(logits: Tensor, flip_pairs: Sequence[Pair]) -> Tensor:
    """Flip logits of a mirrored view back and swap the channels of left/right class pairs."""
    logits = logits.flip(-1)
    if not flip_pairs:
        return logits
    classes = logits.shape[1]
    if max(max(pair) for pair in flip_pairs) >= classes:
        raise ValueError(f"flip pairs {list(flip_pairs)} are out of range for {classes} classes")
    order = list(range(classes))
    for a, b in flip_pairs:
        order[a], order[b] = b, a
    return logits[:, order]


def _check_classes(logits: Tensor, num_classes: int | None) -> None:
    """Fail clearly when the model's channel count disagrees with the expected classes."""
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(f"model returned {logits.shape[1]} channels, expected {num_classes}")


def check_flip_pairs(
    flip_pairs: Sequence[Sequence[int]], num_classes: int | None = None
) -> tuple[Pair, ...]:
    """Flip pairs as int pairs of distinct class indices, within ``num_classes`` when known."""
    pairs = []
    for pair in flip_pairs:
        items = list(pair)
        if len(items) != 2 or not all(_is_int(c) for c in items) or items[0] == items[1]:
            raise ValueError(f"flip_pairs must hold pairs of two class indices; got {pair!r}")
        a, b = int(items[0]), int(items[1])
        if min(a, b) < 0 or (num_classes is not None and max(a, b) >= num_classes):
            raise ValueError(f"flip pair {(a, b)} is out of range for {num_classes} classes")
        pairs.append((a, b))
    return tuple(pairs)


def _is_int(value: object) -> bool:
    """True for ints (numpy's included), false for bools and floats."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_mode(mode: str) -> str:
    """The mode, if it is one this module knows."""
    if mode not in MODES:
        raise ValueError(f"inference.mode must be one of {', '.join(MODES)}; got {mode!r}")
    return mode


def _pair(value: int | Sequence[int], key: str) -> Pair:
    """An int or an (h, w) sequence of positive ints as a pair; errors name the config key."""
    if _is_int(value):
        items = [value, value]
    elif isinstance(value, Sequence) and not isinstance(value, str):
        items = list(value)
    else:
        items = []
    if len(items) != 2 or not all(_is_int(v) for v in items):
        raise ValueError(f"{key} must be an int or a pair of ints (h, w); got {value!r}")
    if min(items) <= 0:
        raise ValueError(f"{key} must be positive; got {value!r}")
    return int(items[0]), int(items[1])


def _check_window(crop_size: int | Sequence[int], stride: int | Sequence[int]) -> tuple[Pair, Pair]:
    """Crop and stride as positive pairs; a stride beyond the crop would leave pixels unseen."""
    crop = _pair(crop_size, "inference.crop_size")
    step = _pair(stride, "inference.stride")
    if step[0] > crop[0] or step[1] > crop[1]:
        raise ValueError(
            f"inference.stride {step} is larger than inference.crop_size {crop}: "
            "the tiles would leave gaps"
        )
    return crop, step


def _check_scales(scales: Sequence[float]) -> tuple[float, ...]:
    """Scales as a non-empty tuple of positive finite floats."""
    if isinstance(scales, numbers.Real):
        scales = (scales,)
    try:
        values = () if isinstance(scales, str) else tuple(float(s) for s in scales)
    except (TypeError, ValueError):
        values = ()
    if not values or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"inference.scales must be a non-empty list of positive numbers; {scales}")
    return values


def _check_flip(value: bool) -> bool:
    """The flip switch: a bool (0/1 accepted); a string such as ``"false"`` or an unset
    ``???`` is an error rather than silently true."""
    if isinstance(value, (bool, np.bool_)) or (_is_int(value) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"inference.flip must be true or false; got {value!r}")


def _check_tile_batch_size(value: int) -> int:
    """The tile batch size, a positive int."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"inference.tile_batch_size must be a positive int; got {value!r}")
    return int(value)


__all__ = [
    "MODES",
    "InferenceConfig",
    "resize_factor",
    "check_flip_pairs",
    "predict_logits",
    "predict_logits_with",
    "slide_windows",
]
