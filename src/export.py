"""Export a checkpoint to ONNX: ``python -m src.export ckpt_path=PATH output=model.onnx``.

The graph takes ``image``, a normalised float32 B×3×H×W batch (the data config's mean/std),
and returns ``logits``, B×K×H×W float32 at the **input's full resolution**: the net's 1/8
logits upsampled bilinearly (with the model's align_corners) inside the graph, exactly as
whole-image inference does (``src.core.inference``), so ``argmax(1)`` is the prediction.
Batch, height and width are dynamic. A video model (``model: ccnet3d``) takes clips instead:
``image`` is B×T×3×H×W with T fixed to the clip length it was trained on (``data.clip.length``,
stored in the metadata with the labelled frame's place and the stride), and ``logits`` are the
labelled frame's. It uses the TorchScript-based exporter (``dynamo=False`` with
``dynamic_axes``): torch 2.14's dynamo exporter fails on the criss-cross op with symbolic
sizes. After export the model is run in onnxruntime at two sizes and compared with PyTorch.

The graph is **whole-image** inference only: sliding windows, scales and flips
(``inference=slide`` / ``slide_ms_flip``) are not in it. What a consumer needs besides the graph
is stored in the file as ONNX ``metadata_props`` with JSON-encoded values (:func:`onnx_metadata`,
read back with ``onnx.load(f).metadata_props`` or onnxruntime's
``get_modelmeta().custom_metadata_map``): ``num_classes``, ``class_names``, ``palette``,
``normalization`` (RGB, pixels / 255, then minus mean, over std) and the ``input`` / ``output``
semantics.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from src.app import task_wrapper, write_results
from src.app.checkpoint import checkpoint_hparams, load_checkpoint, net_from_checkpoint
from src.app.palette import class_palette
from src.app.results import key_config
from src.app.run import run_task
from src.core.inference import align_corners_of
from src.core.losses import resize_logits
from src.data.clips import ClipSpec
from src.data.transforms import eval_transform
from src.predict import clip_spec

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
DYNAMIC_AXES = {
    INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
    OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"},
}
CLIP_DYNAMIC_AXES = {  # clips B×T×3×H×W: the clip length T stays the traced one
    INPUT_NAME: {0: "batch", 3: "height", 4: "width"},
    OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"},
}


class FullResolutionLogits(nn.Module):
    """The net's main logits, upsampled bilinearly to the input's height and width (for
    clips: the labelled frame's logits, at the frames' height and width)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: Tensor) -> Tensor:
        out = self.net(images)
        if isinstance(out, Mapping):
            out = out["out"]
        return resize_logits(out, images.shape[-2:], align_corners_of(self.net))


def export_onnx(
    net: nn.Module,
    path: str | Path,
    input_size: Sequence[int] = (512, 512),
    opset: int = 17,
    metadata: Mapping[str, Any] | None = None,
    clip: ClipSpec | None = None,
) -> Path:
    """Write ``net`` (wrapped in :class:`FullResolutionLogits`, eval mode) as ONNX to ``path``.

    The trace runs on a 1×3×``input_size`` zero batch; for a video model (``clip``: the clips
    it takes) on a 1×T×3×``input_size`` one, T = ``clip.length`` fixed in the graph. The
    tracer's warnings about Python-level shape checks are silenced: :func:`compare_onnx` at a
    second size catches a graph that kept the traced size. The output is declared
    batch×K×height×width with K the classes (the exporter itself leaves K symbolic after the
    final resize). ``metadata`` (from :func:`onnx_metadata`: classes, palette, normalisation)
    is stored with what the graph itself fixes (classes, input and output semantics, a video
    model's clips) by :func:`_write_model_info`.
    """
    height, width = _size(input_size, "input_size")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = FullResolutionLogits(net).eval()
    frames = () if clip is None else (clip.length,)
    example = torch.zeros(1, *frames, 3, height, width)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*will be removed.*")
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=DYNAMIC_AXES if clip is None else CLIP_DYNAMIC_AXES,
            opset_version=opset,
            dynamo=False,
        )
        num_classes = wrapper(example).shape[1]
    info = {**graph_metadata(num_classes, clip), **(metadata or {})}
    _write_model_info(path, num_classes, info)
    return path


