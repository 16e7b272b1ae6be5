"""``python -m src.predict`` on videos: a video file or a folder of frames in, a train-id mask
per frame and an overlay video out; a video model sees each frame's clip (streamed: at most a
clip's span of frames decoded), a 2D model each frame alone.

Nothing is trained: the checkpoints are tiny nets as built (attention ``gamma`` set to 0.5 so
that the other frames of a clip change the logits), saved the way a training run saves them
(hyperparameters, launch record)."""

from __future__ import annotations

import json
import weakref
from pathlib import Path

import cv2
import hydra
import numpy as np
import pytest
import torch
from PIL import Image
from prediction_helpers import GAMMA, compose_config, run_cli

from src.app.checkpoint import (
    load_checkpoint,
    model_description,
    net_from_checkpoint,
    without_initial_weights,
)
from src.core.inference import InferenceConfig, predict_logits_with
from src.core.prediction_files import overlay
from src.core.video_frames import (
    NOT_A_FRAME,
    VideoReadError,
    clip_windows,
    frame_folder,
    natural_key,
    open_sequence,
)
from src.core.video_prediction import predict_frames
from src.data.clips import ClipSpec, pad_missing
from src.data.transforms import eval_transform
from src.predict import clip_spec, is_clip_model, predict

SIZE = (64, 96)  # (height, width) of the test videos
FRAMES = 7
FPS = 12.0
TINY = ["model.channels=16", "model.aux_channels=8"]  # launch overrides of the checkpoints
NUM_CLASSES = 5  # the video toy's


# --- the frame stream and the clip windows (no model) ------------------------------------


class Item:
    """A frame stand-in that can be counted while alive (weak references)."""

    def __init__(self, number: int) -> None:
        self.number = number


SPECS = [
    ClipSpec(3, "last", 1),
    ClipSpec(3, "centre", 1),
    ClipSpec(5, "centre", 2),
    ClipSpec(4, "last", 3),
    ClipSpec(1, "last", 1),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"T{s.length}-{s.target}-s{s.stride}")
@pytest.mark.parametrize("count", [1, 2, 9])
def test_clip_windows_stream_with_a_bounded_buffer(spec, count):
    """Each clip comes out as soon as its last frame was pulled (never later, never a frame
    read ahead), holds the frames ClipSpec names (ends padded as pad_missing does), and at most
    the clip's span of frames is alive when it comes out."""
    span = (spec.length - 1) * spec.stride + 1
    ahead = (spec.length - 1 - spec.target_index) * spec.stride
    pulled, alive = [0], weakref.WeakSet()

    def source():
        for number in range(count):
            item = Item(number)
            alive.add(item)
            pulled[0] += 1
            yield item
            del item

    emitted = []
    for frame, clip in clip_windows(source(), spec):
        assert pulled[0] == min(frame + ahead + 1, count)  # the lag of a centre target
        numbers = [item.number for item in clip]
        del clip
        assert len(alive) <= span
        expected = pad_missing([n if 0 <= n < count else None for n in spec.frame_numbers(frame)])
        assert numbers == expected
        assert numbers[spec.target_index] == frame
        emitted.append(frame)
    assert emitted == list(range(count))


def test_clip_ends_repeat_the_nearest_frame():
    last, centre, wide = ClipSpec(3, "last"), ClipSpec(3, "centre"), ClipSpec(5, "centre", 2)
    windows = {spec: dict(clip_windows(range(7), spec)) for spec in (last, centre, wide)}
    assert windows[last][0] == [0, 0, 0] and windows[last][1] == [0, 0, 1]
    assert windows[last][6] == [4, 5, 6]
    assert windows[centre][0] == [0, 0, 1] and windows[centre][6] == [5, 6, 6]
    # stride 2: a missing clip frame repeats the nearest frame *of the clip* (pad_missing)
    assert windows[wide][1] == [1, 1, 1, 3, 5] and windows[wide][6] == [2, 4, 6, 6, 6]
    assert dict(clip_windows(range(1), centre)) == {0: [0, 0, 0]}
    assert list(clip_windows(iter(()), centre)) == []


def test_frame_folder_natural_order_and_skips(tmp_path):
    for name in ("frame_10.png", "frame_2.png", "frame_1.jpg", "sub/frame_0.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    sequence = frame_folder(tmp_path)
    assert [p.name for p in sequence.files] == ["frame_1.jpg", "frame_2.png", "frame_10.png"]
    assert sequence.skipped == (("notes.txt", NOT_A_FRAME),)
    assert (sequence.stem, sequence.fps, sequence.count) == (tmp_path.name, 10.0, 3)
    assert [(f.index, f.stem) for f in sequence.frames()] == [
        (0, "frame_1"),
        (1, "frame_2"),
        (2, "frame_10"),
    ]
    assert sorted(["b10", "b9", "a"], key=natural_key) == ["a", "b9", "b10"]
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "frame_2.jpg")
    with pytest.raises(ValueError, match="would both write frame_2"):
        frame_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="holds no frames"):
        frame_folder(tmp_path / "sub", exclude=tmp_path / "sub")


