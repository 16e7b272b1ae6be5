"""Criss-cross attention cost: our op against the batched-matmul formulation; RCCA vs non-local.

Part 1 runs ``criss_cross_attention`` and the straightforward formulation (row and column
energies by bmm on permuted contiguous copies, -inf on the duplicated centre, one softmax over
their concatenation, aggregation by bmm: the official pure-PyTorch approach) side by side on
contiguous and channels_last inputs: forward+backward time (alternating medians), bytes kept
for backward (all storages, and beyond the inputs the caller holds anyway) and forward FLOPs.
``ours`` is the default (``lines``) path; ``fused`` the op with ``kernel="fused"`` (per-axis
attention calls merged by their log-sum-exps; ``fused_vs_ours`` > 1 means fused is faster).
Its CPU kernel is invisible to torch's FLOP counter, so it has no FLOP column.
Part 2 compares RCCA (one CrissCrossAttention applied R times, shared weights) with one
NonLocalBlock. Targets: op bytes <= 0.25x, >= 1.3x faster on channels_last and not slower on
contiguous inputs; RCCA R=2 <= 0.17x the non-local FLOPs, >= 3x fewer bytes, >= 5x faster.
Part 3 (video, ``--dims 3``) compares 3D RCCA (CrissCrossAttention3d: lines along T, H and W;
R=2 and R=3) with a space-time NonLocalBlock (all T*H*W positions) on one clip, default
1x512x5x64x128 (5 frames of 512x1024 at output stride 8). Its non-local attention is
(T*H*W)^2: 6.7 GB in fp32 at that size, about 3x that at its peak; it is timed only when its
estimated peak fits ``--memory-budget-gb``, otherwise its row gives FLOPs (counted on meta
tensors) and bytes kept by formula and says why it was skipped. No targets for part 3.
``--dims 2`` runs parts 1-2, ``--dims 3`` part 3, ``--dims both`` (default) all three.

On a shared, oversubscribed CPU, OpenMP threads that spin at every barrier wait for each
other's time slices, which swamps the measurement; run with ``--threads 1`` or with
``OMP_WAIT_POLICY=PASSIVE`` in the environment (both are recorded in the JSON).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from src.bench.common import (
    base_parser,
    forward_flops,
    print_table,
    saved_tensor_bytes,
    time_alternating,
    write_json,
)
from src.models.attention import (
    CrissCrossAttention,
    CrissCrossAttention3d,
    NonLocalBlock,
    criss_cross_attention,
)

fused_cca = partial(criss_cross_attention, kernel="fused")

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
MIB = 2**20
GIB = 2**30
DIMS = ("2", "3", "both")
TARGETS = {
    "op_bytes_ratio_max": 0.25,
    "op_speedup_channels_last_min": 1.3,
    "op_speedup_contiguous_min": 1.0,
    "rcca_flops_ratio_max": 0.17,
    "rcca_bytes_reduction_min": 3.0,
    "rcca_speedup_min": 5.0,
}


def batched_matmul_cca(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Reference contender: criss-cross attention as concatenated row/column bmm energies.

    Every line is made a contiguous copy first, the centre is masked with -inf in the column
    energies, and one softmax runs over the concatenation ``[column | row]``.
    """
    b, _, h, w = query.shape

    def columns(x: Tensor) -> Tensor:  # (B*W, C, H)
        return x.permute(0, 3, 1, 2).contiguous().view(b * w, -1, h)

    def rows(x: Tensor) -> Tensor:  # (B*H, C, W)
        return x.permute(0, 2, 1, 3).contiguous().view(b * h, -1, w)

    idx = torch.arange(h, device=query.device)
    centre = idx[:, None] == idx[None, :]
    energy_col = torch.bmm(columns(query).transpose(1, 2), columns(key))
    energy_col = energy_col.masked_fill(centre, float("-inf")).view(b, w, h, h)
    energy_row = torch.bmm(rows(query).transpose(1, 2), rows(key)).view(b, h, w, w)
    attn = torch.softmax(torch.cat([energy_col.permute(0, 2, 1, 3), energy_row], dim=3), dim=3)
    attn_col = attn[..., :h].permute(0, 2, 1, 3).contiguous().view(b * w, h, h)
    attn_row = attn[..., h:].contiguous().view(b * h, w, w)
    out_col = torch.bmm(columns(value), attn_col.transpose(1, 2)).view(b, w, -1, h)
    out_row = torch.bmm(rows(value), attn_row.transpose(1, 2)).view(b, h, -1, w)
    return out_col.permute(0, 2, 3, 1) + out_row.permute(0, 2, 1, 3)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = base_parser("attention", __doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", help="square feature map sizes")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--key-channels", type=int, help="query/key channels (default 64)")
    parser.add_argument("--channels", type=int, help="value / module channels (default 512)")
    parser.add_argument("--rcca-size", type=int, help="RCCA vs non-local map size (default 97)")
    parser.add_argument("--recurrence", type=int, default=2, help="RCCA recurrence R")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--dims",
        choices=DIMS,
        default="both",
        help="2: the op and RCCA vs non-local on images; 3: 3D RCCA vs non-local on a clip",
    )
    parser.add_argument(
        "--clip", type=int, nargs=3, metavar=("T", "H", "W"), help="3D clip (default 5 64 128)"
    )
    parser.add_argument(
        "--recurrence-3d",
        type=int,
        nargs="+",
        default=[2, 3],
        metavar="R",
        help="3D RCCA recurrences (default 2 3)",
    )
    parser.add_argument(
        "--memory-budget-gb",
        type=float,
        help="time the 3D non-local only if its estimated peak fits (GiB; default: half the "
        "available memory, 80%% of the free GPU memory on cuda)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    args = parser.parse_args(argv)
    quick = args.quick
    args.sizes = args.sizes or ([8, 13] if quick else [24, 48, 64, 97, 128])
    args.key_channels = args.key_channels or (8 if quick else 64)
    args.channels = args.channels or (32 if quick else 512)
    args.rcca_size = args.rcca_size or (12 if quick else 97)
    args.clip = tuple(args.clip or ((3, 6, 8) if quick else (5, 64, 128)))
    if min(args.clip) < 1 or min(args.recurrence_3d) < 1:
        parser.error("--clip sizes and --recurrence-3d must be >= 1")
    return args


def _fwd_bwd(fn: Callable[[], Tensor], grad: Tensor) -> Callable[[], None]:
    """A closure running ``fn`` forward and backward with a fixed output gradient."""

    def run() -> None:
        fn().backward(grad)

    return run


def _inputs(args: argparse.Namespace, size: int, fmt: torch.memory_format) -> list[Tensor]:
    """Query, key, value (leaves requiring grad) and an output gradient in one layout."""
    dtype, device = DTYPES[args.dtype], torch.device(args.device)
    shapes = [(1, args.key_channels), (1, args.key_channels), (1, args.channels)]
    tensors = [torch.randn(*s, size, size, device=device, dtype=dtype) for s in shapes]
    tensors.append(torch.randn(1, args.channels, size, size, device=device, dtype=dtype))
    tensors = [t.contiguous(memory_format=fmt) for t in tensors]
    for t in tensors[:3]:
        t.requires_grad_(True)
    return tensors


def bench_op(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows of the op comparison: one per (size, layout), ours (each path) against the bmm
    formulation."""
    impls = {"naive": batched_matmul_cca, "ours": criss_cross_attention, "fused": fused_cca}
    rows = []
    for size in args.sizes:
        torch.manual_seed(size)
        runs, cases = {}, {}
        for layout, fmt in LAYOUTS.items():
            q, k, v, grad = _inputs(args, size, fmt)
            cases[layout] = (q, k, v)
            for name, impl in impls.items():
                runs[f"{name}/{layout}"] = _fwd_bwd(partial(impl, q, k, v), grad)
        seconds = time_alternating(runs, args.repeats, args.warmup, args.device)
        for layout, (q, k, v) in cases.items():
            row: dict[str, Any] = {"size": size, "layout": layout}
            for name, impl in impls.items():
                call = partial(impl, q, k, v)
                row[f"{name}_ms"] = seconds[f"{name}/{layout}"] * 1e3
                row[f"{name}_mib"] = saved_tensor_bytes(call) / MIB
                row[f"{name}_extra_mib"] = saved_tensor_bytes(call, exclude=(q, k, v)) / MIB
                if name != "fused":  # ATen's CPU attention kernel is not counted
                    row[f"{name}_gflops"] = forward_flops(call) / 1e9
            with torch.no_grad():
                ref = batched_matmul_cca(q, k, v).float()
                row["max_abs_err"] = (criss_cross_attention(q, k, v).float() - ref).abs().max()
                row["max_abs_err"] = row["max_abs_err"].item()
                row["fused_max_abs_err"] = (fused_cca(q, k, v).float() - ref).abs().max().item()
            row["speedup"] = row["naive_ms"] / row["ours_ms"]
            row["fused_vs_ours"] = row["ours_ms"] / row["fused_ms"]
            row["bytes_ratio"] = row["ours_mib"] / row["naive_mib"]
            row["extra_bytes_ratio"] = row["ours_extra_mib"] / row["naive_extra_mib"]
            rows.append(row)
    return rows


def bench_rcca(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows for RCCA (R shared applications) and one non-local block, with ratios."""
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    torch.manual_seed(0)
    cca = CrissCrossAttention(args.channels).to(device, dtype)
    nonlocal_block = NonLocalBlock(args.channels).to(device, dtype)
    with torch.no_grad():  # trained-looking values: gamma and the BN scale start at 0
        cca.gamma.fill_(0.5)
        nonlocal_block.norm.weight.fill_(1.0)
    shape = (1, args.channels, args.rcca_size, args.rcca_size)
    x = torch.randn(*shape, device=device, dtype=dtype, requires_grad=True)
    grad = torch.randn(*shape, device=device, dtype=dtype)

    def rcca() -> Tensor:
        out = x
        for _ in range(args.recurrence):
            out = cca(out)
        return out

    contenders: dict[str, tuple[nn.Module, Callable[[], Tensor]]] = {
        f"rcca R={args.recurrence}": (cca, rcca),
        "nonlocal": (nonlocal_block, lambda: nonlocal_block(x)),
    }
    seconds = time_alternating(
        {k: _fwd_bwd(fn, grad) for k, (_, fn) in contenders.items()},
        args.repeats,
        args.warmup,
        args.device,
    )
    rows = []
    for name, (module, fn) in contenders.items():
        module.zero_grad(set_to_none=True)
        rows.append(
            {
                "module": name,
                "gflops": forward_flops(fn) / 1e9,
                "saved_mib": saved_tensor_bytes(fn) / MIB,
                "extra_mib": saved_tensor_bytes(fn, exclude=(x,)) / MIB,
                "fwd_bwd_ms": seconds[name] * 1e3,
            }
        )
    ours, other = rows
    ours["flops_ratio"] = ours["gflops"] / other["gflops"]
    ours["bytes_reduction"] = other["saved_mib"] / ours["saved_mib"]
    ours["speedup"] = other["fwd_bwd_ms"] / ours["fwd_bwd_ms"]
    return rows


def available_memory_bytes(device: str) -> int:
    """Memory the process may still take: free GPU memory, or the host's MemAvailable."""
    if torch.device(device).type == "cuda":
        return torch.cuda.mem_get_info(torch.device(device))[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory_budget_bytes(args: argparse.Namespace) -> int:
    """``--memory-budget-gb``, or half the available host memory (80% of free GPU memory)."""
    if args.memory_budget_gb is not None:
        return int(args.memory_budget_gb * GIB)
    share = 0.8 if torch.device(args.device).type == "cuda" else 0.5
    return int(share * available_memory_bytes(args.device))


def nonlocal_saved_bytes(block: NonLocalBlock, shape: tuple[int, ...], dtype: torch.dtype) -> int:
    """Bytes a training-mode NonLocalBlock keeps for backward on an input of ``shape``, by
    formula (what :func:`saved_tensor_bytes` measures, checked by the tests at a small size).

    The input x (B, C, N) read by theta/phi/g; theta, phi, g and y (B, C/2, N each); the out
    conv's output (B, C, N) read by the BatchNorm; the softmax output (B, N, N), which the
    aggregation also keeps; the four conv weights; the BatchNorm's weight, running stats and
    its saved mean and inverse std (fp32).
    """
    b, c, n = shape[0], shape[1], math.prod(shape[2:])
    inner = block.theta.out_channels
    item = torch.empty((), dtype=dtype).element_size()
    activations = b * (2 * c * n + 4 * inner * n + n * n) * item
    weights = sum(conv.weight.numel() for conv in (block.theta, block.phi, block.g, block.out))
    return activations + (weights + 3 * c) * item + 2 * c * 4


def nonlocal_peak_bytes(block: NonLocalBlock, shape: tuple[int, ...], dtype: torch.dtype) -> int:
    """Estimated peak of a non-local forward+backward: the bytes kept plus two more (B, N, N)
    (the energies beside the softmax in forward; their gradient and the softmax output's in
    backward)."""
    b, n = shape[0], math.prod(shape[2:])
    item = torch.empty((), dtype=dtype).element_size()
    return nonlocal_saved_bytes(block, shape, dtype) + 2 * b * n * n * item


def meta_forward_flops(
    module: nn.Module, fn: Callable[[nn.Module, Tensor], Tensor], x: Tensor
) -> int:
    """Forward FLOPs of ``fn(module, x)`` counted on meta tensors: shapes only, nothing
    computed or allocated (the 3D non-local's energies need not fit in memory)."""
    meta_module = copy.deepcopy(module).to("meta")
    return forward_flops(lambda: fn(meta_module, torch.empty_like(x, device="meta")))


def _recurrent(module: nn.Module, x: Tensor, recurrence: int) -> Tensor:
    for _ in range(recurrence):
        x = module(x)
    return x


def bench_rcca_3d(args: argparse.Namespace, budget: int) -> list[dict[str, Any]]:
    """Rows for 3D RCCA (each R of ``--recurrence-3d``, one shared CrissCrossAttention3d) and
    a space-time non-local block on one clip (1, C, T, H, W); RCCA rows get ratios against it.

    The non-local block is timed and measured only when its estimated peak fits ``budget``
    (bytes); otherwise its bytes come from :func:`nonlocal_saved_bytes` and ``note`` says so.
    """
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    torch.manual_seed(0)
    cca = CrissCrossAttention3d(args.channels).to(device, dtype)
    nonlocal_block = NonLocalBlock(args.channels, dims=3).to(device, dtype)
    with torch.no_grad():  # trained-looking values: gamma and the BN scale start at 0
        cca.gamma.fill_(0.5)
        nonlocal_block.norm.weight.fill_(1.0)
    shape = (1, args.channels, *args.clip)
    x = torch.randn(*shape, device=device, dtype=dtype, requires_grad=True)
    grad = torch.randn(*shape, device=device, dtype=dtype)

    peak = nonlocal_peak_bytes(nonlocal_block, shape, dtype)
    nonlocal_fits = peak <= budget
    contenders: dict[str, tuple[nn.Module, Callable[[nn.Module, Tensor], Tensor]]] = {
        f"3d rcca R={r}": (cca, partial(_recurrent, recurrence=r)) for r in args.recurrence_3d
    }
    contenders["3d nonlocal"] = (nonlocal_block, lambda m, t: m(t))
    timed = {k: v for k, v in contenders.items() if k != "3d nonlocal" or nonlocal_fits}
    seconds = time_alternating(
        {k: _fwd_bwd(partial(fn, module, x), grad) for k, (module, fn) in timed.items()},
        args.repeats,
        args.warmup,
        args.device,
    )
    rows = []
    for name, (module, fn) in contenders.items():
        module.zero_grad(set_to_none=True)
        row: dict[str, Any] = {"module": name, "clip": "x".join(map(str, shape))}
        row["gflops"] = meta_forward_flops(module, fn, x) / 1e9
        if name in timed:
            call = partial(fn, module, x)
            row["saved_mib"] = saved_tensor_bytes(call) / MIB
            row["extra_mib"] = saved_tensor_bytes(call, exclude=(x,)) / MIB
            row["fwd_bwd_ms"] = seconds[name] * 1e3
            row["note"] = ""
        else:
            saved = nonlocal_saved_bytes(nonlocal_block, shape, dtype)
            row["saved_mib"] = saved / MIB
            row["extra_mib"] = (saved - x.numel() * x.element_size()) / MIB
            row["fwd_bwd_ms"] = None
            row["note"] = (
                f"not timed: needs ~{peak / GIB:.3g} GiB > budget {budget / GIB:.3g} GiB; "
                "bytes by formula"
            )
        if module is nonlocal_block:
            row["peak_gib_estimate"] = peak / GIB
        rows.append(row)
    other = rows[-1]
    for ours in rows[:-1]:
        ours["flops_ratio"] = ours["gflops"] / other["gflops"]
        ours["bytes_reduction"] = other["saved_mib"] / ours["saved_mib"]
        if other["fwd_bwd_ms"] is not None:
            ours["speedup"] = other["fwd_bwd_ms"] / ours["fwd_bwd_ms"]
    return rows


def check_targets(op_rows: list[dict], rcca_rows: list[dict]) -> dict[str, bool]:
    """Whether each target holds (op targets checked on every measured size)."""
    cl = [r for r in op_rows if r["layout"] == "channels_last"]
    contiguous = [r for r in op_rows if r["layout"] == "contiguous"]
    ours = rcca_rows[0]
    return {
        "op_bytes_ratio": all(r["bytes_ratio"] <= TARGETS["op_bytes_ratio_max"] for r in op_rows),
        "op_extra_bytes_ratio": all(
            r["extra_bytes_ratio"] <= TARGETS["op_bytes_ratio_max"] for r in op_rows
        ),
        "op_speedup_channels_last": all(
            r["speedup"] >= TARGETS["op_speedup_channels_last_min"] for r in cl
        ),
        "op_speedup_contiguous": all(
            r["speedup"] >= TARGETS["op_speedup_contiguous_min"] for r in contiguous
        ),
        "rcca_flops_ratio": ours["flops_ratio"] <= TARGETS["rcca_flops_ratio_max"],
        "rcca_bytes_reduction": ours["bytes_reduction"] >= TARGETS["rcca_bytes_reduction_min"],
        "rcca_speedup": ours["speedup"] >= TARGETS["rcca_speedup_min"],
    }


def main(argv: list[str]) -> dict:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads or threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)


def run(args: argparse.Namespace) -> dict:
    """Run the parts ``--dims`` asks for, print their tables and the targets, write the JSON."""
    payload: dict[str, Any] = {
        "device": args.device,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "key_channels": args.key_channels,
        "channels": args.channels,
        "recurrence": args.recurrence,
        "dims": args.dims,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    if args.dims in ("2", "both"):
        payload.update(run_2d(args))
    if args.dims in ("3", "both"):
        payload.update(run_3d(args))
    write_json(args.out, "attention", payload)
    return payload


def run_2d(args: argparse.Namespace) -> dict[str, Any]:
    """Parts 1 and 2: the op against the bmm formulation, RCCA against non-local (images)."""
    op_rows = bench_op(args)
    print_table(
        op_rows,
        [
            "size",
            "layout",
            "naive_ms",
            "ours_ms",
            "speedup",
            "fused_ms",
            "fused_vs_ours",
            "naive_mib",
            "ours_mib",
            "bytes_ratio",
            "naive_extra_mib",
            "ours_extra_mib",
            "extra_bytes_ratio",
            "naive_gflops",
            "ours_gflops",
            "max_abs_err",
            "fused_mib",
            "fused_max_abs_err",
        ],
        f"criss_cross_attention vs batched-matmul formulation, forward+backward, {args.device} "
        f"{args.dtype}, {torch.get_num_threads()} thread(s), q/k 1x{args.key_channels}xSxS, "
        f"v 1x{args.channels}xSxS (*_extra_mib: kept beyond the inputs)",
    )
    rcca_rows = bench_rcca(args)
    print_table(
        rcca_rows,
        [
            "module",
            "gflops",
            "saved_mib",
            "extra_mib",
            "fwd_bwd_ms",
            "flops_ratio",
            "bytes_reduction",
            "speedup",
        ],
        f"RCCA (R={args.recurrence}, shared weights) vs non-local block on "
        f"1x{args.channels}x{args.rcca_size}x{args.rcca_size}, {args.device} {args.dtype}, "
        f"{torch.get_num_threads()} thread(s)",
    )
    targets = check_targets(op_rows, rcca_rows)
    print("\ntargets:", ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in targets.items()))
    return {
        "op": op_rows,
        "rcca_vs_nonlocal": rcca_rows,
        "targets": TARGETS,
        "targets_met": targets,
    }


def run_3d(args: argparse.Namespace) -> dict[str, Any]:
    """Part 3: 3D RCCA (each R) against a space-time non-local block on one clip."""
    budget = memory_budget_bytes(args)
    rows = bench_rcca_3d(args, budget)
    t, h, w = args.clip
    print_table(
        [{k: v for k, v in row.items() if v is not None} for row in rows],
        [
            "module",
            "gflops",
            "saved_mib",
            "extra_mib",
            "fwd_bwd_ms",
            "flops_ratio",
            "bytes_reduction",
            "speedup",
            "note",
        ],
        f"3D RCCA (shared weights) vs space-time non-local block on a clip "
        f"1x{args.channels}x{t}x{h}x{w} (T*H*W = {t * h * w} positions), {args.device} "
        f"{args.dtype}, {torch.get_num_threads()} thread(s); GFLOPs forward, bytes kept for "
        "backward, time forward+backward",
    )
    return {
        "clip": list(args.clip),
        "recurrence_3d": list(args.recurrence_3d),
        "memory_budget_gib": budget / GIB,
        "rcca_vs_nonlocal_3d": rows,
    }
