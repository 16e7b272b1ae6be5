"""SegmentationModule and TaskModule: the metrics and the schedule at the edges that
`make mutate` found no test pinning down — logged learning rates, the poly power, the best
mIoU across validations, the confusion counts, the test stage, the checks of the settings."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from tiny_nets import OneHotNet, TinyNet, quiet_trainer
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, default_collate

from src.core.losses import CCNetLoss
from src.core.module import check_optimiser_settings, class_names_for, metric_key
from src.tasks.semantic.module import SegmentationModule

IGNORE = 255


def one_hot_batches(preds: torch.Tensor, masks: torch.Tensor, k: int) -> list[dict]:
    images = nn.functional.one_hot(preds, k).permute(0, 3, 1, 2).float()
    return [{"image": i, "mask": m} for i, m in zip(images, masks)]


def train_batches(n: int = 4) -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    samples = [
        {
            "image": torch.randn(3, 8, 8, generator=gen),
            "mask": torch.randint(0, 3, (8, 8), generator=gen),
        }
        for _ in range(n)
    ]
    return DataLoader(samples, batch_size=2)


# ---------------------------------------------------------------- optimiser and schedule


class LearningRates(pl.Callback):
    def __init__(self) -> None:
        self.logged: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        metrics = trainer.callback_metrics
        self.logged.append({k: float(v) for k, v in metrics.items() if k.startswith("train/lr")})


@pytest.mark.parametrize(("head_lr_mult", "exempt"), [(1.0, False), (3.0, False), (3.0, True)])
def test_the_logged_learning_rates_follow_the_poly_power(head_lr_mult, exempt):
    """``train/lr`` is the backbone's lr at each step, ``train/lr_head`` (the head's, also
    with the no-decay groups) only when it differs; the decay is poly of ``poly_power`` over
    the trainer's steps."""
    module = SegmentationModule(
        TinyNet(),
        CCNetLoss(),
        3,
        lr=0.1,
        poly_power=1.0,
        head_lr_mult=head_lr_mult,
        exempt_norm_and_gamma=exempt,
    )
    rates = LearningRates()
    quiet_trainer(max_steps=4, limit_val_batches=0, callbacks=[rates]).fit(module, train_batches(8))
    assert [r["train/lr"] for r in rates.logged] == pytest.approx([0.1, 0.075, 0.05, 0.025])
    groups = [g["name"] for g in module.trainer.optimizers[0].param_groups]
    assert any(name.endswith("_no_decay") for name in groups) == exempt
    if head_lr_mult == 1.0:
        assert all("train/lr_head" not in r for r in rates.logged)
    else:
        heads = [r["train/lr_head"] for r in rates.logged]
        assert heads == pytest.approx([0.3, 0.225, 0.15, 0.075])


def test_a_resumed_longer_run_ends_its_schedule_at_its_own_last_step():
    """``on_train_start`` retargets the schedule: a module whose optimiser was built for 2
    steps, trained for 4, decays over 4."""
    module = SegmentationModule(TinyNet(), CCNetLoss(), 3, lr=0.1, poly_power=1.0)
    rates = LearningRates()
    short = module.lr_schedule(2)
    original = module.lr_schedule
    module.lr_schedule = lambda total: short  # the schedule a 2-step run saved
    quiet_trainer(max_steps=4, limit_val_batches=0, callbacks=[rates]).fit(module, train_batches(8))
    module.lr_schedule = original
    assert short.total_steps == 4
    assert [r["train/lr"] for r in rates.logged] == pytest.approx([0.1, 0.075, 0.05, 0.025])


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        (dict(lr=0.1, head_lr_mult=1.0, momentum=0.0, weight_decay=0.0), None),
        (dict(lr=-0.1), "module.lr must be positive"),
        (dict(head_lr_mult=0.0), "module.head_lr_mult must be positive"),
        (dict(momentum=-0.5), "module.momentum must be >= 0"),
    ],
)
def test_optimiser_settings_bounds(settings, error):
    if error is None:
        check_optimiser_settings(**settings)  # zero momentum and decay are fine
    else:
        with pytest.raises(ValueError, match=error):
            check_optimiser_settings(**settings)