def input_shape(clip: ClipSpec | None = None) -> list[str | int]:
    """The graph input's shape: B×3×H×W, or B×T×3×H×W clips for a video model."""
    return ["batch", *(() if clip is None else (clip.length,)), 3, "height", "width"]


def graph_metadata(num_classes: int, clip: ClipSpec | None = None) -> dict[str, Any]:
    """What the graph fixes: the class count and the meaning of its input and output (and,
    for a video model, the clips it takes: length, labelled frame, stride)."""
    size = (
        "any height and width; the net runs on the whole input (no sliding windows, scales "
        "or flips) and its logits are upsampled to the input's size"
    )
    if clip is not None:
        size = (
            f"clips of {clip.length} frames in time order, each a normalised image (one "
            f"height and width for all, any size), taken every {clip.stride} video frame(s) "
            f"around the labelled frame, which is the clip's {clip.target}; the logits are "
            f"the labelled frame's. {size}"
        )
    meta: dict[str, Any] = {
        "num_classes": num_classes,
        "input": {
            "name": INPUT_NAME,
            "shape": input_shape(clip),
            "dtype": "float32",
            "size": size,
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", num_classes, "height", "width"],
            "dtype": "float32",
            "meaning": "class logits at the input's resolution; argmax over axis 1 is the "
            "class index into class_names and palette",
        },
    }
    if clip is not None:
        meta["clip"] = {"length": clip.length, "target": clip.target, "stride": clip.stride}
    return meta


def onnx_metadata(
    class_names: Sequence[str],
    palette: Sequence[Sequence[int]],
    mean: Sequence[float],
    std: Sequence[float],
    layout: str = "NCHW",
) -> dict[str, Any]:
    """The classes, their colours and the input normalisation, for the file's metadata.

    The pixel scale is read from the transform predict and eval use (:func:`eval_transform`,
    albumentations' ``Normalize``): with its ``max_pixel_value`` of 255 the RGB uint8 pixels
    are divided by 255 (the 0–1 scale mean/std are given in) before subtracting the mean.
    """
    if len(palette) < len(class_names):
        raise ValueError(f"{len(palette)} palette colours for {len(class_names)} classes")
    normalize = eval_transform(mean, std).transforms[0]
    divisor = float(normalize.max_pixel_value)
    return {
        "class_names": list(class_names),
        "palette": [[int(c) for c in colour] for colour in palette[: len(class_names)]],
        "normalization": {
            "channel_order": "RGB",
            "layout": layout,
            "pixel_divisor": divisor,
            "scale": "0-1" if divisor == 255 else f"0-{255 / divisor:g}",
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
            "formula": f"image = (rgb_uint8 / {divisor:g} - mean) / std",
        },
    }


