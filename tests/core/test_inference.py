"""Tests of src.core.inference: whole vs sliding window, tiles, scales, flips and argument checks.

Stand-in models keep these tests independent of the real CCNet: ``Stride8Net`` follows its
contract (dict with ``out`` at ceil(H/8)×ceil(W/8)); the others make the expected answer
exact (per-pixel, constant or position-dependent outputs).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.core.inference import (
    InferenceConfig,
    predict_logits,
    predict_logits_with,
    resize_factor,
    slide_windows,
)

CLASSES = 5


class Stride8Net(nn.Module):
    """CCNet's contract in miniature: a 3×3 conv at stride 8 (ceil sizes) and a 1×1 classifier."""

    def __init__(self, classes: int = CLASSES) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=8, padding=1)
        self.classifier = nn.Conv2d(8, classes, 1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"out": self.classifier(torch.relu(self.stem(x)))}


class PixelNet(nn.Module):
    """Output at a pixel depends on that pixel alone (1×1 convs at stride 1); a plain tensor."""

    def __init__(self, classes: int = CLASSES) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Tanh(), nn.Conv2d(8, classes, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class ConstantNet(nn.Module):
    """The same logits everywhere, at 1/8 resolution."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.register_buffer("values", torch.tensor(values).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        b, _, h, w = x.shape
        return {"out": self.values.expand(b, -1, math.ceil(h / 8), math.ceil(w / 8))}


class SideNet(nn.Module):
    """Channel ``left`` fires on the left half of its input, ``right`` on the right half."""

    def __init__(self, left: int, right: int, classes: int = CLASSES) -> None:
        super().__init__()
        self.left, self.right, self.classes = left, right, classes

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        out = x.new_zeros(b, self.classes, h, w)
        out[:, self.left, :, : w // 2] = 1.0
        out[:, self.right, :, w // 2 :] = 1.0
        return out


class CountingNet(Stride8Net):
    """Records the batch size of every call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        self.calls.append(x.shape[0])
        return super().forward(x)


class ShapeNet(Stride8Net):
    """Records the input shape of every call."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        self.shapes.append(tuple(x.shape))
        return super().forward(x)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def images(b: int, h: int, w: int) -> Tensor:
    return torch.randn(b, 3, h, w)


def upsampled(model: nn.Module, x: Tensor, size: tuple[int, int]) -> Tensor:
    out = model(x)
    out = out["out"] if isinstance(out, dict) else out
    return F.interpolate(out, size=size, mode="bilinear", align_corners=False)


def test_stand_in_has_ccnet_output_size() -> None:
    out = Stride8Net()(images(1, 37, 53))["out"]
    assert out.shape[-2:] == (math.ceil(37 / 8), math.ceil(53 / 8))


def test_whole_equals_direct_call_and_upsample() -> None:
    model, x = Stride8Net().eval(), images(2, 37, 53)
    got = predict_logits(model, x, mode="whole")
    assert torch.equal(got, upsampled(model, x, (37, 53)))


def test_plain_tensor_model_is_accepted() -> None:
    model, x = PixelNet().eval(), images(1, 20, 24)
    assert torch.equal(predict_logits(model, x), model(x))


@pytest.mark.parametrize(
    "size", [(30, 50), (64, 64), (97, 130), (64, 150)], ids=["smaller", "equal", "odd", "wide"]
)
def test_slide_equals_whole_for_pixelwise_model(size: tuple[int, int]) -> None:
    model, x = PixelNet().eval(), images(2, *size)
    whole = predict_logits(model, x, mode="whole")
    slide = predict_logits(model, x, mode="slide", crop_size=(64, 64), stride=(40, 40))
    assert slide.shape == whole.shape
    torch.testing.assert_close(slide, whole, rtol=1e-5, atol=1e-5)


def test_slide_with_one_tile_equals_whole() -> None:
    model, x = Stride8Net().eval(), images(1, 64, 48)
    whole = predict_logits(model, x, mode="whole")
    slide = predict_logits(model, x, mode="slide", crop_size=(64, 48), stride=(32, 32))
    torch.testing.assert_close(slide, whole, rtol=0, atol=1e-6)


def test_slide_on_image_smaller_than_the_tile_is_whole_image_inference() -> None:
    """The tile is clamped to the image: one forward at the image's size, no zero padding
    (which made a 30×50 image a 64×64 forward whose logits differ from the whole image's)."""
    model, x = ShapeNet().eval(), images(2, 30, 50)
    got = predict_logits(model, x, mode="slide", crop_size=64, stride=48)
    assert model.shapes == [(2, 3, 30, 50)]
    assert torch.equal(got, predict_logits(model, x, mode="whole"))


def test_slide_clamps_only_the_side_shorter_than_the_tile() -> None:
    model, x = ShapeNet().eval(), images(1, 30, 150)
    got = predict_logits(model, x, mode="slide", crop_size=64, stride=40, tile_batch_size=1)
    assert got.shape == (1, CLASSES, 30, 150)
    columns = len(slide_windows(30, 150, (30, 64), (30, 40)))
    assert columns == 4 and model.shapes == [(1, 3, 30, 64)] * columns
    pixelwise = PixelNet().eval()
    torch.testing.assert_close(
        predict_logits(pixelwise, x, mode="slide", crop_size=64, stride=40),
        predict_logits(pixelwise, x, mode="whole"),
        rtol=1e-5,
        atol=1e-5,
    )


def test_multiscale_flip_slide_on_small_image_is_one_forward_per_view() -> None:
    """``inference=slide_ms_flip`` (769 tiles) on a 64×128 image: each of the 10 views is one
    forward at the view's own size, not a 769×769 tile (the cost of 50 s for four images)."""
    model, x = ShapeNet().eval(), images(1, 64, 128)
    scales = (0.75, 1.0, 1.25, 1.5, 1.75)
    config = InferenceConfig("slide", 769, 513, scales, flip=True)
    out = predict_logits(model, x, config)
    expected = [(1, 3, round(64 * s), round(128 * s)) for s in scales for _ in range(2)]
    assert model.shapes == expected and out.shape == (1, CLASSES, 64, 128)
    assert config.crop_size == (769, 769)  # the config is untouched; each view is clamped

    model.shapes.clear()
    flip = dict(crop_size=769, stride=513, flip=True)
    slide = predict_logits(model, x, mode="slide", **flip)
    assert model.shapes == [(1, 3, 64, 128)] * 2
    assert torch.equal(slide, predict_logits(model, x, mode="whole", flip=True))


def test_slide_windows_cover_awkward_size() -> None:
    height, width, crop, stride = 97, 130, (64, 64), (40, 40)
    windows = slide_windows(height, width, crop, stride)
    rows = max(math.ceil((height - crop[0]) / stride[0]), 0) + 1
    cols = max(math.ceil((width - crop[1]) / stride[1]), 0) + 1
    assert len(windows) == rows * cols
    count = torch.zeros(height, width)
    for y1, y2, x1, x2 in windows:
        assert (y2 - y1, x2 - x1) == crop
        assert y1 >= 0 and y2 <= height and x1 >= 0 and x2 <= width
        count[y1:y2, x1:x2] += 1
    assert bool((count > 0).all())
    assert max(w[1] for w in windows) == height and max(w[3] for w in windows) == width


def test_slide_windows_reject_image_smaller_than_crop() -> None:
    with pytest.raises(ValueError, match="smaller than the crop"):
        slide_windows(50, 80, (64, 64), (40, 40))


def test_slide_averages_overlaps_to_the_constant() -> None:
    values = [0.5, -1.25, 3.0]
    out = predict_logits(
        ConstantNet(values), images(1, 97, 130), mode="slide", crop_size=64, stride=40
    )
    expected = torch.tensor(values).view(1, -1, 1, 1).expand_as(out)
    torch.testing.assert_close(out, expected)


def test_flip_of_flip_equivariant_model_changes_nothing() -> None:
    model, x = PixelNet().eval(), images(2, 33, 46)
    plain = predict_logits(model, x)
    flipped = predict_logits(model, x, flip=True)
    torch.testing.assert_close(flipped, plain, rtol=1e-5, atol=1e-6)


def test_flip_averages_unflipped_and_pair_swapped_logits() -> None:
    model, x = Stride8Net().eval(), images(1, 40, 56)
    pairs = ((1, 3),)
    got = predict_logits(model, x, flip=True, flip_pairs=pairs)
    mirrored = upsampled(model, x.flip(-1), (40, 56)).flip(-1)[:, [0, 3, 2, 1, 4]]
    expected = (upsampled(model, x, (40, 56)) + mirrored) / 2
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_flip_pairs_swap_left_right_channels_back(mode: str) -> None:
    model, x = SideNet(left=1, right=3), images(1, 24, 32)
    kwargs = dict(mode=mode, crop_size=(24, 32), stride=(24, 32))
    plain = predict_logits(model, x, **kwargs)
    swapped = predict_logits(model, x, flip=True, flip_pairs=[(3, 1)], **kwargs)
    unswapped = predict_logits(model, x, flip=True, **kwargs)
    assert torch.equal(swapped, plain)
    assert torch.equal(unswapped[:, [1, 3]], torch.full_like(unswapped[:, [1, 3]], 0.5))


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_multiscale_flip_of_constant_model_is_that_constant(mode: str) -> None:
    values = [2.0, -0.75, 0.125, 4.5]
    out = predict_logits(
        ConstantNet(values),
        images(2, 45, 70),
        mode=mode,
        crop_size=32,
        stride=24,
        scales=(0.5, 0.75, 1.0, 1.25, 1.75),
        flip=True,
    )
    assert out.shape == (2, len(values), 45, 70)
    expected = torch.tensor(values).view(1, -1, 1, 1).expand_as(out)
    torch.testing.assert_close(out, expected)


def test_multiscale_averages_logits_resized_to_full_resolution() -> None:
    model, x = Stride8Net().eval(), images(1, 48, 64)
    got = predict_logits(model, x, scales=(0.5, 1.5))
    views = [
        upsampled(model, F.interpolate(x, scale_factor=s, mode="bilinear"), (48, 64))
        for s in (0.5, 1.5)
    ]
    torch.testing.assert_close(got, sum(views) / 2)


def test_tile_batch_size_does_not_change_the_result() -> None:
    model, x = CountingNet().eval(), images(2, 97, 130)
    kwargs = dict(mode="slide", crop_size=(64, 64), stride=(40, 40))
    one = predict_logits(model, x, tile_batch_size=1, **kwargs)
    calls_one, model.calls = model.calls, []
    five = predict_logits(model, x, tile_batch_size=5, **kwargs)
    torch.testing.assert_close(five, one, rtol=1e-5, atol=1e-6)
    tiles = x.shape[0] * len(slide_windows(97, 130, (64, 64), (40, 40)))
    assert calls_one == [1] * tiles
    assert model.calls == [min(5, tiles - i) for i in range(0, tiles, 5)]


@pytest.mark.parametrize("model_cls", [Stride8Net, PixelNet])
@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_output_is_float32_at_full_resolution_under_autocast(model_cls: type, mode: str) -> None:
    model, x = model_cls().eval(), images(2, 41, 59)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        raw = model(x)
        assert (raw["out"] if isinstance(raw, dict) else raw).dtype == torch.bfloat16
        out = predict_logits(model, x, mode=mode, crop_size=32, stride=24)
    assert out.dtype == torch.float32
    assert out.shape == (2, CLASSES, 41, 59)
    assert out.is_contiguous()


def test_leaves_model_mode_alone_and_tracks_no_gradients() -> None:
    model = Stride8Net().train()
    out = predict_logits(model, images(1, 16, 16), flip=True)
    assert model.training
    assert not out.requires_grad


def test_config_defaults_and_convenience_wrapper() -> None:
    config = InferenceConfig()
    assert (config.mode, config.crop_size, config.stride) == ("whole", (769, 769), (513, 513))
    assert (config.scales, config.flip, config.tile_batch_size) == ((1.0,), False, 4)

    config = InferenceConfig("slide", [32, 40], [16, 24], [1.0, 0.5], True, 3)
    model, x = Stride8Net().eval(), images(1, 50, 70)
    got = predict_logits_with(model, x, config, flip_pairs=[(0, 2)])
    expected = predict_logits(
        model,
        x,
        mode="slide",
        crop_size=(32, 40),
        stride=(16, 24),
        scales=(1.0, 0.5),
        flip=True,
        flip_pairs=[(0, 2)],
        tile_batch_size=3,
    )
    assert torch.equal(got, expected)
    assert torch.equal(predict_logits(model, x, config, flip_pairs=[(0, 2)]), expected)
    with pytest.raises(TypeError, match="InferenceConfig or keyword settings"):
        predict_logits(model, x, "slide")  # type: ignore[arg-type]


def test_from_config_is_the_one_constructor() -> None:
    from omegaconf import OmegaConf

    node = OmegaConf.create({"mode": "slide", "crop_size": [32, 32], "stride": 16})
    config = InferenceConfig.from_config(node)
    assert config.crop_size == (32, 32) and config.stride == (16, 16)
    assert InferenceConfig.from_config(config) is config  # already built: passed on as it is
    assert InferenceConfig.from_config(None) == InferenceConfig()
    # a checkpoint keeps plain values; they rebuild the same settings
    assert InferenceConfig.from_config(config.as_dict()) == config
    assert config.as_dict()["crop_size"] == [32, 32]
    with pytest.raises(ValueError, match="inference.crop is not an inference setting"):
        InferenceConfig.from_config({"mode": "slide", "crop": 4})
    with pytest.raises(AttributeError):
        config.mode = "whole"  # type: ignore[misc]  # checked once, then frozen


def test_the_per_batch_path_checks_no_settings(monkeypatch) -> None:
    """Settings are checked when the config is built, never again per call."""
    import src.core.inference as inference

    config = InferenceConfig(mode="slide", crop_size=32, stride=16, flip=True)
    calls = []
    for name in ("_check_mode", "_check_window", "_check_scales", "_check_tile_batch_size"):
        original = getattr(inference, name)
        monkeypatch.setattr(
            inference, name, lambda *a, _f=original, **k: calls.append(1) or _f(*a, **k)
        )
    model = Stride8Net().eval()
    for _ in range(3):
        predict_logits_with(model, images(1, 40, 40), config)
    assert calls == []


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        (dict(mode="sliding"), "inference.mode"),
        (dict(crop_size=0), "inference.crop_size"),
        (dict(crop_size=(64, 64, 3)), "inference.crop_size"),
        (dict(stride=(0, 8)), "inference.stride"),
        (dict(crop_size=(64, 64), stride=(65, 32)), "inference.stride"),
        (dict(scales=()), "inference.scales"),
        (dict(scales=(1.0, -0.5)), "inference.scales"),
        (dict(tile_batch_size=0), "inference.tile_batch_size"),
        (dict(flip_pairs=[(2, 2)]), "flip_pairs"),
        (dict(flip_pairs=[(1, CLASSES)], num_classes=CLASSES), "out of range"),
        (dict(num_classes=CLASSES + 1), "expected"),
    ],
)
def test_bad_arguments_raise_naming_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        predict_logits(Stride8Net().eval(), images(1, 16, 16), **kwargs)