def test_class_names_default_and_count():
    assert class_names_for(3, None) == ["class_0", "class_1", "class_2"]
    assert class_names_for(2, ("a", "b")) == ["a", "b"]
    for bad in (1, True, 2.0):
        with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
            class_names_for(bad, None)


def test_metric_keys_are_logger_friendly():
    assert metric_key("traffic light") == "traffic_light"
    assert metric_key("Xbox_") == "Xbox"
    assert metric_key("Left-arm") == "Left-arm"
    assert metric_key(" pool table (indoor) ") == "pool_table_indoor"
    assert metric_key("???") == "class"


# ---------------------------------------------------------------- validation and test metrics


class Switchable(OneHotNet):
    """Perfect predictions until ``wrong`` is set, then every class shifted by one."""

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes)
        self.w = nn.Parameter(torch.zeros(()))  # something to train
        self.wrong = False

    def forward(self, images):
        out = images.roll(1, dims=1) if self.wrong else images
        return {"out": out + 0 * self.w}


class GoWrong(pl.Callback):
    """Makes the net wrong after the sanity check or after the first real validation."""

    def __init__(self, after_sanity_check: bool) -> None:
        self.after_sanity_check = after_sanity_check

    def on_sanity_check_end(self, trainer, module) -> None:
        module.net.wrong = module.net.wrong or self.after_sanity_check

    def on_validation_end(self, trainer, module) -> None:
        if not trainer.sanity_checking:
            module.net.wrong = True


@pytest.mark.parametrize("after_sanity_check", [False, True])
def test_best_miou_is_the_maximum_over_the_fits_validations(after_sanity_check):
    """Two validations during fit: val/mIoU_best keeps the best (the first, perfect one), and
    neither the sanity check (perfect) nor a later ``validate`` (perfect) counts."""
    k = 3
    masks = torch.randint(0, k, (4, 6, 6), generator=torch.Generator().manual_seed(1))
    data = DataLoader(one_hot_batches(masks, masks, k), batch_size=2)
    module = SegmentationModule(Switchable(k), CCNetLoss(), k)
    fit = quiet_trainer(
        max_steps=2,
        val_check_interval=1,
        limit_val_batches=1,
        num_sanity_val_steps=1,
        callbacks=[GoWrong(after_sanity_check)],
    )
    fit.fit(module, data, data)
    best = 0.0 if after_sanity_check else 1.0
    assert fit.callback_metrics["val/mIoU_best"].item() == best
    assert fit.callback_metrics["val/mIoU"].item() == 0.0  # the last validation was wrong
    module.net.wrong = False
    fit.validate(module, data, verbose=False)
    assert module.val_miou_best.compute().item() == best


def test_confusion_counts_and_the_test_stage():
    """The confusion matrix counts (ground truth × prediction) of the epoch's pixels, ignored
    ones left out; the test stage keeps its own IoU and counts, and logs test/ keys."""
    k = 3
    masks = torch.tensor([[[0, 1, 2, IGNORE]], [[1, 1, 2, 0]]])
    preds = torch.tensor([[[0, 2, 2, 1]], [[1, 0, 2, 0]]])
    module = SegmentationModule(OneHotNet(k), CCNetLoss(), k, class_names=["a", "b", "c"])
    loader = DataLoader(one_hot_batches(preds, masks, k), batch_size=2)
    (metrics,) = quiet_trainer().test(module, dataloaders=loader, verbose=False)
    expected = torch.tensor([[2, 0, 0], [1, 1, 1], [0, 0, 2]])
    assert torch.equal(module.confusion_matrix["test"], expected)
    assert "val" not in module.confusion_matrix and "val" not in module.per_class_iou
    iou = {"a": 2 / 3, "b": 1 / 3, "c": 2 / 3}
    assert module.per_class_iou["test"] == pytest.approx(iou)
    assert metrics["test/mIoU"] == pytest.approx(5 / 9)
    assert metrics["test/IoU/b"] == pytest.approx(1 / 3)
    logits = nn.functional.one_hot(preds, k).permute(0, 3, 1, 2).float()
    expected_loss = nn.functional.cross_entropy(logits, masks, ignore_index=IGNORE)
    assert metrics["test/loss"] == pytest.approx(expected_loss.item(), rel=1e-6)


