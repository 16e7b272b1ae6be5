"""Segment a stream of frames (a video file or a folder of frames): a mask per frame, and an
overlay video (``src.predict`` with a video input, or any input for a video model).

:func:`predict_frames` is the computation: a video model (:class:`src.models.ccnet3d.CCNet3D`)
gets each frame's clip from :func:`src.core.video_frames.clip_windows` (at most the clip's span
of frames decoded at a time), a 2D model each frame alone; both through the shared inference
(:func:`src.core.inference.predict_logits_with`: whole or sliding window, flips, scales), after
the same normalisation as images. :func:`write_sequence` writes what ``src.predict`` writes for
a sequence: ``<stem>.png`` (train ids) per frame, ``<stem>_color.png`` with ``color``, and
``<sequence stem>_overlay.mp4`` (:class:`OverlayVideo`: the frames under the coloured masks at
the frames' size, the input's frame rate; no legend strip, whose height would change between
frames).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from src.core.inference import InferenceConfig, predict_logits_with
from src.core.prediction_files import color_png, overlay, relative_output, trainid_png
from src.core.video_frames import Frame, FrameSequence, clip_windows
from src.data.clips import ClipSpec

FOURCC = "mp4v"


def predict_frames(
    net: nn.Module,
    frames: Iterable[Frame],
    clip: ClipSpec | None,
    transform: Callable[..., dict[str, Any]],
    inference: InferenceConfig,
    flip_pairs: Sequence[tuple[int, int]] = (),
    num_classes: int | None = None,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[Frame, np.ndarray]]:
    """``(frame, H×W uint8 train-id mask)`` for every frame, in order.

    ``clip``: the video model's clips (the net takes B×T×3×H×W); None: a 2D model, each frame
    alone. ``transform`` is the eval transform (albumentations: ``transform(image=...)``), run
    once per frame. The net must be in eval mode on ``device``.
    """
    spec = clip if clip is not None else ClipSpec()
    prepared = ((frame, _normalised(transform, frame.image)) for frame in frames)
    for index, window in clip_windows(prepared, spec):
        frame = window[spec.target_index][0]
        assert frame.index == index, "clip window out of step with the frames"
        tensors = [tensor for _, tensor in window]
        batch = torch.stack(tensors)[None] if clip is not None else tensors[0][None]
        logits = predict_logits_with(net, batch.to(device), inference, flip_pairs, num_classes)
        yield frame, logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()


def _normalised(transform: Callable[..., dict[str, Any]], image: np.ndarray) -> Tensor:
    return transform(image=image)["image"].float()


class OverlayVideo:
    """An mp4 (``mp4v``) of RGB frames, opened at the first frame's size; every frame must
    have that size. A writer OpenCV cannot open is an error naming the file."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = Path(path), float(fps)
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None  # (height, width)
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        if self.writer is None:
            self.size = rgb.shape[:2]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*FOURCC)
            height, width = self.size
            self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (width, height))
            if not self.writer.isOpened():
                raise OSError(f"cannot write video file {self.path} ({FOURCC}, OpenCV)")
        if rgb.shape[:2] != self.size:
            raise ValueError(f"overlay frame {rgb.shape[:2]} != the video's size {self.size}")
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None

    def __enter__(self) -> OverlayVideo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Record(Protocol):
    """Where each frame's fate goes (``src.predict``'s predictions.json summary)."""

    def predicted(self, name: str, outputs: dict[str, Path], **fields: Any) -> None: ...

    def skip(self, name: str, reason: str) -> None: ...


def sequence_paths(out_dir: Path, sequence: FrameSequence) -> dict[str, Path]:
    """Where the sequence-wide outputs go: the overlay video."""
    return {"overlay_video": Path(out_dir) / f"{relative_output(sequence.stem)}_overlay.mp4"}


def frame_paths(out_dir: Path, frame: Frame, color: bool) -> dict[str, Path]:
    """A frame's files: ``<stem>.png`` (train ids) and, with ``color``, ``<stem>_color.png``."""
    base = Path(out_dir) / relative_output(frame.stem)
    paths = {"mask": base.with_name(f"{base.name}.png")}
    if color:
        paths["color"] = base.with_name(f"{base.name}_color.png")
    return paths


def write_sequence(
    predictions: Iterable[tuple[Frame, np.ndarray]],
    sequence: FrameSequence,
    out_dir: Path,
    palette: Sequence[Sequence[int]],
    record: Record,
    num_classes: int,
    alpha: float = 0.5,
    color: bool = False,
    on_frame: Callable[[], None] | None = None,
) -> tuple[np.ndarray, int]:
    """Write each frame's mask (and colour PNG) and the overlay video; record each frame in
    ``record``; call ``on_frame()`` after each (a progress bar). Returns the predicted pixels
    per class and the number of frames."""
    pixels = np.zeros(num_classes, dtype=np.int64)
    video_path = sequence_paths(out_dir, sequence)["overlay_video"]
    with OverlayVideo(video_path, sequence.fps) as video:
        for frame, pred in predictions:
            paths = frame_paths(out_dir, frame, color)
            paths["mask"].parent.mkdir(parents=True, exist_ok=True)
            trainid_png(pred).save(paths["mask"])
            if color:
                color_png(pred, palette).save(paths["color"])
            video.write(overlay(frame.image, pred, palette, alpha))
            record.predicted(frame.name, paths, frame=frame.index)
            pixels += np.bincount(pred.ravel(), minlength=num_classes)
            if on_frame is not None:
                on_frame()
    return pixels, video.frames


__all__ = [
    "FOURCC",
    "OverlayVideo",
    "frame_paths",
    "predict_frames",
    "sequence_paths",
    "write_sequence",
]
