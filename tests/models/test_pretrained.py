"""Published CCNet weights load exactly: mmseg's and the official code's checkpoints, written
from independent reference networks (tests/models/foreign_refs.py), give the same logits
through ``CCNet.from_pretrained``; every tensor is consumed; bad files are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from foreign_refs import MmsegCCNet, OfficialCCNet, randomise
from omegaconf import OmegaConf

from src.core.inference import predict_logits
from src.models.ccnet import CCNet
from src.models.pretrained import (
    FORMAT_OPTIONS,
    OFFICIAL_MEAN,
    OFFICIAL_MEAN_BGR,
    OFFICIAL_STD,
    ZOO,
    PretrainedFormatError,
    load_pretrained,
)

MMSEG_CONFIG = "model = dict(decode_head=dict(type='CCHead', align_corners=True))"


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def mmseg_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MmsegCCNet]:
    """An mmseg-format R-50-D8 CCNet checkpoint (5 classes) and the network it came from."""
    ref = randomise(MmsegCCNet(50, num_classes=5, channels=64, aux_channels=32), seed=1)
    path = tmp_path_factory.mktemp("mmseg") / "ccnet_r50-d8_tiny.pth"
    state = {k: v.float() for k, v in ref.state_dict().items()}
    meta = {"config": MMSEG_CONFIG, "CLASSES": ("a", "b", "c", "d", "e"), "iter": 80000}
    torch.save({"meta": meta, "state_dict": state}, path)
    return path, ref


@pytest.fixture(scope="module")
def official_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, OfficialCCNet]:
    """An official-format R-50 CCNet state dict (3 classes, DataParallel ``module.`` keys)."""
    ref = randomise(OfficialCCNet(50, num_classes=3), seed=2)
    path = tmp_path_factory.mktemp("official") / "CCNet_tiny.pth"
    torch.save({f"module.{k}": v.float() for k, v in ref.state_dict().items()}, path)
    return path, ref


def test_mmseg_checkpoint_gives_the_reference_logits(mmseg_file) -> None:
    path, ref = mmseg_file
    net = CCNet.from_pretrained(path).double()
    assert not net.training
    assert (net.num_classes, net.head.reduce[0].out_channels) == (5, 64)
    assert net.backbone.conv1[0].out_channels == 32  # ResNetV1c's stem = timm's resnet50c
    assert net.align_corners is True  # read from the config kept in the file's meta
    assert net.pretrained_cfg["class_names"] == ["a", "b", "c", "d", "e"]
    images = torch.randn(2, 3, 72, 56, dtype=torch.float64)
    with torch.no_grad():
        expected, expected_aux = ref(images)
        out = net(images)["out"]
        aux = net.aux_head(net.backbone(images)[0])
    assert out.shape == expected.shape
    assert relative_difference(out, expected) < 1e-10
    assert relative_difference(aux, expected_aux) < 1e-10
    # mmseg's whole-image inference: logits resized with align_corners=True
    full = F.interpolate(expected, size=(72, 56), mode="bilinear", align_corners=True)
    logits = predict_logits(net, images).double()  # float32, as inference returns
    assert relative_difference(logits, full) < 1e-6
    shifted = F.interpolate(expected, size=(72, 56), mode="bilinear", align_corners=False)
    assert relative_difference(shifted, full) > 1e-2  # the setting matters


def test_mmseg_checkpoint_in_float32(mmseg_file) -> None:
    path, ref = mmseg_file
    net = CCNet.from_pretrained(path)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = ref(images.double())[0]
        assert relative_difference(net(images)["out"].double(), expected) < 1e-4


def test_official_checkpoint_gives_the_reference_logits(official_file) -> None:
    path, ref = official_file
    net = CCNet.from_pretrained(path).double()
    assert net.backbone.conv1[0].out_channels == 64 and net.backbone.bn1.num_features == 128
    assert net.aux_head.conv[0].out_channels == 512 and net.aux_head.conv[0].bias is None
    assert isinstance(net.head.reduce[2], torch.nn.LeakyReLU)
    assert net.backbone.maxpool.ceil_mode and net.align_corners
    # 72×56: the ceil-mode pool makes the features one larger than floor would
    rgb = torch.rand(2, 3, 72, 56, dtype=torch.float64) * 255
    bgr = rgb.flip(1) - torch.tensor(OFFICIAL_MEAN_BGR, dtype=torch.float64).view(1, 3, 1, 1)
    mean = torch.tensor(OFFICIAL_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(OFFICIAL_STD, dtype=torch.float64).view(1, 3, 1, 1)
    ours = (rgb / 255 - mean) / std  # what the experiment's data.mean/std produce
    assert relative_difference(ours, rgb - mean * 255) < 1e-6
    with torch.no_grad():
        expected, expected_dsn = ref(bgr)
        out = net(ours)["out"]
        aux = net.aux_head(net.backbone(ours)[0])
    assert out.shape == expected.shape == (2, 3, 10, 8)
    assert relative_difference(out, expected) < 1e-5
    assert relative_difference(aux, expected_dsn) < 1e-5
    assert net.pretrained_cfg["mean"] == list(OFFICIAL_MEAN)


def test_every_tensor_is_consumed_and_none_invented(mmseg_file, official_file) -> None:
    for path, ref in (mmseg_file, official_file):
        weights = load_pretrained(path)
        assert set(weights.renamed.values()) == set(ref.state_dict())  # every tensor renamed
        net = CCNet(**weights.architecture)
        wanted = set(net.state_dict())
        if weights.format == "official":  # InPlaceABN keeps no counters; the dsn bias folds
            wanted = {k for k in wanted if not k.endswith("num_batches_tracked")}
            assert len(weights.state_dict) == len(ref.state_dict()) - 1
        assert set(weights.state_dict) == wanted  # nothing missing, nothing invented


def test_a_missing_key_is_named_in_the_files_naming(tmp_path: Path, mmseg_file) -> None:
    path, _ = mmseg_file
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["state_dict"]["decode_head.conv_cat.bn.running_var"]
    broken = tmp_path / "missing.pth"
    torch.save(checkpoint, broken)
    with pytest.raises(
        PretrainedFormatError,
        match="mmsegmentation.*1 keys missing.*decode_head.conv_cat.bn.running_var",
    ):
        CCNet.from_pretrained(broken)


def test_a_left_over_key_is_named(tmp_path: Path, official_file) -> None:
    path, _ = official_file
    state = torch.load(path, weights_only=True)
    state["module.criterion.weight"] = torch.ones(3)
    broken = tmp_path / "extra.pth"
    torch.save(state, broken)
    with pytest.raises(PretrainedFormatError, match="official.*left over.*criterion.weight"):
        CCNet.from_pretrained(broken)


def test_wrong_format_and_truncated_files(tmp_path: Path, mmseg_file) -> None:
    other = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2), "conv1.weight": torch.zeros(1)}, other)
    with pytest.raises(PretrainedFormatError, match="not a CCNet checkpoint.*fc.weight"):
        CCNet.from_pretrained(other)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(mmseg_file[0].read_bytes()[:5000])
    with pytest.raises(ValueError, match="truncated.pth.*not a readable PyTorch checkpoint"):
        CCNet.from_pretrained(truncated)
    with pytest.raises(FileNotFoundError, match="neither a file nor a known name"):
        CCNet.from_pretrained(tmp_path / "nothing.pth")


def test_from_pretrained_with_another_class_count_keeps_everything_else(mmseg_file) -> None:
    path, ref = mmseg_file
    net = CCNet.from_pretrained(path, num_classes=2).double()
    assert net.head.classifier.out_channels == 2
    expected = ref.decode_head.convs[0].conv.weight
    assert torch.equal(net.head.reduce[0].weight, expected)


def test_init_from_fine_tunes_with_fresh_classifiers(mmseg_file) -> None:
    path, ref = mmseg_file
    net = CCNet(
        num_classes=7, backbone="resnet50c", channels=64, aux_channels=32,
        align_corners=True, init_from=str(path),
    )  # fmt: skip
    assert net.head.classifier.out_channels == 7
    assert torch.equal(
        net.backbone.layer4[2].conv3.weight.double(), ref.backbone.layer4[2].conv3.weight
    )
    with pytest.raises(ValueError, match="model.init_from=.*add model.aux_channels=32"):
        CCNet(
            num_classes=7,
            backbone="resnet50c",
            channels=64,
            align_corners=True,
            init_from=str(path),
        )


def test_zoo_names_point_at_mmseg_files() -> None:
    assert len(ZOO) == 12
    for name, entry in ZOO.items():
        assert entry.url.endswith(".pth") and f"/{name}/{name}_" in entry.url
        assert entry.align_corners == ("769x769" in name)
        assert entry.dataset in ("cityscapes", "ade20k")


def test_the_official_experiment_feeds_the_converted_network_the_official_input() -> None:
    """conf/experiment/cityscapes_rcca_official.yaml restates OFFICIAL_MEAN / OFFICIAL_STD and
    the network options FORMAT_OPTIONS gives the official weights."""
    root = Path(__file__).resolve().parents[2]
    cfg = OmegaConf.load(root / "conf" / "experiment" / "cityscapes_rcca_official.yaml")
    assert cfg.data.mean == pytest.approx(OFFICIAL_MEAN, abs=1e-15)
    assert cfg.data.std == pytest.approx(OFFICIAL_STD, abs=1e-15)
    options = FORMAT_OPTIONS["official"]
    for key in ("contract_dilation", "pool_ceil_mode", "head_activation", "align_corners"):
        assert cfg.model[key] == options[key], key
    assert cfg.model.backbone == "resnet101s" and cfg.model.aux_channels == 512


def test_a_zoo_name_reads_the_cached_download(tmp_path: Path, mmseg_file, monkeypatch) -> None:
    """A name is the zoo file in torch.hub's cache (downloaded once); its entry decides
    align_corners (the 512×1024 models: False) and the experiment of its protocol."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    name = "ccnet_r50-d8_512x1024_80k_cityscapes"
    cached = tmp_path / "hub" / "checkpoints" / ZOO[name].url.rsplit("/", 1)[-1]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(mmseg_file[0].read_bytes())
    weights = load_pretrained(name)
    assert weights.architecture["align_corners"] is False  # the file's meta says True
    assert weights.experiment == "cityscapes_rcca_mmseg_512x1024"
    net = CCNet.from_pretrained(name)
    assert torch.equal(net.head.classifier.weight, weights.state_dict["head.classifier.weight"])


def test_a_failed_download_says_how_to_go_on(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url: str, dst: str, progress: bool = True) -> None:
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(OSError, match="could not be downloaded from https://download.openmmlab"
                       ".*download it yourself and pass the file's path"):  # fmt: skip
        CCNet.from_pretrained("ccnet_r50-d8_512x512_80k_ade20k")
