"""Model cost: parameters, forward FLOPs and bytes kept for backward of CCNet per context head.

Contenders: the baseline (``none``, RCCA convs with R = 0), RCCA with R = 1, 2, 3 and the
non-local head, each at batch 1 in training mode (aux head on), with increments over the
baseline. The paper (769x769, ResNet-101): RCCA R=2 +16.5 GFLOPs / +127 MB, non-local
+108 GFLOPs / +1411 MB.
"""

from __future__ import annotations

import argparse
import multiprocessing
from typing import Any

import torch

from src.bench.common import (
    base_parser,
    forward_flops,
    print_table,
    saved_tensor_bytes,
    time_alternating,
    write_json,
)
from src.models.ccnet import CCNet

CONTENDERS: dict[str, dict[str, Any]] = {
    "none": {"context": "none"},
    "rcca R=1": {"context": "rcca", "recurrence": 1},
    "rcca R=2": {"context": "rcca", "recurrence": 2},
    "rcca R=3": {"context": "rcca", "recurrence": 3},
    "nonlocal": {"context": "nonlocal"},
}
PAPER_INCREMENTS = {  # Huang et al., 769x769 input, over the baseline
    "rcca R=2": {"gflops": 16.5, "mb": 127},
    "nonlocal": {"gflops": 108, "mb": 1411},
}
MIB = 2**20


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = base_parser("model", __doc__.splitlines()[0])
    parser.add_argument("--backbone", help="timm backbone name (default resnet101c)")
    parser.add_argument("--size", type=int, help="square input size in pixels (default 769)")
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--channels", type=int, default=512, help="context head channels")
    parser.add_argument("--time", action="store_true", help="also time forward + backward")
    parser.add_argument(
        "--quick", action="store_true", help="small smoke run: defaults to resnet18d at 129 px"
    )
    parser.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure each contender in a fresh process, so the CPU allocator's leftovers of "
        "one do not add to the next one's peak (default: on, off with --quick)",
    )
    args = parser.parse_args(argv)
    default_backbone, default_size = ("resnet18d", 129) if args.quick else ("resnet101c", 769)
    args.backbone = args.backbone or default_backbone
    args.size = args.size or default_size
    if args.isolate is None:
        args.isolate = not args.quick
    return args


def build(args: argparse.Namespace, name: str) -> CCNet:
    """The contender ``name`` with a fixed seed, in training mode, on ``args.device``."""
    torch.manual_seed(0)
    model = CCNet(
        args.num_classes,
        backbone=args.backbone,
        channels=args.channels,
        aux=True,
        **CONTENDERS[name],
    )
    return model.to(args.device).train()


def measure(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """Parameters, forward GFLOPs and MiB kept for backward of one contender (batch 1)."""
    model = build(args, name)
    torch.manual_seed(1)
    images = torch.randn(1, 3, args.size, args.size, device=args.device)
    params = sum(p.numel() for p in model.parameters())
    flops = forward_flops(lambda: model(images))
    saved = saved_tensor_bytes(lambda: model(images))
    return {"model": name, "params": params, "gflops": flops / 1e9, "saved_mib": saved / MIB}


def measure_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Measure every contender, each in its own spawned process when ``args.isolate``."""
    if not args.isolate:
        return [measure(args, name) for name in CONTENDERS]
    context = multiprocessing.get_context("spawn")
    rows = []
    with context.Pool(1, maxtasksperchild=1) as pool:
        for name in CONTENDERS:
            rows.append(pool.apply(measure, (args, name)))
            print(f"measured {name}", flush=True)
    return rows


def time_contenders(args: argparse.Namespace) -> dict[str, float]:
    """Median seconds of one forward + backward per contender, run in alternation."""
    images = torch.randn(1, 3, args.size, args.size, device=args.device)

    def step(model: CCNet):
        def run() -> None:
            sum(o.float().sum() for o in model(images).values()).backward()

        return run

    models = {name: build(args, name) for name in CONTENDERS}
    return time_alternating(
        {k: step(m) for k, m in models.items()}, args.repeats, args.warmup, args.device
    )


def main(argv: list[str]) -> dict:
    args = parse_args(argv)
    rows = measure_all(args)
    base = rows[0]
    for row in rows:
        row["params_M"] = row["params"] / 1e6
        row["d_params"] = row["params"] - base["params"]
        row["d_gflops"] = row["gflops"] - base["gflops"]
        row["d_saved_mib"] = row["saved_mib"] - base["saved_mib"]

    columns = ["model", "params_M", "d_params", "gflops", "d_gflops", "saved_mib", "d_saved_mib"]
    if args.time:
        seconds = time_contenders(args)
        for row in rows:
            row["fwd_bwd_s"] = seconds[row["model"]]
        columns.append("fwd_bwd_s")

    title = (
        f"CCNet-{args.backbone} at {args.size}x{args.size}, batch 1, train mode, aux on "
        f"(increments d_* over 'none')"
    )
    print_table(rows, columns, title)
    print(
        "paper (ResNet-101, 769x769): "
        + "; ".join(
            f"{k} +{v['gflops']} GFLOPs, +{v['mb']} MB" for k, v in PAPER_INCREMENTS.items()
        )
    )
    payload = {
        "backbone": args.backbone,
        "size": args.size,
        "num_classes": args.num_classes,
        "channels": args.channels,
        "device": args.device,
        "rows": rows,
        "paper_increments": PAPER_INCREMENTS,
    }
    write_json(args.out, "model", payload)
    return payload
