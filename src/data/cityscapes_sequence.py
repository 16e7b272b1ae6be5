"""Cityscapes fine annotations as clips of the video frames around each annotated frame.

Layout under ``data.root`` (the Cityscapes root: the sequence archive unzips next to
``leftImg8bit/`` and ``gtFine/``)::

    leftImg8bit_sequence/{train,val,test}/<city>/<city>_<seq>_<frame:06d>_leftImg8bit.png
    gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
    leftImg8bit/test/<city>/<city>_<seq>_<frame>_leftImg8bit.png   (test only: which frames)

``leftImg8bit_sequence_trainvaltest.zip`` holds a 30-frame snippet (17 Hz) around each image of
``leftImg8bit``: frames ``<frame> - 19`` to ``<frame> + 10``, the annotated frame being the
20th (index 19 of its snippet). A clip (``data.clip``) around an annotated frame therefore finds
up to 19 frames before it and 10 after it; a frame outside the snippet is missing, an error
naming the file unless ``data.clip.pad`` is true (then the nearest frame of the clip present is
repeated), as in :mod:`src.data.camvid`.

Samples are the annotated frames of ``gtFine/<split>`` (labelIds mapped to the 19 trainIds by
:data:`src.data.cityscapes.LABEL_ID_TO_TRAIN_ID`); every frame of the clip, the annotated one
included, is read from ``leftImg8bit_sequence`` (its annotated frame is the ``leftImg8bit``
image). The ``test`` split has no public labels: its samples are the frames ``leftImg8bit/test``
lists (the 1525 test images, as :class:`~src.data.cityscapes.CityscapesDataset` serves them),
with masks all 255. ``name`` is ``<city>_<seq>_<frame>``, as the official export needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from src.data.base import (
    IGNORE_INDEX,
    check_same_size,
    dataset_not_found,
    lookup_labels,
    read_image,
    read_label,
)
from src.data.cityscapes import (
    CLASS_NAMES,
    IMAGE_SUFFIX,
    LABEL_ID_TO_TRAIN_ID,
    LABEL_SUFFIX,
    PALETTE,
    UNLABELLED_SPLITS,
)
from src.data.clips import ClipDataset, ClipSpec, read_clip_frames

SEQUENCE_FOLDER = "leftImg8bit_sequence"
SNIPPET_LENGTH = 30
"""Frames per snippet of leftImg8bit_sequence."""
ANNOTATED_INDEX = 19
"""Index of the annotated frame in its snippet (the 20th frame): the snippet of an annotated
frame f holds frames f - 19 .. f + 10."""

LAYOUT = f"""\
  {SEQUENCE_FOLDER}/{{train,val,test}}/<city>/<city>_<seq>_<frame:06d>{IMAGE_SUFFIX}
      (30-frame snippets: <frame>-19 .. <frame>+10 around each annotated frame)
  gtFine/{{train,val}}/<city>/<city>_<seq>_<frame>{LABEL_SUFFIX}
  leftImg8bit/test/<city>/<city>_<seq>_<frame>{IMAGE_SUFFIX}   (test split only: which frames)"""
SOURCE = (
    "https://www.cityscapes-dataset.com (leftImg8bit_sequence_trainvaltest.zip, "
    "gtFine_trainvaltest.zip; leftImg8bit_trainvaltest.zip for the test split's list)"
)

_NAME = re.compile(r"(?P<prefix>[^_]+_\d+)_(?P<frame>\d+)")


def parse_name(name: str | Path) -> tuple[str, int]:
    """(``<city>_<seq>``, frame number) of a Cityscapes name or file, e.g.
    ``frankfurt_000000_000294_gtFine_labelIds.png`` → ("frankfurt_000000", 294)."""
    stem = Path(name).name.removesuffix(LABEL_SUFFIX).removesuffix(IMAGE_SUFFIX)
    match = _NAME.fullmatch(stem)
    if match is None:
        raise ValueError(
            f"Cityscapes file name {name} is not <city>_<seq>_<frame> (e.g. "
            "frankfurt_000000_000294): cannot tell which video frame it is"
        )
    return match["prefix"], int(match["frame"])


def sequence_frame(root: Path, split: str, prefix: str, frame: int) -> Path:
    """``leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame:06d>_leftImg8bit.png``."""
    city = prefix.split("_", 1)[0]
    return root / SEQUENCE_FOLDER / split / city / f"{prefix}_{frame:06d}{IMAGE_SUFFIX}"


class CityscapesSequenceDataset(ClipDataset):
    """Cityscapes fine labels (19 trainIds) with clips of ``leftImg8bit_sequence`` frames.

    ``clip`` is the :class:`~src.data.clips.ClipSpec` (the config's ``data.clip``; None: the
    annotated frame alone). The test split lists ``leftImg8bit/test`` and has masks all 255.
    Every annotated frame must be in ``leftImg8bit_sequence`` (checked here); the other frames
    of a clip are checked when read.
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
        self.labelled = split not in UNLABELLED_SPLITS
        self.samples = self._scan()

    def _folder(self, path: Path, what: str) -> Path:
        """``path`` if it is a folder, else the error naming it."""
        if not path.is_dir():
            raise dataset_not_found(path, f"Cityscapes {what}", LAYOUT, SOURCE)
        return path

    def _scan(self) -> list[tuple[str, int, Path | None, str]]:
        """List (``<city>_<seq>``, frame, label or None, name) for every annotated frame of the
        split, checking that each has its frame in ``leftImg8bit_sequence``."""
        self._folder(self.root, "root")
        self._folder(self.root / SEQUENCE_FOLDER / self.split, f"sequence split '{self.split}'")
        if self.labelled:
            index_dir = self._folder(self.root / "gtFine" / self.split, f"split '{self.split}'")
            suffix = LABEL_SUFFIX
        else:  # no labels: the frames the image release lists
            index_dir = self.root / "leftImg8bit" / self.split
            self._folder(index_dir, f"split '{self.split}' image list")
            suffix = IMAGE_SUFFIX
        listed = sorted(index_dir.glob(f"*/*{suffix}"))
        if not listed:
            raise dataset_not_found(
                index_dir / f"<city>/*{suffix}", "Cityscapes annotated frames", LAYOUT, SOURCE
            )
        samples = []
        for path in listed:
            prefix, frame = parse_name(path)
            image = sequence_frame(self.root, self.split, prefix, frame)
            if not image.is_file():
                raise FileNotFoundError(
                    f"{path} has no frame in {SEQUENCE_FOLDER}: expected {image}\n"
                    f"Expected layout under the dataset root:\n{LAYOUT}"
                )
            label = path if self.labelled else None
            samples.append((prefix, frame, label, path.name.removesuffix(suffix)))
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    def read_clip(self, index: int) -> tuple[list[np.ndarray], np.ndarray, str]:
        prefix, frame, label_path, name = self.samples[index]
        image_path = sequence_frame(self.root, self.split, prefix, frame)
        image = read_image(image_path)
        if label_path is None:
            mask = np.full(image.shape[:2], IGNORE_INDEX, dtype=np.uint8)
        else:
            mask = lookup_labels(read_label(label_path), LABEL_ID_TO_TRAIN_ID)
            check_same_size(image, mask, image_path, label_path)
        frames = [
            (n, sequence_frame(self.root, self.split, prefix, n))
            for n in self.clip.frame_numbers(frame)
        ]
        clip = read_clip_frames(
            frames, self.clip.target_index, (image, image_path), self.clip.pad, LAYOUT
        )
        return clip, mask, name
