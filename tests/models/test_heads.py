"""Context heads (RCCA / non-local) and the auxiliary FCN head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from src.models.attention import CrissCrossAttention, NonLocalBlock
from src.models.context import RecurrentCrissCross
from src.models.heads import FCNHead, NonLocalHead, RCCAHead

pytestmark = pytest.mark.usefixtures("single_thread")

IN, CH, K = 48, 32, 5


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("head_cls", [RCCAHead, NonLocalHead])
def test_context_head_shapes_and_features(head_cls):
    head = head_cls(IN, CH, K)
    x = torch.randn(2, IN, 7, 11)
    logits, features = head(x, return_features=True)
    assert logits.shape == (2, K, 7, 11)
    assert features.shape == (2, CH, 7, 11)
    assert head(x).shape == (2, K, 7, 11)


def test_heads_use_their_context_module():
    rcca = RCCAHead(IN, CH, K).context
    assert isinstance(rcca, RecurrentCrissCross) and isinstance(rcca.cca, CrissCrossAttention)
    assert isinstance(NonLocalHead(IN, CH, K).context, NonLocalBlock)


def test_fuse_conv_sees_backbone_and_context_channels():
    head = RCCAHead(IN, CH, K)
    assert head.fuse[0].in_channels == IN + CH
    assert head.reduce[0].in_channels == IN and head.project[0].in_channels == CH


@pytest.mark.parametrize("recurrence", [0, 1, 2, 3])
def test_shared_cca_applied_recurrence_times(recurrence):
    head = RCCAHead(IN, CH, K, recurrence=recurrence)
    calls = []
    head.context.cca.register_forward_hook(lambda *args: calls.append(1))
    head(torch.randn(1, IN, 5, 6))
    assert len(calls) == recurrence
    assert head.recurrence == head.context.recurrence == recurrence
    assert f"recurrence={recurrence}" in repr(head)
    assert _count(head) == _count(RCCAHead(IN, CH, K, recurrence=0))


def test_recurrence_zero_is_the_baseline_without_attention():
    torch.manual_seed(0)
    head = RCCAHead(IN, CH, K, recurrence=0).eval()
    x = torch.randn(1, IN, 6, 5)
    before = head(x)
    with torch.no_grad():
        head.context.cca.gamma.fill_(3.0)
    assert torch.equal(head(x), before)  # CCA kept for the parameter count, never applied
    assert not any(p.requires_grad for p in head.context.parameters())
    head.recurrence = 1
    assert head.context.recurrence == 1
    assert all(p.requires_grad for p in head.context.parameters())
    assert not torch.allclose(head(x), before)


def test_negative_recurrence_names_the_config_key():
    with pytest.raises(ValueError, match="model.recurrence"):
        RCCAHead(IN, CH, K, recurrence=-1)


def test_fresh_cca_keeps_gamma_zero_after_head_init():
    head = RCCAHead(IN, CH, K)
    assert head.context.cca.gamma.item() == 0.0


def test_fcn_head_shape_and_dropout():
    head = FCNHead(IN, 16, K)
    assert head(torch.randn(2, IN, 9, 4)).shape == (2, K, 9, 4)
    assert isinstance(head.dropout, nn.Dropout2d) and head.dropout.p == pytest.approx(0.1)
    assert head.conv[0].out_channels == 16


def test_dropout_is_configurable():
    assert RCCAHead(IN, CH, K, dropout=0.3).dropout.p == pytest.approx(0.3)
