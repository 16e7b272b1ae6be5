"""Images/s of the Cityscapes training pipeline (decode → label map → scale/crop/flip/photometric
→ normalise) through a DataLoader with 0, 1 and 2 workers, on full-size fake Cityscapes PNGs."""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from src.bench.common import base_parser, print_table, time_alternating, write_json
from src.data.cityscapes import CityscapesDataset
from src.data.fake import write_fake_cityscapes
from src.tasks.semantic.datamodule import SegmentationDataModule


def _datamodule(root: Path, crop: tuple[int, int], batch_size: int, workers: int):
    """The Cityscapes training data module of conf/data/cityscapes.yaml, on ``root``."""
    return SegmentationDataModule(
        dataset=partial(CityscapesDataset),
        root=str(root),
        crop_size=crop,
        batch_size=batch_size,
        num_workers=workers,
        persistent_workers=True,  # worker start-up is paid once, in the warm-up pass
        seed=0,
    )


def _stage_times(dataset: CityscapesDataset) -> dict[str, float]:
    """Median milliseconds per image of reading (decode + label lookup) and augmenting."""
    read, augment = [], []
    for index in range(len(dataset)):
        start = time.perf_counter()
        image, mask, _ = dataset.read(index)
        mid = time.perf_counter()
        dataset.transform(image=image, mask=mask)
        end = time.perf_counter()
        read.append(mid - start)
        augment.append(end - mid)
    return {
        "read_ms": 1000 * statistics.median(read),
        "augment_ms": 1000 * statistics.median(augment),
    }


def main(argv: list[str]) -> dict[str, Any]:
    parser = base_parser("data", __doc__)
    parser.add_argument("--images", type=int, default=8, help="fake training images to write")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: small images, 0 and 1 workers"
    )
    args = parser.parse_args(argv)
    image_size, crop = (1024, 2048), (769, 769)
    if args.quick:
        image_size, crop = (96, 192), (64, 64)
        args.images, args.workers, args.repeats, args.warmup = 4, [0, 1], 1, 1

    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        cities = 2  # the fake layout writes two cities per split
        write_fake_cityscapes(
            tmp, image_size, images_per_city=math.ceil(args.images / cities), splits=("train",)
        )
        modules = {w: _datamodule(Path(tmp), crop, args.batch_size, w) for w in args.workers}
        loaders = {w: dm.train_dataloader() for w, dm in modules.items()}
        per_pass = len(next(iter(loaders.values()))) * args.batch_size

        def run(loader) -> None:
            for _ in loader:
                pass

        contenders = {f"{w} workers": partial(run, loader) for w, loader in loaders.items()}
        seconds = time_alternating(contenders, args.repeats, args.warmup, "cpu")
        stages = _stage_times(modules[args.workers[0]].dataset_for("train"))
        del contenders, loaders  # stop the persistent workers

    rows = [
        {
            "workers": w,
            "images/s": per_pass / seconds[f"{w} workers"],
            "ms/image": 1000 * seconds[f"{w} workers"] / per_pass,
        }
        for w in args.workers
    ]
    title = (
        f"Cityscapes training pipeline: {image_size[0]}x{image_size[1]} PNG → "
        f"{crop[0]}x{crop[1]} crop, batch {args.batch_size}, {per_pass} images per pass"
    )
    print_table(rows, ["workers", "images/s", "ms/image"], title)
    print_table(
        [
            {"stage": "read (decode + label map)", "ms/image": stages["read_ms"]},
            {"stage": "augment (train transform)", "ms/image": stages["augment_ms"]},
        ],
        ["stage", "ms/image"],
        "one process, per stage (median)",
    )
    payload = {
        "image_size": list(image_size),
        "crop_size": list(crop),
        "batch_size": args.batch_size,
        "images_per_pass": per_pass,
        "repeats": args.repeats,
        "quick": args.quick,
        "rows": rows,
        "stages": stages,
    }
    write_json(args.out, "data", payload)
    return payload
