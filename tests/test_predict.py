"""``python -m src.predict``: masks, colour PNGs and overlays for images of any size, the same
prediction as the app's inference, and errors that name the bad file or config key."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from prediction_helpers import (
    CONF,
    MODEL,
    TinyCityscapes,
    compose_config,
    run_cli,
    tiny_cityscapes,
)

from src.app.checkpoint import load_checkpoint, net_from_checkpoint
from src.core.inference import predict_logits
from src.core.prediction_files import overlay
from src.data.base import ImageReadError, read_image
from src.data.cityscapes import PALETTE
from src.data.synthetic import class_colours
from src.data.transforms import eval_transform
from src.predict import class_palette, image_files, predict

SLIDE = ["inference=slide", "inference.crop_size=[48,48]", "inference.stride=[32,32]"]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyCityscapes:
    return tiny_cityscapes(tmp_path_factory.getbasetemp() / "tiny_cityscapes")


def _write_images(folder, sizes):
    """Smooth colour gradients (JPEG keeps them close) of the given (h, w) sizes."""
    paths = []
    for i, (name, (h, w)) in enumerate(sizes.items()):
        y, x = np.mgrid[0:h, 0:w]
        image = np.stack([255 * y / h, 255 * x / w, np.full((h, w), 60.0 * i)], axis=-1)
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.round().astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def test_predict_cli_writes_masks_colours_and_overlays(tiny, tmp_path):
    sizes = {"a.png": (70, 90), "b.png": (33, 130), "street/c.jpg": (64, 128)}
    _write_images(tmp_path / "in", sizes)
    out, run_dir = tmp_path / "out", tmp_path / "run"
    run_cli(
        "predict",
        *tiny.overrides(),
        *SLIDE,
        f"ckpt_path={tiny.ckpt}",
        f"input={tmp_path / 'in'}",
        f"output={out}",
        f"hydra.run.dir={run_dir}",
    )
    results = json.loads((run_dir / "results.json").read_text())
    assert results["images"] == 3
    assert results["palette_source"] == "src.data.cityscapes.CityscapesDataset"
    assert sum(results["predicted_pixel_fraction"].values()) == pytest.approx(1.0)

    net = net_from_checkpoint(compose_config("predict", MODEL).model, load_checkpoint(tiny.ckpt))
    transform = eval_transform()
    palette = np.asarray(PALETTE, dtype=np.uint8)
    for name, (h, w) in sizes.items():
        stem = name.rsplit(".", 1)[0]
        mask_file = Image.open(out / f"{stem}.png")
        assert mask_file.mode == "L" and mask_file.size == (w, h)
        mask = np.asarray(mask_file)
        assert mask.max() < 19

        color = Image.open(out / f"{stem}_color.png")
        assert color.mode == "P" and color.size == (w, h)
        np.testing.assert_array_equal(np.asarray(color), mask)
        np.testing.assert_array_equal(np.asarray(color.convert("RGB")), palette[mask])

        image = read_image(tmp_path / "in" / name)
        overlay_file = Image.open(out / f"{stem}_overlay.jpg")
        assert overlay_file.format == "JPEG" and overlay_file.size == (w, h)
        blended = overlay(image, mask, PALETTE, 0.5).astype(np.float32)
        error = np.abs(np.asarray(overlay_file, dtype=np.float32) - blended).mean()
        assert error < 8  # JPEG loss; the image alone or the colours alone are ~50 away

        # The same sliding-window prediction as the app's inference, in this process.
        batch = transform(image=image)["image"].float()[None]
        with torch.no_grad():
            logits = predict_logits(net, batch, mode="slide", crop_size=48, stride=32)
        expected = logits.argmax(1)[0].numpy()
        assert (mask == expected).mean() > 0.995, name
    assert len(np.unique(np.asarray(Image.open(out / "a.png")))) >= 2


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    _write_images(folder, {"a.png": (20, 30), "b.jpg": (25, 18)})
    return folder


def _predict_overrides(tiny, **values):
    settings = {"ckpt_path": str(tiny.ckpt), **values}
    return [*tiny.overrides(), *(f"{k}={v}" for k, v in settings.items() if v is not None)]


def test_non_image_file_is_named_before_the_model_loads(tiny, images, tmp_path):
    (images / "notes.txt").write_text("not an image")
    (images / ".DS_Store").write_bytes(b"\0\1")  # hidden files are skipped
    cfg = compose_config("predict", _predict_overrides(tiny, input=images, output=tmp_path / "out"))
    with pytest.raises(ImageReadError, match="notes.txt"):
        predict(cfg)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key", ["ckpt_path", "input", "output"])
def test_missing_setting_names_its_key(tiny, images, tmp_path, key):
    values = {"input": images, "output": tmp_path / "out", key: None}
    overrides = _predict_overrides(tiny, **values)
    if key == "ckpt_path":
        overrides = [o for o in overrides if not o.startswith("ckpt_path=")]
    with pytest.raises(ValueError, match=f"^{key} is required"):
        predict(compose_config("predict", overrides))


@pytest.mark.parametrize("key", ["ckpt_path", "input"])
def test_missing_path_names_its_key(tiny, images, tmp_path, key):
    values = {"input": images, "output": tmp_path / "out", key: tmp_path / "nowhere"}
    with pytest.raises(FileNotFoundError, match=f"{key}="):
        predict(compose_config("predict", _predict_overrides(tiny, **values)))


def test_image_files_single_file_subfolders_and_clashes(tmp_path):
    paths = _write_images(tmp_path, {"x.png": (8, 8), "d/y.jpg": (8, 8), "out/old.png": (8, 8)})
    found = image_files(tmp_path, exclude=tmp_path / "out")
    assert [(p.name, str(stem)) for p, stem in found] == [("y.jpg", "d/y"), ("x.png", "x")]
    assert [str(stem) for _, stem in image_files(paths[0])] == ["x"]
    _write_images(tmp_path, {"x.jpg": (8, 8)})
    with pytest.raises(ValueError, match="would both write"):
        image_files(tmp_path, exclude=tmp_path / "out")


def test_palette_from_class_or_data_module():
    cityscapes = compose_config("predict", ["data=cityscapes", "data.root=/nowhere"])
    palette, source = class_palette(cityscapes.data, 19)
    assert palette == PALETTE and source.endswith("CityscapesDataset")
    synthetic = compose_config("predict", ["data.dataset.num_classes=4"])
    palette, source = class_palette(synthetic.data, 4)
    assert palette == class_colours(4) and "data module" in source
    palette, source = class_palette(synthetic.data, 6)  # the checkpoint disagrees: generated
    assert len(palette) == 6 and source == "generated"


def test_every_experiment_composes_for_predict_and_export():
    """Experiments override data/model/loss/module/inference/trainer groups: all must exist."""
    experiments = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
    assert experiments
    for experiment in experiments:
        cfg = compose_config("predict", [f"experiment={experiment}", "ckpt_path=model.ckpt"])
        assert cfg.model._target_ and cfg.task_name == "predict", experiment
    groups = {}
    for name in ("predict", "export"):
        defaults = OmegaConf.load(CONF / f"{name}.yaml").defaults
        groups[name] = [next(iter(d)) for d in defaults if d != "_self_"]
    assert groups["export"] == groups["predict"]
