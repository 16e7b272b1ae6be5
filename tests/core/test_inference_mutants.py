"""src.core.inference: the edges that `make mutate` found no test pinning down — the values the
config normalises, the checks' boundaries, scales that resize (or not), the tiling of a side
shorter than the crop, and the model's ``align_corners`` on rescaled views."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn

from src.core.inference import InferenceConfig, predict_logits

CLASSES = 3


class ShapeNet(nn.Module):
    """Per-pixel logits (1×1 conv) of ``classes`` channels; records every input's shape."""

    def __init__(self, classes: int = CLASSES) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, classes, 1)
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: Tensor) -> Tensor:
        self.shapes.append(tuple(x.shape))
        return self.conv(x)


def image(h: int, w: int) -> Tensor:
    return torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(h * w))


def test_the_config_normalises_what_it_checks():
    config = InferenceConfig(flip=1, tile_batch_size=np.int64(3), scales=0.5, resize=[100, 50])
    assert config.flip is True
    assert type(config.tile_batch_size) is int and config.tile_batch_size == 3
    assert config.scales == (0.5,)
    assert config.resize == (100, 50)
    assert InferenceConfig(resize=64).resize == (64, 64)
    assert InferenceConfig(crop_size=1, stride=1).crop_size == (1, 1)  # 1 is positive
    # a window narrower than tall: each stride side is checked against its own crop side
    assert InferenceConfig(crop_size=(8, 4), stride=(6, 2)).stride == (6, 2)


def test_from_config_resolves_interpolations():
    root = OmegaConf.create({"n": 2, "inference": {"tile_batch_size": "${n}", "scales": [1.0]}})
    assert InferenceConfig.from_config(root.inference).tile_batch_size == 2


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        (dict(scales=[0.0]), "inference.scales"),
        (dict(scales="12"), "inference.scales"),  # a string is not a list of scales
        (dict(crop_size=2.5), "^inference.crop_size must be"),
        (dict(crop_size=(800, 800, 3)), "^inference.crop_size must be"),
        (dict(stride=(8, 8, 8)), "^inference.stride must be"),
        (dict(stride=1.5), "^inference.stride must be"),
    ],
)
def test_bad_settings_are_value_errors_naming_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        InferenceConfig(**kwargs)


@pytest.mark.parametrize("pairs", [[(0, 1, 2)], [(0,)], [(0, 1.0)]], ids=["three", "one", "float"])
def test_flip_pairs_must_be_pairs_of_ints(pairs) -> None:
    with pytest.raises(ValueError, match="flip_pairs"):
        predict_logits(ShapeNet().eval(), image(4, 4), flip=True, flip_pairs=pairs)


def test_a_flip_pair_beyond_the_models_classes_is_an_error() -> None:
    """Without ``num_classes`` the pairs are checked against the model's channels."""
    with pytest.raises(ValueError, match="out of range"):
        predict_logits(ShapeNet().eval(), image(4, 4), flip=True, flip_pairs=[(0, CLASSES)])


def test_the_class_count_is_checked_on_the_channel_dim() -> None:
    """``num_classes`` is compared with the logits' channels (not a spatial size)."""
    out = predict_logits(ShapeNet().eval(), image(5, 7), num_classes=CLASSES)
    assert out.shape == (1, CLASSES, 5, 7)
    with pytest.raises(ValueError, match="expected"):
        predict_logits(ShapeNet().eval(), image(5, 7), num_classes=CLASSES + 1)


def test_a_model_returning_per_pixel_maps_without_classes_is_rejected() -> None:
    with pytest.raises(TypeError, match="B×K×h×w"):
        predict_logits(lambda x: x[:, 0], image(4, 4))  # type: ignore[arg-type]


def test_each_scale_resizes_the_view_and_a_tiny_one_keeps_one_pixel() -> None:
    model = ShapeNet().eval()
    predict_logits(model, image(8, 12), scales=(2.0, 1.0, 0.1))
    assert [s[-2:] for s in model.shapes] == [(16, 24), (8, 12), (1, 1)]


def test_tiles_of_a_side_longer_than_the_crop_keep_their_stride() -> None:
    """A 20×4 image, crop 8, stride (6, 2): the width (shorter than the crop) is one tile,
    the height keeps its own stride: tiles at y = 0, 6, 12."""
    model = ShapeNet().eval()
    predict_logits(model, image(20, 4), mode="slide", crop_size=8, stride=(6, 2), tile_batch_size=1)
    assert [s[-2:] for s in model.shapes] == [(8, 4)] * 3


