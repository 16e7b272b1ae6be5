"""What touches a batch's images takes clips (B, T, 3, H, W) too: the labelled frame of a clip
(:func:`src.data.clips.labelled_frame`), the W&B overlays, ``module.channels_last`` and the
ONNX export of a video model (CCNet3D). The CLI on fake CamVid and Cityscapes-sequence trees:
tests/app/test_video_cli.py."""

from __future__ import annotations

from types import SimpleNamespace

import onnx
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from src.callbacks import wandb_images
from src.callbacks.wandb_images import WandbSegmentationLogger, clip_target, to_uint8_image
from src.core.losses import CCNetLoss
from src.data.clips import ClipSpec, labelled_frame
from src.export import check_shapes, compare_onnx, export_onnx, graph_metadata, read_metadata
from src.models.ccnet3d import CCNet3D
from src.tasks.semantic.module import SegmentationModule

CLASSES = 3
FRAMES = 3


def _clips(batch: int = 2, frames: int = 5, size: int = 6) -> torch.Tensor:
    """Clips whose frame t holds the value t + 10 * b everywhere (then a little noise)."""
    values = torch.arange(frames).view(1, frames, 1, 1, 1) + 10 * torch.arange(batch).view(
        batch, 1, 1, 1, 1
    )
    return values.float().expand(batch, frames, 3, size, size).clone()


@pytest.mark.parametrize("target, index", [("last", 4), ("centre", 2)])
def test_labelled_frame_is_the_target_frame_of_each_clip(target, index):
    clips = _clips()
    frames = labelled_frame(clips, target)
    assert frames.shape == (2, 3, 6, 6)
    assert frames[0].unique().tolist() == [index] and frames[1].unique().tolist() == [10 + index]
    images = clips[:, 0]
    assert labelled_frame(images, target) is images  # an image batch as is
    with pytest.raises(ValueError, match=r"clips \(B, T, C, H, W\); got \(3, 6, 6\)"):
        labelled_frame(images[0], target)


# --- W&B overlays ---------------------------------------------------------------------------


@pytest.fixture
def wandb_on(monkeypatch):
    """The callback active as with a W&B logger on rank 0 (no W&B run is started)."""
    monkeypatch.setattr(wandb_images, "wandb_logger", lambda trainer: object())


def _trainer(clip: ClipSpec | None = None) -> SimpleNamespace:
    datamodule = SimpleNamespace(clip=clip)
    return SimpleNamespace(is_global_zero=True, sanity_checking=False, datamodule=datamodule)


def _collect(callback, trainer, module, clips: torch.Tensor) -> list[dict]:
    batch = {
        "image": clips + torch.rand(clips.shape, generator=torch.Generator().manual_seed(0)),
        "mask": torch.zeros(clips.shape[0], *clips.shape[-2:], dtype=torch.long),
        "name": [f"clip{i}" for i in range(clips.shape[0])],
    }
    preds = torch.ones(clips.shape[0], *clips.shape[-2:], dtype=torch.long)
    callback.on_validation_batch_end(trainer, module, {"preds": preds}, batch, 0)
    return batch["image"], callback._samples


@pytest.mark.parametrize("target, index", [("last", 4), ("centre", 2)])
def test_wandb_overlays_show_the_labelled_frame_of_each_clip(wandb_on, target, index):
    """The frame the model predicts (its ``target_frame``): the overlay's image is that
    frame, H×W×3, under the prediction and mask of the batch."""
    module = SimpleNamespace(net=SimpleNamespace(target_frame=target))
    callback = WandbSegmentationLogger(num_images=4)
    images, samples = _collect(callback, _trainer(), module, _clips())
    assert [s["name"] for s in samples] == ["clip0", "clip1"]
    for sample, clip in zip(samples, images, strict=True):
        assert sample["image"].shape == (6, 6, 3) and sample["pred"].shape == (6, 6)
        assert (sample["image"] == to_uint8_image(clip[index])).all()
        assert not (sample["image"] == to_uint8_image(clip[index - 1])).all()


def test_wandb_overlays_of_clips_follow_the_data_when_the_model_does_not_say(wandb_on):
    module = SimpleNamespace(net=torch.nn.Identity())
    callback = WandbSegmentationLogger(num_images=1)
    images, samples = _collect(callback, _trainer(ClipSpec(5, "centre")), module, _clips())
    assert len(samples) == 1 and (samples[0]["image"] == to_uint8_image(images[0, 2])).all()
    assert clip_target(_trainer(ClipSpec(3, "last")), module) == "last"
    with pytest.raises(ValueError, match="which frame of a clip is labelled"):
        clip_target(_trainer(), module)


