"""The shared optimiser pieces: one parameter-group rule, the poly and warmup schedules."""

from __future__ import annotations

import pickle

import pytest
import torch
from tiny_nets import TinyNet
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from src.core.optim import PolyDecay, WarmupSchedule, parameter_groups, retarget_schedules


def test_poly_decay_follows_the_formula_and_ends_at_zero():
    poly = PolyDecay(total_steps=100, power=0.9)
    assert poly(0) == 1.0
    assert poly(50) == pytest.approx(0.5**0.9)
    assert poly(100) == 0.0 and poly(150) == 0.0
    assert PolyDecay(100)(50) == poly(50)  # power 0.9 by default
    assert PolyDecay(1)(0) == 1.0 and PolyDecay(1)(1) == 0.0  # one step is enough
    with pytest.raises(ValueError):
        PolyDecay(0)


def test_parameter_groups_head_multiplier_and_decay_exemption():
    net = TinyNet()
    plain = parameter_groups(net, lr=0.01, weight_decay=5e-4, head_lr_mult=10.0)
    assert [g["name"] for g in plain] == ["backbone", "head"]
    assert [g["lr"] for g in plain] == [0.01, pytest.approx(0.1)]
    assert all(g["weight_decay"] == 5e-4 for g in plain)
    n_params = sum(len(g["params"]) for g in plain)
    assert n_params == len(list(net.parameters()))

    groups = {
        g["name"]: g
        for g in parameter_groups(net, 0.01, 5e-4, head_lr_mult=1.0, exempt_norm_and_gamma=True)
    }
    assert set(groups) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    exempt = {id(p) for n in ("backbone_no_decay", "head_no_decay") for p in groups[n]["params"]}
    # timm's rule: every 1-D tensor (norms, conv biases, gamma) and the model's no_weight_decay()
    expected = {id(p) for p in net.parameters() if p.ndim <= 1} | {id(net.scale)}
    assert exempt == expected
    assert id(net.backbone[0].bias) in exempt and id(net.backbone[0].weight) not in exempt
    assert groups["head_no_decay"]["weight_decay"] == 0.0
    assert groups["head"]["weight_decay"] == 5e-4


def test_frozen_parameters_are_left_out():
    net = TinyNet()
    net.aux_head.requires_grad_(False)
    groups = parameter_groups(net, 0.01, 0.0)
    kept = {id(p) for g in groups for p in g["params"]}
    assert kept == {id(p) for p in net.parameters() if p.requires_grad}  # the rest is kept
    assert not kept & {id(p) for p in net.aux_head.parameters()}


def test_the_backbone_group_holds_the_backbone_and_the_head_multiplier_defaults_to_one():
    net = TinyNet()
    groups = {g["name"]: g for g in parameter_groups(net, 0.01, 5e-4)}
    assert {id(p) for p in groups["backbone"]["params"]} == {
        id(p) for p in net.backbone.parameters()
    }
    assert groups["head"]["lr"] == groups["backbone"]["lr"] == 0.01


def test_decay_exemption_without_the_models_hook():
    """A 2-D weight decays (only 1-D tensors and the names ``no_weight_decay()`` lists are
    exempt), and a model without that hook is fine."""
    net = nn.Module()
    net.backbone = nn.Linear(3, 4)
    net.head = nn.Linear(4, 2)
    groups = {g["name"]: g for g in parameter_groups(net, 0.1, 1e-4, exempt_norm_and_gamma=True)}
    assert [id(p) for p in groups["backbone"]["params"]] == [id(net.backbone.weight)]
    assert [id(p) for p in groups["backbone_no_decay"]["params"]] == [id(net.backbone.bias)]
    assert groups["head"]["weight_decay"] == 1e-4 and groups["head_no_decay"]["weight_decay"] == 0


def test_a_net_without_a_backbone_is_a_type_error():
    with pytest.raises(TypeError, match="backbone"):
        parameter_groups(nn.Linear(2, 2), 0.1, 0.0)


def test_warmup_then_steps_at_the_1x_milestones():
    schedule = WarmupSchedule(90000, warmup_steps=1000, warmup_factor=0.001)
    assert schedule.milestone_steps == [60000, 80000]
    assert schedule(0) == pytest.approx(0.001)
    assert schedule(500) == pytest.approx(0.001 + 0.999 * 0.5)
    assert schedule(1000) == 1.0 and schedule(59999) == 1.0
    assert schedule(60000) == pytest.approx(0.1) and schedule(79999) == pytest.approx(0.1)
    assert schedule(80000) == pytest.approx(0.01) and schedule(89999) == pytest.approx(0.01)
    restored = pickle.loads(pickle.dumps(schedule))  # LambdaLR state_dict keeps it
    assert restored(70000) == schedule(70000)


