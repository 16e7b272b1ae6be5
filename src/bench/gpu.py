"""GPU speed in one run: the op, training steps and inference at the recipes' sizes.

``python -m src.bench gpu`` (one GPU, a few minutes) measures
- the op forward + backward at 1×64/512×97×97 and 1×64/512×128×256 in fp32 and bf16: ours
  (each path: ``lines``, the default, and ``fused``, per-axis attention calls merged by their
  log-sum-exps; ``lines_vs_fused`` > 1 means fused is faster, the measurement that decides
  whether fused becomes the CUDA default), the batched-matmul formulation, the einsum
  formulation and one non-local block;
- a training step of CCNet R-50-D8 at 512×1024 and R-101-D8 at 769×769 (batch 2): images/s
  and peak memory for eager fp32, bf16-mixed, + channels_last, + torch.compile;
- inference images/s of R-101-D8 at 1024×2048: whole image and 769 sliding window;
and prints them beside the published anchors (:data:`ANCHORS`). ``--device cpu --quick``
runs every part at tiny sizes (the tests do, so the script cannot rot).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import Tensor

from src.bench.attention import batched_matmul_cca
from src.bench.common import base_parser, print_table, synchronize, time_alternating, write_json
from src.core.inference import InferenceConfig, predict_logits
from src.core.losses import CCNetLoss
from src.models.attention import NonLocalBlock, criss_cross_attention
from src.models.ccnet import CCNet

NAME = "gpu"
MIB = 2**20
ANCHORS = {
    "mmseg CCNet R-50-D8 512x1024 training memory per GPU (batch 2)": "6.0 GB",
    "mmseg CCNet R-50-D8 512x1024 inference (V100)": "3.32 images/s",
    "paper, 769x769: memory added by RCCA / by a non-local block": "127 MB / 1411 MB",
}
TARGETS = {
    "rcca_vs_nonlocal_speedup_min": 5.0,  # forward + backward at 97×97×512
    "fastest_train_vs_fp32_min": 1.5,
    "r50_512x1024_peak_gb_max": 6.0,
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def einsum_cca(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """The einsum formulation (energies of rows and columns, centre masked in the columns)."""
    _, _, h, w = query.shape
    energy_col = torch.einsum("bchw,bciw->bhwi", query, key)
    eye = torch.eye(h, dtype=torch.bool, device=query.device)
    energy_col = energy_col.masked_fill(eye.view(1, h, 1, h), float("-inf"))
    energy_row = torch.einsum("bchw,bchj->bhwj", query, key)
    energies = torch.cat([energy_col, energy_row], dim=-1)
    attn = torch.softmax(energies.to(torch.promote_types(energies.dtype, torch.float32)), dim=-1)
    attn = attn.to(value.dtype)
    out = torch.einsum("bciw,bhwi->bchw", value, attn[..., :h])
    return out + torch.einsum("bchj,bhwj->bchw", value, attn[..., h:])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CPU smoke test)")
    parser.add_argument("--parts", nargs="+", default=["op", "train", "infer"])
    parser.add_argument(
        "--compile-backend",
        default=None,
        help="torch.compile backend (default inductor; aot_eager with --quick on a CPU)",
    )
    parser.set_defaults(device="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.quick and args.compile_backend is None and args.device == "cpu":
        args.compile_backend = "aot_eager"  # inductor's C++ compile alone takes many minutes
    if args.quick:
        args.op_cases = [(8, 16, 8, 12)]
        args.train_cases = [("resnet10t", 64, 64, 2, True)]
        args.infer_size, args.infer_backbone, args.tile = (64, 96), "resnet10t", 48
        args.channels, args.steps = 16, 1
    else:
        args.op_cases = [(64, 512, 97, 97), (64, 512, 128, 256)]
        args.train_cases = [("resnet50c", 512, 1024, 2, False), ("resnet101c", 769, 769, 2, True)]
        args.infer_size, args.infer_backbone, args.tile = (1024, 2048), "resnet101c", 769
        args.channels, args.steps = 512, 5
    return args


def peak_mib(device: str, fn: Callable[[], Any]) -> float | None:
    """Peak CUDA memory of one call of ``fn`` (None on the CPU)."""
    if torch.device(device).type != "cuda":
        fn()
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / MIB


def _backward(call: Callable[[], Tensor], grad: Tensor) -> None:
    call().backward(grad)


def bench_op(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Forward + backward of each formulation and a non-local block, per size and dtype."""
    rows = []
    for key_channels, channels, h, w in args.op_cases:
        for dtype_name, dtype in DTYPES.items():
            gen = torch.Generator().manual_seed(h * w)
            make = partial(torch.randn, generator=gen, dtype=torch.float32)
            q, k = (make(1, key_channels, h, w) for _ in range(2))
            v, grad = (make(1, channels, h, w) for _ in range(2))
            q, k, v, grad = (t.to(args.device, dtype) for t in (q, k, v, grad))
            for t in (q, k, v):
                t.requires_grad_(True)
            block = NonLocalBlock(channels).to(args.device, dtype)
            x = v.detach().clone().requires_grad_(True)
            calls = {
                "ours": partial(criss_cross_attention, q, k, v),
                "ours_fused": partial(criss_cross_attention, q, k, v, kernel="fused"),
                "batched_matmul": partial(batched_matmul_cca, q, k, v),
                "einsum": partial(einsum_cca, q, k, v),
                "nonlocal": partial(block, x),
            }
            runs = {n: partial(_backward, c, grad) for n, c in calls.items()}
            seconds = time_alternating(runs, args.repeats, args.warmup, args.device)
            row: dict[str, Any] = {"shape": f"1x{key_channels}/{channels}x{h}x{w}"}
            row["dtype"] = dtype_name
            for name in calls:
                row[f"{name}_ms"] = seconds[name] * 1e3
                row[f"{name}_peak_mib"] = peak_mib(args.device, runs[name])
            row["nonlocal_vs_ours"] = seconds["nonlocal"] / seconds["ours"]
            row["lines_vs_fused"] = seconds["ours"] / seconds["ours_fused"]
            rows.append(row)
    return rows