def test_wandb_overlays_of_images_are_unchanged(wandb_on):
    """A 2D run (image batches, no clip anywhere) logs its images as before."""
    callback = WandbSegmentationLogger(num_images=4)
    module = SimpleNamespace(net=torch.nn.Identity())
    images, samples = _collect(callback, _trainer(), module, _clips()[:, 0])
    assert len(samples) == 2 and samples[1]["image"].shape == (6, 6, 3)
    assert (samples[1]["image"] == to_uint8_image(images[1])).all()


# --- channels_last with a video model ---------------------------------------------------


class ClipShapes(Dataset):
    """Eight clips of 3 frames (32×32) with a bright square moving right; the mask is the
    last frame's square."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(index)
        clip = torch.randn(FRAMES, 3, 32, 32, generator=gen) * 0.1
        y, x = (index * 5) % 16, (index * 3) % 12
        for t in range(FRAMES):
            clip[t, :, y : y + 12, x + 2 * t : x + 2 * t + 12] += 1.0
        mask = torch.zeros(32, 32, dtype=torch.long)
        last = x + 2 * (FRAMES - 1)
        mask[y : y + 12, last : last + 12] = 1 + index % 2
        return {"image": clip, "mask": mask}


def _train_video_model(steps: int = 3, **speed) -> tuple[list[float], SegmentationModule]:
    pl.seed_everything(0)
    net = CCNet3D(CLASSES, backbone="resnet10t", channels=16, aux_channels=16, dropout=0.0)
    net.aux_head.dropout.p = 0.0
    torch.nn.init.constant_(net.head.context.cca.gamma, 0.5)  # the 3D attention takes part
    module = SegmentationModule(net, CCNetLoss(), CLASSES, lr=0.05, **speed)
    losses: list[float] = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            losses.append(float(outputs["loss"]))

    trainer = pl.Trainer(
        max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, callbacks=[Record()],
        deterministic=True,
    )  # fmt: skip
    trainer.fit(module, DataLoader(ClipShapes(), batch_size=2, shuffle=False))
    return losses, module


def test_channels_last_trains_a_video_model_like_the_default_layout():
    """``module.channels_last=true`` with CCNet3D: 2D conv weights channels-last, the 3D
    attention's 1×1×1 convs channels-last-3d (``net.to(memory_format=channels_last)`` fails
    on those), clips passed as they are, the same losses."""
    expected, _ = _train_video_model()
    got, module = _train_video_model(channels_last=True)
    net = module.net
    assert net.head.reduce[0].weight.is_contiguous(memory_format=torch.channels_last)
    query = net.head.context.cca.query.weight
    assert query.dim() == 5 and query.is_contiguous(memory_format=torch.channels_last_3d)
    assert got == pytest.approx(expected, rel=1e-5)
    clips = torch.stack([ClipShapes()[i]["image"] for i in range(2)])
    assert module.in_layout(clips) is clips


# --- ONNX export of a video model -------------------------------------------------------


@pytest.fixture
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("clip", [ClipSpec(3, "centre"), ClipSpec(1, "last")], ids=["T3", "T1"])
def test_video_model_exports_clips_that_match_pytorch_at_other_sizes(clip, tmp_path, single_thread):
    """The graph takes B×T×3×H×W clips (T fixed, batch, height and width dynamic) and gives
    the labelled frame's logits at full resolution, as PyTorch does, also at a size and batch
    other than the traced ones; the metadata says how to cut the clips."""
    torch.manual_seed(0)
    net = CCNet3D(5, backbone="resnet10t", channels=16, aux_channels=8, target_frame=clip.target)
    torch.nn.init.constant_(net.head.context.cca.gamma, 0.5)
    net.eval()
    path = export_onnx(net, tmp_path / "video.onnx", input_size=(48, 40), clip=clip)
    shapes = check_shapes((48, 40), clip)
    assert shapes == [[1, clip.length, 3, 48, 40], [2, clip.length, 3, 65, 63]]
    rows = compare_onnx(path, net, shapes)
    assert all(row["max_abs_diff"] < 1e-4 for row in rows), rows

    (graph_input,) = onnx.load(str(path)).graph.input
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert dims == ["batch", clip.length, 3, "height", "width"]
    meta = read_metadata(path)
    assert meta["input"]["shape"] == ["batch", clip.length, 3, "height", "width"]
    assert meta["clip"] == {"length": clip.length, "target": clip.target, "stride": 1}
    assert meta == graph_metadata(5, clip)