def test_bad_config_raises_naming_the_key() -> None:
    with pytest.raises(ValueError, match="inference.mode"):
        InferenceConfig(mode="tiles")
    with pytest.raises(ValueError, match="inference.stride"):
        InferenceConfig(crop_size=(64, 64), stride=(64, 80))


def test_model_returning_something_else_is_rejected() -> None:
    with pytest.raises(TypeError, match="out"):
        predict_logits(lambda x: [x], images(1, 8, 8))  # type: ignore[arg-type]


@pytest.mark.slow
def test_cityscapes_size_multiscale_flip_slide_fits() -> None:
    model = Stride8Net(classes=19).eval()
    out = predict_logits(
        model,
        images(1, 1024, 2048),
        mode="slide",
        scales=(0.75, 1.0, 1.25, 1.5, 1.75),
        flip=True,
        flip_pairs=((14, 15), (16, 17)),
    )
    assert out.shape == (1, 19, 1024, 2048)
    assert out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())


def test_benchmark_quick_run_writes_its_table(tmp_path, capsys) -> None:
    from src.bench.inference import main

    argv = ["--quick", "--model", "tiny", "--size", "64", "128", "--crop", "49", "--stride", "33"]
    payload = main([*argv, "--batch-size", "2", "--tile-batch-size", "3", "--out", str(tmp_path)])
    written = json.loads((tmp_path / "inference.json").read_text())
    assert written["rows"] == payload["rows"] and len(payload["rows"]) == 4
    tiles = len(slide_windows(64, 128, (49, 49), (33, 33)))
    whole, one, batched, multi = payload["rows"]
    assert (whole["forward calls"], whole["crops per image"]) == (1, 1)
    assert (one["forward calls"], one["crops per image"]) == (2 * tiles, tiles)
    assert batched["forward calls"] == math.ceil(2 * tiles / 3)
    assert multi["crops per image"] > 2 * tiles
    assert all(row["images/s"] > 0 for row in payload["rows"])
    assert payload["tile_batching_speedup"] == one["s / batch"] / batched["s / batch"]
    assert "speed-up" in capsys.readouterr().out


