"""Dilated timm backbone: output stride 8, channel counts, local weights files and clear errors."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest
import timm
import torch
from cli_helpers import ROOT
from safetensors.torch import save_file

from src.models.backbone import DILATABLE_FAMILIES, check_dilated_backbone, create_backbone

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


@pytest.mark.parametrize("name", ["resnet101c", "resnet50d", "seresnext26d_32x4d", "resnest14d"])
def test_dilatable_backbones_pass_the_start_check(name):
    assert check_dilated_backbone(name) == name


@pytest.mark.parametrize("name", ["convnext_tiny", "vit_tiny_patch16_224", "dla34"])
def test_backbones_without_dilation_fail_the_start_check_in_one_line(name):
    """Caught at start (on the meta device), not later as ``list index out of range``."""
    with pytest.raises(ValueError) as err:
        check_dilated_backbone(name)
    message = str(err.value)
    assert message.startswith(f"model.backbone={name!r} cannot run dilated at output stride 8")
    assert DILATABLE_FAMILIES in message and "\n" not in message


OFFLINE_SCRIPT = textwrap.dedent(
    """
    from src.models.backbone import PretrainedDownloadError, create_backbone
    from src.models.mask_rcnn import create_body

    for build in (create_backbone, create_body):
        try:
            build("resnet10t", pretrained=True)
        except PretrainedDownloadError as err:
            print("ERROR:", err)
    """
)


def test_offline_pretrained_download_says_how_to_go_on(tmp_path):
    """HF_HUB_OFFLINE with an empty cache (no network in tests): both backbones (CCNet's and
    the Mask R-CNN's) end in one line naming model.pretrained's two ways out."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "TORCH_HOME": str(tmp_path / "torch"),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ERROR:")]
    assert len(lines) == 2, proc.stdout
    for line in lines:
        assert "model.pretrained=true needs timm's weights for resnet10t from the internet" in line
        assert (
            "set model.pretrained=false, or model.pretrained=/path/to/resnet10t.safetensors" in line
        )
        assert "LocalEntryNotFoundError" in line and "HF_HUB_OFFLINE is set" in line
        assert "https://huggingface.co/timm/resnet10t" in line
