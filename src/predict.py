"""Segment images or videos: ``python -m src.predict ckpt_path=PATH input=PATH output=DIR``.

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

Videos: ``input=`` a video file (``.mp4 .avi .mov .mkv``), or, for a video model
(``model: ccnet3d``), a folder of frames (its image files in natural order) or one image,
is a sequence of frames, streamed (:mod:`src.core.video_frames`: at most a clip's span of
frames decoded at a time). A video model predicts each frame from its clip (``data.clip``:
length, stride, labelled frame ``last`` or ``centre``; at the ends of the sequence the missing
clip frames repeat the nearest one), a 2D model each frame alone. Written: a train-id mask
per frame (``<video stem>/<frame:06d>.png`` for a video file, ``<frame file stem>.png`` for a
folder of frames; ``frame_colors=true`` adds ``_color.png`` ones) and
``<stem>_overlay.mp4`` (the input's frame rate, 10 fps for frames), with a progress bar over
frames (:mod:`src.core.video_prediction`).
"""

from __future__ import annotations

import dataclasses
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
from src.core.video_frames import FrameSequence, is_video_file, open_sequence
from src.core.video_prediction import predict_frames, sequence_paths, write_sequence
from src.data.base import ImageReadError, read_image
from src.data.clips import ClipSpec
from src.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from src.models.ccnet3d import CCNet3D

log = logging.getLogger(__name__)


@task_wrapper
def predict(cfg: DictConfig, checked: CheckedConfig | None = None) -> dict[str, Any]:
    """Check the inputs, rebuild the net from the checkpoint, segment every image (or every
    frame of a video / folder of frames), report."""
    start = time.perf_counter()
    ckpt_path, source, output = (_required(cfg, k) for k in ("ckpt_path", "input", "output"))
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path!r} is not a file")
    out_dir = Path(output)
    sequence = None
    if is_video_file(source) or is_clip_model(cfg.model):
        sequence = open_sequence(source, exclude=out_dir)
        skipped = [Skipped(*item) for item in sequence.skipped]
        summary = PredictionSummary(source, out_dir, skipped, ordered=True)
    else:
        images, skipped = image_files(source, exclude=out_dir)
        summary = PredictionSummary(source, out_dir, skipped)
        if not images:  # nothing OpenCV can read: say so before loading the model
            summary.write()
            raise summary.nothing_predicted()
    checkpoint = load_checkpoint(ckpt_path)
    hparams = checkpoint_hparams(checkpoint)
    num_classes = hparams["num_classes"]
    device = _device(cfg.get("device", "auto"))
    net = net_from_checkpoint(cfg.model, checkpoint, path=ckpt_path).to(device)
    inference = checked.inference if checked else None
    palette, palette_source = class_palette(cfg.data, num_classes)
    predictor = Predictor(
        net=net,
        device=device,
        inference=inference or InferenceConfig.from_config(cfg.get("inference")),
        flip_pairs=check_flip_pairs(hparams["flip_pairs"], num_classes),
        num_classes=num_classes,
        transform=eval_transform(
            cfg.data.get("mean", IMAGENET_MEAN), cfg.data.get("std", IMAGENET_STD)
        ),
        palette=palette,
        alpha=float(cfg.get("overlay_alpha", 0.5)),
        names=hparams["class_names"],
    )
    if sequence is None:
        pixels, video = _predict_images(images, out_dir, predictor, summary), None
    else:
        clip = clip_spec(cfg, net)
        color = bool(cfg.get("frame_colors", False))
        pixels, video = _predict_sequence(sequence, clip, out_dir, predictor, summary, color)
        summary.extra["video"] = video
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
    if video is not None:
        results["video"] = video
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


class Predictor(NamedTuple):
    """What predicting an image or a frame needs, built once from the checkpoint and config."""

    net: torch.nn.Module  # in eval mode, on ``device``
    device: torch.device
    inference: InferenceConfig
    flip_pairs: list[tuple[int, int]]
    num_classes: int
    transform: Any  # the eval transform (normalisation) of the data config
    palette: list[list[int]]
    alpha: float
    names: list[str]


def _predict_images(
    images: list[tuple[Path, PurePosixPath]],
    out_dir: Path,
    p: Predictor,
    summary: PredictionSummary,
) -> np.ndarray:
    """Mask, colour PNG and overlay JPEG of each image; the predicted pixels per class."""
    pixels = np.zeros(p.num_classes, dtype=np.int64)
    with _progress() as progress:
        for path, stem in progress.track(images, description="predict"):
            try:
                image = read_image(path)
            except OSError as err:  # corrupt, unreadable, or gone since the scan: skip it
                summary.skip(input_name(path, stem), unreadable_reason(err))
                continue
            batch = p.transform(image=image)["image"].float().unsqueeze(0).to(p.device)
            logits = predict_logits_with(p.net, batch, p.inference, p.flip_pairs, p.num_classes)
            pred = logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()
            outputs = write_visuals(out_dir, stem, image, pred, p.palette, p.alpha, p.names)
            summary.predicted(input_name(path, stem), outputs)
            pixels += np.bincount(pred.ravel(), minlength=p.num_classes)
    return pixels