def _write_model_info(path: Path, num_classes: int, metadata: Mapping[str, Any]) -> None:
    """Set the class axis of the ONNX output to ``num_classes``, store ``metadata`` as
    ``metadata_props`` (JSON-encoded values, replacing earlier ones), check the model."""
    import onnx

    model = onnx.load(str(path))
    (output,) = [o for o in model.graph.output if o.name == OUTPUT_NAME]
    output.type.tensor_type.shape.dim[1].dim_value = num_classes
    names = metadata.get("class_names")
    if names is not None and len(names) != num_classes:
        raise ValueError(f"{len(names)} class_names for a model with {num_classes} classes")
    onnx.helper.set_model_props(model, {k: json.dumps(v) for k, v in metadata.items()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata :func:`export_onnx` stored, decoded (what an ONNX consumer would read)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {prop.key: json.loads(prop.value) for prop in model.metadata_props}


def compare_onnx(
    path: str | Path, net: nn.Module, shapes: Sequence[Sequence[int]], seed: int = 0
) -> list[dict[str, Any]]:
    """Max abs difference between onnxruntime and PyTorch logits on random inputs of
    ``shapes`` (B×3×H×W, or B×T×3×H×W clips for a video model)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wrapper = FullResolutionLogits(net).eval()
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for shape in shapes:
        images = torch.randn(*shape, generator=generator)
        with torch.no_grad():
            expected = wrapper(images).float()
        got = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0])
        if got.shape != expected.shape:
            raise RuntimeError(f"ONNX logits {tuple(got.shape)} != PyTorch {tuple(expected.shape)}")
        rows.append({"shape": list(shape), "max_abs_diff": (got - expected).abs().max().item()})
    return rows


def check_shapes(input_size: Sequence[int], clip: ClipSpec | None = None) -> list[list[int]]:
    """The traced size at batch 1, and a larger one at batch 2 that is no multiple of 8 (for
    a video model: clips of its length)."""
    height, width = _size(input_size, "input_size")
    frames = [] if clip is None else [clip.length]
    larger = [height + height // 4 + 5, width + width // 2 + 3]
    return [[1, *frames, 3, height, width], [2, *frames, 3, *larger]]


@task_wrapper
def export(cfg: DictConfig) -> dict[str, Any]:
    """Rebuild the net from the checkpoint, write the ONNX file, check it in onnxruntime."""
    start = time.perf_counter()
    ckpt_path = _required(cfg, "ckpt_path")
    output = _required(cfg, "output")
    checkpoint = load_checkpoint(ckpt_path)
    hparams = checkpoint_hparams(checkpoint)
    net = net_from_checkpoint(cfg.model, checkpoint, path=ckpt_path)
    clip = clip_spec(cfg, net)  # a video model's clips (data.clip); None for a 2D model
    input_size = OmegaConf.to_container(cfg.input_size, resolve=True)
    metadata = _config_metadata(cfg, hparams, "NCHW" if clip is None else "NTCHW")
    path = export_onnx(net, output, input_size, int(cfg.opset), metadata, clip)
    props = sorted(read_metadata(path))
    log.info("ONNX model written to %s (metadata_props: %s)", path, ", ".join(props))

    checks = []
    if cfg.get("verify", True):
        checks = compare_onnx(path, net, check_shapes(input_size, clip))
        worst = max(row["max_abs_diff"] for row in checks)
        log.info("onnxruntime vs PyTorch, max abs logit difference: %.3g", worst)
        if worst > float(cfg.verify_atol):
            raise RuntimeError(
                f"ONNX logits differ from PyTorch by {worst:.3g} > verify_atol={cfg.verify_atol}"
            )
    results = {
        "task": cfg.get("task_name"),
        "output": str(path),
        "exporter": "torchscript (dynamo=False)",
        "opset": int(cfg.opset),
        "input": {"name": INPUT_NAME, "shape": input_shape(clip)},
        "output_logits": {
            "name": OUTPUT_NAME,
            "shape": ["batch", hparams["num_classes"], "height", "width"],
        },
        "normalisation": metadata["normalization"],
        "class_names": hparams["class_names"],
        "metadata_props": props,
        "checks": checks,
        "checkpoint_global_step": checkpoint.get("global_step"),
        "wall_time_s": round(time.perf_counter() - start, 3),
        "config": key_config(cfg),
    }
    write_results(results, cfg.paths.output_dir)
    return results


def _config_metadata(
    cfg: DictConfig, hparams: Mapping[str, Any], layout: str = "NCHW"
) -> dict[str, Any]:
    """:func:`onnx_metadata` for the run: classes from the checkpoint, the palette as predict
    picks it, mean/std from the data config (those the transform of predict and eval uses)."""
    palette, source = class_palette(cfg.data, hparams["num_classes"])
    mean = OmegaConf.to_container(cfg.data.mean, resolve=True)
    std = OmegaConf.to_container(cfg.data.std, resolve=True)
    metadata = onnx_metadata(hparams["class_names"], palette, mean, std, layout)
    return {**metadata, "palette_source": source}


def _size(value: Sequence[int], key: str) -> tuple[int, int]:
    """A positive (height, width) pair; the error names the config key."""
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else []
    if len(items) != 2 or not all(isinstance(v, int) and v > 0 for v in items):
        raise ValueError(f"{key} must be a pair of positive ints [height, width]; got {value!r}")
    return items[0], items[1]


def _required(cfg: DictConfig, key: str) -> str:
    """A required string setting; a clear error naming the key when it is missing."""
    value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    if value in (None, "", "???"):
        raise ValueError(f"{key} is required: python -m src.export ckpt_path=PATH output=FILE.onnx")
    return str(value)


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    run_task(lambda cfg, checked: export(cfg), cfg, config_from_ckpt=True)


if __name__ == "__main__":
    main()