def test_warmup_defaults_are_the_1x_recipe():
    """1000 warmup steps from 0.001, then ×0.1 at 2/3 and 8/9 of training (poly: power 0.9)."""
    schedule = WarmupSchedule(90000)
    explicit = WarmupSchedule(90000, 1000, 0.001, "step", (2 / 3, 8 / 9), 0.1, 0.9)
    for step in (0, 500, 999, 1000, 60000, 80000, 89999):
        assert schedule(step) == explicit(step)
    assert schedule(999) < 1.0 == schedule(1000)
    poly = WarmupSchedule(100, warmup_steps=0, schedule="poly")
    assert poly(50) == pytest.approx(0.5**0.9)
    assert WarmupSchedule(1, warmup_steps=0)(0) == 1.0  # one step is enough


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"milestones": [0.0]}, "milestones"),
        ({"milestones": [1.0]}, "milestones"),
        ({"milestones": [1.5]}, "milestones"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"warmup_factor": 0.0}, "warmup_factor"),
        ({"warmup_factor": 1.5}, "warmup_factor"),
        ({"total_steps": 0}, "at least one step"),
    ],
)
def test_bad_warmup_settings_are_rejected(kwargs, key):
    settings = {"total_steps": 100, **kwargs}
    with pytest.raises(ValueError, match=key):
        WarmupSchedule(**settings)


def test_warmup_factor_one_is_no_warmup():
    schedule = WarmupSchedule(100, warmup_steps=10, warmup_factor=1.0, milestones=(0.5,))
    assert [schedule(s) for s in (0, 5, 49)] == [1.0, 1.0, 1.0]
    assert schedule(50) == pytest.approx(0.1)


def test_poly_schedule_and_bad_settings():
    poly = WarmupSchedule(100, warmup_steps=10, warmup_factor=0.1, schedule="poly", power=0.9)
    assert poly(5) == pytest.approx((0.1 * 0.5 + 0.5) * (1 - 0.05) ** 0.9)
    assert poly(50) == pytest.approx(0.5**0.9) and poly(100) == 0.0
    assert WarmupSchedule(100, warmup_steps=0)(0) == 1.0
    with pytest.raises(ValueError, match="schedule"):
        WarmupSchedule(100, schedule="cosine")
    with pytest.raises(ValueError, match="milestones"):
        WarmupSchedule(100, milestones=[60])


def test_retarget_moves_the_end_of_a_restored_schedule():
    """A resumed run with a longer max_steps continues the curve to its new end."""
    net = TinyNet()
    optimizer = torch.optim.SGD(parameter_groups(net, 0.1, 0.0), lr=0.1)
    scheduler = LambdaLR(optimizer, PolyDecay(10))
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 0.0  # the short run ended

    class Trainer:  # what retarget_schedules reads of a Lightning trainer
        estimated_stepping_batches = 20
        lr_scheduler_configs = [type("Config", (), {"scheduler": scheduler})()]

    retarget_schedules(Trainer())
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**0.9)
    restored = pickle.loads(pickle.dumps(scheduler.state_dict()))
    assert restored["lr_lambdas"][0]["total_steps"] == 20


def test_retarget_passes_over_other_schedulers():
    """A scheduler that is not a closed-form ``LambdaLR`` is left alone, and the ones after
    it are still retargeted."""
    net = TinyNet()
    other = torch.optim.SGD(net.backbone.parameters(), lr=0.1)
    step_lr = torch.optim.lr_scheduler.StepLR(other, step_size=1)
    optimizer = torch.optim.SGD(net.head.parameters(), lr=0.1)
    poly = PolyDecay(10)
    scheduler = LambdaLR(optimizer, poly)

    class Trainer:
        estimated_stepping_batches = 20
        lr_scheduler_configs = [
            type("Config", (), {"scheduler": s})() for s in (step_lr, scheduler)
        ]

    retarget_schedules(Trainer())
    assert poly.total_steps == 20 and other.param_groups[0]["lr"] == 0.1