def _predict_sequence(
    sequence: FrameSequence,
    clip: ClipSpec | None,
    out_dir: Path,
    p: Predictor,
    summary: PredictionSummary,
    color: bool,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A mask per frame and the overlay video (:mod:`src.core.video_prediction`), with a
    progress bar over frames; the predicted pixels per class and the video's facts."""

    def unreadable(name: str, err: OSError) -> None:
        summary.skip(name, unreadable_reason(err))

    frames = sequence.frames(on_unreadable=unreadable)
    predictions = predict_frames(
        p.net, frames, clip, p.transform, p.inference, p.flip_pairs, p.num_classes, p.device
    )
    with _progress() as progress:
        task = progress.add_task(f"predict {sequence.path.name}", total=sequence.count)
        pixels, written = write_sequence(
            predictions,
            sequence,
            out_dir,
            p.palette,
            summary,
            p.num_classes,
            p.alpha,
            color,
            on_frame=lambda: progress.advance(task),
        )
    overlay_video = sequence_paths(out_dir, sequence)["overlay_video"]
    video = {
        "frames": written,
        "fps": sequence.fps,
        "overlay_video": overlay_video.relative_to(out_dir).as_posix() if written else None,
        "clip": None if clip is None else _clip_record(clip),
    }
    log.info("overlay video of %d frames: %s", written, overlay_video)
    return pixels, video


def _clip_record(clip: ClipSpec) -> dict[str, Any]:
    """The clips' settings for the record (``pad`` does not apply: the ends always repeat)."""
    return {k: v for k, v in dataclasses.asdict(clip).items() if k != "pad"}


def is_clip_model(model_cfg: DictConfig) -> bool:
    """Whether the ``model:`` config builds a video model (:class:`CCNet3D`: it takes clips)."""
    target = OmegaConf.select(model_cfg, "_target_", default=None)
    return bool(target) and issubclass(hydra.utils.get_class(target), CCNet3D)


def clip_spec(cfg: DictConfig, net: torch.nn.Module) -> ClipSpec | None:
    """The clips a video model takes (``data.clip``; None for a 2D model, which predicts each
    frame alone); a labelled-frame place other than the model's is an error."""
    if not isinstance(net, CCNet3D):
        return None
    spec = ClipSpec.from_config(cfg.data.get("clip"))
    if spec.target != net.target_frame:
        raise ValueError(
            f"data.clip.target={spec.target} but model.target_frame={net.target_frame}: the "
            "model predicts its clip's labelled frame, which must be where the clips put it"
        )
    return spec


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

    def __init__(
        self,
        source: str | Path,
        output: Path,
        skipped: Sequence[Skipped],
        ordered: bool = False,
    ) -> None:
        """``ordered``: list the entries as they came (a video's frames) instead of by name."""
        self.source, self.output, self.ordered = str(source), Path(output), ordered
        self.entries: dict[str, dict[str, Any]] = {}
        self.extra: dict[str, Any] = {}  # more top-level facts (a video's)
        for item in skipped:
            self.skip(item.name, item.reason)

    def skip(self, name: str, reason: str) -> None:
        """Record (and warn) that input ``name`` is not predicted because of ``reason``."""
        log.warning("skipped %s: %s", name, reason)
        self.entries[name] = {"input": name, "status": "skipped", "reason": reason}

    def predicted(self, name: str, outputs: dict[str, Path], **fields: Any) -> None:
        """Record the files written for input ``name`` (paths relative to the output folder)
        and any other ``fields`` of it (a video frame's index)."""
        files = {k: p.relative_to(self.output).as_posix() for k, p in outputs.items()}
        entry = {"input": name, "status": "predicted", **fields, "outputs": files}
        self.entries[name] = entry

    def count(self, status: str) -> int:
        """How many inputs have ``status`` (``predicted`` or ``skipped``)."""
        return sum(entry["status"] == status for entry in self.entries.values())

    def write(self) -> Path:
        """Write ``predictions.json`` into the output folder (atomically); its path."""
        names = list(self.entries) if self.ordered else sorted(self.entries)
        record = {
            "input": self.source,
            "output": str(self.output),
            "totals": {
                "inputs": len(self.entries),
                "predicted": self.count("predicted"),
                "skipped": self.count("skipped"),
            },
            **self.extra,
            "files": [self.entries[name] for name in names],
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
