"""torchmetrics' MeanAveragePrecision, fed as the module feeds it, equals COCOeval run
directly on the annotation file and loadRes'd detections (boxes and masks); and the
LightningModule built from the app's config, validating a stub detector with known
detections, logs exactly COCOeval's numbers for them."""

from __future__ import annotations

import contextlib
import hashlib
import io

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from cli_helpers import ROOT
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval
from torch import nn

from src.data.coco_files import load_coco
from src.data.coco_instance import CocoInstanceDataset
from src.tasks.instance.module import (
    IOU_TYPES,
    InstanceSegmentationModule,
    coco_map,
    detections_for_metric,
    targets_for_metric,
)

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


def make_detections(dataset: CocoInstanceDataset, seed: int = 0, shift: int = 6) -> list[dict]:
    """Per image: two copies of every object (crowds too) shifted by up to ``shift`` pixels
    with jittered boxes, some with a wrong class, and random false positives, all with random
    scores, as the detector outputs them (soft masks of shape (N, 1, H, W))."""
    rng = np.random.default_rng(seed)
    num_labels = dataset.num_classes - 1
    outputs = []
    for index in range(len(dataset)):
        _, target, _ = dataset.read(index)
        h, w = target["masks"].shape[1:]  # (0, H, W) for an image without objects
        masks, boxes, labels = [], [], []
        for mask, label in zip(target["masks"], target["labels"]):
            for _ in range(2):
                moved = _shift(mask, *rng.integers(-shift, shift + 1, size=2))
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


def _fingerprint(image: torch.Tensor) -> str:
    return hashlib.sha1(image.contiguous().numpy().tobytes()).hexdigest()


class StubDetector(nn.Module):
    """A detector that outputs fixed detections for each image it knows (found by its
    pixels), as torchvision's Mask R-CNN does in evaluation: boxes, scores, labels and soft
    (N, 1, H, W) masks."""

    def __init__(self, num_classes: int, images: list[torch.Tensor], outputs: list[dict]):
        super().__init__()
        self.num_classes = num_classes
        self.outputs = {_fingerprint(i): o for i, o in zip(images, outputs)}
        assert len(self.outputs) == len(images), "two images with the same pixels"

    def forward(self, images, targets=None):
        assert targets is None, "the stub only evaluates"
        return [self.outputs[_fingerprint(image)] for image in images]


def _hazy(outputs: list[dict]) -> list[dict]:
    """The soft masks with a faint haze (0.3) outside each object: a mask threshold below it
    fills whole images, one above the objects' 0.55..1 empties masks."""
    hazy = []
    for out in outputs:
        masks = out["masks"]
        hazy.append({**out, "masks": torch.where(masks > 0, masks, torch.full_like(masks, 0.3))})
    return hazy


def test_module_validation_of_a_stub_detector_logs_cocoeval_numbers(fake_coco, tmp_path):
    """The app's instance module (``conf/module/instance.yaml``, as ``experiment=
    coco_instance_rcca`` composes it) validates a stub detector with known, imperfect
    detections: every logged box and mask AP/AR equals COCOeval on the same detections
    binarised at 0.5, and the APs are well above 0 (never the −1 of "nothing to score")."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "experiment=coco_instance_rcca",
                f"data.root={fake_coco}",
                "data.num_workers=0",
                "data.val_batch_size=2",
            ],
        )
    datamodule = instantiate(cfg.data)
    dataset = datamodule.dataset_for("val")
    outputs = _hazy(make_detections(dataset, seed=0, shift=2))
    images = [dataset[i]["image"] for i in range(len(dataset))]
    stub = StubDetector(datamodule.num_classes, images, outputs)
    module = instantiate(cfg.module, _partial_=True)(
        net=stub, num_classes=datamodule.num_classes, class_names=datamodule.class_names
    )
    assert isinstance(module, InstanceSegmentationModule)
    # COCO's and torchvision's 0.5, also for a module built without the config
    default = InstanceSegmentationModule(stub, num_classes=datamodule.num_classes)
    assert module.hparams.mask_threshold == default.hparams.mask_threshold == 0.5
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    (metrics,) = trainer.validate(module, datamodule=datamodule, verbose=False)

    for iou_type in IOU_TYPES:
        expected = cocoeval_stats(dataset, outputs, iou_type)
        logged = [
            metrics[f"val/{iou_type}_{key.replace('map', 'mAP').replace('mar', 'mAR')}"]
            for key in STAT_KEYS
        ]
        np.testing.assert_allclose(logged, expected, atol=1e-6, err_msg=iou_type)
        ap, ap50 = expected[0], expected[1]
        assert 0.3 < ap < 1.0 and 0.6 < ap50 <= 1.0, (iou_type, ap, ap50)  # 0.48..0.83
