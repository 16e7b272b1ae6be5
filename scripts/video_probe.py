"""Score a finished ``make sweep-video`` on the video toy: mIoU and the pixel accuracy on still
and on moving shapes, per job, from each job's best checkpoint and its saved config.

Still shapes are reached by one 3D criss-cross pass (their time line), moving ones only by two
(time line, then the first frame's row); a 2D model can only guess both. The table is printed
and written beside the sweep's own summary as ``motion.{json,md}``.

    PYTHONPATH=. .venv/bin/python scripts/video_probe.py --sweep latest
    PYTHONPATH=. .venv/bin/python scripts/video_probe.py --sweep logs/train/multiruns/<...>/<time>
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.app.checkpoint import load_checkpoint, net_from_checkpoint
from src.app.sweep_summary import load_runs
from src.core.inference import InferenceConfig, predict_logits
from src.data.base import IGNORE_INDEX
from src.data.transforms import eval_transform
from src.data.video_toy import VideoToyDataset

MULTIRUNS = Path("logs/train/multiruns")
REGIONS = {1: "still", 2: "moving"}  # VideoToyDataset.motion_map's values


def latest_sweep(root: Path = MULTIRUNS) -> Path:
    """The newest sweep folder (holding ``multirun.yaml``) under ``root``."""
    sweeps = sorted(root.glob("**/multirun.yaml"), key=lambda p: p.stat().st_mtime)
    if not sweeps:
        raise SystemExit(f"no finished sweep under {root}: run `make sweep-video` first")
    return sweeps[-1].parent


@torch.no_grad()
def score(net: torch.nn.Module, val: VideoToyDataset, batch: int = 16) -> dict[str, float]:
    """mIoU over the classes present (as the app) and pixel accuracy on still/moving shapes."""
    k = val.num_classes
    confusion = torch.zeros(k, k, dtype=torch.long)
    hits = {name: [0, 0] for name in REGIONS.values()}
    config = InferenceConfig.from_config({"mode": "whole"})
    for start in range(0, len(val), batch):
        indices = range(start, min(start + batch, len(val)))
        samples = [val[i] for i in indices]
        clips = torch.stack([s["image"] for s in samples])
        masks = torch.stack([s["mask"] for s in samples])
        predictions = predict_logits(net, clips, config).argmax(1)
        valid = masks != IGNORE_INDEX
        confusion += torch.bincount(masks[valid] * k + predictions[valid], minlength=k * k).view(
            k, k
        )
        for i, index in enumerate(indices):
            motion = torch.from_numpy(val.motion_map(index))
            correct = predictions[i] == masks[i]
            for value, name in REGIONS.items():
                region = motion == value
                hits[name][0] += int(correct[region].sum())
                hits[name][1] += int(region.sum())
    tp = confusion.diag().double()
    union = confusion.sum(0).double() + confusion.sum(1).double() - tp
    result = {"mIoU": 100 * float((tp / union)[union > 0].mean())}
    result.update({f"acc_{name}": 100 * h / max(n, 1) for name, (h, n) in hits.items()})
    return result


def score_sweep(sweep_dir: Path) -> list[dict]:
    """Score the best checkpoint of every finished job under ``sweep_dir``."""
    rows = []
    for job in load_runs(sweep_dir):
        if "failed" in job:
            rows.append({"job": job["job"], "failed": job["failed"]})
            continue
        config = OmegaConf.load(sweep_dir / job["job"] / ".hydra" / "config.yaml")
        path = job.get("best_model_path") or job.get("last_model_path")
        net = net_from_checkpoint(config.model, load_checkpoint(path), path=path).eval()
        factory = instantiate(config.data.dataset)
        val = factory(
            split=config.data.val_split,
            transform=eval_transform(config.data.mean, config.data.std),
            clip=OmegaConf.to_container(config.data.clip),
        )
        row = {
            "job": job["job"],
            "frames": int(config.data.clip.length),
            "R": int(config.model.recurrence),
        }
        row.update({k: round(v, 1) for k, v in score(net, val).items()})
        rows.append(row)
    return rows


def markdown(rows: list[dict], columns: list[str]) -> str:
    """The rows as a Markdown table (numbers as computed: percentages, one decimal)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append(
            "| " + " | ".join(str(row.get(c, row.get("failed", ""))) for c in columns) + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="latest", help="the sweep folder, or 'latest'")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sweep_dir = latest_sweep() if args.sweep == "latest" else Path(args.sweep)
    rows = score_sweep(sweep_dir)
    columns = ["job", "frames", "R", "mIoU", "acc_still", "acc_moving"]
    print(f"video toy sweep {sweep_dir}\n\n{markdown(rows, columns)}")
    (sweep_dir / "motion.json").write_text(json.dumps(rows, indent=2) + "\n")
    (sweep_dir / "motion.md").write_text(markdown(rows, columns))
    print(f"written: {sweep_dir / 'motion.json'}, {sweep_dir / 'motion.md'}")


if __name__ == "__main__":
    main()