def _train_variants(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    backend = {"backend": args.compile_backend} if args.compile_backend else {}
    return {
        "eager fp32": {},
        "bf16-mixed": {"bf16": True},
        "+ channels_last": {"bf16": True, "channels_last": True},
        "+ compile": {"bf16": True, "channels_last": True, "compile": backend},
    }


def _autocast(device: str, bf16: bool) -> contextlib.AbstractContextManager:
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def train_step_rate(args, backbone, height, width, batch, align, variant) -> dict[str, Any]:
    """Images/s and peak memory of SGD training steps of one configuration."""
    torch.manual_seed(0)
    net = CCNet(19, backbone=backbone, channels=args.channels, align_corners=align)
    net = net.to(args.device).train()
    images = torch.randn(batch, 3, height, width, device=args.device)
    masks = torch.randint(0, 19, (batch, height, width), device=args.device)
    if variant.get("channels_last"):
        net = net.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    if "compile" in variant:
        net.compile(**variant["compile"])
    criterion = CCNetLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(args.device, variant.get("bf16", False)):
            losses = criterion(net(images), masks, align)
        losses["loss"].backward()
        optimizer.step()

    for _ in range(2 if "compile" in variant else 1):  # compile on the first calls
        step()
    peak = peak_mib(args.device, step)
    synchronize(args.device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize(args.device)
    seconds = (time.perf_counter() - start) / args.steps
    return {"images_per_s": batch / seconds, "peak_mib": peak}


def bench_train(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for backbone, height, width, batch, align in args.train_cases:
        base = None
        for name, variant in _train_variants(args).items():
            result = train_step_rate(args, backbone, height, width, batch, align, variant)
            base = base or result["images_per_s"]
            rows.append({
                "model": f"{backbone} {height}x{width} b{batch}", "variant": name, **result,
                "vs_fp32": result["images_per_s"] / base,
            })  # fmt: skip
    return rows


def bench_infer(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Images/s of whole-image and sliding-window inference (fp32 and bf16 autocast)."""
    torch.manual_seed(0)
    net = CCNet(19, backbone=args.infer_backbone, channels=args.channels).to(args.device).eval()
    image = torch.randn(1, 3, *args.infer_size, device=args.device)
    stride = (args.tile * 2 + 2) // 3  # 769 → 513, as the recipes
    modes = {
        "whole": InferenceConfig(),
        f"slide {args.tile}/{stride}": InferenceConfig(
            mode="slide", crop_size=args.tile, stride=stride
        ),
    }
    rows = []
    for mode, config in modes.items():
        for bf16 in (False, True):

            def run(config=config, bf16=bf16) -> None:
                with _autocast(args.device, bf16):
                    predict_logits(net, image, config)

            seconds = time_alternating({"run": run}, args.repeats, args.warmup, args.device)
            rows.append({
                "mode": mode, "dtype": "bf16" if bf16 else "fp32",
                "images_per_s": 1 / seconds["run"], "peak_mib": peak_mib(args.device, run),
            })  # fmt: skip
    return rows


def check_targets(op_rows, train_rows) -> dict[str, Any]:
    """The issue's GPU targets, as measured (meaningful on a GPU at full size only)."""
    fp32 = [r for r in op_rows if r["dtype"] == "fp32"]
    r50 = [r for r in train_rows if r["model"].startswith("resnet50c")]
    return {
        "rcca_vs_nonlocal_speedup": fp32[0]["nonlocal_vs_ours"] if fp32 else None,
        "fastest_train_vs_fp32": max((r["vs_fp32"] for r in train_rows), default=None),
        "r50_512x1024_peak_gb": (
            min(r["peak_mib"] for r in r50) / 1024 if r50 and r50[0]["peak_mib"] else None
        ),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(list(argv or []))
    results: dict[str, Any] = {"device": args.device, "quick": args.quick, "anchors": ANCHORS}
    if "op" in args.parts:
        results["op"] = bench_op(args)
        columns = ["shape", "dtype", "ours_ms", "ours_fused_ms", "lines_vs_fused",
                   "batched_matmul_ms", "einsum_ms", "nonlocal_ms", "nonlocal_vs_ours",
                   "ours_peak_mib", "ours_fused_peak_mib", "nonlocal_peak_mib"]  # fmt: skip
        title = "op forward + backward (ms, peak MiB on CUDA; ours = lines path, ours_fused)"
        print_table(results["op"], columns, title)
    if "train" in args.parts:
        results["train"] = bench_train(args)
        columns = ["model", "variant", "images_per_s", "vs_fp32", "peak_mib"]
        print_table(results["train"], columns, "training step (SGD, CCNet loss)")
    if "infer" in args.parts:
        results["infer"] = bench_infer(args)
        columns = ["mode", "dtype", "images_per_s", "peak_mib"]
        print_table(results["infer"], columns, f"inference at {args.infer_size}")
    results["measured"] = check_targets(results.get("op", []), results.get("train", []))
    results["targets"] = TARGETS
    print("\npublished anchors:")
    for name, value in ANCHORS.items():
        print(f"  {name}: {value}")
    print("measured against targets:", results["measured"], TARGETS)
    write_json(args.out, NAME, results)
    return results


__all__ = ["ANCHORS", "TARGETS", "einsum_cca", "main"]
