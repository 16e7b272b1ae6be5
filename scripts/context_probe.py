"""Standalone probe of the context toy: train CCNet at several recurrences, print val mIoU.

A plain PyTorch loop (no Lightning, no Hydra) with the app's pieces — CCNet, CCNetLoss, the
SGD parameter groups and poly decay of SegmentationModule, the data module's transforms —
so the design of ``src/data/context_toy.py`` can be checked quickly against the target of
``make sweep`` (R=2 at least 10 mIoU points above R=0, R=1 in between); the defaults mirror
conf/experiment/context_toy.yaml. Besides mIoU it reports pixel accuracy on the shapes that
share the key's row/column band (``aligned``) and on those that do not (``off-band``): R=1
should win on the first, only R=2 on both.

    PYTHONPATH=. .venv/bin/python scripts/context_probe.py --recurrence 0 1 2

``--sweep DIR`` trains nothing: it scores the best checkpoint of every job of a finished
``make sweep`` (its multirun folder) the same way, each job's model and data rebuilt from the
config the job saved.

    PYTHONPATH=. .venv/bin/python scripts/context_probe.py \
        --sweep logs/train/multiruns/context_toy/<time>
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from src.app.checkpoint import load_checkpoint, net_from_checkpoint
from src.app.sweep_summary import load_runs
from src.core.losses import CCNetLoss
from src.core.optim import PolyDecay, parameter_groups
from src.data.base import IGNORE_INDEX
from src.data.context_toy import ContextToyDataset, draw
from src.data.transforms import eval_transform, train_transform
from src.models.ccnet import CCNet


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recurrence", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1000, help="optimiser steps per run")
    parser.add_argument("--backbone", default="test_resnet")
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--aux-channels", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--head-lr-mult", type=float, default=1.0)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--train-samples", type=int, default=4000)
    parser.add_argument("--val-samples", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--data", nargs="*", default=[], help="dataset kwargs as key=value")
    parser.add_argument("--json", type=Path, help="append one JSON line per run to this file")
    parser.add_argument("--sweep", type=Path, help="score a finished sweep's checkpoints instead")
    return parser.parse_args()


def dataset_kwargs(pairs: list[str]) -> dict:
    """``key=value`` pairs as dataset keyword arguments (values parsed as JSON when possible)."""
    out = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def build_data(args: argparse.Namespace) -> tuple[ContextToyDataset, ContextToyDataset]:
    """Train split with the data module's training pipeline minus scale/crop/photometric
    (the key's position and colour matter), val split with the eval pipeline."""
    size = (args.image_size, args.image_size)
    extra = dataset_kwargs(args.data)
    train = ContextToyDataset(
        split="train",
        num_samples=args.train_samples,
        image_size=size,
        seed=args.seed,
        transform=train_transform(size, scale_range=(1.0, 1.0), photometric=False),
        **extra,
    )
    val = ContextToyDataset(
        split="val",
        num_samples=args.val_samples,
        image_size=size,
        seed=args.seed,
        transform=eval_transform(),
        **extra,
    )
    return train, val


def band_masks(dataset: ContextToyDataset, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the aligned and the off-band shapes of one sample."""
    layout = dataset.layout(index)
    aligned = np.zeros(dataset.image_size, dtype=np.uint8)
    off = np.zeros(dataset.image_size, dtype=np.uint8)
    for shape in layout.shapes:
        draw(aligned if shape.aligned else off, shape)
    return aligned > 0, off > 0


@torch.no_grad()
def evaluate(model: CCNet, val: ContextToyDataset, num_classes: int) -> dict[str, float]:
    """Whole-image mIoU (classes absent from target and prediction left out, as the app does)
    and pixel accuracy on aligned and off-band shapes."""
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    hits = {"aligned": [0, 0], "off_band": [0, 0]}
    for index in range(len(val)):
        sample = val[index]
        image, mask = sample["image"][None], sample["mask"]
        logits = model(image)["out"]
        logits = F.interpolate(logits, size=mask.shape, mode="bilinear", align_corners=False)
        pred = logits.argmax(1)[0]
        valid = mask != IGNORE_INDEX
        confusion += torch.bincount(
            mask[valid] * num_classes + pred[valid], minlength=num_classes**2
        ).view(num_classes, num_classes)
        correct = (pred == mask).numpy()
        for name, region in zip(hits, band_masks(val, index)):
            hits[name][0] += int(correct[region].sum())
            hits[name][1] += int(region.sum())
    tp = confusion.diag().double()
    union = confusion.sum(0).double() + confusion.sum(1).double() - tp
    iou = tp / union
    result = {"mIoU": 100 * float(iou[union > 0].mean())}
    result.update({f"IoU_{i}": 100 * float(v) for i, v in enumerate(iou)})
    result.update({f"acc_{k}": 100 * h / max(n, 1) for k, (h, n) in hits.items()})
    return result


def run(args: argparse.Namespace, recurrence: int) -> dict[str, float]:
    """Train one model for ``args.steps`` steps and evaluate it."""
    torch.manual_seed(args.seed)
    train, val = build_data(args)
    loader = DataLoader(
        train,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )
    model = CCNet(
        train.num_classes,
        backbone=args.backbone,
        context="rcca",
        recurrence=recurrence,
        channels=args.channels,
        aux_channels=args.aux_channels,
    )
    criterion = CCNetLoss()
    groups = parameter_groups(model, args.lr, args.weight_decay, args.head_lr_mult)
    optimizer = torch.optim.SGD(groups, lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, PolyDecay(args.steps))
    step, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    model.train()
    while step < args.steps:
        for batch in loader:
            losses = criterion(model(batch["image"]), batch["mask"])
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step % 50 == 0 or step == args.steps:
                print(
                    f"  R={recurrence} step {step}: loss {losses['loss'].item():.3f} "
                    f"gamma {model.head.context.cca.gamma.item():+.4f} "
                    f"({time.perf_counter() - wall0:.0f} s)",
                    flush=True,
                )
            if step == args.steps:
                break
    train_wall, train_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    wall1 = time.perf_counter()
    result = evaluate(model, val, train.num_classes)
    result.update(
        recurrence=recurrence,
        steps=args.steps,
        train_wall_s=train_wall,
        train_cpu_s=train_cpu,
        val_wall_s=time.perf_counter() - wall1,
        gamma=float(model.head.context.cca.gamma.detach()),
    )
    return result


def score_sweep(sweep_dir: Path) -> list[dict]:
    """Evaluate the best checkpoint of every job under ``sweep_dir`` (one dict per job)."""
    results = []
    for job in load_runs(sweep_dir):
        job_dir = sweep_dir / job["job"]
        config = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
        checkpoint_path = job.get("best_model_path") or job.get("last_model_path")
        net = net_from_checkpoint(
            config.model, load_checkpoint(checkpoint_path), path=checkpoint_path
        )
        dataset = instantiate(config.data.dataset)
        val = dataset(split=config.data.val_split, transform=eval_transform())
        result = evaluate(net, val, val.num_classes)
        result.update(
            job=job["job"],
            recurrence=int(config.model.recurrence),
            seed=config.get("seed"),
            checkpoint=str(checkpoint_path),
        )
        results.append(result)
    return results


def append_json(path: Path | None, result: dict) -> None:
    """Append ``result`` as one JSON line to ``path`` (nothing when no --json was given)."""
    if path is not None:
        with path.open("a") as f:
            f.write(json.dumps(result) + "\n")


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.sweep:
        for result in score_sweep(args.sweep):
            print(
                f"job {result['job']} (R={result['recurrence']}, seed {result['seed']}): "
                f"mIoU {result['mIoU']:.1f}  aligned acc {result['acc_aligned']:.1f}  "
                f"off-band acc {result['acc_off_band']:.1f}",
                flush=True,
            )
            append_json(args.json, result)
        return
    print(
        f"threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}, "
        f"backbone {args.backbone}, channels {args.channels}, steps {args.steps}, "
        f"batch {args.batch_size}, image {args.image_size}, data {args.data}",
        flush=True,
    )
    for recurrence in args.recurrence:
        result = run(args, recurrence)
        result.update(backbone=args.backbone, channels=args.channels, data=args.data)
        print(
            f"R={recurrence}: mIoU {result['mIoU']:.1f}  aligned acc {result['acc_aligned']:.1f}  "
            f"off-band acc {result['acc_off_band']:.1f}  gamma {result['gamma']:.3f}  "
            f"train {result['train_wall_s']:.0f} s wall / {result['train_cpu_s']:.0f} s cpu, "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        append_json(args.json, result)


if __name__ == "__main__":
    main()
