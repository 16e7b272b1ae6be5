"""The video experiments through the CLI on the fake dataset trees (``src.data.fake``): CamVid
clips (``camvid_rcca3d``) and Cityscapes sequences (``cityscapes_seq_rcca3d``) train with
``debug=tiny``, ``src.eval`` scores the checkpoint as the run's final validation did (and
writes a prediction file per image), ``src.predict`` turns a folder of the tree's frames into a
mask per frame, and ``src.export`` writes a clip graph. ``debug=default`` runs of both
experiments: test_debug_configs.py.

Default run: one training and one eval (CamVid) plus an in-process export; the rest is slow.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from app_helpers import CONF, ROOT, read_results
from cli_helpers import run_cli, wandb_summary
from hydra import compose, initialize_config_dir
from PIL import Image

from src.core.module import metric_key
from src.data.camvid import CLASS_NAMES as CAMVID_CLASSES
from src.data.cityscapes import CLASS_NAMES as CITYSCAPES_CLASSES
from src.data.cityscapes import TRAIN_ID_TO_LABEL_ID
from src.data.fake import CAMVID_NAMES, write_fake_camvid, write_fake_cityscapes_sequence
from src.export import export, read_metadata

CAMVID_SIZE = (36, 48)  # write_fake_camvid's frames (height, width)
SEQUENCE_SIZE = (32, 64)  # write_fake_cityscapes_sequence's


def _train(experiment: str, root: Path, run_dir: Path, *overrides: str) -> dict:
    """``python -m src.train experiment=... debug=tiny data.root=...``; its results.json."""
    run_cli(
        "train",
        f"experiment={experiment}",
        "debug=tiny",
        f"data.root={root}",
        *overrides,
        f"hydra.run.dir={run_dir}",
    )
    return read_results(run_dir)


def _check_trained(results: dict, class_names: list[str]) -> None:
    """3 steps, one process, the val mIoU and an IoU per class of the dataset (NaN: a class
    absent from both the masks and the predictions)."""
    assert results["global_step"] == 3 and results["world_size"] == 1
    metrics = results["metrics"]
    assert math.isfinite(metrics["val/mIoU"]) and math.isfinite(metrics["val/loss"])
    assert list(results["per_class_iou"]["val"]) == class_names
    keys = {f"val/IoU/{metric_key(name)}" for name in class_names}
    assert keys <= set(metrics) and not any(k.startswith("val/IoU/class_") for k in metrics)


def _check_reproduced(evaluated: dict, trained: dict) -> None:
    """src.eval's numbers are the final validation's (the loss tells weights apart)."""
    assert evaluated["task"] == "eval" and evaluated["checkpoint_global_step"] == 3
    metrics, expected = evaluated["metrics"], trained["metrics"]
    assert metrics["val/mIoU"] == pytest.approx(expected["val/mIoU"], nan_ok=True)
    assert evaluated["per_class_iou"]["val"] == pytest.approx(
        trained["per_class_iou"]["val"], nan_ok=True
    )
    assert metrics["val/loss"] == pytest.approx(expected["val/loss"], rel=1e-5)


def _mask(path: Path, size: tuple[int, int], num_classes: int) -> np.ndarray:
    image = Image.open(path)
    assert image.size == size[::-1], path
    mask = np.asarray(image)
    assert mask.ndim == 2 and mask.max() < num_classes, path
    return mask


def _check_frame_masks(out: Path, run_dir: Path, frames: list[Path], size, classes) -> None:
    """One train-id mask per frame, named after it; the clips of the data config."""
    for frame in frames:
        _mask(out / f"{frame.stem}.png", size, len(classes))
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["totals"] == {"inputs": len(frames), "predicted": len(frames), "skipped": 0}
    assert summary["video"]["clip"] == {"length": 5, "target": "last", "stride": 1}
    results = read_results(run_dir)
    assert results["images"] == len(frames) and results["class_names"] == classes


# --- CamVid clips ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def camvid(tmp_path_factory) -> tuple[Path, Path, dict]:
    """The fake CamVid tree and a ``camvid_rcca3d debug=tiny`` run on it: (root, run, results)."""
    base = tmp_path_factory.mktemp("camvid")
    root = write_fake_camvid(base / "data")
    run_dir = base / "train"
    return root, run_dir, _train("camvid_rcca3d", root, run_dir)


def test_camvid_clips_train_and_eval_reproduces_the_final_validation(camvid, tmp_path):
    """5-frame clips through CCNet3D: CamVid's 11 classes in results.json; ``src.eval`` on
    last.ckpt (its config from the checkpoint) gives the final validation's numbers and,
    with ``export.dir``, a train-id PNG per val image (the clip's labelled frame)."""
    root, run_dir, trained = camvid
    _check_trained(trained, CAMVID_CLASSES)
    assert trained["overrides"][:2] == ["experiment=camvid_rcca3d", "debug=tiny"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    eval_dir, export_dir = tmp_path / "eval", tmp_path / "preds"
    run_cli(
        "eval",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        f"export.dir={export_dir}",
        "export.format=trainid",
        f"hydra.run.dir={eval_dir}",
    )
    evaluated = read_results(eval_dir)
    _check_reproduced(evaluated, trained)
    assert (eval_dir / "per_class_iou.png").is_file()
    assert (eval_dir / "confusion_matrix.png").is_file()
    names = sorted(CAMVID_NAMES["val"])
    assert sorted(p.stem for p in export_dir.iterdir()) == names
    assert evaluated["export"]["files_written"] == len(names)
    for name in names:
        _mask(export_dir / f"{name}.png", CAMVID_SIZE, len(CAMVID_CLASSES))


def test_camvid_video_model_exports_a_clip_graph(camvid, tmp_path):
    """``src.export`` (in this process) on the run's checkpoint: a B×5×3×H×W graph checked
    in onnxruntime at two sizes, the clip settings in its metadata."""
    root, run_dir, _ = camvid
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "export",
            overrides=[
                "experiment=camvid_rcca3d",
                "debug=tiny",
                f"data.root={root}",
                f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
                f"output={tmp_path / 'camvid.onnx'}",
                "input_size=[36,48]",
                f"paths.root_dir={ROOT}",
                f"paths.output_dir={tmp_path / 'run'}",
            ],
        )
    results = export(cfg)
    assert results["input"]["shape"] == ["batch", 5, 3, "height", "width"]
    assert [row["shape"] for row in results["checks"]] == [[1, 5, 3, 36, 48], [2, 5, 3, 50, 75]]
    assert all(row["max_abs_diff"] < 1e-3 for row in results["checks"])
    meta = read_metadata(tmp_path / "camvid.onnx")
    assert meta["clip"] == {"length": 5, "target": "last", "stride": 1}
    assert meta["class_names"] == CAMVID_CLASSES and meta["normalization"]["layout"] == "NTCHW"


@pytest.mark.slow
def test_camvid_predict_writes_a_mask_per_frame_of_a_frames_folder(camvid, tmp_path):
    """``src.predict`` on ``frames/Seq05VD`` (a video's frames, the first one frame 0): a mask
    per frame, each predicted from its 5-frame clip (the first frames repeat frame 0)."""
    root, run_dir, _ = camvid
    frames = sorted((root / "frames" / "Seq05VD").glob("*.png"))
    out, predict_dir = tmp_path / "out", tmp_path / "predict"
    run_cli(
        "predict",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        f"input={root / 'frames' / 'Seq05VD'}",
        f"output={out}",
        f"hydra.run.dir={predict_dir}",
    )
    _check_frame_masks(out, predict_dir, frames, CAMVID_SIZE, CAMVID_CLASSES)
    assert (out / "Seq05VD_overlay.mp4").is_file()


@pytest.mark.slow
def test_camvid_clips_log_overlays_of_the_labelled_frame_to_wandb(camvid, tmp_path):
    """``logger=wandb`` (offline) on clips: the validation overlays are logged (each the
    clip's labelled frame under its masks: tests/test_clip_batches.py)."""
    root, _, _ = camvid
    run_dir = tmp_path / "run"
    _train("camvid_rcca3d", root, run_dir, "logger=wandb")
    (wandb_dir,) = (run_dir / "wandb").glob("offline-run-*")
    summary = wandb_summary(wandb_dir)["summary"]
    assert summary["val/predictions"]["count"] == len(CAMVID_NAMES["val"])


# --- Cityscapes sequences -------------------------------------------------------------------


@pytest.mark.slow
def test_cityscapes_sequence_clips_train_evaluate_export_and_predict(tmp_path):
    """``cityscapes_seq_rcca3d`` on the fake sequence tree: 19 classes, sliding-window eval
    over clips reproducing the final validation, official labelId files per annotated frame
    (``export.format=cityscapes``), and a mask per frame of a test sequence."""
    root = write_fake_cityscapes_sequence(tmp_path / "data")
    run_dir = tmp_path / "train"
    trained = _train("cityscapes_seq_rcca3d", root, run_dir)
    _check_trained(trained, CITYSCAPES_CLASSES)

    eval_dir, export_dir = tmp_path / "eval", tmp_path / "results"
    run_cli(
        "eval",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        f"export.dir={export_dir}",
        "export.format=cityscapes",
        f"hydra.run.dir={eval_dir}",
    )
    _check_reproduced(read_results(eval_dir), trained)
    annotated = sorted(root.glob("gtFine/val/*/*_gtFine_labelIds.png"))
    expected = [p.name.replace("_gtFine_labelIds", "_leftImg8bit") for p in annotated]
    assert sorted(p.name for p in export_dir.iterdir()) == expected
    label_ids = set(TRAIN_ID_TO_LABEL_ID.tolist())
    for name in expected:
        values = set(np.unique(np.asarray(Image.open(export_dir / name))).tolist())
        assert values <= label_ids, name

    sequence = root / "leftImg8bit_sequence" / "test" / "berlin"
    frames = sorted(sequence.glob("*.png"))
    out, predict_dir = tmp_path / "out", tmp_path / "predict"
    run_cli(
        "predict",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        f"input={sequence}",
        f"output={out}",
        f"hydra.run.dir={predict_dir}",
    )
    _check_frame_masks(out, predict_dir, frames, SEQUENCE_SIZE, CITYSCAPES_CLASSES)