def test_the_sanity_check_leaves_no_per_class_iou_or_counts():
    k = 3
    masks = torch.zeros(2, 4, 4, dtype=torch.long)
    data = DataLoader(one_hot_batches(masks, masks, k), batch_size=2)
    module = SegmentationModule(Switchable(k), CCNetLoss(), k)
    fit = quiet_trainer(max_steps=1, num_sanity_val_steps=1, check_val_every_n_epoch=2)
    fit.fit(module, data, data)
    assert module.per_class_iou == {} and module.confusion_matrix == {}


def test_validation_of_a_padded_distributed_split_warns():
    k = 3
    masks = torch.zeros(3, 4, 4, dtype=torch.long)
    data = one_hot_batches(masks, masks, k)
    sampler = DistributedSampler(data, num_replicas=2, rank=0, shuffle=False)
    module = SegmentationModule(OneHotNet(k), CCNetLoss(), k)
    with pytest.warns(UserWarning, match="val: DistributedSampler pads 3 samples to 4"):
        quiet_trainer(use_distributed_sampler=False).validate(
            module, dataloaders=DataLoader(data, sampler=sampler), verbose=False
        )
    with pytest.warns(UserWarning, match="test: DistributedSampler pads"):
        quiet_trainer(use_distributed_sampler=False).test(
            module, dataloaders=DataLoader(data, sampler=sampler), verbose=False
        )


def test_predictions_of_another_size_than_the_masks_are_an_error_naming_the_stage():
    k = 3
    module = SegmentationModule(OneHotNet(k), CCNetLoss(), k)
    images = nn.functional.one_hot(torch.zeros(2, 6, 6, dtype=torch.long), k).permute(0, 3, 1, 2)
    batch = {"image": images.float(), "mask": torch.zeros(2, 4, 4, dtype=torch.long)}
    with pytest.raises(ValueError, match=r"val logits are \(6, 6\) but masks are \(4, 4\)"):
        module.validation_step(batch, 0)
    with pytest.raises(ValueError, match="test logits"):
        module.test_step(batch, 0)


class Outputs(pl.Callback):
    def __init__(self) -> None:
        self.preds: list[torch.Tensor] = []

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, *_) -> None:
        self.preds.append(outputs["preds"])


def test_validation_outputs_counts_and_logged_loss():
    """Validation hands the predictions to callbacks as ``outputs["preds"]`` (the prediction
    files and W&B images read them), keeps the epoch's confusion counts under ``val``, shows
    val/mIoU in the progress bar, and val/loss is the mean over images (batches of 2 and 1:
    weighted by their size), with the module's own ignore index (2 here)."""
    k = 3
    gen = torch.Generator().manual_seed(2)
    masks = torch.randint(0, k, (3, 4, 4), generator=gen)
    preds = torch.randint(0, k, (3, 4, 4), generator=gen)
    module = SegmentationModule(OneHotNet(k), CCNetLoss(), k, ignore_index=2)
    outputs = Outputs()
    validator = quiet_trainer(callbacks=[outputs])
    loader = DataLoader(one_hot_batches(preds, masks, k), batch_size=2)
    (metrics,) = validator.validate(module, dataloaders=loader, verbose=False)
    assert torch.equal(torch.cat(outputs.preds), preds)
    valid = masks != 2
    expected = torch.zeros(k, k, dtype=torch.long)
    for gt, pred in zip(masks[valid].tolist(), preds[valid].tolist()):
        expected[gt, pred] += 1
    assert torch.equal(module.confusion_matrix["val"], expected)
    assert "val/mIoU" in validator.progress_bar_metrics
    logits = nn.functional.one_hot(preds, k).permute(0, 3, 1, 2).float()

    def loss(s: slice) -> float:
        return nn.functional.cross_entropy(logits[s], masks[s], ignore_index=2).item()

    assert metrics["val/loss"] == pytest.approx((2 * loss(slice(0, 2)) + loss(slice(2, 3))) / 3)


