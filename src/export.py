"""Export a checkpoint to ONNX: ``python -m src.export ckpt_path=PATH output=model.onnx``.

The graph takes ``image``, a normalised float32 B×3×H×W batch (the data config's mean/std),
and returns ``logits``, B×K×H×W float32 at the **input's full resolution**: the net's 1/8
logits upsampled bilinearly (align_corners=False) inside the graph, exactly as whole-image
inference does (``src.core.inference``), so ``argmax(1)`` is the prediction. Batch, height and
width are dynamic. It uses the TorchScript-based exporter (``dynamo=False`` with
``dynamic_axes``): torch 2.14's dynamo exporter fails on the criss-cross op with symbolic
sizes. After export the model is run in onnxruntime at two sizes and compared with PyTorch.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from src.app import task_wrapper, write_results
from src.app.checkpoint import checkpoint_hparams, load_checkpoint, net_from_checkpoint
from src.app.results import key_config
from src.app.run import run_task

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
DYNAMIC_AXES = {
    INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
    OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"},
}


class FullResolutionLogits(nn.Module):
    """The net's main logits, upsampled bilinearly to the input's height and width."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: Tensor) -> Tensor:
        out = self.net(images)
        if isinstance(out, Mapping):
            out = out["out"]
        return F.interpolate(out, size=images.shape[-2:], mode="bilinear", align_corners=False)


def export_onnx(
    net: nn.Module, path: str | Path, input_size: Sequence[int] = (512, 512), opset: int = 17
) -> Path:
    """Write ``net`` (wrapped in :class:`FullResolutionLogits`, eval mode) as ONNX to ``path``.

    The trace runs on a 1×3×``input_size`` zero batch. The tracer's warnings about Python-level
    shape checks are silenced: :func:`compare_onnx` at a second size catches a graph that
    kept the traced size. The output is declared batch×K×height×width with K the classes
    (the exporter itself leaves K symbolic after the final resize).
    """
    height, width = _size(input_size, "input_size")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = FullResolutionLogits(net).eval()
    example = torch.zeros(1, 3, height, width)
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
            dynamic_axes=DYNAMIC_AXES,
            opset_version=opset,
            dynamo=False,
        )
        num_classes = wrapper(example).shape[1]
    _declare_classes(path, num_classes)
    return path


def _declare_classes(path: Path, num_classes: int) -> None:
    """Set the class axis of the ONNX output to ``num_classes`` and check the model."""
    import onnx

    model = onnx.load(str(path))
    (output,) = [o for o in model.graph.output if o.name == OUTPUT_NAME]
    output.type.tensor_type.shape.dim[1].dim_value = num_classes
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def compare_onnx(
    path: str | Path, net: nn.Module, shapes: Sequence[Sequence[int]], seed: int = 0
) -> list[dict[str, Any]]:
    """Max abs difference between onnxruntime and PyTorch logits on random B×3×H×W inputs."""
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


def check_shapes(input_size: Sequence[int]) -> list[list[int]]:
    """The traced size at batch 1, and a larger one at batch 2 that is no multiple of 8."""
    height, width = _size(input_size, "input_size")
    return [[1, 3, height, width], [2, 3, height + height // 4 + 5, width + width // 2 + 3]]


@task_wrapper
def export(cfg: DictConfig) -> dict[str, Any]:
    """Rebuild the net from the checkpoint, write the ONNX file, check it in onnxruntime."""
    start = time.perf_counter()
    ckpt_path = _required(cfg, "ckpt_path")
    output = _required(cfg, "output")
    checkpoint = load_checkpoint(ckpt_path)
    hparams = checkpoint_hparams(checkpoint)
    net = net_from_checkpoint(cfg.model, checkpoint, path=ckpt_path)
    input_size = OmegaConf.to_container(cfg.input_size, resolve=True)
    path = export_onnx(net, output, input_size, int(cfg.opset))
    log.info("ONNX model written to %s", path)

    checks = []
    if cfg.get("verify", True):
        checks = compare_onnx(path, net, check_shapes(input_size))
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
        "input": {"name": INPUT_NAME, "shape": ["batch", 3, "height", "width"]},
        "output_logits": {
            "name": OUTPUT_NAME,
            "shape": ["batch", hparams["num_classes"], "height", "width"],
        },
        "normalisation": {
            "mean": OmegaConf.to_container(cfg.data.mean, resolve=True),
            "std": OmegaConf.to_container(cfg.data.std, resolve=True),
        },
        "class_names": hparams["class_names"],
        "checks": checks,
        "checkpoint_global_step": checkpoint.get("global_step"),
        "wall_time_s": round(time.perf_counter() - start, 3),
        "config": key_config(cfg),
    }
    write_results(results, cfg.paths.output_dir)
    return results


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
    run_task(lambda cfg, checked: export(cfg), cfg)


if __name__ == "__main__":
    main()
