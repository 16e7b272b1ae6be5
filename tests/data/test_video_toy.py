"""The video toy holds what its docstring promises: the class shows only before the labelled
frame, still shapes keep their place (reached by the time line), moving shapes leave it
(reached only through an earlier frame's row), and clips of one frame see the same labelled
frames."""

from __future__ import annotations

import numpy as np
import pytest

from src.data.context_toy import SHAPE_GREY
from src.data.video_toy import VideoToyDataset

SAMPLES = 24


@pytest.fixture(scope="module")
def clips() -> VideoToyDataset:
    return VideoToyDataset(split="val", clip={"length": 3}, num_samples=SAMPLES, noise_std=0.0)


def test_one_frame_clips_see_the_same_labelled_frames(clips: VideoToyDataset) -> None:
    single = VideoToyDataset(split="val", clip={"length": 1}, num_samples=SAMPLES, noise_std=0.0)
    for index in range(4):
        frames, mask, name = clips.read_clip(index)
        frame, mask1, name1 = single.read_clip(index)
        assert len(frames) == 3 and len(frame) == 1
        assert np.array_equal(frames[-1], frame[0]) and np.array_equal(mask, mask1)
        assert name == name1


def test_the_class_shows_only_before_the_labelled_frame(clips: VideoToyDataset) -> None:
    for index in range(SAMPLES):
        layout = clips.layout(index)
        frames, mask, _ = clips.read_clip(index)
        colour = np.asarray(clips.palette[layout.class_id])
        for frame in (0, 1):
            inside = clips.shape_pixels(layout, frame) > 0
            assert (frames[frame][inside] == colour).all()
        inside = clips.shape_pixels(layout, 2) > 0
        assert (frames[2][inside] == SHAPE_GREY).all()
        assert set(np.unique(mask)) == {0, layout.class_id}
        assert np.array_equal(mask > 0, clips.shape_pixels(layout, 2) > 0)


def test_still_shapes_are_on_their_time_line_and_moving_ones_on_their_row(
    clips: VideoToyDataset,
) -> None:
    """A still shape pixel of the labelled frame is coloured at the same place in the earlier
    frames; a moving one's place is background there, and their rows through it are coloured."""
    seen = {1: 0, 2: 0}
    for index in range(SAMPLES):
        layout = clips.layout(index)
        motion = clips.motion_map(index)
        for frame in (0, 1):
            earlier = clips.shape_pixels(layout, frame)
            for kind in (1, 2):
                ys, xs = np.nonzero(motion == kind)
                seen[kind] += len(ys)
                if kind == 1:
                    assert (earlier[ys, xs] > 0).all()
                else:
                    assert (earlier[ys, xs] == 0).all()
                    assert all((earlier[y] > 0).any() for y in set(ys.tolist()))
    assert seen[1] > 2000 and seen[2] > 2000  # both kinds are common


def test_every_shape_has_a_row_band_of_its_own(clips: VideoToyDataset) -> None:
    for index in range(SAMPLES):
        shapes = clips.layout(index).shapes
        rows = [set(range(s.top, s.top + s.size)) for s in shapes]
        assert all(not (a & b) for i, a in enumerate(rows) for b in rows[i + 1 :])


def test_clips_are_deterministic_and_splits_differ() -> None:
    a = VideoToyDataset(split="train", clip={"length": 3}, num_samples=4)
    b = VideoToyDataset(split="train", clip={"length": 3}, num_samples=4)
    c = VideoToyDataset(split="val", clip={"length": 3}, num_samples=4)
    assert all(np.array_equal(x, y) for x, y in zip(a.read_clip(2)[0], b.read_clip(2)[0]))
    assert not np.array_equal(a.read_clip(2)[0][0], c.read_clip(2)[0][0])
    sample = a[1]
    assert tuple(sample["image"].shape) == (3, 3, 64, 96) and tuple(sample["mask"].shape) == (
        64,
        96,
    )


def test_revealed_clips_show_the_class_in_the_labelled_frame_too() -> None:
    revealed = VideoToyDataset(
        split="train", clip={"length": 3}, num_samples=40, revealed_fraction={"train": 0.5}
    )
    flags = [revealed.layout(i).revealed for i in range(40)]
    assert 5 < sum(flags) < 35
    index = flags.index(True)
    layout = revealed.layout(index)
    frames, _, _ = revealed.read_clip(index)
    inside = revealed.shape_pixels(layout, 2) > 0
    colour = np.asarray(revealed.palette[layout.class_id], dtype=float)
    assert np.abs(frames[2][inside].mean(0) - colour).max() < 5  # noise averages out
    other = VideoToyDataset(split="val", clip={"length": 3}, revealed_fraction={"train": 0.5})
    assert not any(other.layout(i).revealed for i in range(40))  # only where the mapping says


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"data.clip .*needs video frames \[1, 2, 3\]"):
        VideoToyDataset(clip={"length": 3, "target": "centre"})
    with pytest.raises(ValueError, match=r"needs video frames \[-2, 0, 2\]"):
        VideoToyDataset(clip={"length": 3, "stride": 2})
    with pytest.raises(ValueError, match="do not fit"):
        VideoToyDataset(clip={"length": 3}, image_size=(32, 32))
    with pytest.raises(ValueError, match="unknown clip setting data.clip.size"):
        VideoToyDataset(clip={"size": 3})
