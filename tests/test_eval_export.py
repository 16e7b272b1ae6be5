"""``src.eval … export.dir=D export.format=…``: prediction files, and the official Cityscapes
evaluator scoring the exported labelId PNGs exactly as our own results.json does — in this
process, and as the user runs it: the ``csEvalPixelLevelSemanticLabeling`` command."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from prediction_helpers import TinyCityscapes, run_cli, tiny_cityscapes

from src.callbacks.prediction_writer import PredictionWriter, prediction_writer
from src.core.prediction_files import export_path
from src.data.cityscapes import CLASS_NAMES, PALETTE, TRAIN_ID_TO_LABEL_ID

EVALUATOR = Path(sys.executable).with_name("csEvalPixelLevelSemanticLabeling")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyCityscapes:
    return tiny_cityscapes(tmp_path_factory.getbasetemp() / "tiny_cityscapes")


def official_scores(gt_root: Path, results_dir: Path, json_file: Path) -> dict:
    """cityscapesscripts' evalPixelLevelSemanticLabeling run in this process on the val
    split of ``gt_root``, finding predictions the way the script does (getPrediction)."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    args = official.CArgs()
    vars(args).update(vars(official.args))
    args.cityscapesPath = str(gt_root)
    args.groundTruthSearch = str(gt_root / "gtFine" / "val" / "*" / "*_gtFine_labelIds.png")
    args.predictionPath = str(results_dir)  # what CITYSCAPES_RESULTS sets
    args.predictionWalk = None
    args.evalInstLevelScore = False  # the pixel-level score only (the command test runs both)
    args.quiet = True
    args.colorized = False
    args.JSONOutput = True
    args.exportFile = str(json_file)
    ground_truth = sorted(Path(gt_root).glob("gtFine/val/*/*_gtFine_labelIds.png"))
    assert ground_truth
    predictions = [official.getPrediction(args, str(gt)) for gt in ground_truth]
    return official.evaluateImgLists(predictions, [str(gt) for gt in ground_truth], args)


@pytest.fixture(scope="module")
def cityscapes_export(tiny, tmp_path_factory) -> tuple[Path, dict]:
    """``python -m src.eval … export.format=cityscapes`` run once: (export dir, results.json)."""
    base = tmp_path_factory.mktemp("cityscapes_export")
    export_dir, run_dir = base / "results", base / "eval"
    run_cli(
        "eval",
        *tiny.overrides(),
        f"ckpt_path={tiny.ckpt}",
        f"export.dir={export_dir}",
        "export.format=cityscapes",
        f"hydra.run.dir={run_dir}",
    )
    return export_dir, json.loads((run_dir / "results.json").read_text())


def ground_truth_copy(source: Path, root: Path) -> Path:
    """A copy of ``source``'s gtFine/val (labelIds and instanceIds, as the archive has them):
    the evaluator writes its results into the dataset folder, the shared tree stays clean."""
    shutil.copytree(source / "gtFine" / "val", root / "gtFine" / "val")
    return root


