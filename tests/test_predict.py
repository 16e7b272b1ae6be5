"""``python -m src.predict``: masks, colour PNGs and overlays (with a legend) for images of any
size, the same prediction as the app's inference, bad files skipped and recorded in
predictions.json, and errors that name the bad file or config key."""

from __future__ import annotations

import json
import subprocess

import cv2
import numpy as np
import pytest
import torch
from cli_helpers import run_cli_status
from omegaconf import OmegaConf
from PIL import Image
from prediction_helpers import (
    CONF,
    MODEL,
    ROOT,
    TinyCityscapes,
    compose_config,
    run_cli,
    tiny_cityscapes,
)

from src.app.checkpoint import load_checkpoint, net_from_checkpoint
from src.app.palette import class_palette
from src.core.inference import predict_logits
from src.core.prediction_files import legend_strip, overlay, overlay_with_legend
from src.data.base import read_image
from src.data.cityscapes import CLASS_NAMES, PALETTE
from src.data.synthetic import class_colours
from src.data.transforms import eval_transform
from src.predict import NOT_AN_IMAGE, NoImagesError, image_files, predict

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
        # The blend on top, the legend of this image's classes in a strip below it.
        expected = overlay_with_legend(image, mask, PALETTE, 0.5, CLASS_NAMES)
        assert overlay_file.format == "JPEG" and overlay_file.size == expected.shape[1::-1]
        assert overlay_file.size[1] > h and overlay_file.size[0] >= w
        got = np.asarray(overlay_file, dtype=np.float32)
        blended = overlay(image, mask, PALETTE, 0.5).astype(np.float32)
        error = np.abs(got[:h, :w] - blended).mean()
        assert error < 8  # JPEG loss; the image alone or the colours alone are ~50 away
        assert np.abs(got[h:] - expected[h:]).mean() < 8

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


def _corrupt_png(path):
    """A PNG cut short: OpenCV has a reader for it (the signature is right) but cannot decode
    it, so it fails only when read, after the images before it were predicted."""
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[:1000])  # of ~3 kB
    assert cv2.haveImageReader(str(path)) and cv2.imread(str(path)) is None


def test_predict_cli_skips_bad_files_and_records_every_input(tiny, tmp_path):
    folder, out, run_dir = tmp_path / "in", tmp_path / "out", tmp_path / "run"
    _write_images(folder, {"a.png": (20, 30), "c.jpg": (25, 18)})
    (folder / "notes.txt").write_text("not an image")
    _corrupt_png(folder / "b.png")  # sorted between the good ones: the run goes on after it
    (folder / ".DS_Store").write_bytes(b"\0\1")  # hidden: left out silently
    output = run_cli(
        "predict",
        *_predict_overrides(tiny, input=folder, output=out),
        f"hydra.run.dir={run_dir}",
    )
    for name in ("notes.txt", "b.png"):
        assert sum(f"skipped {name}:" in line for line in output.splitlines()) == 1, output
    assert ".DS_Store" not in output
    for stem in ("a", "c"):
        assert all((out / f"{stem}{s}").is_file() for s in (".png", "_color.png", "_overlay.jpg"))
    assert not list(out.glob("b*"))

    summary = json.loads((out / "predictions.json").read_text())
    assert summary["totals"] == {"inputs": 4, "predicted": 2, "skipped": 2}
    files = {entry["input"]: entry for entry in summary["files"]}
    assert list(files) == ["a.png", "b.png", "c.jpg", "notes.txt"]
    assert files["a.png"]["status"] == "predicted"
    assert files["a.png"]["outputs"] == {
        "mask": "a.png",
        "color": "a_color.png",
        "overlay": "a_overlay.jpg",
    }
    assert files["notes.txt"] == {"input": "notes.txt", "status": "skipped", "reason": NOT_AN_IMAGE}
    assert files["b.png"]["status"] == "skipped" and "corrupt" in files["b.png"]["reason"]

    results = json.loads((run_dir / "results.json").read_text())
    assert (results["images"], results["skipped"]) == (2, 2)
    assert results["predictions_file"] == str(out / "predictions.json")


