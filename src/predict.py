"""Segment images: ``python -m src.predict ckpt_path=PATH input=DIR_OR_FILE output=DIR``.

For every image (any size) writes a train-id mask PNG, a colour PNG in the dataset's palette
and an overlay JPEG into ``output`` (sub-folders of ``input`` are kept), with the inference
of the ``inference:`` group (``inference=slide`` for sliding windows). The model is built from
the ``model:`` config (pass the experiment / ``model.*`` overrides it was trained with) and
the classes come from the checkpoint; the palette from the ``data:`` config's dataset.
Overlays carry a legend of the classes in that image, in a strip below it.

A file that is not an image (``notes.txt``) or cannot be decoded (a corrupt PNG) is skipped
with one warning, and the rest are predicted; ``<output>/predictions.json`` lists every input
with its output files or the reason it was skipped, and the run's ``results.json`` points to
it. The run fails (one line, exit 1) only when no input could be predicted.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import cv2
import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from src.app import task_wrapper, write_results
from src.app.checkpoint import checkpoint_hparams, load_checkpoint, net_from_checkpoint
from src.app.palette import class_palette
from src.app.results import key_config
from src.app.run import run_task
from src.app.validate import CheckedConfig
from src.core.atomic import atomic_write_text
from src.core.inference import InferenceConfig, check_flip_pairs, predict_logits_with
from src.core.prediction_files import visual_paths, write_visuals
from src.data.base import ImageReadError, read_image
from src.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform

log = logging.getLogger(__name__)


@task_wrapper
def predict(cfg: DictConfig, checked: CheckedConfig | None = None) -> dict[str, Any]:
    """Check the inputs, rebuild the net from the checkpoint, segment every image, report."""
    start = time.perf_counter()
    ckpt_path, source, output = (_required(cfg, k) for k in ("ckpt_path", "input", "output"))
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path!r} is not a file")
    images, skipped = image_files(source, exclude=Path(output))
    summary = PredictionSummary(source, Path(output), skipped)
    if not images:  # nothing OpenCV can read: say so before loading the model
        summary.write()
        raise summary.nothing_predicted()
    checkpoint = load_checkpoint(ckpt_path)
    hparams = checkpoint_hparams(checkpoint)
    num_classes = hparams["num_classes"]
    flip_pairs = check_flip_pairs(hparams["flip_pairs"], num_classes)
    device = _device(cfg.get("device", "auto"))
    net = net_from_checkpoint(cfg.model, checkpoint, path=ckpt_path).to(device)
    inference = checked.inference if checked else None
    inference = inference or InferenceConfig.from_config(cfg.get("inference"))
    palette, palette_source = class_palette(cfg.data, num_classes)
    transform = eval_transform(
        cfg.data.get("mean", IMAGENET_MEAN), cfg.data.get("std", IMAGENET_STD)
    )
    alpha = float(cfg.get("overlay_alpha", 0.5))
    names = hparams["class_names"]

    pixels = np.zeros(num_classes, dtype=np.int64)
    with _progress() as progress:
        for path, stem in progress.track(images, description="predict"):
            try:
                image = read_image(path)
            except OSError as err:  # corrupt, unreadable, or gone since the scan: skip it
                summary.skip(input_name(path, stem), unreadable_reason(err))
                continue
            batch = transform(image=image)["image"].float().unsqueeze(0).to(device)
            logits = predict_logits_with(net, batch, inference, flip_pairs, num_classes)
            pred = logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()
            outputs = write_visuals(Path(output), stem, image, pred, palette, alpha, names)
            summary.predicted(input_name(path, stem), outputs)
            pixels += np.bincount(pred.ravel(), minlength=num_classes)
    summary_path = summary.write()
    if not summary.count("predicted"):
        raise summary.nothing_predicted()

    results = {
        "task": cfg.get("task_name"),
        "input": source,
        "output": str(output),
        "images": summary.count("predicted"),
        "skipped": summary.count("skipped"),
        "predictions_file": str(summary_path),
        "device": str(device),
        "class_names": hparams["class_names"],
        "palette_source": palette_source,
        "predicted_pixel_fraction": dict(
            zip(hparams["class_names"], (pixels / max(pixels.sum(), 1)).tolist())
        ),
        "checkpoint_global_step": checkpoint.get("global_step"),
        "wall_time_s": round(time.perf_counter() - start, 3),
        "config": key_config(cfg),
    }
    path = write_results(results, cfg.paths.output_dir)
    log.info(
        "%d predictions written to %s (%d files skipped; each input's fate in %s); results in %s",
        results["images"],
        output,
        results["skipped"],
        summary_path,
        path,
    )
    return results


NOT_AN_IMAGE = "not an image file OpenCV can read"
PREDICTIONS_FILE = "predictions.json"


class Skipped(NamedTuple):
    """An input file that is not predicted, and why."""

    name: str  # the file's path relative to the input folder (POSIX)
    reason: str


class InputFiles(NamedTuple):
    """What :func:`image_files` found: images to predict, and files skipped with a reason."""

    images: list[tuple[Path, PurePosixPath]]  # (image file, output stem)
    skipped: list[Skipped]


def image_files(source: str | Path, exclude: Path | None = None) -> InputFiles:
    """(image file, output stem) for one file or every file under a folder, sorted, and the
    files that are not images.

    Hidden files (``.DS_Store``) and anything under ``exclude`` (the output folder) are left
    out silently; any other file OpenCV has no reader for (``notes.txt``) is skipped with that
    reason, so one stray file does not stop a folder. Two inputs that would write the same
    outputs are an error, raised before the model is loaded; so is an input with no files.
    """
    source = Path(source)
    if source.is_file():
        files, root = [source], source.parent
    elif source.is_dir():
        root = source
        skip = exclude.resolve() if exclude is not None else None
        files = sorted(
            p
            for p in source.rglob("*")
            if p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(source).parts)
            and (skip is None or not p.resolve().is_relative_to(skip))
        )
    else:
        raise FileNotFoundError(f"input={str(source)!r} is neither a file nor a folder")
    if not files:
        raise FileNotFoundError(f"input={str(source)!r} holds no files")
    items, skipped, owner = [], [], {}
    for path in files:
        if not cv2.haveImageReader(str(path)):
            skipped.append(Skipped(path.relative_to(root).as_posix(), NOT_AN_IMAGE))
            continue
        stem = PurePosixPath(path.relative_to(root).with_suffix("").as_posix())
        for output in visual_paths(Path(), stem).values():
            if output in owner:
                raise ValueError(f"input: {owner[output]} and {path} would both write {output}")
            owner[output] = path
        items.append((path, stem))
    return InputFiles(items, skipped)


def input_name(path: Path, stem: PurePosixPath) -> str:
    """The input's path relative to the input folder, from its output stem (same folders)."""
    return stem.with_name(path.name).as_posix()


