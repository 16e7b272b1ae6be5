"""The training loader's position is saved and restored exactly (src/data/resumable.py)."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch.utils.data import SequentialSampler

from src.data.resumable import (
    ResumableDataLoader,
    ResumableSampler,
    SampleKey,
    SeededSamples,
    derive_seed,
    seed_pipeline,
)
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


# -- the edges `make mutate` found unpinned ------------------------------------------------------


def keys(sampler) -> list[tuple[int, int]]:
    return [(k.index, k.seed) for k in sampler]


def test_seeds_wrap_as_unsigned_64_bit_and_depend_on_every_number_in_order():
    assert derive_seed(-1) == derive_seed(2**64 - 1)  # a negative config seed wraps
    assert derive_seed(2**64 + 5) == derive_seed(5)
    assert (
        len({derive_seed(0, 1), derive_seed(1, 0), derive_seed(0, 0, 1), derive_seed(3, 2, 1)}) == 4
    )


def test_a_default_sampler_shuffles_all_positions_with_its_seed():
    data = list(range(10))
    sampler = ResumableSampler(data, seed=1)
    assert sorted(k.index for k in sampler) == data and len(sampler) == 10
    assert sampler.order(0).tolist() != data  # shuffle by default
    assert sampler.order(0).tolist() != ResumableSampler(data, seed=0).order(0).tolist()
    assert sampler.order(0).tolist() != sampler.order(1).tolist()  # and anew each epoch
    assert ResumableSampler(data, seed=1, shuffle=False).order(0).tolist() == data


def test_augmentation_seeds_depend_on_the_seed_the_epoch_and_the_position():
    data = list(range(6))
    first, other_seed = ResumableSampler(data, seed=0), ResumableSampler(data, seed=1)
    epoch0 = {k.seed for k in first}
    first.set_epoch(1)
    assert len(epoch0) == 6 and not epoch0 & {k.seed for k in first}
    assert not epoch0 & {k.seed for k in other_seed}


def test_ranks_drop_the_tail_instead_of_repeating_samples():
    """10 samples over 3 processes: 3 each, no sample twice (DistributedSampler would pad)."""
    ranks = [ResumableSampler(range(10), seed=0, num_replicas=3, rank=r) for r in range(3)]
    indices = [k.index for s in ranks for k in s]
    assert [len(s) for s in ranks] == [3, 3, 3] and len(set(indices)) == 9


def test_three_ranks_resumed_mid_round_share_the_remaining_positions():
    """Resumed at sample 4 (a position that is not a multiple of the process count), the three
    ranks together draw positions 4..8 of the epoch, each once, and each rank keeps its own
    shard (rank r: the positions p with p % 3 == r)."""
    ranks = [ResumableSampler(range(9), seed=0, num_replicas=3, rank=r) for r in range(3)]
    order = ranks[0].order(0).tolist()
    for sampler in ranks:
        sampler.resume(epoch=0, consumed=4)
    for rank, sampler in enumerate(ranks):
        assert [k.index for k in sampler] == [order[p] for p in range(4, 9) if p % 3 == rank]


def test_a_resume_position_is_used_once_and_zero_means_the_whole_epoch():
    sampler = ResumableSampler(range(6), seed=0)
    full = keys(sampler)
    sampler.resume(epoch=0, consumed=4)
    assert keys(sampler) == full[4:]
    assert keys(sampler) == full  # the next iteration is a whole epoch again
    sampler.resume(epoch=0, consumed=0)
    assert keys(sampler) == full


def test_a_fresh_loader_reports_its_samplers_epoch_and_nothing_consumed():
    data = [torch.tensor(i) for i in range(8)]
    sampler = ResumableSampler(data, seed=0, num_replicas=2, rank=0)
    sampler.set_epoch(3)
    loader = ResumableDataLoader(SeededSamples(data), sampler, batch_size=2)
    assert loader.state_dict() == {"epoch": 3, "consumed": 0, "batch_size": 2, "num_replicas": 2}
    # a loader Lightning rebuilt around a plain sampler still reports a (plain) place
    plain = ResumableDataLoader(data, SequentialSampler(data), batch_size=2)
    assert plain.state_dict() == {"epoch": 0, "consumed": 0, "batch_size": 2, "num_replicas": 1}


def test_every_batch_is_full():
    data = [torch.tensor(i) for i in range(9)]
    loader = ResumableDataLoader(SeededSamples(data), ResumableSampler(data, seed=0), batch_size=2)
    assert len(loader) == 4 and [len(b) for b in loader] == [2, 2, 2, 2]


def test_a_plain_loop_to_the_end_moves_to_the_next_epoch():
    """Outside Lightning: a loop run to its end leaves the loader at the start of the next
    epoch, and the next loop is exactly that epoch."""
    data = [torch.tensor(i) for i in range(8)]

    def loader():
        return ResumableDataLoader(
            SeededSamples(data), ResumableSampler(data, seed=0), batch_size=2
        )

    looped, reference = loader(), loader()
    first = [b.tolist() for b in looped]
    state = looped.state_dict()
    assert (state["epoch"], state["consumed"], looped.sampler.epoch) == (1, 0, 1)
    reference.sampler.set_epoch(1)
    second = [b.tolist() for b in looped]
    assert second == [b.tolist() for b in reference] and second != first


def test_samples_without_a_transform_are_read_as_they_are():
    samples = SeededSamples(["a", "b", "c"])
    assert samples[SampleKey(1, 123)] == "b" and samples[2] == "c" and samples.transform is None


def test_seed_pipeline_seeds_nested_transforms_and_the_pipeline_itself():
    """The i-th transform, depth-first and nested ones included, draws from
    ``derive_seed(seed, i)``; the pipeline's own generator (a OneOf's choice) from ``seed``."""
    import albumentations as A

    flip, vflip, transpose, rotate = (
        A.HorizontalFlip(),
        A.VerticalFlip(),
        A.Transpose(),
        A.RandomRotate90(),
    )
    choice, inner = A.OneOf([vflip, transpose]), A.Compose([rotate])
    pipeline = A.OneOf([flip, choice, inner])
    seed_pipeline(pipeline, 11)
    depth_first = [flip, choice, vflip, transpose, inner, rotate]
    for position, transform in enumerate(depth_first, start=1):
        alone = A.HorizontalFlip()
        alone.set_random_seed(derive_seed(11, position))
        assert transform.py_random.random() == alone.py_random.random(), position
    alone = A.HorizontalFlip()
    alone.set_random_seed(11)
    assert pipeline.py_random.random() == alone.py_random.random()
