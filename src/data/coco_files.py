"""Locating and loading COCO-format annotation files, shared by every COCO-based dataset."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from src.data.base import dataset_not_found, read_image

LAYOUT = """\
  annotations/instances_<split>.json   (e.g. instances_val2017.json)
  <split>/<file_name of each image>    (e.g. val2017/000000000139.jpg)
or pass ann_file= and image_dir= for another COCO-format export"""
SOURCE = "https://cocodataset.org/#download (or any COCO-format export)"


@dataclass(frozen=True)
class CocoFiles:
    """Where one COCO split lives: its instance annotation json and its image folder."""

    ann_file: Path
    image_dir: Path

    @classmethod
    def locate(
        cls,
        root: str | Path | None,
        split: str,
        ann_file: str | Path | None = None,
        image_dir: str | Path | None = None,
    ) -> CocoFiles:
        """COCO's own layout under ``root``, or explicit paths (relative ones are under root)."""
        base = Path(root) if root is not None else None
        if base is not None and not base.is_dir():
            raise dataset_not_found(base, "COCO root", LAYOUT, SOURCE)
        if base is None and (ann_file is None or image_dir is None):
            raise ValueError("COCO needs a root, or both ann_file and image_dir")

        def resolve(path: str | Path | None, default: str) -> Path:
            chosen = Path(path) if path is not None else Path(default)
            return base / chosen if base is not None and not chosen.is_absolute() else chosen

        files = cls(
            resolve(ann_file, f"annotations/instances_{split}.json"), resolve(image_dir, split)
        )
        if not files.ann_file.is_file():
            raise dataset_not_found(
                files.ann_file, f"COCO annotations of split '{split}'", LAYOUT, SOURCE
            )
        if not files.image_dir.is_dir():
            raise dataset_not_found(
                files.image_dir, f"COCO image folder of split '{split}'", LAYOUT, SOURCE
            )
        return files

    def read_image(self, coco: COCO, image_id: int) -> tuple[np.ndarray, Path]:
        """The RGB image of ``image_id`` and its path, checked against its json record."""
        info = coco.imgs[image_id]
        path = self.image_dir / info["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"image {path} (id {image_id} in {self.ann_file}) is missing")
        image = read_image(path)
        if image.shape[:2] != (info["height"], info["width"]):
            raise ValueError(
                f"image {path} is {image.shape[:2]} but {self.ann_file} says "
                f"{(info['height'], info['width'])} (height, width)"
            )
        return image, path


def load_coco(ann_file: str | Path) -> COCO:
    """Load a COCO-format json through pycocotools (quietly), naming the file on bad input."""
    ann_file = Path(ann_file)
    try:
        data = json.loads(ann_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read COCO annotation file {ann_file}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{ann_file} is not a COCO instances file (top level is not an object)")
    missing = [key for key in ("images", "annotations", "categories") if key not in data]
    if missing:
        raise ValueError(f"{ann_file} is not a COCO instances file (missing keys {missing})")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco


def sorted_categories(coco: COCO) -> list[dict]:
    """The json's categories in ascending id order."""
    return sorted(coco.loadCats(coco.getCatIds()), key=lambda cat: cat["id"])
