"""SegmentationModule: optimiser, poly schedule, an mIoU equal to the official Cityscapes one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official
from cityscapesscripts.helpers.labels import labels as cityscapes_labels
from cityscapesscripts.helpers.labels import trainId2label
from tiny_nets import OneHotNet, TinyNet
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from src.core.inference import InferenceConfig, predict_logits_with
from src.core.losses import CCNetLoss
from src.data.lip import CLASS_NAMES as LIP_CLASSES
from src.data.lip import LIPDataset
from src.tasks.semantic.module import SegmentationModule, warn_if_padded

IGNORE = 255


def make_module(net: nn.Module, **kwargs) -> SegmentationModule:
    return SegmentationModule(net=net, criterion=CCNetLoss(), num_classes=net.num_classes, **kwargs)


def test_optimizer_is_sgd_with_a_per_step_poly_schedule():
    module = make_module(TinyNet(), lr=0.02, momentum=0.8, weight_decay=1e-4, head_lr_mult=2)
    trainer = pl.Trainer(max_steps=10, logger=False, enable_checkpointing=False)
    module.trainer = trainer
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.8
    assert [g["lr"] for g in optimizer.param_groups] == [0.02, 0.04]
    assert scheduler["interval"] == "step" and scheduler["frequency"] == 1
    for _ in range(5):
        optimizer.step()
        scheduler["scheduler"].step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.02 * 0.5**0.9)
    assert optimizer.param_groups[1]["lr"] == pytest.approx(0.04 * 0.5**0.9)


def test_unbounded_training_is_a_clear_error():
    module = make_module(TinyNet())
    module.trainer = pl.Trainer(max_steps=-1, max_epochs=-1, logger=False)
    with pytest.raises(ValueError, match="trainer.max_steps"):
        module.configure_optimizers()


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"lr": 0.0}, "module.lr"),
        ({"head_lr_mult": -1.0}, "module.head_lr_mult"),
        ({"weight_decay": -1e-4}, "module.weight_decay"),
        ({"class_names": ["a", "b"]}, "class_names"),
        ({"inference": {"mode": "slide", "crop": 4}}, "inference"),
    ],
)
def test_bad_settings_name_their_config_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        make_module(TinyNet(), **kwargs)


def test_hyperparameters_are_plain_python():
    from omegaconf import OmegaConf

    module = make_module(
        TinyNet(),
        class_names=OmegaConf.create(["a", "b", "c"]),
        flip_pairs=OmegaConf.create([[1, 2]]),
        inference=OmegaConf.create({"mode": "whole", "scales": [1.0]}),
    )
    assert "net" not in module.hparams and "criterion" not in module.hparams

    def plain(value):
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, str | int | float | bool)

    assert plain(dict(module.hparams))


def official_cityscapes_miou(preds: np.ndarray, targets: np.ndarray) -> tuple[float, dict]:
    """mIoU and per-trainId IoU computed by cityscapesscripts' own evaluation functions.

    Train ids become label ids; ignored ground truth becomes label 0 ("unlabeled", ignored in
    evaluation). The confusion matrix and the scores are the official script's.
    """
    args = official.args
    args.evalLabels = [label.id for label in cityscapes_labels if label.id >= 0]
    to_label = np.zeros(256, dtype=np.int64)
    for train_id, label in trainId2label.items():
        if 0 <= train_id < 255:
            to_label[train_id] = label.id
    gt = np.where(targets == IGNORE, 0, to_label[np.minimum(targets, 255)])
    pred = to_label[preds]
    matrix = official.generateMatrix(args)
    np.add.at(matrix, (gt.ravel(), pred.ravel()), 1)
    scores = {label: official.getIouScoreForLabel(label, matrix, args) for label in args.evalLabels}
    per_train_id = {t: scores[trainId2label[t].id] for t in range(19)}
    return official.getScoreAverage(scores, args), per_train_id


def confusion_miou(preds: np.ndarray, targets: np.ndarray, k: int) -> tuple[float, list]:
    """TP / (TP + FP + FN) per class from a confusion matrix; classes with 0/0 left out."""
    valid = targets != IGNORE
    matrix = np.bincount(targets[valid] * k + preds[valid], minlength=k * k).reshape(k, k)
    tp = np.diag(matrix).astype(float)
    denom = matrix.sum(0) + matrix.sum(1) - tp
    iou = [tp[c] / denom[c] if denom[c] else math.nan for c in range(k)]
    finite = [v for v in iou if not math.isnan(v)]
    return sum(finite) / len(finite), iou


def validate_fixed_predictions(preds: torch.Tensor, targets: torch.Tensor, k: int) -> dict:
    """Run the module's validation (full path: inference, metric, logging) on fixed predictions."""
    module = make_module(OneHotNet(k), class_names=[f"c{i}" for i in range(k)])
    images = torch.nn.functional.one_hot(preds, k).permute(0, 3, 1, 2).float()
    samples = [{"image": i, "mask": t} for i, t in zip(images, targets)]
    loader = DataLoader(samples, batch_size=2)
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    (metrics,) = trainer.validate(module, dataloaders=loader, verbose=False)
    return metrics, module.per_class_iou["val"]