def test_rescaled_views_are_resized_back_with_the_models_align_corners() -> None:
    """At scale 0.5 the view's logits come back to full size with the model's
    ``align_corners`` (True here), in whole and slide mode."""

    class CornersNet(ShapeNet):
        align_corners = True

    model, x = CornersNet().eval(), image(12, 16)
    small = F.interpolate(x, size=(6, 8), mode="bilinear", align_corners=False)
    expected = F.interpolate(model(small), size=(12, 16), mode="bilinear", align_corners=True)
    torch.testing.assert_close(predict_logits(model, x, scales=(0.5,)), expected)
    slide = predict_logits(model, x, scales=(0.5,), mode="slide", crop_size=4, stride=2)
    torch.testing.assert_close(slide, expected)


class LastFrameNet(nn.Module):
    """A video model in miniature: B×T×C×H×W clips in, per-pixel logits of the last frame."""

    def __init__(self, frame_model: ShapeNet) -> None:
        super().__init__()
        self.frame_model = frame_model

    def forward(self, clips: Tensor) -> Tensor:
        assert clips.dim() == 5
        return self.frame_model(clips[:, -1])


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_clips_are_scaled_and_tiled_frame_by_frame(mode: str) -> None:
    """Clips (B×T×C×H×W) go through the same views as images: scaled, flipped and tiled
    frame by frame, so a model reading the last frame gives the logits of that frame."""
    frames = ShapeNet().eval()
    clips = torch.randn(2, 3, 3, 12, 16, generator=torch.Generator().manual_seed(3))
    settings = dict(mode=mode, scales=(0.5, 1.0), flip=True, crop_size=4, stride=2)
    got = predict_logits(LastFrameNet(frames), clips, **settings)
    expected = predict_logits(frames, clips[:, -1], **settings)
    assert got.shape == (2, CLASSES, 12, 16)
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="clips"):
        predict_logits(frames, clips[None])  # 6-D


def test_logits_come_back_contiguous_for_a_channels_last_model() -> None:
    """A model run channels_last (a common speed setting) returns channels_last logits; the
    result is still a plain contiguous B×K×H×W tensor (the model's output is copied into one,
    not kept in its memory format), so ``.view`` on it works, with the same values."""
    model, x = ShapeNet().eval(), image(6, 8)
    expected = predict_logits(model, x)
    model = model.to(memory_format=torch.channels_last)
    out = predict_logits(model, x.contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous()
    torch.testing.assert_close(out.view(1, CLASSES, -1), expected.view(1, CLASSES, -1))


@pytest.mark.parametrize("key", ["mode", "tile_batch_size", "flip"])
def test_a_mandatory_value_left_unset_is_a_value_error_naming_the_key(key: str) -> None:
    """A DictConfig is turned into plain values first: a value left as OmegaConf's ``???`` is
    reported like any bad value, a ValueError naming ``inference.<key>`` (which the app turns
    into a ConfigError), not an omegaconf MissingMandatoryValue on access."""
    with pytest.raises(ValueError, match=f"^inference.{key} must be"):
        InferenceConfig.from_config(OmegaConf.create({key: "???"}))


@pytest.mark.parametrize("value", ["false", "no", 2, 0.5, None])
def test_flip_takes_only_a_bool(value) -> None:
    """``flip`` is a switch: the string ``"false"`` (from a hand-written dict or an old
    checkpoint) or any other non-bool is an error naming ``inference.flip``, not true."""
    with pytest.raises(ValueError, match="^inference.flip must be true or false"):
        InferenceConfig(flip=value)


@pytest.mark.parametrize(("value", "expected"), [(True, True), (0, False), (np.bool_(True), True)])
def test_flip_accepts_bools_and_zero_or_one(value, expected: bool) -> None:
    assert InferenceConfig(flip=value).flip is expected


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_inference_on_cuda_equals_the_cpu(mode: str) -> None:
    """Every buffer inference allocates (the sliding window's sums and counts, the rescaled
    views) lives on the image's device: the CUDA result equals the CPU one."""
    net = ShapeNet().eval()
    settings = dict(mode=mode, crop_size=6, stride=4, scales=(0.75, 1.0), flip=True)
    cpu = predict_logits(net, image(10, 13), **settings)
    cuda = predict_logits(net.cuda(), image(10, 13).cuda(), **settings)
    assert cuda.device.type == "cuda"
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=1e-5, atol=1e-5)
