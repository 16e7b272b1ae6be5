"""The eval callback that writes every prediction as a file (``export.dir`` / ``export.format``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning import Callback

from src.core.prediction_files import FORMATS, check_palette, check_prediction, encode, export_path
from src.data.cityscapes import TRAIN_ID_TO_LABEL_ID

log = logging.getLogger(__name__)


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
