"""Predictions as files: train-id, Cityscapes labelId and palette-colour PNGs, overlay JPEGs
(written by ``src.predict`` and, through :mod:`src.callbacks.prediction_writer`, by
``src.eval`` with ``export.dir`` / ``export.format``).

``export.format=cityscapes`` writes ``<city>_<seq>_<frame>_leftImg8bit.png`` holding official
labelIds: cityscapesscripts' ``evalPixelLevelSemanticLabeling`` finds a prediction by
searching ``<city>_<seq>_<frame>*.png`` under ``CITYSCAPES_RESULTS``, and the test server
matches uploads the same way.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from torch import Tensor

from src.data.cityscapes import TRAIN_ID_TO_LABEL_ID, train_ids_to_label_ids

log = logging.getLogger(__name__)

FORMATS = ("cityscapes", "trainid", "color")
CITYSCAPES_SUFFIX = "_leftImg8bit.png"
# <city>_<seq>_<frame>, e.g. frankfurt_000000_000294 (city names may hold a hyphen).
CITYSCAPES_NAME = re.compile(r"^[^_/\\]+_\d{6}_\d{6}$")


def check_prediction(pred: np.ndarray | Tensor, num_classes: int | None = None) -> np.ndarray:
    """A predicted mask as an H×W uint8 array; fails on other shapes or out-of-range ids."""
    if isinstance(pred, Tensor):
        pred = pred.detach().cpu().numpy()
    pred = np.asarray(pred)
    if pred.ndim != 2 or not np.issubdtype(pred.dtype, np.integer):
        raise ValueError(f"a prediction must be an H×W integer mask; got {pred.dtype} {pred.shape}")
    limit = 256 if num_classes is None else num_classes
    if pred.size and (pred.min() < 0 or pred.max() >= limit):
        raise ValueError(f"prediction holds ids outside 0..{limit - 1}")
    return pred.astype(np.uint8)


def check_palette(palette: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """The palette as a K×3 uint8 array with at least one colour per class."""
    colours = np.asarray(palette)
    if colours.ndim != 2 or colours.shape[1] != 3 or len(colours) < num_classes:
        raise ValueError(f"the palette must hold {num_classes} RGB colours; got {colours.shape}")
    if colours.min() < 0 or colours.max() > 255:
        raise ValueError("palette colours must be in 0..255")
    return colours.astype(np.uint8)


def trainid_png(pred: np.ndarray) -> Image.Image:
    """A grayscale PNG image whose pixel values are the predicted train ids."""
    return Image.fromarray(check_prediction(pred))


def labelid_png(pred: np.ndarray) -> Image.Image:
    """A grayscale PNG image of official Cityscapes labelIds (train ids mapped back)."""
    train_ids = check_prediction(pred, len(TRAIN_ID_TO_LABEL_ID))
    return Image.fromarray(train_ids_to_label_ids(train_ids))


def color_png(pred: np.ndarray, palette: Sequence[Sequence[int]]) -> Image.Image:
    """A palette ("P" mode) PNG image: pixel values are train ids, shown in the class colours."""
    colours = check_palette(palette, 1)
    image = Image.fromarray(check_prediction(pred, len(colours)))
    image.putpalette(colours.reshape(-1).tolist())  # an "L" image becomes "P"
    return image


def colorize(pred: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """The mask as an H×W×3 uint8 RGB array in the class colours."""
    colours = check_palette(palette, 1)
    return colours[check_prediction(pred, len(colours))]


def overlay(image: np.ndarray, pred: np.ndarray, palette: Sequence[Sequence[int]], alpha: float):
    """The RGB image blended with the coloured mask (``alpha`` = weight of the mask)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay_alpha must be in [0, 1]; got {alpha}")
    image = np.asarray(image)
    if image.shape[:2] != np.shape(pred) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image {image.shape} and mask {np.shape(pred)} do not match")
    blend = alpha * colorize(pred, palette).astype(np.float32) + (1 - alpha) * image
    return np.clip(blend.round(), 0, 255).astype(np.uint8)


def write_visuals(
    out_dir: Path,
    stem: PurePosixPath | str,
    image: np.ndarray,
    pred: np.ndarray,
    palette: Sequence[Sequence[int]],
    alpha: float = 0.5,
) -> dict[str, Path]:
    """What ``src.predict`` writes per image: ``<stem>.png`` (train ids), ``<stem>_color.png``
    (palette PNG) and ``<stem>_overlay.jpg`` (the image under the coloured mask)."""
    paths = visual_paths(out_dir, stem)
    paths["mask"].parent.mkdir(parents=True, exist_ok=True)
    trainid_png(pred).save(paths["mask"])
    color_png(pred, palette).save(paths["color"])
    Image.fromarray(overlay(image, pred, palette, alpha)).save(paths["overlay"], quality=90)
    return paths


def visual_paths(out_dir: Path, stem: PurePosixPath | str) -> dict[str, Path]:
    """The three files :func:`write_visuals` writes for ``stem`` (relative to ``out_dir``)."""
    base = Path(out_dir) / relative_output(str(stem))
    return {
        "mask": base.with_name(f"{base.name}.png"),
        "color": base.with_name(f"{base.name}_color.png"),
        "overlay": base.with_name(f"{base.name}_overlay.jpg"),
    }


def relative_output(name: str) -> PurePosixPath:
    """A sample name as a relative path under an output folder (no absolute paths, no '..')."""
    path = PurePosixPath(str(name).replace("\\", "/"))
    if not str(name) or path.is_absolute() or ".." in path.parts or not path.name:
        raise ValueError(f"sample name {name!r} cannot name an output file")
    return path


def export_path(root: Path, name: str, fmt: str) -> Path:
    """Where the prediction of sample ``name`` goes for export format ``fmt``."""
    if fmt == "cityscapes":
        if not CITYSCAPES_NAME.match(str(name)):
            raise ValueError(
                f"export.format=cityscapes needs Cityscapes sample names <city>_<seq>_<frame> "
                f"(e.g. frankfurt_000000_000294); got {name!r}. Use export.format=trainid "
                "for other datasets."
            )
        return root / f"{name}{CITYSCAPES_SUFFIX}"
    return root / f"{relative_output(name)}.png"


def encode(pred: np.ndarray, fmt: str, palette: Sequence[Sequence[int]] | None) -> Image.Image:
    """The image to save for one prediction in export format ``fmt``."""
    if fmt == "cityscapes":
        return labelid_png(pred)
    if fmt == "trainid":
        return trainid_png(pred)
    if palette is None:
        raise ValueError("export.format=color needs the dataset's palette")
    return color_png(pred, palette)