def test_official_evaluator_command_scores_the_export_like_ours(tiny, cityscapes_export, tmp_path):
    """The README's promise, run as a user runs it: the official command from .venv/bin with
    its two environment variables, in its default mode (instance-level score included, which
    crashed on numpy 2.4's missing ``np.in1d``: hence ``numpy<2.4`` in pyproject.toml)."""
    export_dir, ours = cityscapes_export
    root = ground_truth_copy(tiny.root, tmp_path / "cityscapes")
    env = {**os.environ, "CITYSCAPES_DATASET": str(root), "CITYSCAPES_RESULTS": str(export_dir)}
    env.pop("CITYSCAPES_EXPORT_DIR", None)
    proc = subprocess.run(
        [str(EVALUATOR)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "Evaluating 4 pairs of images" in proc.stdout
    result_file = root / "evaluationResults" / "resultPixelLevelSemanticLabeling.json"
    theirs = json.loads(result_file.read_text())
    miou = ours["metrics"]["val/mIoU"]
    assert theirs["averageScoreClasses"] == pytest.approx(miou, abs=1e-6)
    printed = re.search(r"^Score Average : +([\d.]+)", proc.stdout, re.MULTILINE)  # classes
    assert printed and float(printed.group(1)) == pytest.approx(miou, abs=5e-4)
    assert math.isfinite(theirs["averageScoreInstClasses"])  # the instance-level part ran


def test_cityscapes_export_scores_like_the_official_evaluator(tiny, cityscapes_export, tmp_path):
    export_dir, ours = cityscapes_export
    assert ours["export"] == {"dir": str(export_dir), "format": "cityscapes", "files_written": 4}

    images = sorted((tiny.root / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png"))
    assert sorted(p.name for p in export_dir.iterdir()) == [p.name for p in images]
    labels = set()
    for image in images:
        pred = Image.open(export_dir / image.name)
        assert pred.mode == "L" and pred.size == Image.open(image).size
        labels |= set(np.unique(np.asarray(pred)).tolist())
    assert labels <= set(TRAIN_ID_TO_LABEL_ID.tolist())
    assert len(labels) >= 2, "a one-class prediction would make the comparison weak"

    official = official_scores(tiny.root, export_dir, tmp_path / "official.json")
    assert (tmp_path / "official.json").is_file()
    miou = ours["metrics"]["val/mIoU"]
    assert miou is not None and miou > 0
    assert official["averageScoreClasses"] == pytest.approx(miou, abs=1e-6)
    for name in CLASS_NAMES:
        theirs, mine = official["classScores"][name], ours["per_class_iou"]["val"][name]
        if math.isnan(theirs):
            assert mine is None, name
        else:
            assert mine == pytest.approx(theirs, abs=1e-6), name


def test_writer_formats_and_names(tmp_path):
    preds = torch.tensor([[[0, 18], [11, 13]], [[2, 2], [5, 0]]], dtype=torch.uint8)
    batch = {"name": ["frankfurt_000000_000294", "bad-honnef_000001_000002"]}

    city = PredictionWriter(tmp_path / "city", "cityscapes", num_classes=19)
    paths = city.write_batch({"preds": preds}, batch)
    assert [p.name for p in paths] == [
        "frankfurt_000000_000294_leftImg8bit.png",
        "bad-honnef_000001_000002_leftImg8bit.png",
    ]
    ids = np.asarray(Image.open(paths[0]))
    np.testing.assert_array_equal(ids, [[7, 33], [24, 26]])  # road, bicycle, person, car

    train = PredictionWriter(tmp_path / "train", "trainid")
    path = train.write_batch({"preds": preds}, {"name": ["a", "sub/b"]})[1]
    assert path == tmp_path / "train" / "sub" / "b.png"
    np.testing.assert_array_equal(np.asarray(Image.open(path)), preds[1].numpy())

    color = PredictionWriter(tmp_path / "color", "color", num_classes=19, palette=PALETTE)
    path = color.write_batch({"preds": preds}, batch)[0]
    image = Image.open(path)
    assert image.mode == "P"
    np.testing.assert_array_equal(np.asarray(image), preds[0].numpy())
    rgb = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(rgb, np.asarray(PALETTE, dtype=np.uint8)[preds[0].numpy()])
    assert color.summary()["files_written"] == 2


def test_writer_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="export.format must be one of"):
        PredictionWriter(tmp_path, "jpeg")
    with pytest.raises(ValueError, match="19 Cityscapes train ids"):
        PredictionWriter(tmp_path, "cityscapes", num_classes=5)
    with pytest.raises(ValueError, match="palette"):
        PredictionWriter(tmp_path, "color", num_classes=5)
    with pytest.raises(ValueError, match="synthetic_val_00000"):
        export_path(tmp_path, "synthetic_val_00000", "cityscapes")
    for name in ("../escape", "/abs/path", ""):
        with pytest.raises(ValueError, match="cannot name an output file"):
            export_path(tmp_path, name, "trainid")
    writer = PredictionWriter(tmp_path, "trainid")
    with pytest.raises(ValueError, match="outside 0..255"):
        writer.write_batch({"preds": torch.full((1, 2, 2), 300)}, {"name": ["x"]})
    with pytest.raises(TypeError, match="preds"):
        writer.write_batch(torch.zeros(1, 2, 2), {"name": ["x"]})


def test_prediction_writer_from_config():
    class Data:
        num_classes = 5
        palette = [[0, 0, 0]] * 5

    assert prediction_writer({"dir": None, "format": "trainid"}, Data()) is None
    assert prediction_writer(None, Data()) is None
    writer = prediction_writer({"dir": "out", "format": "color"}, Data())
    assert writer.fmt == "color" and writer.palette == Data.palette