def test_bad_video_files_are_one_line_errors_naming_the_file(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(VideoReadError, match="cannot open video file .*junk.mp4"):
        open_sequence(junk)
    empty = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (16, 8))
    writer.release()  # a container with no frame (or no file at all: the same error)
    with pytest.raises(VideoReadError, match="empty.avi") as err:
        open_sequence(empty)
    assert "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="neither a file nor a folder"):
        open_sequence(tmp_path / "missing.mp4")


# --- tiny checkpoints and a short video -----------------------------------------------------


def _make_checkpoint(path: Path, overrides: list[str]) -> Path:
    """A checkpoint of the model ``experiment=video_toy`` + ``overrides`` builds, untrained,
    as a training run writes it (net weights, class facts, model config, launch record)."""
    cfg = compose_config("predict", ["experiment=video_toy", *overrides])
    names = list(hydra.utils.get_class(cfg.data.dataset._target_).class_names)
    torch.manual_seed(0)
    net = hydra.utils.instantiate(
        cfg.model, num_classes=len(names), **without_initial_weights(cfg.model)
    )
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.endswith("gamma"):
                param.fill_(GAMMA)
    checkpoint = {
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
        "hyper_parameters": {
            "num_classes": len(names),
            "class_names": names,
            "flip_pairs": [],
            "model_config": model_description(cfg.model),
        },
        "launch": {"experiment": "video_toy", "overrides": overrides},
        "global_step": 0,
    }
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def ckpt3d(tmp_path_factory) -> Path:
    return _make_checkpoint(tmp_path_factory.mktemp("ckpt") / "ccnet3d.ckpt", TINY)