def test_a_net_with_another_class_count_fails_validation():
    class Extra(OneHotNet):
        def forward(self, images):
            return {"out": torch.cat([images, images[:, :1]], dim=1)}

    module = SegmentationModule(OneHotNet(3), CCNetLoss(), 3)
    module.net = Extra(3)
    masks = torch.zeros(2, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="4 channels, expected 3"):
        quiet_trainer().validate(
            module, DataLoader(one_hot_batches(masks, masks, 3), batch_size=2), verbose=False
        )


def test_no_loaders_or_unpadded_ones_are_no_padding():
    from src.tasks.semantic.module import warn_if_padded

    even = DataLoader(list(range(4)), sampler=DistributedSampler(range(4), num_replicas=2, rank=0))
    assert warn_if_padded(None, "val") is False and warn_if_padded([even], "val") is False


class Batches:
    """Ready-made batches from a plain iterable: Lightning takes any iterable as a loader, not
    only a DataLoader, and this one has no ``sampler``."""

    def __init__(self, batches: list[dict]) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def test_a_loader_without_a_sampler_validates_and_tests():
    """The padding check only looks at a loader's DistributedSampler when it has a sampler at
    all: validation and test over a plain iterable of batches run and score like a DataLoader
    (perfect predictions here: mIoU 1)."""
    k = 3
    masks = torch.randint(0, k, (2, 4, 4), generator=torch.Generator().manual_seed(3))
    batches = Batches([default_collate(one_hot_batches(masks, masks, k))])
    module = SegmentationModule(OneHotNet(k), CCNetLoss(), k)
    (val,) = quiet_trainer().validate(module, dataloaders=batches, verbose=False)
    (test,) = quiet_trainer().test(module, dataloaders=batches, verbose=False)
    assert val["val/mIoU"] == 1.0 and test["test/mIoU"] == 1.0


@pytest.mark.slow
def test_two_processes_log_the_val_loss_and_iou_a_single_process_logs():
    """Two processes (DDP over gloo on the CPU, spawned: forking a long-lived, multi-threaded
    pytest worker can deadlock) each score half of the split (rank 0 images 0 and 2, rank 1
    images 1 and 3). val/loss is the mean over all four images, not rank 0's half (whose
    images are predicted perfectly, so its mean differs), and val/mIoU the whole split's: what
    a single process logs. Slow (two fresh interpreters), so `make mutate` does not run it:
    docs/mutation.md lists the val/loss ``sync_dist`` mutants it kills."""
    k = 3
    gen = torch.Generator().manual_seed(2)
    masks = torch.randint(0, k, (4, 4, 4), generator=gen)
    preds = torch.randint(0, k, (4, 4, 4), generator=gen)
    preds[0], preds[2] = masks[0], masks[2]
    loader = DataLoader(one_hot_batches(preds, masks, k), batch_size=1)
    runs = (quiet_trainer(), quiet_trainer(devices=2, strategy="ddp_spawn"))
    one, two = (
        run.validate(SegmentationModule(OneHotNet(k), CCNetLoss(), k), loader, verbose=False)[0]
        for run in runs
    )
    logits = nn.functional.one_hot(preds, k).permute(0, 3, 1, 2).float()
    losses = [nn.functional.cross_entropy(logits[i : i + 1], masks[i : i + 1]) for i in range(4)]
    both = masks.flatten() * k + preds.flatten()
    counts = torch.bincount(both, minlength=k * k).reshape(k, k).double()
    tp = counts.diag()
    iou = tp / (counts.sum(0) + counts.sum(1) - tp)
    for metrics in (one, two):
        assert metrics["val/loss"] == pytest.approx(torch.stack(losses).mean().item(), rel=1e-6)
        assert metrics["val/mIoU"] == pytest.approx(iou.mean().item(), rel=1e-6)