def test_resize_fits_the_image_into_long_and_short_sides_first() -> None:
    """mmseg's ADE20K test resize: a 40×100 image into (2048, 512)-style sides (50, 20) is
    scaled by min(50/100, 20/40) = 0.5, the scales multiply that, logits come back full size."""
    assert resize_factor((40, 100), (50, 20)) == 0.5
    assert resize_factor((40, 100), (20, 50)) == 0.5  # the order of the pair does not matter
    assert resize_factor((40, 100), (400, 20)) == 0.5  # the short side decides here
    assert resize_factor((40, 100), (150, 100)) == 1.5  # the long side decides, upscaling
    assert resize_factor((40, 100), None) == 1.0
    model, x = ShapeNet().eval(), images(1, 40, 100)
    got = predict_logits(model, x, resize=(50, 20), scales=(1.0, 2.0))
    assert [s[-2:] for s in model.shapes] == [(20, 50), (40, 100)]
    model.shapes.clear()
    expected = [
        upsampled(model, F.interpolate(x, size=size, mode="bilinear"), (40, 100))
        for size in ((20, 50), (40, 100))
    ]
    torch.testing.assert_close(got, sum(expected) / 2)
    with pytest.raises(ValueError, match="inference.resize must be positive"):
        InferenceConfig(resize=(0, 512))


def test_logits_are_resized_with_the_models_align_corners() -> None:
    """A model with ``align_corners=True`` (mmseg's 769 models, the official code) has its
    logits resized that way in whole and slide inference alike."""
    model, x = Stride8Net().eval(), images(1, 48, 64)
    plain = predict_logits(model, x)
    model.align_corners = True
    out = model(x)["out"]
    corners = F.interpolate(out, size=(48, 64), mode="bilinear", align_corners=True)
    torch.testing.assert_close(predict_logits(model, x), corners)
    assert not torch.allclose(plain, corners)
    one_tile = predict_logits(model, x, mode="slide", crop_size=(48, 64), stride=(48, 64))
    torch.testing.assert_close(one_tile, corners)
