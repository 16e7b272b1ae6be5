"""Tiny fake copies of the real dataset layouts (Cityscapes, LIP, COCO, ADE20K, and the video
layouts of CamVid and Cityscapes sequences) for tests and demos.

python -m src.data.fake --out DIR     # writes DIR/cityscapes, DIR/lip, DIR/coco, DIR/ade20k,
                                      # DIR/camvid, DIR/cityscapes_sequence

The video frames carry their frame number in their top-left corner (:func:`frame_number_of`
reads it back) and a square that moves from frame to frame.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from cityscapesscripts.helpers.labels import labels as CITYSCAPES_LABELS
from pycocotools import mask as mask_utils

from src.data.ade20k import FOLDER as ADE20K_FOLDER
from src.data.ade20k import PALETTE as ADE20K_PALETTE
from src.data.ade20k import SPLIT_FOLDERS as ADE20K_SPLIT_FOLDERS
from src.data.camvid import FRAMES as CAMVID_FRAMES
from src.data.camvid import PALETTE as CAMVID_PALETTE
from src.data.camvid import frame_file as camvid_frame_file
from src.data.camvid import parse_name as parse_camvid_name
from src.data.cityscapes_sequence import sequence_frame
from src.data.lip import PALETTE as LIP_PALETTE

CITYSCAPES_CITIES = {
    "train": ("aachen", "bochum"),
    "val": ("frankfurt", "lindau"),
    "test": ("berlin", "bonn"),
}
_CITYSCAPES_IDS = np.array([lab.id for lab in CITYSCAPES_LABELS if lab.id >= 0])
_CITYSCAPES_COLOURS = np.zeros((256, 3), dtype=np.uint8)
for _lab in CITYSCAPES_LABELS:
    if _lab.id >= 0:
        _CITYSCAPES_COLOURS[_lab.id] = _lab.color


def _write_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def _write_gray(path: Path, label: np.ndarray, dtype: type = np.uint8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), label.astype(dtype)):
        raise OSError(f"could not write {path}")


def cityscapes_instance_ids(label_ids: np.ndarray) -> np.ndarray:
    """The ``*_gtFine_instanceIds.png`` of a labelId map, as the archive encodes it (16-bit):
    the labelId for stuff, labelId × 1000 + instance for classes with instances (one each)."""
    instances = label_ids.astype(np.uint16)
    for label in CITYSCAPES_LABELS:
        if label.hasInstances and label.id >= 0:
            instances[label_ids == label.id] = label.id * 1000
    return instances


def random_regions(
    shape: Sequence[int], values: np.ndarray, rng: np.random.Generator, count: int = 8
) -> np.ndarray:
    """A label map of random rectangles drawn from ``values`` over a random base value."""
    h, w = shape
    label = np.full((h, w), rng.choice(values), dtype=np.int64)
    for _ in range(count):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        y1, x1 = y0 + rng.integers(1, h // 2 + 2), x0 + rng.integers(1, w // 2 + 2)
        label[y0:y1, x0:x1] = rng.choice(values)
    return label


def colour_image(label: np.ndarray, colours: np.ndarray, rng: np.random.Generator, noise=10.0):
    """An RGB picture of a label map: each class's colour plus Gaussian noise."""
    image = colours[label].astype(np.float32)
    image += rng.normal(0, noise, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_fake_cityscapes(
    root: str | Path,
    image_size: Sequence[int] = (64, 128),
    images_per_city: int = 2,
    splits: Sequence[str] = ("train", "val", "test"),
    seed: int = 0,
) -> Path:
    """Cityscapes' layout with real labelIds (including ones that map to 255) and instanceIds,
    two cities per split; gtFine/test is written too, as the real archive has it (its labels
    are not used)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split in splits:
        for city in CITYSCAPES_CITIES[split]:
            for i in range(images_per_city):
                stem = f"{city}_{i:06d}_{19 + i:06d}"
                label = random_regions(image_size, _CITYSCAPES_IDS, rng)
                image = colour_image(label, _CITYSCAPES_COLOURS, rng)
                _write_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", image)
                gt = root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
                label_ids = label if split != "test" else np.zeros_like(label)
                _write_gray(gt, label_ids)
                # the official evaluator's default run reads these too
                instance_ids = cityscapes_instance_ids(label_ids)
                _write_gray(gt.with_name(f"{stem}_gtFine_instanceIds.png"), instance_ids, np.uint16)
    return root


def write_fake_lip(root: str | Path, counts: dict[str, int] | None = None, seed: int = 0) -> Path:
    """LIP's layout: JPEG images of assorted sizes, PNG part labels 0..19, id lists."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    counts = counts or {"train": 4, "val": 3}
    colours = np.asarray(LIP_PALETTE, dtype=np.uint8)
    for split, count in counts.items():
        ids = []
        for i in range(count):
            sample_id = f"{100000 + 37 * i}_{rng.integers(100000, 999999)}"
            size = (int(rng.integers(48, 96)), int(rng.integers(32, 80)))
            label = random_regions(size, np.arange(len(LIP_PALETTE)), rng)
            _write_rgb(
                root / "TrainVal_images" / f"{split}_images" / f"{sample_id}.jpg",
                colour_image(label, colours, rng),
            )
            label_dir = root / "TrainVal_parsing_annotations" / f"{split}_segmentations"
            _write_gray(label_dir / f"{sample_id}.png", label)
            ids.append(sample_id)
        (root / f"{split}_id.txt").write_text("\n".join(ids) + "\n")
    return root


ADE20K_LABELS = np.array([0, 1, 2, 4, 13, 21, 77, 150])
"""Annotation values of the fake ADE20K: 0 (other: ignored) and classes from both ends of
1..150 (wall, building, floor, person, car, boat, flag)."""


def write_fake_ade20k(
    root: str | Path, counts: dict[str, int] | None = None, seed: int = 0
) -> Path:
    """ADEChallengeData2016's layout under ``root``: JPEG images of assorted sizes and PNG
    annotations holding 0 and several of 1..150 (each file has a 0 corner and a 150 corner)."""
    root = Path(root)
    base = root / ADE20K_FOLDER
    rng = np.random.default_rng(seed)
    counts = counts or {"train": 4, "val": 3}
    colours = np.zeros((256, 3), dtype=np.uint8)
    colours[1 : len(ADE20K_PALETTE) + 1] = ADE20K_PALETTE
    for split, count in counts.items():
        folder = ADE20K_SPLIT_FOLDERS[split]
        for i in range(count):
            stem = f"ADE_{split}_{i + 1:08d}"
            size = (int(rng.integers(48, 96)), int(rng.integers(48, 112)))
            label = random_regions(size, ADE20K_LABELS, rng)
            label[:4, :4], label[-4:, -4:] = 0, 150
            _write_rgb(base / "images" / folder / f"{stem}.jpg", colour_image(label, colours, rng))
            _write_gray(base / "annotations" / folder / f"{stem}.png", label)
    return root


# The fake COCO scene. Boxes are (x0, y0, x1, y1), pixels x0 <= x < x1, y0 <= y < y1.
# Category ids are sparse and listed out of order so that the 1..K mapping is exercised.
COCO_CATEGORIES = [
    {"id": 18, "name": "dog", "supercategory": "animal"},
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
]
COCO_IMAGES = [
    {"id": 139, "file_name": "000000000139.jpg", "height": 64, "width": 80},
    {"id": 7, "file_name": "000000000007.jpg", "height": 48, "width": 48},
    {"id": 42, "file_name": "000000000042.jpg", "height": 48, "width": 64},
]
COCO_OBJECTS = [
    # image 139: person polygon, car RLE overlapping it, a second person overlapping the first
    # (same category: stays person), a dog as uncompressed RLE, a crowd of people.
    {"image_id": 139, "category_id": 1, "boxes": [(5, 5, 30, 30)], "encoding": "polygon"},
    {"image_id": 139, "category_id": 3, "boxes": [(20, 20, 45, 45)], "encoding": "rle"},
    {"image_id": 139, "category_id": 1, "boxes": [(5, 25, 15, 45)], "encoding": "polygon"},
    {"image_id": 139, "category_id": 18, "boxes": [(50, 5, 75, 25)], "encoding": "raw_rle"},
    {
        "image_id": 139,
        "category_id": 1,
        "boxes": [(50, 35, 75, 60)],
        "encoding": "raw_rle",
        "iscrowd": 1,
    },
    # image 7 has no annotations (all background); image 42: a car in two polygon parts.
    {
        "image_id": 42,
        "category_id": 3,
        "boxes": [(2, 2, 12, 12), (30, 20, 40, 30)],
        "encoding": "polygon",
    },
]


def _box_mask(boxes: Sequence[Sequence[int]], height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = 1
    return mask


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a binary mask: column-major runs, starting with zeros."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0] == 1:
        runs = [0] + runs
    return {"size": list(mask.shape), "counts": runs}


def _segmentation(obj: dict, height: int, width: int) -> list | dict:
    if obj["encoding"] == "polygon":
        return [[x0, y0, x1, y0, x1, y1, x0, y1] for x0, y0, x1, y1 in obj["boxes"]]
    mask = _box_mask(obj["boxes"], height, width)
    if obj["encoding"] == "raw_rle":
        return uncompressed_rle(mask)
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def write_fake_coco(
    root: str | Path, splits: Sequence[str] = ("train2017", "val2017"), seed: int = 0
) -> Path:
    """COCO's layout (annotations/instances_<split>.json, <split>/*.jpg) holding the scene
    above: polygons (one in two parts), compressed and uncompressed RLE, a crowd, overlaps."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    colour_of = {1: (220, 20, 60), 3: (0, 0, 142), 18: (120, 200, 40)}
    for split in splits:
        annotations = []
        for image in COCO_IMAGES:
            h, w = image["height"], image["width"]
            picture = np.full((h, w, 3), 100, dtype=np.float32)
            for obj in (o for o in COCO_OBJECTS if o["image_id"] == image["id"]):
                segmentation = _segmentation(obj, h, w)
                area = int(_box_mask(obj["boxes"], h, w).sum())
                xs = [b[0] for b in obj["boxes"]] + [b[2] for b in obj["boxes"]]
                ys = [b[1] for b in obj["boxes"]] + [b[3] for b in obj["boxes"]]
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image["id"],
                        "category_id": obj["category_id"],
                        "segmentation": segmentation,
                        "area": area,
                        "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                        "iscrowd": obj.get("iscrowd", 0),
                    }
                )
                picture[_box_mask(obj["boxes"], h, w) == 1] = colour_of[obj["category_id"]]
            picture += rng.normal(0, 8, picture.shape)
            _write_rgb(root / split / image["file_name"], np.clip(picture, 0, 255).astype(np.uint8))
        data = {
            "info": {"description": "fake COCO written by src.data.fake"},
            "images": COCO_IMAGES,
            "annotations": annotations,
            "categories": COCO_CATEGORIES,
        }
        ann_file = root / "annotations" / f"instances_{split}.json"
        ann_file.parent.mkdir(parents=True, exist_ok=True)
        ann_file.write_text(json.dumps(data))
    return root


CODE_SIZE = 4
"""Side of the top-left block of a fake video frame that encodes its frame number."""


def stamp_frame(image: np.ndarray, frame: int) -> np.ndarray:
    """A copy of ``image`` showing video frame ``frame``: a bright square whose position moves
    with the frame number, and the number itself in the top-left block (R = frame // 256,
    G = frame % 256, B = 0), which :func:`frame_number_of` reads back."""
    out = image.copy()
    h, w = out.shape[:2]
    side = max(2, min(h, w) // 4)
    x = CODE_SIZE + (3 * frame) % max(1, w - side - CODE_SIZE)
    y = (h - side) // 2
    out[y : y + side, x : x + side] = (255, 255, 0)
    out[:CODE_SIZE, :CODE_SIZE] = (frame // 256, frame % 256, 0)
    return out


def frame_number_of(image: np.ndarray) -> int:
    """The frame number :func:`stamp_frame` wrote into an H×W×3 (or 3×H×W) image."""
    image = np.asarray(image)
    if image.shape[0] == 3 and image.shape[-1] != 3:
        image = np.moveaxis(image, 0, -1)
    red, green = (int(round(float(v))) for v in image[0, 0, :2])
    return red * 256 + green


CAMVID_NAMES = {
    "train": ("0001TP_006690", "0006R0_f00930", "0016E5_07959"),
    "val": ("0006R0_f01230", "0016E5_00390"),
    "test": ("0001TP_008550", "Seq05VD_f00000"),
}
"""The fake CamVid's labelled frames: both name styles, every sequence, and Seq05VD_f00000, the
first frame of its video (a clip ending there has no earlier frames)."""


def write_fake_camvid(
    root: str | Path,
    image_size: Sequence[int] = (36, 48),
    names: dict[str, Sequence[str]] | None = None,
    radius: int = 4,
    seed: int = 0,
) -> Path:
    """SegNet's CamVid layout (``<split>/``, ``<split>annot/`` with values 0..11, 11 = void)
    and ``frames/<sequence>/`` holding each labelled frame and the ``radius`` frames on either
    side of it that exist (none before frame 0). The labelled image is its frame of the video."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    colours = np.zeros((256, 3), dtype=np.uint8)
    colours[: len(CAMVID_PALETTE)] = CAMVID_PALETTE  # void (11) stays black
    for split, split_names in (names or CAMVID_NAMES).items():
        for name in split_names:
            sequence, frame = parse_camvid_name(name)
            label = random_regions(image_size, np.arange(12), rng)
            label[-3:, -3:] = 11
            picture = colour_image(label, colours, rng)
            _write_gray(root / f"{split}annot" / f"{name}.png", label)
            _write_rgb(root / split / f"{name}.png", stamp_frame(picture, frame))
            for n in range(max(0, frame - radius), frame + radius + 1):
                path = camvid_frame_file(root / CAMVID_FRAMES, sequence, n)
                _write_rgb(path, stamp_frame(picture, n))
    return root


def write_fake_cityscapes_sequence(
    root: str | Path,
    image_size: Sequence[int] = (32, 64),
    images_per_city: int = 1,
    before: int = 4,
    after: int = 2,
    splits: Sequence[str] = ("train", "val", "test"),
    seed: int = 0,
) -> Path:
    """Cityscapes' sequence layout, two cities per split: ``gtFine`` labelIds of each annotated
    frame and its ``leftImg8bit_sequence`` frames from ``before`` frames before it to ``after``
    after it (the real snippet holds 19 before, 10 after: kept small). The test split also has
    ``leftImg8bit/test`` (its list of frames) and dummy all-0 labels, as the real archive."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split in splits:
        for city in CITYSCAPES_CITIES[split]:
            for i in range(images_per_city):
                prefix, frame = f"{city}_{i:06d}", 19 + 30 * i
                stem = f"{prefix}_{frame:06d}"
                label = random_regions(image_size, _CITYSCAPES_IDS, rng)
                picture = colour_image(label, _CITYSCAPES_COLOURS, rng)
                label_ids = label if split != "test" else np.zeros_like(label)
                _write_gray(
                    root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label_ids
                )
                for n in range(frame - before, frame + after + 1):
                    _write_rgb(sequence_frame(root, split, prefix, n), stamp_frame(picture, n))
                if split == "test":
                    image = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
                    _write_rgb(image, stamp_frame(picture, frame))
    return root


def write_all(out: str | Path) -> dict[str, Path]:
    """Write every fake layout under ``out``; returns the root of each."""
    out = Path(out)
    return {
        "cityscapes": write_fake_cityscapes(out / "cityscapes"),
        "lip": write_fake_lip(out / "lip"),
        "coco": write_fake_coco(out / "coco"),
        "ade20k": write_fake_ade20k(out / "ade20k"),
        "camvid": write_fake_camvid(out / "camvid"),
        "cityscapes_sequence": write_fake_cityscapes_sequence(out / "cityscapes_sequence"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.data.fake", description=__doc__)
    parser.add_argument("--out", required=True, help="folder to write the fake datasets into")
    args = parser.parse_args(argv)
    for name, root in write_all(args.out).items():
        print(f"{name}: {root}")


if __name__ == "__main__":
    main()
