"""ADE20K SceneParsing (ADEChallengeData2016): 150 classes, label 0 ("other") ignored."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from src.data.base import (
    IGNORE_INDEX,
    SegmentationDataset,
    check_same_size,
    dataset_not_found,
    lookup_labels,
    read_image,
    read_label,
)

# The 150 SceneParsing classes in label order (label k = CLASS_NAMES[k - 1]), as mmseg's
# ADE20KDataset lists them (its 'bed ' has a stray trailing space, dropped here).
CLASS_NAMES: list[str] = [
    "wall",
    "building",
    "sky",
    "floor",
    "tree",
    "ceiling",
    "road",
    "bed",
    "windowpane",
    "grass",
    "cabinet",
    "sidewalk",
    "person",
    "earth",
    "door",
    "table",
    "mountain",
    "plant",
    "curtain",
    "chair",
    "car",
    "water",
    "painting",
    "sofa",
    "shelf",
    "house",
    "sea",
    "mirror",
    "rug",
    "field",
    "armchair",
    "seat",
    "fence",
    "desk",
    "rock",
    "wardrobe",
    "lamp",
    "bathtub",
    "railing",
    "cushion",
    "base",
    "box",
    "column",
    "signboard",
    "chest of drawers",
    "counter",
    "sand",
    "sink",
    "skyscraper",
    "fireplace",
    "refrigerator",
    "grandstand",
    "path",
    "stairs",
    "runway",
    "case",
    "pool table",
    "pillow",
    "screen door",
    "stairway",
    "river",
    "bridge",
    "bookcase",
    "blind",
    "coffee table",
    "toilet",
    "flower",
    "book",
    "hill",
    "bench",
    "countertop",
    "stove",
    "palm",
    "kitchen island",
    "computer",
    "swivel chair",
    "boat",
    "bar",
    "arcade machine",
    "hovel",
    "bus",
    "towel",
    "light",
    "truck",
    "tower",
    "chandelier",
    "awning",
    "streetlight",
    "booth",
    "television receiver",
    "airplane",
    "dirt track",
    "apparel",
    "pole",
    "land",
    "bannister",
    "escalator",
    "ottoman",
    "bottle",
    "buffet",
    "poster",
    "stage",
    "van",
    "ship",
    "fountain",
    "conveyer belt",
    "canopy",
    "washer",
    "plaything",
    "swimming pool",
    "stool",
    "barrel",
    "basket",
    "waterfall",
    "tent",
    "bag",
    "minibike",
    "cradle",
    "oven",
    "ball",
    "food",
    "step",
    "tank",
    "trade name",
    "microwave",
    "pot",
    "animal",
    "bicycle",
    "lake",
    "dishwasher",
    "screen",
    "blanket",
    "sculpture",
    "hood",
    "sconce",
    "vase",
    "traffic light",
    "tray",
    "ashcan",
    "fan",
    "pier",
    "crt screen",
    "plate",
    "monitor",
    "bulletin board",
    "shower",
    "radiator",
    "glass",
    "clock",
    "flag",
]
# The standard ADE20K colours (mmseg's METAINFO palette), one per class above. Two classes
# share a colour there: road and skyscraper, both (140, 140, 140).
PALETTE: list[list[int]] = [
    [120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50], [4, 200, 3],
    [120, 120, 80], [140, 140, 140], [204, 5, 255], [230, 230, 230], [4, 250, 7],
    [224, 5, 255], [235, 255, 7], [150, 5, 61], [120, 120, 70], [8, 255, 51],
    [255, 6, 82], [143, 255, 140], [204, 255, 4], [255, 51, 7], [204, 70, 3],
    [0, 102, 200], [61, 230, 250], [255, 6, 51], [11, 102, 255], [255, 7, 71],
    [255, 9, 224], [9, 7, 230], [220, 220, 220], [255, 9, 92], [112, 9, 255],
    [8, 255, 214], [7, 255, 224], [255, 184, 6], [10, 255, 71], [255, 41, 10],
    [7, 255, 255], [224, 255, 8], [102, 8, 255], [255, 61, 6], [255, 194, 7],
    [255, 122, 8], [0, 255, 20], [255, 8, 41], [255, 5, 153], [6, 51, 255],
    [235, 12, 255], [160, 150, 20], [0, 163, 255], [140, 140, 140], [250, 10, 15],
    [20, 255, 0], [31, 255, 0], [255, 31, 0], [255, 224, 0], [153, 255, 0],
    [0, 0, 255], [255, 71, 0], [0, 235, 255], [0, 173, 255], [31, 0, 255],
    [11, 200, 200], [255, 82, 0], [0, 255, 245], [0, 61, 255], [0, 255, 112],
    [0, 255, 133], [255, 0, 0], [255, 163, 0], [255, 102, 0], [194, 255, 0],
    [0, 143, 255], [51, 255, 0], [0, 82, 255], [0, 255, 41], [0, 255, 173],
    [10, 0, 255], [173, 255, 0], [0, 255, 153], [255, 92, 0], [255, 0, 255],
    [255, 0, 245], [255, 0, 102], [255, 173, 0], [255, 0, 20], [255, 184, 184],
    [0, 31, 255], [0, 255, 61], [0, 71, 255], [255, 0, 204], [0, 255, 194],
    [0, 255, 82], [0, 10, 255], [0, 112, 255], [51, 0, 255], [0, 194, 255],
    [0, 122, 255], [0, 255, 163], [255, 153, 0], [0, 255, 10], [255, 112, 0],
    [143, 255, 0], [82, 0, 255], [163, 255, 0], [255, 235, 0], [8, 184, 170],
    [133, 0, 255], [0, 255, 92], [184, 0, 255], [255, 0, 31], [0, 184, 255],
    [0, 214, 255], [255, 0, 112], [92, 255, 0], [0, 224, 255], [112, 224, 255],
    [70, 184, 160], [163, 0, 255], [153, 0, 255], [71, 255, 0], [255, 0, 163],
    [255, 204, 0], [255, 0, 143], [0, 255, 235], [133, 255, 0], [255, 0, 235],
    [245, 0, 255], [255, 0, 122], [255, 245, 0], [10, 190, 212], [214, 255, 0],
    [0, 204, 255], [20, 0, 255], [255, 255, 0], [0, 153, 255], [0, 41, 255],
    [0, 255, 204], [41, 0, 255], [41, 255, 0], [173, 0, 255], [0, 245, 255],
    [71, 0, 255], [122, 0, 255], [0, 255, 184], [0, 92, 255], [184, 255, 0],
    [0, 133, 255], [255, 214, 0], [25, 194, 194], [102, 255, 0], [92, 0, 255],
]  # fmt: skip

MAX_LABEL = len(CLASS_NAMES)
"""The largest value an ADEChallengeData2016 annotation holds (0 = other, 1..150 = classes)."""

LABEL_TABLE = np.full(256, IGNORE_INDEX, dtype=np.uint8)
LABEL_TABLE[1 : MAX_LABEL + 1] = np.arange(MAX_LABEL)
"""Annotation value → train id: 0 ("other") → 255, k → k - 1 (mmseg's reduce_zero_label)."""
LABEL_TABLE.flags.writeable = False

FOLDER = "ADEChallengeData2016"
SPLIT_FOLDERS: dict[str, str] = {"train": "training", "val": "validation"}
"""Split name (as the other datasets and the data configs name splits) → the release's folder."""

LAYOUT = f"""\
  {FOLDER}/images/{{training,validation}}/ADE_<train|val>_<8 digits>.jpg
  {FOLDER}/annotations/{{training,validation}}/ADE_<train|val>_<8 digits>.png
  (data.root is the folder holding {FOLDER}/, or {FOLDER}/ itself)"""
SOURCE = (
    "http://sceneparsing.csail.mit.edu "
    "(http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip)"
)


def layout_root(root: Path) -> Path:
    """The folder that holds ``images/`` and ``annotations/``: ``root`` itself, or
    ``root/ADEChallengeData2016`` when the archive was unzipped into ``root``."""
    nested = root / FOLDER
    if not (root / "images").is_dir() and nested.is_dir():
        return nested
    return root


class ADE20KDataset(SegmentationDataset):
    """ADE20K SceneParsing images with their annotations mapped to 150 train ids.

    Annotation value 0 ("other", not one of the 150 classes) becomes 255 (ignore) and
    k = 1..150 becomes k - 1; a value above 150 is an error naming the file (such a file is not
    an ADEChallengeData2016 annotation). Splits are ``train`` and ``val`` (the release's
    ``training`` and ``validation`` folders); ``name`` is the image stem (``ADE_val_00000001``).
    """

    class_names = CLASS_NAMES
    palette = PALETTE
    flip_pairs: list[tuple[int, int]] = []
    num_classes = len(CLASS_NAMES)

    def __init__(self, root: str | Path, split: str, transform: Callable | None = None) -> None:
        super().__init__(transform)
        if split not in SPLIT_FOLDERS:
            known = ", ".join(f"'{s}' ({f}/)" for s, f in SPLIT_FOLDERS.items())
            raise ValueError(f"unknown ADE20K split '{split}'; the splits are {known}")
        self.root = Path(root)
        self.split = split
        self.samples = self._scan()

    def _scan(self) -> list[tuple[Path, Path, str]]:
        """List (image, annotation, name) for every image of the split, checking annotations."""
        if not self.root.is_dir():
            raise dataset_not_found(self.root, "ADE20K root", LAYOUT, SOURCE)
        base, folder = layout_root(self.root), SPLIT_FOLDERS[self.split]
        image_dir, label_dir = base / "images" / folder, base / "annotations" / folder
        for path, what in ((image_dir, "images"), (label_dir, "annotations")):
            if not path.is_dir():
                raise dataset_not_found(
                    path, f"ADE20K {what} of split '{self.split}'", LAYOUT, SOURCE
                )
        images = sorted(image_dir.glob("*.jpg"))
        if not images:
            raise dataset_not_found(image_dir / "*.jpg", "ADE20K images", LAYOUT, SOURCE)
        samples = []
        for image in images:
            label = label_dir / f"{image.stem}.png"
            if not label.is_file():
                raise FileNotFoundError(
                    f"image {image} has no annotation: expected {label}\n"
                    f"Expected layout under the dataset root:\n{LAYOUT}"
                )
            samples.append((image, label, image.stem))
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        image_path, label_path, name = self.samples[index]
        image = read_image(image_path)
        raw = read_label(label_path)
        if raw.size and raw.max() > MAX_LABEL:
            beyond = np.unique(raw[raw > MAX_LABEL])
            shown = ", ".join(str(v) for v in beyond[:8]) + (", ..." if len(beyond) > 8 else "")
            raise ValueError(
                f"ADE20K annotation {label_path} holds values above {MAX_LABEL} ({shown}); "
                f"{FOLDER} annotations hold 0 (other) and 1..{MAX_LABEL} (the classes), one "
                "channel. Is it from another ADE20K release (e.g. the full ADE20K index)?"
            )
        mask = lookup_labels(raw, LABEL_TABLE)
        check_same_size(image, mask, image_path, label_path)
        return image, mask, name
