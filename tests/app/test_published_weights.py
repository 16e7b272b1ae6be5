"""Published weights through the command line, as a user runs it: ``ckpt_path=`` an mmseg or
official CCNet file in eval and predict (converted once into torch.hub's folder), predictions
equal to the reference network's, fine-tuning with ``model.init_from`` on another class
count, and the clear errors (a file of no known format, resuming training from one)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from app_helpers import TINY, read_results
from cli_helpers import run_cli, run_cli_status
from omegaconf import OmegaConf
from PIL import Image

from src.app.pretrained import resolve_pretrained_checkpoint
from src.data.cityscapes import CityscapesDataset
from src.data.fake import write_fake_cityscapes
from src.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from src.models.pretrained import OFFICIAL_MEAN, OFFICIAL_STD

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from foreign_refs import MmsegCCNet, OfficialCCNet, randomise  # noqa: E402

MMSEG_META = {"config": "norm_cfg=dict(type='SyncBN'); align_corners=True", "iter": 80000}


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fake Cityscapes tree, photos, and 19-class mmseg / official R-50 CCNet files."""
    root = tmp_path_factory.mktemp("published")
    data = write_fake_cityscapes(root / "cityscapes", splits=("val",))
    photos = root / "photos"
    photos.mkdir()
    for i, image in enumerate(sorted((data / "leftImg8bit" / "val").rglob("*.png"))[:2]):
        Image.open(image).save(photos / f"photo_{i}.png")
    mmseg = randomise(MmsegCCNet(50, num_classes=19, channels=64, aux_channels=32), seed=3)
    state = {k: v.float() for k, v in mmseg.state_dict().items()}
    torch.save({"meta": MMSEG_META, "state_dict": state}, root / "ccnet_mmseg.pth")
    official = randomise(OfficialCCNet(50, num_classes=19), seed=4)
    torch.save({k: v.float() for k, v in official.state_dict().items()}, root / "ccnet.pth")
    return {
        "root": root, "data": data, "photos": photos, "mmseg": root / "ccnet_mmseg.pth",
        "official": root / "ccnet.pth", "mmseg_net": mmseg, "official_net": official,
    }  # fmt: skip


@pytest.fixture(autouse=True)
def _torch_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Converted checkpoints go to a test folder, not the user's torch.hub cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "torch_home"))


