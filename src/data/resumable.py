"""A training loader whose position can be saved and restored: exact mid-epoch resume.

Lightning restores a loader mid-epoch only when the loader itself is stateful (it has
``state_dict`` / ``load_state_dict``); a plain ``DataLoader`` restarts its epoch from the first
batch. Three pieces make the training data a pure function of (seed, epoch, position), so a
resumed run sees exactly the batches an uninterrupted run would have seen:

- :class:`ResumableSampler` draws each epoch's order from ``(seed, epoch)`` alone and pairs
  every position with its own augmentation seed ``(seed, epoch, position)``. It is a
  ``DistributedSampler`` that shards the order itself (rank ``r`` of ``W`` takes positions
  ``r, r + W, ...``), so Lightning leaves it in place under DDP.
- :class:`SeededSamples` seeds the dataset's albumentations pipeline with that seed before
  reading the sample, so augmentation does not depend on which worker reads it or on what
  the worker read before.
- :class:`ResumableDataLoader` counts the batches handed out in the current epoch; its state
  is (epoch, samples consumed), and a restored loader skips the consumed positions without
  reading them.

Guarantee: with the same seed, batch size and number of processes, a run resumed from any
checkpoint (mid-epoch or at an epoch boundary) draws the same remaining batches as the run
that wrote it, whatever ``num_workers``. Resuming with another batch size or process count
continues the epoch at the same *sample* position, but the batches differ.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def derive_seed(*entropy: int) -> int:
    """A 32-bit seed mixed from several integers (seed, rank, epoch, position...)."""
    return int(np.random.SeedSequence([e % 2**64 for e in entropy]).generate_state(1)[0])


class SampleKey(NamedTuple):
    """What the sampler hands the dataset: which sample, and the seed of its augmentation."""

    index: int
    seed: int


def seed_pipeline(transform: Any, seed: int) -> None:
    """Seed an albumentations pipeline, giving each of its transforms its own stream.

    ``Compose.set_random_seed`` gives every transform the *same* seed, so when a pipeline is
    re-seeded per sample the first draws of all transforms coincide (flip decisions would
    follow the scale factor). Here the i-th transform (depth-first) gets ``(seed, i)``.
    """
    if not hasattr(transform, "set_random_seed"):
        return
    transform.set_random_seed(seed)
    for position, child in enumerate(_children(transform), start=1):
        child.set_random_seed(derive_seed(seed, position))


def _children(transform: Any) -> Iterator[Any]:
    """Every transform nested in a pipeline, depth-first."""
    for child in getattr(transform, "transforms", ()):
        if hasattr(child, "set_random_seed"):
            yield child
        yield from _children(child)


class SeededSamples(Dataset):
    """Read :class:`SampleKey` s: seed the dataset's transform with the key's seed, then read.

    Plain integer indices read the sample with the transform's RNG as it is (a loader that
    Lightning rebuilt with its own sampler still works, without the exactness guarantee).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: SampleKey | int) -> Any:
        if isinstance(key, SampleKey | tuple):
            index, seed = key
            seed_pipeline(getattr(self.dataset, "transform", None), seed)
            return self.dataset[index]
        return self.dataset[key]

    @property
    def transform(self) -> Any:
        """The wrapped dataset's transform (worker initialisation looks for it)."""
        return getattr(self.dataset, "transform", None)


class ResumableSampler(DistributedSampler):
    """This rank's share of a seeded per-epoch order, each position with its own seed.

    ``set_epoch`` (called by Lightning at every epoch start) picks the order; ``resume`` makes
    the next iteration start after the first ``consumed`` positions of the epoch (counted
    over all ranks). Always drops the tail that does not divide by the number of ranks.
    """

    def __init__(
        self,
        dataset: Sequence | Dataset,
        seed: int,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=True,
        )
        self._skip = 0  # positions of the epoch (all ranks) to skip in the next iteration

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; moving to another epoch forgets a pending resume position."""
        if epoch != self.epoch:
            self._skip = 0
        self.epoch = epoch

    def resume(self, epoch: int, consumed: int) -> None:
        """Start the next iteration in ``epoch`` after ``consumed`` positions (all ranks)."""
        self.epoch = int(epoch)
        self._skip = max(0, int(consumed))

    @property
    def resume_position(self) -> int:
        """Positions of the epoch (all ranks) the next iteration skips."""
        return self._skip

    def order(self, epoch: int) -> torch.Tensor:
        """The epoch's order of dataset indices (all ranks), a function of (seed, epoch)."""
        size = len(self.dataset)
        if not self.shuffle:
            return torch.arange(size)
        generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        return torch.randperm(size, generator=generator)

    def __iter__(self) -> Iterator[SampleKey]:
        epoch, skip = self.epoch, self._skip
        self._skip = 0
        order = self.order(epoch)
        first = skip + (self.rank - skip) % self.num_replicas  # this rank's first position
        for position in range(first, self.total_size, self.num_replicas):
            yield SampleKey(int(order[position]), derive_seed(self.seed, epoch, position))


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ResumableSampler` that Lightning can save and restore.

    ``state_dict`` is the epoch and the number of samples (all ranks) handed out so far in it;
    ``load_state_dict`` makes the next iteration continue from there. ``len()`` stays the
    full epoch, as Lightning expects (it counts the restored batches as already fetched).
    An iteration that runs to its end moves the sampler to the next epoch, so plain loops
    over the loader (outside Lightning, which calls ``set_epoch`` itself) also reshuffle.
    """

    def __init__(self, dataset: Dataset, sampler: ResumableSampler, **kwargs: Any) -> None:
        kwargs["drop_last"] = True
        super().__init__(dataset, sampler=sampler, **kwargs)
        self._epoch = getattr(sampler, "epoch", 0)
        self._consumed = 0  # samples of the epoch handed out, all ranks

    def __iter__(self) -> Iterator[Any]:
        sampler = self.sampler
        if not isinstance(sampler, ResumableSampler):  # replaced by Lightning: plain loader
            yield from super().__iter__()
            return
        self._epoch, self._consumed = sampler.epoch, sampler.resume_position
        for batch in super().__iter__():
            self._consumed += self._samples_per_batch
            yield batch
        sampler.set_epoch(self._epoch + 1)
        self._epoch, self._consumed = self._epoch + 1, 0

    @property
    def _samples_per_batch(self) -> int:
        """Samples one batch of every rank consumes together."""
        return int(self.batch_size) * int(getattr(self.sampler, "num_replicas", 1))

    def state_dict(self) -> dict[str, Any]:
        """The loader's place: epoch and samples consumed (a finished epoch is the next one)."""
        epoch, consumed = self._epoch, self._consumed
        if consumed >= len(self) * self._samples_per_batch:
            epoch, consumed = epoch + 1, 0
        return {
            "epoch": epoch,
            "consumed": consumed,
            "batch_size": int(self.batch_size),
            "num_replicas": int(getattr(self.sampler, "num_replicas", 1)),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved place (the next iteration skips the consumed samples)."""
        if isinstance(self.sampler, ResumableSampler):
            self.sampler.resume(state["epoch"], state["consumed"])
            self._epoch, self._consumed = int(state["epoch"]), int(state["consumed"])
