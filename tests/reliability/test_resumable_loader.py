"""The training loader's position is saved and restored exactly (src/data/resumable.py)."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from src.data.resumable import ResumableSampler, seed_pipeline
from src.data.synthetic import SyntheticSegmentationDataset
from src.data.transforms import train_transform
from src.tasks.semantic.datamodule import SegmentationDataModule

BATCHES_PER_EPOCH = 4


def datamodule(num_workers: int = 0) -> SegmentationDataModule:
    dataset = partial(
        SyntheticSegmentationDataset,
        num_samples={"train": 2 * BATCHES_PER_EPOCH, "val": 2},
        image_size=(24, 24),
        num_classes=3,
    )
    return SegmentationDataModule(
        dataset=dataset, crop_size=(16, 16), batch_size=2, num_workers=num_workers, seed=3
    )


def epoch(loader, number: int, limit: int | None = None) -> list[dict]:
    """The batches of one epoch the way Lightning asks for them: ``set_epoch``, then ``len``
    batches (or ``limit``) without running the iterator into StopIteration."""
    loader.sampler.set_epoch(number)
    iterator = iter(loader)
    return [next(iterator) for _ in range(limit if limit is not None else len(loader))]


def same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        x["name"] == y["name"] and torch.equal(x["image"], y["image"]) for x, y in zip(a, b)
    )


@pytest.mark.parametrize("num_workers", [0, 2])
def test_restored_loader_continues_mid_epoch(num_workers):
    reference = datamodule(num_workers).train_dataloader()
    epochs = [epoch(reference, e) for e in range(3)]
    assert not same(epochs[0], epochs[1])  # a new order and augmentation each epoch

    interrupted = datamodule(num_workers).train_dataloader()
    epoch(interrupted, 0)
    epoch(interrupted, 1, limit=1)
    state = interrupted.state_dict()
    assert state == {"epoch": 1, "consumed": 2, "batch_size": 2, "num_replicas": 1}

    resumed = datamodule(num_workers).train_dataloader()  # a fresh process
    resumed.load_state_dict(state)
    assert same(epoch(resumed, 1, limit=BATCHES_PER_EPOCH - 1), epochs[1][1:])
    assert len(resumed) == BATCHES_PER_EPOCH  # Lightning counts the restored batch as fetched
    assert same(epoch(resumed, 2), epochs[2])


def test_state_after_the_last_batch_points_to_the_next_epoch():
    loader = datamodule().train_dataloader()
    epoch(loader, 0)
    assert loader.state_dict()["epoch"] == 1 and loader.state_dict()["consumed"] == 0


def test_plain_loops_reshuffle_every_epoch():
    loader = datamodule().train_dataloader()
    first, second = list(loader), list(loader)
    assert len(first) == BATCHES_PER_EPOCH and not same(first, second)


def test_ranks_share_each_epoch_and_resume_at_the_same_sample():
    data = list(range(10))
    ranks = [ResumableSampler(data, seed=0, num_replicas=2, rank=r) for r in range(2)]
    keys = [list(s) for s in ranks]
    order = ranks[0].order(0).tolist()
    assert [k.index for k in keys[0]] == order[0::2] and [k.index for k in keys[1]] == order[1::2]
    assert len({k.seed for k in keys[0] + keys[1]}) == 10  # one augmentation seed per position
    for rank in ranks:
        rank.resume(epoch=0, consumed=4)
    resumed = [list(s) for s in ranks]
    assert resumed[0] == keys[0][2:] and resumed[1] == keys[1][2:]


def test_seed_pipeline_gives_each_transform_its_own_stream():
    pipeline = train_transform((16, 16), photometric=True)
    seed_pipeline(pipeline, 11)
    draws = [t.py_random.random() for t in pipeline.transforms]
    assert len(set(draws)) == len(draws)  # Compose.set_random_seed alone would repeat one value
    seed_pipeline(pipeline, 11)
    assert [t.py_random.random() for t in pipeline.transforms] == draws