def unreadable_reason(err: OSError) -> str:
    """Why an image file that OpenCV has a reader for still could not be read."""
    if isinstance(err, ImageReadError):
        return "corrupt or truncated image: OpenCV cannot decode it"
    return f"cannot read the file: {err.strerror or err}"


class NoImagesError(ImageReadError):
    """Not one input file could be predicted."""


class PredictionSummary:
    """Each input's fate, for ``<output>/predictions.json``: its output files, or why it was
    skipped (one warning each), and the totals. A user who finds fewer outputs than inputs
    reads there which files were left out and why, instead of a log that scrolled away."""

    def __init__(self, source: str | Path, output: Path, skipped: Sequence[Skipped]) -> None:
        self.source, self.output = str(source), Path(output)
        self.entries: dict[str, dict[str, Any]] = {}
        for item in skipped:
            self.skip(item.name, item.reason)

    def skip(self, name: str, reason: str) -> None:
        """Record (and warn) that input ``name`` is not predicted because of ``reason``."""
        log.warning("skipped %s: %s", name, reason)
        self.entries[name] = {"input": name, "status": "skipped", "reason": reason}

    def predicted(self, name: str, outputs: dict[str, Path]) -> None:
        """Record the files written for input ``name`` (paths relative to the output folder)."""
        files = {k: p.relative_to(self.output).as_posix() for k, p in outputs.items()}
        self.entries[name] = {"input": name, "status": "predicted", "outputs": files}

    def count(self, status: str) -> int:
        """How many inputs have ``status`` (``predicted`` or ``skipped``)."""
        return sum(entry["status"] == status for entry in self.entries.values())

    def write(self) -> Path:
        """Write ``predictions.json`` into the output folder (atomically); its path."""
        record = {
            "input": self.source,
            "output": str(self.output),
            "totals": {
                "inputs": len(self.entries),
                "predicted": self.count("predicted"),
                "skipped": self.count("skipped"),
            },
            "files": [self.entries[name] for name in sorted(self.entries)],
        }
        text = json.dumps(record, indent=2) + "\n"
        return atomic_write_text(self.output / PREDICTIONS_FILE, text)

    def nothing_predicted(self) -> NoImagesError:
        """The one-line error for a run that predicted nothing: the first reasons, the file."""
        skipped = [e for e in self.entries.values() if e["status"] == "skipped"]
        reasons = "; ".join(f"{e['input']}: {e['reason']}" for e in skipped[:3])
        more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        return NoImagesError(
            f"nothing predicted: none of the {len(skipped)} files in input={self.source} is an "
            f"image that could be read ({reasons}{more}); see {self.output / PREDICTIONS_FILE}"
        )


def _required(cfg: DictConfig, key: str) -> str:
    """A required string setting; a clear error naming the key when it is missing."""
    value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    if value in (None, "", "???"):
        raise ValueError(
            f"{key} is required: python -m src.predict ckpt_path=PATH input=DIR_OR_FILE output=DIR"
        )
    return str(value)


def _device(name: str) -> torch.device:
    """``auto`` is the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _progress() -> Progress:
    """A rich progress bar: description, bar, done/total, time left."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    run_task(predict, cfg, config_from_ckpt=True)


if __name__ == "__main__":
    main()
