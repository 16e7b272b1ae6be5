"""Frames of a video file or a folder of frames, streamed one at a time, and the clip around
each frame for a video model.

A :class:`FrameSequence` is a video file (``.mp4``, ``.avi``, ``.mov``, ``.mkv``: decoded by
``cv2.VideoCapture`` one frame at a time) or a folder of frames (its image files, not its
sub-folders, in natural order: ``frame_2`` before ``frame_10``). :meth:`FrameSequence.frames`
reads lazily, so nothing holds the whole video.

:func:`clip_windows` turns that stream into the clip of every frame: the frames
:meth:`src.data.clips.ClipSpec.frame_numbers` names around it (length, stride, labelled frame
``last`` or ``centre``). It keeps a sliding buffer of at most the clip's span,
``(length - 1) * stride + 1`` frames, whatever the video's length; with a ``centre`` target
the clip of frame *f* is complete (and yielded) only once its later frames were read, so the
clips come out in frame order, ``(length - 1 - target_index) * stride`` frames behind the
reading. Clip frames before the first frame or after the last do not exist: as
:func:`src.data.clips.pad_missing` does for a dataset with ``data.clip.pad=true``, each is
the nearest frame of the clip that exists (the first frames' clips repeat frame 0, the last
ones' the last frame).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from src.data.base import read_image
from src.data.clips import ClipSpec, pad_missing

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
FOLDER_FPS = 10.0
"""Frame rate of a folder of frames (and of a video whose file gives none)."""
NOT_A_FRAME = "not an image file OpenCV can read"

T = TypeVar("T")


class VideoReadError(OSError):
    """A video file that cannot be opened or holds no frame."""


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its place in the sequence, where it came from, where it goes."""

    index: int  # 0-based position in the sequence (frames that could not be read skipped)
    name: str  # the input, for predictions.json: ``clip.mp4[000003]`` or ``frame_2.png``
    stem: str  # its outputs under the output folder, without suffix: ``clip/000003``, ``frame_2``
    image: np.ndarray = field(repr=False)  # H×W×3 uint8 RGB


@dataclass(frozen=True)
class FrameSequence:
    """A video file (``files`` empty) or image files read as consecutive frames."""

    path: Path
    stem: str  # the overlay video is ``<stem>_overlay.mp4``
    fps: float
    count: int | None  # frames it holds (a video's container says; None when it does not)
    files: tuple[Path, ...] = ()  # a folder's frame files, in order
    skipped: tuple[tuple[str, str], ...] = ()  # (file name, reason): folder files left out

    @property
    def is_video(self) -> bool:
        return not self.files

    def frames(
        self, on_unreadable: Callable[[str, OSError], None] | None = None
    ) -> Iterator[Frame]:
        """The frames in order, decoded one at a time. A folder's frame that cannot be decoded
        is passed to ``on_unreadable(name, error)`` and left out (raised without it); one of
        another size than the first frame is an error naming both files."""
        if self.is_video:
            yield from _video_frames(self.path, self.stem)
            return
        size, first = None, None
        index = 0
        for path in self.files:
            try:
                image = read_image(path)
            except OSError as err:
                if on_unreadable is None:
                    raise
                on_unreadable(path.name, err)
                continue
            if size is None:
                size, first = image.shape[:2], path
            elif image.shape[:2] != size:
                raise ValueError(
                    f"frame {path} is {image.shape[:2]} but the first frame {first} is {size} "
                    "(height, width): the frames of a sequence must have one size"
                )
            yield Frame(index, path.name, path.stem, image)
            index += 1


