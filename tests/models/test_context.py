"""The context table: every context keeps the shape, RCCA's shared passes and frozen R=0,
the one message of each check, and checkpoints from before RCCA's ``cca`` child."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from src.models.attention import CrissCrossAttention, CrissCrossAttention3d
from src.models.ccnet import CCNet
from src.models.context import (
    CONTEXTS,
    RecurrentCrissCross,
    build_context,
    check_context,
    check_recurrence,
)
from src.models.heads import RCCAHead
from src.models.mask_rcnn import TimmFPNBackbone

pytestmark = pytest.mark.usefixtures("single_thread")

C = 16
CONTEXT_MESSAGE = "model.context must be one of rcca, nonlocal, none; got 'aspp'"


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", list(CONTEXTS))
@pytest.mark.parametrize("train", [False, True])
def test_every_context_keeps_the_shape_and_is_the_identity_when_fresh(name, train):
    torch.manual_seed(0)
    module = build_context(name, C).train(train)
    x = torch.randn(2, C, 5, 7)
    out = module(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, x)  # gamma / the non-local output BN scale start at 0


@pytest.mark.parametrize("recurrence", [0, 1, 2, 3])
def test_rcca_calls_one_shared_cca_recurrence_times(recurrence):
    torch.manual_seed(0)
    module = build_context("rcca", C, recurrence)
    assert isinstance(module, RecurrentCrissCross) and isinstance(module.cca, CrissCrossAttention)
    assert module.recurrence == recurrence and f"recurrence={recurrence}" in repr(module)
    calls = []
    module.cca.register_forward_pre_hook(lambda m, args: calls.append(args[0]))
    with torch.no_grad():
        module.cca.gamma.fill_(0.5)
        x = torch.randn(1, C, 6, 5)
        out = module(x)
        expected = x
        for _ in range(recurrence):
            expected = module.cca(expected)
    assert len(calls) == 2 * recurrence  # R passes in module(x), R in the loop above
    torch.testing.assert_close(out, expected)
    assert _params(module) == _params(CrissCrossAttention(C))  # one module, whatever R


def test_recurrence_zero_freezes_the_attention():
    module = build_context("rcca", C, recurrence=0)
    assert not any(p.requires_grad for p in module.parameters())  # DDP / weight decay skip them
    module.recurrence = 2
    assert all(p.requires_grad for p in module.parameters())
    module.recurrence = 0
    assert not any(p.requires_grad for p in module.parameters())
    # in a head, only the attention is frozen: the convs of the FCN baseline still train
    head = RCCAHead(24, C, 3, recurrence=0)
    frozen = {n for n, p in head.named_parameters() if not p.requires_grad}
    assert frozen == {f"context.cca.{n}" for n, _ in module.cca.named_parameters()}


def test_none_is_no_module_at_all():
    module = build_context("none", C, recurrence=3)
    assert isinstance(module, nn.Identity) and not list(module.parameters())


def test_nonlocal_ignores_recurrence_and_is_2d_only():
    assert _params(build_context("nonlocal", C, 0)) == _params(build_context("nonlocal", C, 3))
    with pytest.raises(ValueError, match="model.context=nonlocal is a 2D block"):
        build_context("nonlocal", C, dims=3)
    with pytest.raises(ValueError, match="dims=4"):
        build_context("rcca", C, dims=4)


def test_rcca_3d_on_clips():
    torch.manual_seed(0)
    module = build_context("rcca", C, recurrence=2, dims=3)
    assert isinstance(module.cca, CrissCrossAttention3d)
    x = torch.randn(2, C, 3, 5, 4)  # (B, C, T, H, W)
    torch.testing.assert_close(module(x), x)
    with torch.no_grad():
        module.cca.gamma.fill_(0.5)
        out = module(x)
        torch.testing.assert_close(out, module.cca(module.cca(x)))
    assert out.shape == x.shape and not torch.allclose(out, x)


@pytest.mark.parametrize("value", [-1, 1.5, 2.0, True, "2", None])
def test_bad_recurrence_gives_the_one_message(value):
    message = f"model.recurrence must be an int >= 0; got {value!r}"
    for make in (
        lambda: check_recurrence(value),
        lambda: build_context("rcca", C, value),
        lambda: build_context("none", C, value),
        lambda: RCCAHead(24, C, 3, recurrence=value),
        lambda: CCNet(3, "resnet10t", recurrence=value),  # before the backbone is built
        lambda: TimmFPNBackbone("resnet10t", recurrence=value),
    ):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            make()
    module = build_context("rcca", C)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        module.recurrence = value
    assert module.recurrence == 2


def test_unknown_context_gives_the_one_message():
    assert check_context("rcca") == "rcca" and check_recurrence(3) == 3
    for make in (
        lambda: check_context("aspp"),
        lambda: build_context("aspp", C),
        lambda: CCNet(3, "resnet10t", context="aspp"),
        lambda: TimmFPNBackbone("resnet10t", context="aspp"),
    ):
        with pytest.raises(ValueError, match=f"^{re.escape(CONTEXT_MESSAGE)}$"):
            make()
    with pytest.raises(ValueError, match="model.context must be one of"):
        check_context(["rcca"])


def test_checkpoint_with_pre_cca_keys_loads_with_identical_outputs():
    """Checkpoints saved when the head's context was the CCA itself
    (``head.context.query.weight``) load into the RCCA module (``head.context.cca.query...``)."""
    torch.manual_seed(0)
    trained = nn.ModuleDict({"head": RCCAHead(24, C, 3, recurrence=2)}).eval()
    with torch.no_grad():
        trained["head"].context.cca.gamma.fill_(0.7)
    state = trained.state_dict()
    old = {k.replace("head.context.cca.", "head.context."): v for k, v in state.items()}
    assert "head.context.query.weight" in old and "head.context.gamma" in old
    assert not any(".cca." in k for k in old)

    torch.manual_seed(1)
    fresh = nn.ModuleDict({"head": RCCAHead(24, C, 3, recurrence=2)}).eval()
    fresh.load_state_dict(old)  # strict: no missing or unexpected keys
    x = torch.randn(1, 24, 6, 7)
    with torch.no_grad():
        torch.testing.assert_close(fresh["head"](x), trained["head"](x), rtol=0, atol=0)
    fresh.load_state_dict(trained.state_dict())  # the new keys load as they are
    assert set(fresh.state_dict()) == set(trained.state_dict())
