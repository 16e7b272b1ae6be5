"""Predictions as files: train-id, Cityscapes labelId and palette-colour PNGs, overlay JPEGs,
and the eval callback that writes one file per image (``export.dir`` / ``export.format``).

``export.format=cityscapes`` writes ``<city>_<seq>_<frame>_leftImg8bit.png`` holding official
labelIds: cityscapesscripts' ``evalPixelLevelSemanticLabeling`` finds a prediction by
searching ``<city>_<seq>_<frame>*.png`` under ``CITYSCAPES_RESULTS``, and the test server
matches uploads the same way.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig
from PIL import Image
from pytorch_lightning import Callback
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


class PredictionWriter(Callback):
    """Writes every validation/test prediction (``outputs["preds"]``, one per ``name``) as a
    PNG in ``out_dir``; with DDP each process writes the images of its own batches."""

    def __init__(
        self,
        out_dir: str | Path,
        fmt: str = "trainid",
        num_classes: int | None = None,
        palette: Sequence[Sequence[int]] | None = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"export.format must be one of {', '.join(FORMATS)}; got {fmt!r}")
        if fmt == "cityscapes" and num_classes not in (None, len(TRAIN_ID_TO_LABEL_ID)):
            raise ValueError(
                f"export.format=cityscapes needs the 19 Cityscapes train ids; the data has "
                f"{num_classes} classes (use export.format=trainid or color)"
            )
        if fmt == "color":
            if palette is None:
                raise ValueError("export.format=color needs the dataset's palette")
            check_palette(palette, num_classes or 1)
        self.out_dir = Path(out_dir)
        self.fmt = fmt
        self.palette = palette
        self.written: list[Path] = []

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Mapping[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking:
            self.write_batch(outputs, batch)

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Mapping[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.write_batch(outputs, batch)

    def write_batch(self, outputs: Any, batch: Mapping[str, Any]) -> list[Path]:
        """Save the predictions of one batch; returns their paths."""
        if not isinstance(outputs, Mapping) or "preds" not in outputs:
            raise TypeError("export needs the module's step to return {'preds': B×H×W masks}")
        preds, names = outputs["preds"], batch.get("name")
        if names is None or len(names) != len(preds):
            raise ValueError("export needs one sample 'name' per image in every batch")
        paths = []
        for pred, name in zip(preds, names):
            path = export_path(self.out_dir, name, self.fmt)
            path.parent.mkdir(parents=True, exist_ok=True)
            encode(check_prediction(pred), self.fmt, self.palette).save(path)
            paths.append(path)
        self.written.extend(paths)
        return paths

    def summary(self) -> dict[str, Any]:
        """What results.json records about the export."""
        return {"dir": str(self.out_dir), "format": self.fmt, "files_written": len(self.written)}


def prediction_writer(
    export: DictConfig | Mapping[str, Any] | None, datamodule: pl.LightningDataModule
) -> PredictionWriter | None:
    """The writer the ``export:`` config asks for (None when ``export.dir`` is not set)."""
    if not export or not export.get("dir"):
        return None
    fmt = export.get("format") or "trainid"
    palette = getattr(datamodule, "palette", None) if fmt == "color" else None
    writer = PredictionWriter(export["dir"], fmt, datamodule.num_classes, palette)
    log.info("writing %s predictions to %s", fmt, writer.out_dir)
    return writer