def is_video_file(path: str | Path) -> bool:
    """Whether ``path`` names a video file by its suffix (:data:`VIDEO_SUFFIXES`)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def natural_key(name: str) -> tuple:
    """Sort key putting ``frame_2`` before ``frame_10`` (digit runs compare as numbers)."""
    parts = re.split(r"(\d+)", name)
    return (tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), name)


def open_sequence(source: str | Path, exclude: Path | None = None) -> FrameSequence:
    """The frames of ``source``: a video file, a folder of frames, or one image (a sequence
    of one frame). Errors name ``source`` when it is neither, or holds no frame."""
    source = Path(source)
    if source.is_file() and is_video_file(source):
        return open_video(source)
    if source.is_dir():
        return frame_folder(source, exclude)
    if source.is_file():
        if not cv2.haveImageReader(str(source)):
            raise VideoReadError(
                f"input={str(source)!r} is not a video file ({', '.join(VIDEO_SUFFIXES)}) "
                "nor an image OpenCV can read"
            )
        return FrameSequence(source, source.stem, FOLDER_FPS, 1, files=(source,))
    raise FileNotFoundError(f"input={str(source)!r} is neither a file nor a folder")


def open_video(path: str | Path) -> FrameSequence:
    """A video file, checked to open and to hold a first frame (its frame rate and count from
    the container; :data:`FOLDER_FPS` when it gives no rate)."""
    path = Path(path)
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoReadError(
                f"cannot open video file {path}: OpenCV cannot read it (corrupt, not a video, "
                "or a codec this OpenCV build lacks)"
            )
        if not capture.read()[0]:
            raise VideoReadError(f"video file {path} holds no frame OpenCV can decode")
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    fps = float(fps) if np.isfinite(fps) and fps > 0 else FOLDER_FPS
    return FrameSequence(path, path.stem, fps, count if count > 0 else None)


def _video_frames(path: Path, stem: str) -> Iterator[Frame]:
    """The video's frames, decoded one at a time (the capture is released at the end)."""
    capture = cv2.VideoCapture(str(path))
    try:
        index = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield Frame(index, f"{path.name}[{index:06d}]", f"{stem}/{index:06d}", image)
            index += 1
    finally:
        capture.release()


def frame_folder(folder: str | Path, exclude: Path | None = None) -> FrameSequence:
    """The image files directly in ``folder`` as frames, in natural order; hidden files and
    anything under ``exclude`` (the output folder) left out silently, other files OpenCV has
    no reader for left out with a reason (``skipped``). Sub-folders are not read."""
    folder = Path(folder)
    skip = exclude.resolve() if exclude is not None else None
    files = sorted(
        (
            p
            for p in folder.iterdir()
            if p.is_file()
            and not p.name.startswith(".")
            and (skip is None or not p.resolve().is_relative_to(skip))
        ),
        key=lambda p: natural_key(p.name),
    )
    frames, skipped, owner = [], [], {}
    for path in files:
        if not cv2.haveImageReader(str(path)):
            skipped.append((path.name, NOT_A_FRAME))
            continue
        if path.stem in owner:  # frame_1.png and frame_1.jpg: both would write frame_1.png
            raise ValueError(f"input: {owner[path.stem]} and {path} would both write {path.stem}")
        owner[path.stem] = path
        frames.append(path)
    if not frames:
        raise FileNotFoundError(
            f"input={str(folder)!r} holds no frames: no image file directly in it "
            "(a folder of frames is read without its sub-folders)"
        )
    return FrameSequence(
        folder, folder.resolve().name, FOLDER_FPS, len(frames), tuple(frames), tuple(skipped)
    )


def clip_windows(frames: Iterable[T], spec: ClipSpec) -> Iterator[tuple[int, list[T]]]:
    """``(f, clip)`` for every frame ``f`` of ``frames`` in order: ``clip`` holds the items
    :meth:`ClipSpec.frame_numbers` names around ``f`` (``clip[spec.target_index]`` is frame
    ``f``'s), those before the first or after the last frame padded with the nearest frame
    of the clip (:func:`src.data.clips.pad_missing`).

    ``frames`` is pulled lazily and at most the clip's span is kept: the clip of ``f`` is
    yielded as soon as its last frame, ``f + (length - 1 - target_index) * stride``, was
    pulled (at the end of ``frames`` for the last ones). ``spec.pad`` is not consulted: at a
    video's ends there are no other frames to take.
    """
    offsets = spec.offsets()
    ahead, behind = max(offsets), -min(offsets)
    buffer: deque[T] = deque(maxlen=behind + ahead + 1)
    pulled, target = 0, 0  # frames pulled so far; the next frame whose clip is due

    def clip(frame: int) -> list[T]:
        first = pulled - len(buffer)  # frame number of buffer[0]
        items: list[T | None] = []
        for number in spec.frame_numbers(frame):
            inside = first <= number < pulled
            assert inside or number < 0 or number >= pulled, "clip frame left the buffer"
            items.append(buffer[number - first] if inside else None)
        return pad_missing(items)

    for item in frames:
        buffer.append(item)
        pulled += 1
        while target + ahead < pulled:
            yield target, clip(target)
            target += 1
    while target < pulled:  # the last frames: their later clip frames do not exist
        yield target, clip(target)
        target += 1


__all__ = [
    "FOLDER_FPS",
    "Frame",
    "FrameSequence",
    "NOT_A_FRAME",
    "VIDEO_SUFFIXES",
    "VideoReadError",
    "clip_windows",
    "frame_folder",
    "is_video_file",
    "natural_key",
    "open_sequence",
    "open_video",
]
