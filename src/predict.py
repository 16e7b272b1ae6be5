"""Segment images: ``python -m src.predict ckpt_path=PATH input=DIR_OR_FILE output=DIR``.

For every image (any size) writes a train-id mask PNG, a colour PNG in the dataset's palette
and an overlay JPEG into ``output`` (sub-folders of ``input`` are kept), with the inference
of the ``inference:`` group (``inference=slide`` for sliding windows). The model is built from
the ``model:`` config (pass the experiment / ``model.*`` overrides it was trained with) and
the classes come from the checkpoint; the palette from the ``data:`` config's dataset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from src.app import task_wrapper, write_results
from src.app.checkpoint import checkpoint_hparams, load_checkpoint, net_from_checkpoint
from src.app.results import key_config
from src.app.run import run_task
from src.app.validate import CheckedConfig
from src.core.inference import InferenceConfig, check_flip_pairs, predict_logits_with
from src.core.prediction_files import visual_paths, write_visuals
from src.data.base import ImageReadError, bit_palette, read_image
from src.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform

log = logging.getLogger(__name__)


@task_wrapper
def predict(cfg: DictConfig, checked: CheckedConfig | None = None) -> dict[str, Any]:
    """Check the inputs, rebuild the net from the checkpoint, segment every image, report."""
    start = time.perf_counter()
    ckpt_path, source, output = (_required(cfg, k) for k in ("ckpt_path", "input", "output"))
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path!r} is not a file")
    images = image_files(source, exclude=Path(output))
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

    pixels = np.zeros(num_classes, dtype=np.int64)
    with _progress() as progress:
        for path, stem in progress.track(images, description="predict"):
            image = read_image(path)
            batch = transform(image=image)["image"].float().unsqueeze(0).to(device)
            logits = predict_logits_with(net, batch, inference, flip_pairs, num_classes)
            pred = logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()
            write_visuals(Path(output), stem, image, pred, palette, alpha)
            pixels += np.bincount(pred.ravel(), minlength=num_classes)

    results = {
        "task": cfg.get("task_name"),
        "input": source,
        "output": str(output),
        "images": len(images),
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
    log.info("%d predictions written to %s; results in %s", len(images), output, path)
    return results


def image_files(
    source: str | Path, exclude: Path | None = None
) -> list[tuple[Path, PurePosixPath]]:
    """(image file, output stem) for one file or every file under a folder, sorted.

    Hidden files (``.DS_Store``) and anything under ``exclude`` (the output folder) are
    skipped; any other file OpenCV cannot read as an image is an error naming it, raised
    before the model is loaded. Two inputs that would write the same outputs are an error.
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
    items, owner = [], {}
    for path in files:
        if not cv2.haveImageReader(str(path)):
            raise ImageReadError(f"input: {path} is not an image file OpenCV can read")
        stem = PurePosixPath(path.relative_to(root).with_suffix("").as_posix())
        for output in visual_paths(Path(), stem).values():
            if output in owner:
                raise ValueError(f"input: {owner[output]} and {path} would both write {output}")
            owner[output] = path
        items.append((path, stem))
    return items


def class_palette(data_cfg: DictConfig, num_classes: int) -> tuple[list[list[int]], str]:
    """The class colours and where they came from.

    First the ``data.dataset`` class's own ``palette`` (Cityscapes, LIP: no data needed), then
    the data module's (datasets whose colours depend on their arguments: synthetic, COCO),
    else distinct generated colours. A palette must hold one colour per checkpoint class.
    """
    target = OmegaConf.select(data_cfg, "dataset._target_", default=None)
    if target:
        palette = getattr(hydra.utils.get_class(target), "palette", None)
        if _fits(palette, num_classes):
            return [list(c) for c in palette], target
    try:
        palette = hydra.utils.instantiate(data_cfg).palette
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        log.warning("no palette from the data config (%s); using generated colours", err)
        return bit_palette(num_classes), "generated"
    if _fits(palette, num_classes):
        return [list(c) for c in palette], f"{target} (data module)"
    log.warning(
        "the data config's palette does not fit %d classes; using generated colours", num_classes
    )
    return bit_palette(num_classes), "generated"


def _fits(palette: object, num_classes: int) -> bool:
    """Whether ``palette`` is a sequence of at least ``num_classes`` RGB triples."""
    if not isinstance(palette, Sequence) or len(palette) < num_classes:
        return False
    return all(isinstance(c, Sequence) and len(c) == 3 for c in palette)


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
    run_task(predict, cfg)


if __name__ == "__main__":
    main()