def cityscapes_like_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """19-class predictions/targets with ignored pixels, a class present only in predictions
    (IoU 0, counted), and classes in neither (left out of the mean)."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 12, size=(4, 24, 40))
    preds = np.where(rng.random(targets.shape) < 0.7, targets, rng.integers(0, 12, targets.shape))
    preds[0, :3, :5] = 15  # predicted, never in the ground truth
    targets[rng.random(targets.shape) < 0.1] = IGNORE
    preds[targets == IGNORE] = 18  # predictions on ignored pixels must not count as FP
    return torch.as_tensor(preds), torch.as_tensor(targets)


def test_miou_equals_the_official_cityscapes_evaluation():
    preds, targets = cityscapes_like_batch()
    metrics, per_class = validate_fixed_predictions(preds, targets, 19)
    expected, expected_per_class = official_cityscapes_miou(preds.numpy(), targets.numpy())
    assert metrics["val/mIoU"] == pytest.approx(expected, abs=1e-6)
    for train_id in range(19):
        ours, theirs = per_class[f"c{train_id}"], expected_per_class[train_id]
        assert (math.isnan(ours) and math.isnan(theirs)) or ours == pytest.approx(theirs, abs=1e-6)
    assert per_class["c15"] == 0.0 and math.isnan(per_class["c13"]) and math.isnan(per_class["c18"])


def test_miou_equals_an_independent_confusion_matrix():
    rng = np.random.default_rng(3)
    targets = torch.as_tensor(rng.integers(0, 4, size=(6, 16, 16)))  # class 4 never appears
    preds = torch.as_tensor(rng.integers(0, 4, size=(6, 16, 16)))
    targets[:, :2] = IGNORE
    metrics, per_class = validate_fixed_predictions(preds, targets, 5)
    expected, iou = confusion_miou(preds.numpy(), targets.numpy(), 5)
    assert metrics["val/mIoU"] == pytest.approx(expected, abs=1e-6)
    assert [per_class[f"c{i}"] for i in range(4)] == pytest.approx(iou[:4], abs=1e-6)
    assert math.isnan(per_class["c4"])
    for i in range(4):
        assert metrics[f"val/IoU/c{i}"] == pytest.approx(iou[i], abs=1e-6)


class SidedPartsNet(nn.Module):
    """A LIP-like stand-in that tells left from right by the column, as a trained parser does
    from the body around a limb: channel 0 of the image holds the part (0 background, 1 arm,
    2 leg, 3 shoe); a part left of the middle is Left-<part> (14, 16, 18), right of it
    Right-<part> (15, 17, 19). A flipped image puts every limb on the other side, so its
    logits, flipped back, name the mirror class: only swapping LIP's flip pairs back makes
    the two views agree."""

    num_classes = len(LIP_CLASSES)

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Identity()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        classes = sided_parts(images[:, 0].round().long())
        return {"out": nn.functional.one_hot(classes, self.num_classes).permute(0, 3, 1, 2).float()}


def sided_parts(parts: torch.Tensor) -> torch.Tensor:
    """B×H×W parts (0..3) -> LIP classes: 0 for background, Left-/Right-<part> by the side."""
    right = torch.arange(parts.shape[-1]) >= parts.shape[-1] // 2
    return torch.where(parts == 0, 0, 12 + 2 * parts + right.long())


def test_flip_evaluation_swaps_lip_flip_pairs_back():
    """Validation with ``inference.flip=true`` and LIP's flip pairs scores the sided parts
    perfectly; without the swap the flipped view contradicts the plain one on every limb."""
    gen = torch.Generator().manual_seed(0)
    parts = torch.randint(0, 4, (4, 12, 16), generator=gen)
    images = parts[:, None].float().expand(-1, 3, -1, -1).contiguous()
    masks = sided_parts(parts)
    flip = {"mode": "whole", "flip": True}
    module = make_module(
        SidedPartsNet(), class_names=LIP_CLASSES, flip_pairs=LIPDataset.flip_pairs, inference=flip
    )
    samples = [{"image": i, "mask": m} for i, m in zip(images, masks)]
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    (metrics,) = trainer.validate(module, dataloaders=DataLoader(samples, batch_size=2))
    assert metrics["val/mIoU"] == 1.0
    for left, right in LIPDataset.flip_pairs:
        assert module.per_class_iou["val"][LIP_CLASSES[left]] == 1.0
        assert module.per_class_iou["val"][LIP_CLASSES[right]] == 1.0
    # the test's own check: dropping the pairs does change the prediction
    config = InferenceConfig.from_config(flip)
    unpaired = predict_logits_with(SidedPartsNet(), images, config, ()).argmax(1)
    assert (unpaired != masks).float().mean() > 0.2


def test_padding_of_a_distributed_split_is_reported():
    even = DataLoader(list(range(8)), sampler=DistributedSampler(range(8), num_replicas=2, rank=0))
    odd = DataLoader(list(range(7)), sampler=DistributedSampler(range(7), num_replicas=2, rank=0))
    assert not warn_if_padded(even, "val")
    with pytest.warns(UserWarning, match="count twice"):
        assert warn_if_padded([odd], "val")