def _frames(count: int = FRAMES) -> list[np.ndarray]:
    """Noisy grey frames with coloured boxes moving right (RGB uint8)."""
    rng = np.random.default_rng(0)
    h, w = SIZE
    frames = []
    for t in range(count):
        frame = np.clip(rng.normal(110, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        frame[10:30, 8 + 6 * t : 28 + 6 * t] = (220, 40, 40)
        frame[36:58, 60 - 4 * t : 80 - 4 * t] = (40, 200, 60)
        frames.append(frame)
    return frames


def _write_video(path: Path, frames: list[np.ndarray], fps: float = FPS) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write mp4 (mp4v)")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _decode(path: Path) -> list[np.ndarray]:
    """Every frame of a video file as RGB, and nothing else (cv2)."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return _write_video(tmp_path_factory.mktemp("video") / "clip.mp4", _frames())


def _write_frames(folder: Path, frames: list[np.ndarray]) -> list[str]:
    """PNG frames named ``frame_0, frame_2, ..., frame_12``: by name frame_10 would sort
    before frame_2, in natural order it comes after."""
    folder.mkdir(parents=True)
    names = [f"frame_{2 * i}" for i in range(len(frames))]
    for name, frame in zip(names, frames, strict=True):
        Image.fromarray(frame).save(folder / f"{name}.png")
    return names


def _net(ckpt: Path, overrides: list[str]):
    cfg = compose_config("predict", ["experiment=video_toy", *overrides])
    return cfg, net_from_checkpoint(cfg.model, load_checkpoint(ckpt))


def _masks(net, frames, clip: ClipSpec | None) -> list[np.ndarray]:
    """The in-process prediction of ``frames`` (Frame objects), whole-image inference."""
    out = predict_frames(net, frames, clip, eval_transform(), InferenceConfig(), (), NUM_CLASSES)
    return [mask for _, mask in out]


def _read_mask(path: Path) -> np.ndarray:
    image = Image.open(path)
    assert image.mode == "L" and image.size == SIZE[::-1], path
    return np.asarray(image)


def _agree(a: np.ndarray, b: np.ndarray) -> float:
    """Share of equal pixels (another process may round a logit differently at a near-tie)."""
    return float((a == b).mean())


# --- in-process ---------------------------------------------------------------------------


def test_video_and_its_frames_as_pngs_give_the_same_masks(ckpt3d, video, tmp_path):
    """Lossless frames (the video's decoded frames written as PNG) predict exactly as the
    video does; each mask is the model on the frame's padded clip."""
    cfg, net = _net(ckpt3d, TINY)
    spec = clip_spec(cfg, net)
    assert is_clip_model(cfg.model) and spec == ClipSpec(3, "last", 1)
    decoded = _decode(video)
    names = _write_frames(tmp_path / "frames", decoded)
    from_video = _masks(net, open_sequence(video).frames(), spec)
    folder = open_sequence(tmp_path / "frames")
    assert [p.stem for p in folder.files] == names
    from_folder = _masks(net, folder.frames(), spec)
    assert len(from_video) == len(from_folder) == FRAMES
    for a, b in zip(from_video, from_folder, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(np.unique(np.stack(from_video))) >= 2  # a real comparison, not all one class

    transform = eval_transform()
    for f in (0, 1, 4, 6):
        numbers = [n if n >= 0 else None for n in spec.frame_numbers(f)]
        frames = pad_missing([decoded[n] if n is not None else None for n in numbers])
        clip = torch.stack([transform(image=x)["image"].float() for x in frames])[None]
        logits = predict_logits_with(net, clip, InferenceConfig(), (), NUM_CLASSES)
        np.testing.assert_array_equal(from_video[f], logits.argmax(1)[0].numpy())


def test_centre_target_gives_one_mask_per_frame_from_its_centred_clip(ckpt3d, video):
    overrides = [*TINY, "data.clip.target=centre"]
    cfg, net = _net(ckpt3d, overrides)
    spec = clip_spec(cfg, net)
    assert spec.target == net.target_frame == "centre"
    decoded = _decode(video)
    masks = _masks(net, open_sequence(video).frames(), spec)
    assert len(masks) == FRAMES
    transform = eval_transform()
    for f in (0, 3, 6):  # the first clip repeats frame 0, the last one frame 6
        numbers = [min(max(n, 0), FRAMES - 1) for n in spec.frame_numbers(f)]
        clip = torch.stack([transform(image=decoded[n])["image"].float() for n in numbers])
        logits = predict_logits_with(net, clip[None], InferenceConfig(), (), NUM_CLASSES)
        np.testing.assert_array_equal(masks[f], logits.argmax(1)[0].numpy())
    cfg.data.clip.target = "last"  # the clips must put the labelled frame where the model does
    with pytest.raises(ValueError, match="data.clip.target=last but model.target_frame=centre"):
        clip_spec(cfg, net)


def test_2d_model_predicts_each_video_frame_alone(video, tmp_path):
    """A video file for a 2D model: predict() writes each frame's mask, the model on the frame
    alone, and the overlay video."""
    overrides = ["model=ccnet", *TINY]
    ckpt = _make_checkpoint(tmp_path / "ccnet.ckpt", overrides)
    out = tmp_path / "out"
    cfg = compose_config(
        "predict",
        [
            "experiment=video_toy",
            *overrides,
            f"ckpt_path={ckpt}",
            f"input={video}",
            f"output={out}",
            f"paths.output_dir={tmp_path / 'run'}",
            "device=cpu",
        ],
    )
    assert not is_clip_model(cfg.model)
    results = predict(cfg)
    assert results["images"] == FRAMES and results["video"]["clip"] is None
    net = net_from_checkpoint(cfg.model, load_checkpoint(ckpt))
    transform = eval_transform()
    for f, frame in enumerate(_decode(video)):
        logits = predict_logits_with(
            net, transform(image=frame)["image"].float()[None], InferenceConfig()
        )
        np.testing.assert_array_equal(
            _read_mask(out / "clip" / f"{f:06d}.png"), logits.argmax(1)[0].numpy()
        )
    assert len(_decode(out / "clip_overlay.mp4")) == FRAMES


def test_unreadable_inputs_fail_before_the_model_loads(ckpt3d, tmp_path, monkeypatch):
    monkeypatch.setattr("src.predict.load_checkpoint", lambda *_: pytest.fail("model loaded"))
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"\0" * 64)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no frames here")
    for source, error, match in [
        (junk, VideoReadError, "cannot open video file .*junk.avi"),
        (empty, FileNotFoundError, "input=.*empty.* holds no frames"),
    ]:
        cfg = compose_config(
            "predict",
            ["experiment=video_toy", *TINY, f"ckpt_path={ckpt3d}", f"input={source}"]
            + [f"output={tmp_path / 'out'}"],
        )
        with pytest.raises(error, match=match):
            predict(cfg)


# --- the command line ---------------------------------------------------------------------


def _check_overlay_video(path: Path, frames: list[np.ndarray], masks, fps: float) -> None:
    """Readable by cv2, one frame per input frame at its size and rate, showing the masks."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened() and capture.get(cv2.CAP_PROP_FPS) == pytest.approx(fps)
    capture.release()
    written = _decode(path)
    assert len(written) == len(frames)
    palette = hydra.utils.get_class("src.data.video_toy.VideoToyDataset").palette
    for got, frame, mask in zip(written, frames, masks, strict=True):
        assert got.shape == (*SIZE, 3)
        expected = overlay(frame, mask, palette, 0.5).astype(np.float32)
        assert np.abs(got.astype(np.float32) - expected).mean() < 10  # mp4v is lossy


def test_predict_cli_turns_an_mp4_into_masks_and_an_overlay_video(ckpt3d, video, tmp_path):
    out, run_dir = tmp_path / "out", tmp_path / "run"
    run_cli(
        "predict",
        "experiment=video_toy",
        f"ckpt_path={ckpt3d}",
        f"input={video}",
        f"output={out}",
        f"hydra.run.dir={run_dir}",
    )
    masks = [_read_mask(out / "clip" / f"{f:06d}.png") for f in range(FRAMES)]
    assert sorted(p.name for p in (out / "clip").iterdir()) == [f"{f:06d}.png" for f in range(7)]
    assert all(mask.max() < NUM_CLASSES for mask in masks)
    cfg, net = _net(ckpt3d, TINY)
    expected = _masks(net, open_sequence(video).frames(), clip_spec(cfg, net))
    for got, want in zip(masks, expected, strict=True):
        assert _agree(got, want) > 0.999
    _check_overlay_video(out / "clip_overlay.mp4", _decode(video), masks, FPS)

    summary = json.loads((out / "predictions.json").read_text())
    assert summary["totals"] == {"inputs": FRAMES, "predicted": FRAMES, "skipped": 0}
    assert summary["video"] == {
        "frames": FRAMES,
        "fps": FPS,
        "overlay_video": "clip_overlay.mp4",
        "clip": {"length": 3, "target": "last", "stride": 1},
    }
    assert summary["files"][3] == {
        "input": "clip.mp4[000003]",
        "status": "predicted",
        "frame": 3,
        "outputs": {"mask": "clip/000003.png"},
    }
    results = json.loads((run_dir / "results.json").read_text())
    assert results["images"] == FRAMES and results["video"] == summary["video"]


@pytest.mark.slow  # in-process: frames as PNGs = the video, centre targets (default run)
def test_predict_cli_folder_of_frames_with_a_centre_target(ckpt3d, video, tmp_path):
    """A folder of frames (natural order), the labelled frame in the clip's centre: one mask
    and colour PNG per frame, named after the frame, and a 10 fps overlay video."""
    frames = _decode(video)
    folder, out, run_dir = tmp_path / "seq", tmp_path / "out", tmp_path / "run"
    names = _write_frames(folder, frames)
    (folder / "notes.txt").write_text("not a frame")
    run_cli(
        "predict",
        "experiment=video_toy",
        "data.clip.target=centre",
        "frame_colors=true",
        f"ckpt_path={ckpt3d}",
        f"input={folder}",
        f"output={out}",
        f"hydra.run.dir={run_dir}",
    )
    masks = [_read_mask(out / f"{name}.png") for name in names]
    for name, mask in zip(names, masks, strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"{name}_color.png")), mask)
    cfg, net = _net(ckpt3d, [*TINY, "data.clip.target=centre"])
    expected = _masks(net, open_sequence(folder).frames(), clip_spec(cfg, net))
    for got, want in zip(masks, expected, strict=True):
        assert _agree(got, want) > 0.999
    _check_overlay_video(out / "seq_overlay.mp4", frames, masks, 10.0)
    summary = json.loads((out / "predictions.json").read_text())
    assert [e["input"] for e in summary["files"]] == ["notes.txt", *(f"{n}.png" for n in names)]
    assert summary["video"]["clip"]["target"] == "centre"
    assert summary["files"][-1]["outputs"] == {
        "mask": "frame_12.png",
        "color": "frame_12_color.png",
    }


@pytest.mark.slow
def test_predict_cli_folder_of_the_videos_frames_matches_the_video(ckpt3d, video, tmp_path):
    """Lossless frames through the CLI: the same masks as the video itself (same process
    settings, so bit for bit)."""
    folder = tmp_path / "frames"
    names = _write_frames(folder, _decode(video))
    for source, out in ((video, tmp_path / "a"), (folder, tmp_path / "b")):
        run_cli(
            "predict",
            "experiment=video_toy",
            f"ckpt_path={ckpt3d}",
            f"input={source}",
            f"output={out}",
            f"hydra.run.dir={out}_run",
        )
    for f, name in enumerate(names):
        a = _read_mask(tmp_path / "a" / "clip" / f"{f:06d}.png")
        np.testing.assert_array_equal(a, _read_mask(tmp_path / "b" / f"{name}.png"))
