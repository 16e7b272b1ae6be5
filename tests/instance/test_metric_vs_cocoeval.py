"""torchmetrics' MeanAveragePrecision, fed as the module feeds it, equals COCOeval run
directly on the annotation file and loadRes'd detections (boxes and masks)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from src.data.coco_files import load_coco
from src.data.coco_instance import CocoInstanceDataset
from src.tasks.instance.module import IOU_TYPES, coco_map, detections_for_metric, targets_for_metric

# COCOeval.stats in order, as torchmetrics names them.
STAT_KEYS = (
    "map", "map_50", "map_75", "map_small", "map_medium", "map_large",
    "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large",
)  # fmt: skip


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The mask moved by (dy, dx) pixels, what leaves the image is lost."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    ys, xs = slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0))
    src_y, src_x = slice(max(-dy, 0), h - max(dy, 0)), slice(max(-dx, 0), w - max(dx, 0))
    out[ys, xs] = mask[src_y, src_x]
    return out


def _box_of(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def make_detections(dataset: CocoInstanceDataset, seed: int = 0) -> list[dict]:
    """Per image: two shifted copies of every object (crowds too) with jittered boxes, some
    with a wrong class, and random false positives, all with random scores, as the detector
    outputs them (soft masks of shape (N, 1, H, W))."""
    rng = np.random.default_rng(seed)
    num_labels = dataset.num_classes - 1
    outputs = []
    for index in range(len(dataset)):
        _, target, _ = dataset.read(index)
        h, w = target["masks"].shape[1:]  # (0, H, W) for an image without objects
        masks, boxes, labels = [], [], []
        for mask, label in zip(target["masks"], target["labels"]):
            for _ in range(2):
                moved = _shift(mask, *rng.integers(-6, 7, size=2))
                if not moved.any():
                    continue
                masks.append(moved)
                boxes.append(np.array(_box_of(moved)) + rng.uniform(-1.5, 1.5, 4))
                labels.append(
                    int(label) if rng.random() > 0.2 else int(rng.integers(1, num_labels + 1))
                )
        for _ in range(3):  # false positives
            x0, y0 = rng.uniform(0, w - 8), rng.uniform(0, h - 8)
            x1, y1 = x0 + rng.uniform(4, w - x0), y0 + rng.uniform(4, h - y0)
            fp = np.zeros((h, w), np.uint8)
            fp[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = 1
            masks.append(fp)
            boxes.append(np.array([x0, y0, x1, y1]))
            labels.append(int(rng.integers(1, num_labels + 1)))
        soft = np.stack(masks).astype(np.float32) * rng.uniform(0.55, 1.0, (len(masks), 1, 1))
        boxes_t = torch.tensor(np.stack(boxes), dtype=torch.float32)
        boxes_t[:, 0::2] = boxes_t[:, 0::2].clamp(0, w)
        boxes_t[:, 1::2] = boxes_t[:, 1::2].clamp(0, h)
        outputs.append(
            {
                "boxes": boxes_t,
                "scores": torch.tensor(rng.uniform(0.05, 1.0, len(labels)), dtype=torch.float32),
                "labels": torch.tensor(labels, dtype=torch.int64),
                "masks": torch.from_numpy(soft)[:, None],
            }
        )
    return outputs


def coco_results(dataset: CocoInstanceDataset, outputs: list[dict], iou_type: str) -> list:
    """Detections in COCO's results format (category ids, xywh boxes, RLE masks)."""
    results = []
    for image_id, out in zip(dataset.image_ids, outputs):
        binary = (out["masks"][:, 0] > 0.5).numpy().astype(np.uint8)
        for k in range(len(out["labels"])):
            x0, y0, x1, y1 = out["boxes"][k].tolist()
            entry = {
                "image_id": image_id,
                "category_id": dataset.category_ids[int(out["labels"][k]) - 1],
                "score": float(out["scores"][k]),
            }
            if iou_type == "bbox":
                entry["bbox"] = [x0, y0, x1 - x0, y1 - y0]
            else:
                rle = mask_utils.encode(np.asfortranarray(binary[k]))
                entry["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
            results.append(entry)
    return results


def cocoeval_stats(dataset: CocoInstanceDataset, outputs: list[dict], iou_type: str):
    gt = load_coco(dataset.files.ann_file)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(coco_results(dataset, outputs, iou_type))
        evaluator = COCOeval(gt, dt, iouType=iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


@pytest.mark.parametrize("seed", [0, 1])
def test_torchmetrics_map_equals_cocoeval(fake_coco, seed):
    dataset = CocoInstanceDataset(fake_coco, "val2017", training=False)
    outputs = make_detections(dataset, seed)
    metric = coco_map()
    for index, out in enumerate(outputs):
        metric.update(
            detections_for_metric([out], mask_threshold=0.5),
            targets_for_metric([dataset[index]["target"]]),
        )
    results = metric.compute()
    for iou_type in IOU_TYPES:
        expected = cocoeval_stats(dataset, outputs, iou_type)
        got = np.array([results[f"{iou_type}_{key}"].item() for key in STAT_KEYS])
        np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=iou_type)
        # Not a trivial agreement: imperfect detections score strictly between 0 and 1.
        assert 0.0 < expected[0] < 1.0, (iou_type, expected[0])
