"""Dense criss-cross attention maps: equal to the op, supported on the cross, composed passes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from src.models.attention import (
    CrissCrossAttention,
    CrissCrossAttention3d,
    criss_cross_attention,
)
from src.models.attention_maps import (
    attention_weights,
    compose_passes,
    criss_cross_mask,
    criss_cross_weights,
    position_map,
    recurrent_attention_weights,
)
from src.models.context import RecurrentCrissCross
from src.models.heads import RCCAHead


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Tiny tensors: one intra-op thread (see conftest)."""


def _random(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _apply(weights, value):
    """Σ_i weights[u, i] · v_i, back on the grid of ``value`` (B, C, *S)."""
    flat = torch.bmm(weights, value.flatten(2).transpose(1, 2))  # (B, N, C)
    return flat.transpose(1, 2).reshape(value.shape)


@pytest.mark.parametrize("spatial", [(5, 7), (1, 6), (3, 4, 5)])
def test_weights_applied_to_values_equal_the_op(spatial):
    q, k = _random(2, 3, *spatial, seed=1), _random(2, 3, *spatial, seed=2)
    v = _random(2, 4, *spatial, seed=3)
    weights = criss_cross_weights(q, k)
    n = torch.tensor(spatial).prod().item()
    assert weights.shape == (2, n, n) and weights.dtype == torch.float64
    torch.testing.assert_close(_apply(weights, v), criss_cross_attention(q, k, v))


def test_weights_live_on_the_cross_and_rows_sum_to_one():
    spatial = (4, 6)
    weights = criss_cross_weights(_random(1, 2, *spatial, seed=4), _random(1, 2, *spatial, seed=5))
    mask = criss_cross_mask(spatial)
    assert mask.sum(dim=1).tolist() == [4 + 6 - 1] * 24  # the centre counted once
    assert (weights[0][~mask] == 0).all() and (weights[0][mask] > 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 24, dtype=torch.float64))
    # position (1, 2) = index 8: its row 1 and its column 2, nothing else
    grid = position_map(weights, (1, 2), spatial)[0] > 0
    expected = torch.zeros(spatial, dtype=torch.bool)
    expected[1, :] = expected[:, 2] = True
    assert torch.equal(grid, expected)


def test_3d_cross_is_the_three_lines():
    mask = criss_cross_mask((2, 3, 4))
    assert mask.sum(dim=1).tolist() == [2 + 3 + 4 - 2] * 24


@pytest.mark.parametrize(
    "module_cls, spatial", [(CrissCrossAttention, (6, 5)), (CrissCrossAttention3d, (2, 3, 4))]
)
def test_module_output_is_input_plus_gamma_times_weighted_values(module_cls, spatial):
    torch.manual_seed(0)
    module = module_cls(16).double()
    with torch.no_grad():
        module.gamma.fill_(0.7)
    x = _random(2, 16, *spatial, seed=6)
    weights = attention_weights(module, x)
    expected = x + 0.7 * _apply(weights, module.value(x))
    with torch.no_grad():
        torch.testing.assert_close(module(x), expected)


def test_two_passes_of_an_rcca_head_reach_every_position():
    torch.manual_seed(0)
    head = RCCAHead(in_channels=8, channels=16, num_classes=3, recurrence=2).double().train()
    with torch.no_grad():
        head.context.cca.gamma.fill_(0.5)
    features = _random(1, 8, 6, 7, seed=7)
    passes = recurrent_attention_weights(head, features)
    assert len(passes) == 2 and head.training  # the mode is restored

    # pass 1 reads the reduced features, pass 2 the output of pass 1
    with torch.no_grad():
        head.eval()
        cca, x1 = head.context.cca, head.reduce(features)
        torch.testing.assert_close(passes[0], attention_weights(cca, x1))
        torch.testing.assert_close(passes[1], attention_weights(cca, cca(x1)))

    mask = criss_cross_mask((6, 7))
    assert (passes[0][0][~mask] == 0).all()  # one pass: only the cross
    effective = compose_passes(passes)
    torch.testing.assert_close(effective, passes[1] @ passes[0])
    assert (effective > 0).all()  # two passes: every position reaches every other one
    torch.testing.assert_close(effective.sum(-1), torch.ones(1, 42, dtype=torch.float64))


def test_3d_passes_reach_the_lines_then_the_planes_then_the_clip():
    """A 3D RCCA (one shared CrissCrossAttention3d, R=3): the recorded passes compose to
    weights on the three lines (1 pass), the three planes (2) and the whole clip (3)."""
    torch.manual_seed(0)
    rcca = RecurrentCrissCross(8, recurrence=3, dims=3).double()
    with torch.no_grad():
        rcca.cca.gamma.fill_(0.5)
    spatial = (3, 4, 5)
    passes = recurrent_attention_weights(rcca, _random(1, 8, *spatial, seed=8))
    assert len(passes) == 3
    mask = criss_cross_mask(spatial).double()
    reach = mask
    for r in (1, 2, 3):
        effective = compose_passes(passes[:r])
        assert torch.equal(effective[0] > 0, reach > 0), r
        torch.testing.assert_close(effective.sum(-1), torch.ones(1, 60, dtype=torch.float64))
        reach = reach @ mask
    t, h, w = spatial
    planes = h * w + t * w + t * h - t - h - w + 1
    assert (compose_passes(passes[:2])[0] > 0).sum(-1).tolist() == [planes] * 60
    assert (compose_passes(passes)[0] > 0).all()


def test_errors_name_the_problem():
    q = torch.zeros(1, 2, 70, 70)
    with pytest.raises(ValueError, match="max_positions"):
        criss_cross_weights(q, q)
    with pytest.raises(ValueError, match="one shape"):
        criss_cross_weights(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match="0 criss-cross"):
        recurrent_attention_weights(nn.Conv2d(2, 2, 1), torch.zeros(1, 2, 3, 3))
    with pytest.raises(ValueError, match="outside"):
        position_map(torch.zeros(1, 4, 4), (2, 0), (2, 2))
    with pytest.raises(ValueError, match="at least one"):
        compose_passes([])