def test_predict_cli_with_only_bad_files_fails_in_one_line(tiny, tmp_path):
    folder, out, run_dir = tmp_path / "in", tmp_path / "out", tmp_path / "run"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    _corrupt_png(folder / "b.png")
    code, output = run_cli_status(
        "predict",
        *_predict_overrides(tiny, input=folder, output=out),
        f"hydra.run.dir={run_dir}",
        full_error=False,
    )
    assert code == 1 and "Traceback" not in output
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert len(errors) == 1, output
    assert "NoImagesError: nothing predicted: none of the 2 files" in errors[0]
    assert "notes.txt" in errors[0] and "b.png" in errors[0] and "predictions.json" in errors[0]
    assert json.loads((out / "predictions.json").read_text())["totals"]["predicted"] == 0
    assert not (run_dir / "results.json").exists()


def test_no_image_at_all_fails_before_the_model_loads(tiny, images, tmp_path, monkeypatch):
    for path in images.iterdir():
        path.unlink()
    (images / "notes.txt").write_text("not an image")
    (images / ".DS_Store").write_bytes(b"\0\1")  # hidden files are skipped
    monkeypatch.setattr("src.predict.load_checkpoint", lambda *_: pytest.fail("model loaded"))
    cfg = compose_config("predict", _predict_overrides(tiny, input=images, output=tmp_path / "out"))
    with pytest.raises(NoImagesError, match=r"none of the 1 files.*notes\.txt: not an image"):
        predict(cfg)
    summary = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert summary["totals"] == {"inputs": 1, "predicted": 0, "skipped": 1}


def test_legend_lists_the_present_classes_below_the_image():
    palette = [(255, 0, 0), (0, 200, 0), (0, 0, 255), (255, 255, 0)]
    image = np.full((20, 30, 3), 128, dtype=np.uint8)
    pred = np.zeros((20, 30), dtype=np.uint8)
    pred[:, 15:] = 2  # classes 0 and 2 present, 1 and 3 absent
    names = ["road", "wall", "a long class name", "sky"]
    canvas = overlay_with_legend(image, pred, palette, 0.5, names)
    np.testing.assert_array_equal(canvas[:20, :30], overlay(image, pred, palette, 0.5))
    strip = canvas[20:]
    assert strip.shape[0] >= 2 * 12  # two rows of readable text, not squeezed to the image
    assert canvas.shape[1] > 30  # the long name widens the canvas instead of being cut

    def has(colour) -> bool:
        return bool((strip == np.asarray(colour, dtype=np.uint8)).all(-1).any())

    assert has(palette[0]) and has(palette[2])
    assert not has(palette[1]) and not has(palette[3])
    assert (strip < 100).all(-1).sum() > 20  # dark text beside the swatches
    # A wide image holds both entries on one row; default names when none are given.
    wide = legend_strip([0, 2], palette, None, 400)
    assert wide.shape[1] == 400 and wide.shape[0] < strip.shape[0]


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
    (tmp_path / "d" / "readme.md").write_text("# not an image")
    found, skipped = image_files(tmp_path, exclude=tmp_path / "out")
    assert [(p.name, str(stem)) for p, stem in found] == [("y.jpg", "d/y"), ("x.png", "x")]
    assert [(s.name, s.reason) for s in skipped] == [("d/readme.md", NOT_AN_IMAGE)]
    assert [str(stem) for _, stem in image_files(paths[0]).images] == ["x"]
    _write_images(tmp_path, {"x.jpg": (8, 8)})
    with pytest.raises(ValueError, match="would both write"):
        image_files(tmp_path, exclude=tmp_path / "out")


def test_make_predict_and_export_targets_pass_args():
    """``make predict`` / ``make export`` run the entry points with ARGS, and ``make help``
    lists them (``make -n``: printed, not run)."""
    for target in ("predict", "export"):
        args = "ckpt_path=a.ckpt output=out"
        proc = subprocess.run(
            ["make", "-n", target, f"ARGS={args}"], cwd=ROOT, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        assert f"-m src.{target} {args}" in proc.stdout
    listed = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True).stdout
    assert {line.split()[0] for line in listed.splitlines()} >= {"predict", "export"}


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
