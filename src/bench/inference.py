"""Inference benchmark: images/s of whole, sliding-window and multi-scale + flip prediction.

Runs :func:`src.core.inference.predict_logits` on Cityscapes-sized images (1024×2048, 769 tiles at
stride 513) with a small CCNet (ResNet-18-D backbone, 64 channels, random weights) in eval
mode, and reports how much batching the tiles (``--tile-batch-size``) gains over feeding them
one at a time. ``--quick`` shrinks image and tiles by 4 and times one run each;
``--size``/``--crop``/``--stride`` override the geometry, ``--model tiny`` times a stand-in.
Each contender's forward calls and crops per image are counted from the timed runs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from src.bench.common import base_parser, print_table, time_alternating, write_json
from src.core.inference import predict_logits

NAME = "inference"
MULTI_SCALES = (0.75, 1.0, 1.25, 1.5, 1.75)


class TinySegNet(nn.Module):
    """A stand-in with CCNet's output contract: three stride-2 3×3 convs (ceil(H/8)), 1×1 out."""

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for out in (width // 2, width, width):
            layers += [nn.Conv2d(channels, out, 3, 2, 1), nn.BatchNorm2d(out), nn.ReLU()]
            channels = out
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"out": self.classifier(self.body(x))}


def build_model(choice: str, num_classes: int) -> tuple[nn.Module, str]:
    """The benchmarked model and its label; ``auto`` is the small CCNet once it exists."""
    if choice in ("auto", "ccnet"):
        try:
            from src.models.ccnet import CCNet
        except ImportError as err:
            if choice == "ccnet":
                message = f"--model ccnet: src.models.ccnet.CCNet is unavailable ({err})"
                raise SystemExit(message) from err
            print(
                "note: src.models.ccnet.CCNet is not available yet "
                f"({err}); timing the tiny stand-in TinySegNet instead"
            )
        else:
            model = CCNet(num_classes, backbone="resnet18d", channels=64)
            return model, "CCNet(resnet18d, channels=64)"
    return TinySegNet(num_classes), "TinySegNet (stand-in)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 4× smaller image and tiles")
    parser.add_argument("--model", choices=("auto", "ccnet", "tiny"), default="auto")
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--batch-size", type=int, default=1, help="images per call")
    parser.add_argument("--tile-batch-size", type=int, default=4, help="the batched contender")
    parser.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="image size")
    parser.add_argument("--crop", type=int, help="square tile side (default 769)")
    parser.add_argument("--stride", type=int, help="tile stride (default 513)")
    if "--quick" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(repeats=1, warmup=0)  # one timed run each unless asked for more
    args = parser.parse_args(argv)
    quarter = 4 if args.quick else 1
    args.size = tuple(args.size or (1024 // quarter, 2048 // quarter))
    args.crop = (args.crop or (769 - 1) // quarter + 1,) * 2
    args.stride = (args.stride or (513 - 1) // quarter + 1,) * 2
    return args


def contenders(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The predict_logits settings compared, by row name."""
    window = dict(crop_size=args.crop, stride=args.stride)
    batched = args.tile_batch_size
    return {
        "whole": dict(mode="whole"),
        "slide, tiles 1 at a time": dict(mode="slide", tile_batch_size=1, **window),
        f"slide, tiles {batched} at a time": dict(mode="slide", tile_batch_size=batched, **window),
        f"slide ×{len(MULTI_SCALES)} scales + flip": dict(
            mode="slide", scales=MULTI_SCALES, flip=True, tile_batch_size=batched, **window
        ),
    }


def autocast(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """Mixed precision for the model's forward when ``--amp`` asks for it."""
    if args.amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if args.amp == "bf16" else torch.float16
    return torch.autocast(torch.device(args.device).type, dtype=dtype)


class ForwardCounter:
    """Counts the model's calls and the images (tiles) they carry, per contender."""

    def __init__(self, model: nn.Module) -> None:
        self.current = ""
        self.batches: dict[str, list[int]] = defaultdict(list)
        model.register_forward_hook(self._record)

    def _record(self, _module: nn.Module, inputs: tuple[Tensor, ...], _output: Any) -> None:
        self.batches[self.current].append(inputs[0].shape[0])

    def wrap(self, name: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        """``fn`` with its model calls booked under ``name``."""

        def run() -> Any:
            self.current = name
            return fn()

        return run


def peak_memory_mib(fn: Callable[[], Any]) -> float:
    """Peak CUDA memory allocated during one run of ``fn``."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    model, label = build_model(args.model, args.classes)
    model = model.to(device).eval()
    images = torch.randn(args.batch_size, 3, *args.size, device=device)
    counter = ForwardCounter(model)

    def runner(settings: dict[str, Any]) -> Callable[[], Tensor]:
        def run() -> Tensor:
            with autocast(args):
                return predict_logits(model, images, num_classes=args.classes, **settings)

        return run

    compared = contenders(args)
    runs = {name: counter.wrap(name, runner(settings)) for name, settings in compared.items()}
    seconds = time_alternating(runs, args.repeats, args.warmup, args.device)
    rows: list[dict[str, Any]] = []
    for name, settings in compared.items():
        batches, passes = counter.batches[name], args.repeats + args.warmup
        rows.append(
            {
                "contender": name,
                "mode": settings["mode"],
                "scales": len(settings.get("scales", (1.0,))),
                "flip": settings.get("flip", False),
                "tile batch": settings.get("tile_batch_size", "-"),
                "forward calls": len(batches) // passes,
                "crops per image": sum(batches) // passes // args.batch_size,
                "s / batch": seconds[name],
                "images/s": args.batch_size / seconds[name],
            }
        )
        if device.type == "cuda":
            rows[-1]["peak MiB"] = peak_memory_mib(runs[name])

    one, batched = rows[1]["s / batch"], rows[2]["s / batch"]
    speedup = one / batched
    size = f"{args.batch_size}×3×{args.size[0]}×{args.size[1]}"
    title = (
        f"inference of {size} on {args.device} ({args.amp} autocast), {label}, "
        f"tiles {args.crop[0]} stride {args.stride[0]}"
    )
    columns = ["contender", "tile batch", "forward calls", "crops per image", "s / batch"]
    columns += ["images/s"] + (["peak MiB"] if device.type == "cuda" else [])
    print_table(rows, columns, title)
    print(
        f"batched tiles ({args.tile_batch_size} at a time) vs one at a time: {speedup:.2f}× "
        "speed-up"
    )
    payload = {
        "model": label,
        "image_size": list(args.size),
        "batch_size": args.batch_size,
        "crop_size": list(args.crop),
        "stride": list(args.stride),
        "amp": args.amp,
        "device": args.device,
        "rows": rows,
        "tile_batching_speedup": speedup,
    }
    write_json(args.out, NAME, payload)
    return payload


if __name__ == "__main__":
    main()
