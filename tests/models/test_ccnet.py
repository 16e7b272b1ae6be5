"""CCNet end to end: output dict and shapes, parameter counts, gradients, SyncBN, no-decay names."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from src.core.losses import CCNetLoss
from src.models.attention import CrissCrossAttention
from src.models.ccnet import CCNet

pytestmark = pytest.mark.usefixtures("single_thread")

BACKBONE, K = "resnet10t", 5
SMALL = dict(backbone=BACKBONE, channels=32, aux_channels=16)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("context", ["rcca", "nonlocal", "none"])
def test_train_outputs_at_one_eighth_for_odd_sizes(context):
    model = CCNet(K, context=context, embed_dim=4, **SMALL).train()
    outputs = model(torch.randn(1, 3, 97, 129))
    h, w = math.ceil(97 / 8), math.ceil(129 / 8)
    assert set(outputs) == {"out", "aux", "embedding"}
    assert outputs["out"].shape == (1, K, h, w)
    assert outputs["aux"].shape == (1, K, h, w)
    assert outputs["embedding"].shape == (1, 4, h, w)
    assert model.num_classes == K


def test_eval_mode_returns_only_main_logits():
    model = CCNet(K, embed_dim=4, **SMALL).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 65, 64))
    assert list(outputs) == ["out"]
    assert outputs["out"].shape == (1, K, 9, 8)


def test_optional_aux_and_embedding_are_left_out():
    model = CCNet(K, aux=False, embed_dim=None, **SMALL).train()
    assert model.aux_head is None and model.embed is None
    assert list(model(torch.randn(1, 3, 64, 64))) == ["out"]


def test_recurrence_does_not_change_the_parameter_count():
    counts = {r: _params(CCNet(K, recurrence=r, **SMALL)) for r in range(4)}
    assert len(set(counts.values())) == 1, counts  # R=0, the FCN baseline, included
    # context=none has no context module at all: fewer parameters, by exactly the attention's
    none = CCNet(K, context="none", **SMALL)
    assert isinstance(none.head.context, nn.Identity)
    assert _params(none) == counts[0] - _params(CrissCrossAttention(SMALL["channels"]))


def test_unknown_context_names_the_config_key():
    with pytest.raises(ValueError, match="model.context"):
        CCNet(K, context="transformer", **SMALL)


def test_gradients_reach_backbone_head_gamma_and_embedding():
    torch.manual_seed(0)
    model = CCNet(K, embed_dim=4, **SMALL).train()
    criterion = CCNetLoss(ccl=True, ohem=True, ohem_min_kept=100)
    images = torch.randn(2, 3, 48, 48)
    target = torch.randint(0, K, (2, 48, 48))
    target[:, :8] = 255
    gamma = model.head.context.cca.gamma
    assert gamma.item() == 0.0
    criterion(model(images), target)["loss"].backward()
    for name, param in [
        ("backbone stem", model.backbone.conv1[0].weight),
        # timm zero-inits each block's last BN, so test its weight rather than the conv before it
        ("backbone stage 4", model.backbone.layer4[0].bn2.weight),
        ("head reduce", model.head.reduce[0].weight),
        ("gamma", gamma),
        ("aux head", model.aux_head.conv[0].weight),
        ("embedding", model.embed.weight),
    ]:
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    query = model.head.context.cca.query.weight
    assert query.grad.abs().sum() == 0  # gamma = 0 hides the attention's projections at init
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.step()
    assert gamma.item() != 0.0
    optimizer.zero_grad()
    criterion(model(images), target)["loss"].backward()
    assert query.grad.abs().sum() > 0


def test_batchnorm_converts_to_syncbatchnorm_without_changing_outputs():
    torch.manual_seed(0)
    model = CCNet(K, **SMALL).eval()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(type(m) is nn.BatchNorm2d for m in norms)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(images)["out"]
        synced = nn.SyncBatchNorm.convert_sync_batchnorm(model).eval()
        converted = [m for m in synced.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert len(converted) == len(norms)
        assert all(isinstance(m, nn.SyncBatchNorm) for m in converted)
        torch.testing.assert_close(synced(images)["out"], expected)


def test_no_weight_decay_names_the_attention_gamma():
    model = CCNet(K, **SMALL)
    assert model.no_weight_decay() == {"head.context.cca.gamma"}
    assert "head.context.cca.gamma" in dict(model.named_parameters())
    assert CCNet(K, context="nonlocal", **SMALL).no_weight_decay() == set()
