"""What every task's LightningDataModule shares: argument checks, seeding, rank and world size,
the per-split dataset cache, ``setup``, the DataLoader options and worker seeding.

A task's DataModule (``src/tasks/<task>/datamodule.py``) subclasses :class:`BaseDataModule`
and adds only what differs: how a split's dataset is built (:meth:`build_dataset`), its
transforms and collate function, and its training loader.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, ClassVar

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from src.data.base import IGNORE_INDEX
from src.data.resumable import derive_seed

# The splits (by stage name) each Lightning stage builds; a module without a split leaves
# the Lightning stages that need it out (the instance wing has no "predict").
STAGE_SPLITS: dict[str, tuple[str, ...]] = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("predict",),
}


def seed_worker(worker_id: int, rank: int = 0) -> None:
    """DataLoader ``worker_init_fn``: seed numpy, ``random`` and the dataset's albumentations
    pipeline (which keeps its own RNG in 2.x) from the loader's per-worker seed and the rank."""
    seed = derive_seed(torch.initial_seed(), rank)
    np.random.seed(seed)  # noqa: NPY002 - code in the dataset may use the legacy global RNG
    random.seed(seed)
    info = get_worker_info()
    transform = getattr(info.dataset, "transform", None) if info is not None else None
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


class BaseDataModule(pl.LightningDataModule):
    """Splits by stage, a seed, and loaders that every task builds the same way.

    - ``splits`` maps stage names (``train``, ``val``, ``test``, optionally ``predict``) to
      the dataset's split names; :meth:`dataset_for` builds each (split, training or not)
      once, so val and test of one split share a dataset.
    - ``seed=None`` draws a random seed; the loaders' shuffling generator is seeded from
      (seed, rank) with :func:`derive_seed`, and workers with :func:`seed_worker`.
    - ``pin_memory`` applies only with CUDA and ``persistent_workers`` only with workers.
    - With workers, OpenCV's thread pool is switched off in the main process before they fork
      (``cv2.setNumThreads(0)``): workers forked while the pool's threads exist can hang in
      OpenCV (seen here in ``pthread_cond_destroy``), and they already run in parallel.
    """

    collate_fn: ClassVar[Callable[[list[Any]], Any] | None] = None  # None: default_collate

    def __init__(
        self,
        root: str | None,
        splits: Mapping[str, str],
        batch_size: int,
        val_batch_size: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        seed: int | None = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or val_batch_size < 1 or num_workers < 0:
            raise ValueError(
                f"need batch_size ≥ 1, val_batch_size ≥ 1, num_workers ≥ 0; got {batch_size}, "
                f"{val_batch_size}, {num_workers}"
            )
        self.root = None if root is None else str(root)
        self.splits = dict(splits)
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory) and torch.cuda.is_available()  # no-op without GPU
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.seed = int(torch.randint(2**31, ()).item()) if seed is None else int(seed)
        self._datasets: dict[tuple[str, bool], Dataset] = {}

    @property
    def ignore_index(self) -> int:
        """The label of pixels that take no part in the loss or the metrics."""
        return IGNORE_INDEX

    # -- datasets --------------------------------------------------------------------------
    def build_dataset(self, stage: str) -> Dataset:
        """A new dataset of the stage's split (the training one when ``stage == "train"``)."""
        raise NotImplementedError

    def dataset_for(self, stage: str) -> Dataset:
        """The dataset of a stage's split, built once per (split, training or not)."""
        if stage not in self.splits:
            raise ValueError(f"unknown stage {stage!r}; expected one of {list(self.splits)}")
        key = (self.splits[stage], stage == "train")
        if key not in self._datasets:
            self._datasets[key] = self.build_dataset(stage)
        return self._datasets[key]

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets a Lightning stage needs (fit, validate, test, predict; None:
        every split)."""
        needs: dict[str | None, tuple[str, ...]] = {
            name: stages for name, stages in STAGE_SPLITS.items() if set(stages) <= set(self.splits)
        }
        needs[None] = tuple(self.splits)
        if stage not in needs:
            raise ValueError(f"unknown stage {stage!r}; expected one of {list(needs)}")
        for split_stage in needs[stage]:
            self.dataset_for(split_stage)

    def train_dataset(self) -> Dataset:
        """The training split's dataset, refused when it cannot fill one step: every process
        drops its last partial batch, so fewer samples would make an empty epoch."""
        dataset = self.dataset_for("train")
        if len(dataset) < self.batch_size * self._world_size:
            raise ValueError(
                f"the '{self.splits['train']}' split has {len(dataset)} samples, fewer than "
                f"one batch of {self.batch_size} per process over {self._world_size} "
                "process(es) (the last partial batch is dropped)"
            )
        return dataset

    # -- loaders ---------------------------------------------------------------------------
    @property
    def _rank(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.global_rank) if trainer is not None else 0

    @property
    def _world_size(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.world_size) if trainer is not None else 1

    def loader_options(self) -> dict[str, Any]:
        """DataLoader arguments shared by every split: workers, pinning, collate, seeding."""
        if self.num_workers > 0:
            cv2.setNumThreads(0)  # before the fork: see the class docstring
        return {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers,
            "collate_fn": type(self).collate_fn,
            "worker_init_fn": partial(seed_worker, rank=self._rank) if self.num_workers else None,
            "generator": torch.Generator().manual_seed(derive_seed(self.seed, self._rank)),
        }

    def eval_loader(self, stage: str) -> DataLoader:
        """An ordered, complete loader of an evaluation split (batches of ``val_batch_size``)."""
        return DataLoader(
            self.dataset_for(stage),
            batch_size=self.val_batch_size,
            shuffle=False,
            **self.loader_options(),
        )

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.eval_loader("test")
