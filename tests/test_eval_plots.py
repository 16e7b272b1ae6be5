"""Evaluation plots: the module's confusion matrix against an independent count, and
``python -m src.eval`` writing per_class_iou.png / confusion_matrix.png next to results.json
and into the offline W&B run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from cli_helpers import run_cli, wandb_summary
from prediction_helpers import MODEL, TinyCityscapes, compose_config, tiny_cityscapes
from torch import nn
from torch.utils.data import DataLoader

from src.app.checkpoint import load_checkpoint, net_from_checkpoint
from src.core.inference import InferenceConfig, predict_logits
from src.data.cityscapes import CityscapesDataset
from src.data.transforms import eval_transform
from src.tasks.semantic.module import SegmentationModule

PNG = b"\x89PNG\r\n\x1a\n"
NUM_CLASSES = 4
IGNORE = 255


class ChannelZeroNet(nn.Module):
    """A stand-in net whose prediction is written in the image: class = channel 0."""

    num_classes = NUM_CLASSES

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Identity()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        classes = images[:, 0].long()
        return {"out": nn.functional.one_hot(classes, NUM_CLASSES).permute(0, 3, 1, 2).float()}


def tiny_batches() -> tuple[list[dict[str, torch.Tensor]], np.ndarray, np.ndarray]:
    """Two batches of random predictions and masks (some pixels ignored; class 3 never in
    the ground truth), and the same predictions and masks as flat arrays."""
    gen = torch.Generator().manual_seed(0)
    batches, preds, masks = [], [], []
    for _ in range(2):
        pred = torch.randint(0, NUM_CLASSES, (2, 6, 5), generator=gen)
        mask = torch.randint(0, NUM_CLASSES - 1, (2, 6, 5), generator=gen)
        mask[torch.rand(mask.shape, generator=gen) < 0.2] = IGNORE
        images = pred[:, None].float().expand(-1, 3, -1, -1).contiguous()
        batches.append({"image": images, "mask": mask})
        preds.append(pred.flatten().numpy())
        masks.append(mask.flatten().numpy())
    return batches, np.concatenate(preds), np.concatenate(masks)


def independent_counts(preds: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """counts[t, p] = number of pixels labelled t and predicted p, ignored pixels left out."""
    counts = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for t, p in zip(masks, preds):
        if t != IGNORE:
            counts[t, p] += 1
    return counts


@pytest.mark.parametrize("stage", ["val", "test"])
def test_confusion_matrix_counts_equal_an_independent_count(stage):
    batches, preds, masks = tiny_batches()
    module = SegmentationModule(ChannelZeroNet(), nn.Identity(), num_classes=NUM_CLASSES)
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    loader = DataLoader(batches, batch_size=None)
    (trainer.validate if stage == "val" else trainer.test)(module, dataloaders=loader)

    counts = module.confusion_matrix[stage].numpy()
    expected = independent_counts(preds, masks)
    np.testing.assert_array_equal(counts, expected)
    assert counts.sum() == (masks != IGNORE).sum() and counts[3].sum() == 0

    # the same predictions feed the IoU: IoU = TP / (TP + FP + FN) from the counts
    diagonal = np.diag(expected).astype(float)
    union = expected.sum(0) + expected.sum(1) - diagonal
    iou = [module.per_class_iou[stage][f"class_{c}"] for c in range(NUM_CLASSES)]
    np.testing.assert_allclose(iou, diagonal / union)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyCityscapes:
    return tiny_cityscapes(tmp_path_factory.getbasetemp() / "tiny_cityscapes")


@pytest.fixture(scope="module")
def eval_run(tiny: TinyCityscapes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m src.eval`` of the tiny checkpoint with W&B offline."""
    run_dir = tmp_path_factory.mktemp("eval_plots") / "run"
    overrides = [f"ckpt_path={tiny.ckpt}", "logger=wandb", f"hydra.run.dir={run_dir}"]
    run_cli("eval", *tiny.overrides(), *overrides)
    return run_dir


def test_eval_writes_both_plots_next_to_results_json(eval_run):
    assert (eval_run / "results.json").is_file()
    for name in ("per_class_iou.png", "confusion_matrix.png"):
        assert (eval_run / name).read_bytes()[:8] == PNG


def test_results_json_confusion_matrix_agrees_with_its_iou(eval_run):
    results = json.loads((eval_run / "results.json").read_text())
    counts = np.asarray(results["confusion_matrix"]["val"], dtype=float)
    assert counts.shape == (19, 19) and counts.sum() > 0
    diagonal = np.diag(counts)
    union = counts.sum(0) + counts.sum(1) - diagonal
    with np.errstate(invalid="ignore"):
        iou = diagonal / union
    per_class = results["per_class_iou"]["val"].values()
    reported = np.array([np.nan if v is None else v for v in per_class])
    np.testing.assert_allclose(iou, reported)


def test_results_json_confusion_matrix_counts_ground_truth_rows_prediction_columns(
    tiny: TinyCityscapes, eval_run: Path
):
    """results.json's counts are the tiny checkpoint's predictions, recounted here: row = the
    ground-truth class, column = the predicted one. The predictions vary and are often wrong
    (asymmetric counts), so a transposed matrix, which gives the same IoU, fails here."""
    results = json.loads((eval_run / "results.json").read_text())
    counts = np.asarray(results["confusion_matrix"]["val"])
    config = InferenceConfig.from_config(results["config"]["inference"])
    net = net_from_checkpoint(compose_config("eval", MODEL).model, load_checkpoint(tiny.ckpt))
    dataset = CityscapesDataset(tiny.root, "val", transform=eval_transform())
    expected = np.zeros_like(counts)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the CLI runs: the same float reductions
    try:
        for index in range(len(dataset)):
            sample = dataset[index]
            logits = predict_logits(net.eval(), sample["image"][None], config)
            pred, mask = logits.argmax(1)[0].numpy(), sample["mask"].numpy()
            valid = mask != IGNORE
            np.add.at(expected, (mask[valid], pred[valid]), 1)
    finally:
        torch.set_num_threads(threads)
    assert len(dataset) == 4 and expected.sum() == (counts.sum()) > 0
    assert (expected.sum(0) > 0).sum() >= 2, "a one-class prediction would make this weak"
    asymmetry = np.abs(expected - expected.T).sum()
    assert asymmetry > 0.05 * expected.sum(), "the counts are nearly symmetric"
    mismatch = np.abs(counts - expected).sum()
    assert mismatch <= 0.001 * expected.sum(), (
        f"{mismatch} of {expected.sum()} pixels counted elsewhere "
        f"(transposed: {np.abs(counts.T - expected).sum()})"
    )


def test_wandb_offline_run_holds_the_plots(eval_run):
    (run_dir,) = (eval_run / "wandb").glob("offline-run-*")
    summary = wandb_summary(run_dir)["summary"]
    for key in ("val/plots/per_class_iou", "val/plots/confusion_matrix"):
        image = summary[key]
        assert image["_type"] == "image-file" and image["format"] == "png"
        assert (run_dir / "files" / image["path"]).read_bytes()[:8] == PNG
