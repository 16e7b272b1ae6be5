"""Predictions as files: train-id, Cityscapes labelId and palette-colour PNGs, overlay JPEGs
(written by ``src.predict`` and, through :mod:`src.callbacks.prediction_writer`, by
``src.eval`` with ``export.dir`` / ``export.format``).

Overlays carry a legend of the classes present in that image: a white strip **below** the
blended image (never drawn over it), one colour swatch and class name per class, wrapped into
rows. Its text size follows the image width but never drops below a readable ~10 px, so on a
small image the strip may be taller than the image, and on one narrower than the longest
entry the canvas is widened (white on the right of the image): the image pixels themselves
are never scaled or covered.

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

import cv2
import numpy as np
from PIL import Image
from torch import Tensor

from src.data.cityscapes import TRAIN_ID_TO_LABEL_ID, train_ids_to_label_ids

log = logging.getLogger(__name__)

FORMATS = ("cityscapes", "trainid", "color")
CITYSCAPES_SUFFIX = "_leftImg8bit.png"
# <city>_<seq>_<frame>, e.g. frankfurt_000000_000294 (city names may hold a hyphen).
CITYSCAPES_NAME = re.compile(r"^[^_/\\]+_\d{6}_\d{6}$")

LEGEND_BACKGROUND = (255, 255, 255)
LEGEND_TEXT = (0, 0, 0)
LEGEND_BORDER = (96, 96, 96)  # around each swatch: white or black classes stay visible
LEGEND_FONT = cv2.FONT_HERSHEY_SIMPLEX


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


def overlay_with_legend(
    image: np.ndarray,
    pred: np.ndarray,
    palette: Sequence[Sequence[int]],
    alpha: float,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """:func:`overlay` with :func:`legend_strip` of the classes present in ``pred`` below it.

    The canvas is as wide as the wider of the two (white fills the rest) and as tall as both:
    the blended image is its top-left H×W corner, unchanged.
    """
    blended = overlay(image, pred, palette, alpha)
    classes = np.unique(check_prediction(pred)).tolist()
    strip = legend_strip(classes, palette, class_names, blended.shape[1])
    width = max(blended.shape[1], strip.shape[1])
    canvas = np.empty((blended.shape[0] + strip.shape[0], width, 3), dtype=np.uint8)
    canvas[...] = LEGEND_BACKGROUND
    canvas[: blended.shape[0], : blended.shape[1]] = blended
    canvas[blended.shape[0] :, : strip.shape[1]] = strip
    return canvas


def legend_strip(
    classes: Sequence[int],
    palette: Sequence[Sequence[int]],
    class_names: Sequence[str] | None,
    width: int,
) -> np.ndarray:
    """An RGB strip listing ``classes`` (swatch in the palette colour, then the name), wrapped
    into rows of at most ``width`` pixels (wider only when one entry needs it).

    The font scale is ``width / 1600`` clamped to 0.4–1.2 (~10 px text up to ~27 px for a
    2048-wide image), so the names stay readable on small images and in proportion on large
    ones. Names default to ``class <i>``; characters OpenCV's font lacks become ``?``.
    """
    colours = check_palette(palette, max(classes, default=-1) + 1)
    scale = min(max(width / 1600, 0.4), 1.2)
    thickness = 1 if scale < 0.8 else 2
    (_, text_h), baseline = cv2.getTextSize("Ag", LEGEND_FONT, scale, thickness)
    swatch = text_h + baseline
    pad = max(3, swatch // 3)
    row_h = swatch + 2 * pad
    entries = []  # (class, label, entry width)
    for c in classes:
        label = _legend_label(c, class_names)
        (text_w, _), _ = cv2.getTextSize(label, LEGEND_FONT, scale, thickness)
        entries.append((c, label, swatch + pad + text_w + 2 * pad))
    strip_w = max([width, *(w + pad for *_, w in entries)])
    rows, x = [[]], pad
    for entry in entries:
        if x + entry[2] > strip_w and rows[-1]:
            rows.append([])
            x = pad
        rows[-1].append((x, entry))
        x += entry[2]
    strip = np.empty((row_h * len(rows) + (pad if entries else 0), strip_w, 3), dtype=np.uint8)
    strip[...] = LEGEND_BACKGROUND
    for r, row in enumerate(rows):
        top = pad + r * row_h
        for x, (c, label, _) in row:
            cv2.rectangle(strip, (x, top), (x + swatch - 1, top + swatch - 1), LEGEND_BORDER, 1)
            colour = tuple(int(v) for v in colours[c])
            cv2.rectangle(strip, (x + 1, top + 1), (x + swatch - 2, top + swatch - 2), colour, -1)
            origin = (x + swatch + pad, top + text_h)
            cv2.putText(
                strip, label, origin, LEGEND_FONT, scale, LEGEND_TEXT, thickness, cv2.LINE_AA
            )
    return strip


def _legend_label(index: int, class_names: Sequence[str] | None) -> str:
    """The printable name of class ``index`` (ASCII only: OpenCV's Hershey font)."""
    name = class_names[index] if class_names is not None and index < len(class_names) else ""
    name = str(name) or f"class {index}"
    return name.encode("ascii", "replace").decode("ascii")


def write_visuals(
    out_dir: Path,
    stem: PurePosixPath | str,
    image: np.ndarray,
    pred: np.ndarray,
    palette: Sequence[Sequence[int]],
    alpha: float = 0.5,
    class_names: Sequence[str] | None = None,
) -> dict[str, Path]:
    """What ``src.predict`` writes per image: ``<stem>.png`` (train ids), ``<stem>_color.png``
    (palette PNG) and ``<stem>_overlay.jpg`` (the image under the coloured mask, with the
    legend of its classes below: :func:`overlay_with_legend`)."""
    paths = visual_paths(out_dir, stem)
    paths["mask"].parent.mkdir(parents=True, exist_ok=True)
    trainid_png(pred).save(paths["mask"])
    color_png(pred, palette).save(paths["color"])
    blended = overlay_with_legend(image, pred, palette, alpha, class_names)
    Image.fromarray(blended).save(paths["overlay"], quality=90)
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