def reference_prediction(net, photo: Path, mean, std, bgr_255: bool) -> np.ndarray:
    """The reference network's train ids for a photo, resized with align_corners=True."""
    rgb = torch.from_numpy(np.array(Image.open(photo).convert("RGB"))).permute(2, 0, 1)
    rgb = rgb[None].double()
    if bgr_255:
        x = rgb.flip(1) - torch.tensor((104.00698793, 116.66876762, 122.67891434)).view(1, 3, 1, 1)
    else:
        x = (rgb / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = net(x)[0]
    full = F.interpolate(logits, size=rgb.shape[-2:], mode="bilinear", align_corners=True)
    return full.argmax(1)[0].numpy()


def agreement(output: Path, photos: Path, net, mean, std, bgr_255: bool) -> float:
    """Share of pixels where ``src.predict``'s train ids equal the reference's."""
    equal = total = 0
    for photo in sorted(photos.glob("*.png")):
        ours = np.asarray(Image.open(output / photo.name))
        expected = reference_prediction(net, photo, mean, std, bgr_255)
        equal += int((ours == expected).sum())
        total += ours.size
    return equal / total


@pytest.mark.slow  # the default run: eval of the same file below, exactness in test_pretrained
@pytest.mark.parametrize("source", ["mmseg", "official"])
def test_predict_with_a_published_file_gives_the_reference_predictions(published, source):
    experiment = {"mmseg": "cityscapes_rcca_mmseg", "official": "cityscapes_rcca_official"}
    output = published["root"] / f"predicted_{source}"
    log = run_cli(
        "predict",
        f"experiment={experiment[source]}",
        f"ckpt_path={published[source]}",
        f"input={published['photos']}",
        f"output={output}",
        "inference=whole",
        f"hydra.run.dir={published['root'] / f'predict_{source}'}",
    )
    assert "converted to" in log
    mean, std = (
        (OFFICIAL_MEAN, OFFICIAL_STD) if source == "official" else (IMAGENET_MEAN, IMAGENET_STD)
    )
    share = agreement(output, published["photos"], published[f"{source}_net"], mean, std,
                      bgr_255=source == "official")  # fmt: skip
    assert share > 0.999, share


def test_eval_of_an_mmseg_file_scores_the_reference_predictions(published) -> None:
    """``src.eval`` on the fake val split counts the reference network's own predictions."""
    run_dir = published["root"] / "eval_mmseg"
    run_cli(
        "eval",
        "experiment=cityscapes_rcca_mmseg",
        f"ckpt_path={published['mmseg']}",
        f"data.root={published['data']}",
        "trainer=cpu",
        "data.num_workers=0",
        "inference=whole",
        f"hydra.run.dir={run_dir}",
    )
    results = read_results(run_dir)
    assert results["checkpoint_global_step"] == 0
    counts = np.asarray(results["confusion_matrix"]["val"])
    expected = np.zeros_like(counts)
    dataset = CityscapesDataset(published["data"], "val", transform=eval_transform())
    for i in range(len(dataset)):
        sample = dataset[i]
        with torch.no_grad():
            logits = published["mmseg_net"](sample["image"][None].double())[0]
        size = sample["mask"].shape[-2:]
        full = F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
        pred, mask = full.argmax(1)[0].numpy(), sample["mask"].numpy()
        valid = mask != 255
        np.add.at(expected, (mask[valid], pred[valid]), 1)
    assert expected.sum() == counts.sum() > 0
    assert np.abs(counts - expected).sum() <= 0.002 * counts.sum()
    tree = (run_dir / "config_tree.log").read_text()  # the config rebuilt for the weights
    assert "align_corners: true" in tree and "backbone: resnet50c" in tree


@pytest.mark.slow
def test_export_takes_a_published_file(published) -> None:
    log = run_cli(
        "export",
        f"ckpt_path={published['mmseg']}",
        "experiment=cityscapes_rcca_mmseg",
        f"output={published['root'] / 'model.onnx'}",
        "input_size=[64,64]",
        f"hydra.run.dir={published['root'] / 'export'}",
    )
    assert "onnxruntime vs PyTorch" in log
    assert (published["root"] / "model.onnx").is_file()


def test_a_file_is_converted_once(published, caplog: pytest.LogCaptureFixture) -> None:
    """The converted checkpoint is kept per file version and read again by later runs."""
    cfg = OmegaConf.create({"ckpt_path": str(published["mmseg"])})
    with caplog.at_level(logging.INFO, logger="src.app.pretrained"):
        resolve_pretrained_checkpoint(cfg, "eval")
        converted = Path(cfg.ckpt_path)
        written = converted.stat().st_mtime_ns
        again = OmegaConf.create({"ckpt_path": str(published["mmseg"])})
        resolve_pretrained_checkpoint(again, "predict")
    assert again.ckpt_path == str(converted) and converted.stat().st_mtime_ns == written
    assert "converted before" in caplog.records[-1].getMessage()
    assert (
        converted.parent
        == Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / "ccnet-converted"
    )


@pytest.mark.slow  # the Python API's init_from: tests/models/test_pretrained.py
def test_init_from_fine_tunes_on_another_class_count(published, tmp_path: Path) -> None:
    run_dir = tmp_path / "finetune"
    log = run_cli(
        "train",
        *TINY,
        f"model.init_from={published['mmseg']}",
        "model.backbone=resnet50c",
        "model.channels=64",
        "model.aux_channels=32",
        "model.align_corners=true",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        f"hydra.run.dir={run_dir}",
    )
    assert "19 classes there, 5 here" in log
    assert read_results(run_dir)["metrics"]["val/mIoU"] >= 0


def test_a_file_of_no_known_format_is_a_one_line_error(tmp_path: Path) -> None:
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1), "fc.weight": torch.zeros(1)}, other)
    code, output = run_cli_status("eval", f"ckpt_path={other}", full_error=False)
    assert code == 2 and "is not a CCNet checkpoint this project reads" in output
    assert "fc.weight" in output and "Traceback" not in output


@pytest.mark.slow  # the same resolution step as the test above, for train
def test_resuming_training_from_published_weights_points_at_init_from(published) -> None:
    code, output = run_cli_status(
        "train", *TINY, f"ckpt_path={published['mmseg']}", full_error=False
    )
    assert code == 2 and f"model.init_from={published['mmseg']}" in output
