"""Dilated timm backbone: output stride 8, channel counts, local weights files and clear errors."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from safetensors.torch import save_file

from src.models.backbone import create_backbone

pytestmark = pytest.mark.usefixtures("single_thread")

SMALL = "resnet10t"


def _plain_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The state_dict of a freshly created plain (classifier-bearing) timm model."""
    torch.manual_seed(seed)
    return timm.create_model(name).state_dict()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict:
    """A resnet10t state_dict written as .pth and .safetensors."""
    folder = tmp_path_factory.mktemp("weights")
    state = _plain_state_dict(SMALL, seed=123)
    pth, st = folder / "r10t.pth", folder / "r10t.safetensors"
    torch.save(state, pth)
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    return {"state": state, "pth": pth, "safetensors": st}


def test_stage3_and_stage4_at_output_stride_8_for_odd_sizes():
    backbone = create_backbone(SMALL)
    features = backbone(torch.randn(1, 3, 97, 129))
    assert len(features) == 2
    assert [f.shape[1] for f in features] == backbone.feature_info.channels()
    for f in features:
        assert f.shape[-2:] == (math.ceil(97 / 8), math.ceil(129 / 8))


def test_bottleneck_backbone_exposes_resnet101_channel_counts():
    stage3, stage4 = create_backbone("resnet14t").feature_info.channels()
    assert (stage3, stage4) == (1024, 2048)


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_local_weights_arrive(weights, fmt):
    backbone = create_backbone(SMALL, pretrained=str(weights[fmt]))
    loaded = backbone.state_dict()
    assert loaded, "empty backbone"
    for key, value in loaded.items():
        assert torch.equal(value, weights["state"][key]), key
    fresh = create_backbone(SMALL)  # a random init differs, so equality above is meaningful
    conv = "conv1.0.weight"
    assert not torch.equal(fresh.state_dict()[conv], weights["state"][conv])


def test_missing_weights_file_names_the_file_and_key(tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match="model.pretrained") as err:
        create_backbone(SMALL, pretrained=str(missing))
    assert "nowhere.pth" in str(err.value)


def test_weights_of_another_architecture_are_refused(weights):
    # resnet10t (basic blocks) weights into resnet14t (bottlenecks): missing conv3, wrong shapes
    with pytest.raises(ValueError, match="model.backbone='resnet14t'") as err:
        create_backbone("resnet14t", pretrained=str(weights["pth"]))
    message = str(err.value)
    assert "missing keys" in message and "layer1.0.conv3.weight" in message
    assert "shape mismatches" in message and "r10t.pth" in message


def test_superset_weights_are_refused_not_loaded_partially(tmp_path):
    # resnet34 holds every resnet18 key with the same shape, plus extra blocks: timm would
    # load it non-strictly into a features_only resnet18 without complaint.
    path = tmp_path / "resnet34.safetensors"
    save_file(_plain_state_dict("resnet34"), str(path))
    with pytest.raises(ValueError, match="unexpected keys") as err:
        create_backbone("resnet18", pretrained=str(path))
    assert "layer1.2." in str(err.value)


def test_shape_mismatch_is_reported_with_the_key(tmp_path, weights):
    state = dict(weights["state"])
    state["layer2.0.conv1.weight"] = state["layer2.0.conv1.weight"][:, :8].clone()
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match="shape mismatches") as err:
        create_backbone(SMALL, pretrained=str(path))
    assert "layer2.0.conv1.weight" in str(err.value)


def test_unknown_backbone_names_the_config_key():
    with pytest.raises(ValueError, match="model.backbone") as err:
        create_backbone("resnet18dd")
    assert "resnet18d" in str(err.value)  # a suggestion


def test_backbone_without_dilation_support_is_a_value_error():
    with pytest.raises(ValueError, match="model.backbone"):
        create_backbone("vit_tiny_patch16_224")


def test_weights_that_timm_silently_skips_are_detected(weights, monkeypatch):
    import timm.models._builder as builder

    monkeypatch.setattr(builder, "load_pretrained", lambda *args, **kwargs: None)
    with pytest.raises(RuntimeError, match="did not load"):
        create_backbone(SMALL, pretrained=str(weights["pth"]))
