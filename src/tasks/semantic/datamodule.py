"""One LightningDataModule for every dataset: splits, transforms and seeded loaders."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import cv2
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from src.core.datamodule import seed_worker
from src.data.base import IGNORE_INDEX, SegmentationDataset
from src.data.resumable import ResumableDataLoader, ResumableSampler, SeededSamples, derive_seed
from src.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform


class SegmentationDataModule(pl.LightningDataModule):
    """Train/val/test/predict loaders for a dataset class given as a partial
    (``dataset(root=, split=, transform=)``), with the training augmentation on the train
    split and full-image normalisation elsewhere.

    The training data is a function of (``seed``, epoch, position) only (see
    ``src/data/resumable.py``): two runs with the same ``seed`` draw identical training
    batches (shuffle order and augmentation) whatever ``num_workers``, ranks draw different
    samples, and a run resumed from a checkpoint continues the data stream exactly, also
    mid-epoch (the loader's position is saved in the checkpoint).

    With workers, OpenCV's thread pool is switched off in the main process before they fork
    (``cv2.setNumThreads(0)``): workers forked while the pool's threads exist can hang in
    OpenCV (seen here in ``pthread_cond_destroy``), and they already run in parallel.
    """

    def __init__(
        self,
        dataset: Callable[..., SegmentationDataset],
        root: str | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "val",
        predict_split: str = "test",
        crop_size: Sequence[int] = (512, 512),
        batch_size: int = 8,
        val_batch_size: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        seed: int | None = 0,
        scale_range: Sequence[float] = (0.5, 2.0),
        flip_prob: float = 0.5,
        photometric: bool = True,
        brightness_delta: float = 32,
        contrast_range: Sequence[float] = (0.5, 1.5),
        saturation_range: Sequence[float] = (0.5, 1.5),
        hue_delta: float = 18,
        photometric_prob: float = 0.5,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if batch_size < 1 or val_batch_size < 1 or num_workers < 0:
            raise ValueError(
                f"need batch_size ≥ 1, val_batch_size ≥ 1, num_workers ≥ 0; got {batch_size}, "
                f"{val_batch_size}, {num_workers}"
            )
        self.dataset_factory = dataset
        self.root = None if root is None else str(root)
        self.splits = {
            "train": train_split,
            "val": val_split,
            "test": test_split,
            "predict": predict_split,
        }
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory) and torch.cuda.is_available()  # no-op without GPU
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.seed = int(torch.randint(2**31, ()).item()) if seed is None else int(seed)
        self.augmentation = {
            "scale_range": tuple(scale_range),
            "flip_prob": float(flip_prob),
            "photometric": bool(photometric),
            "brightness_delta": float(brightness_delta),
            "contrast_range": tuple(contrast_range),
            "saturation_range": tuple(saturation_range),
            "hue_delta": float(hue_delta),
            "photometric_prob": float(photometric_prob),
        }
        self.mean, self.std = tuple(mean), tuple(std)
        self._datasets: dict[tuple[str, str], SegmentationDataset] = {}

    # -- what the model and the metrics need, available before setup ------------------------
    @property
    def info_dataset(self) -> SegmentationDataset:
        """A dataset that knows classes, names and palette: any already built, else the
        validation split's (built on first use, before ``setup``)."""
        if self._datasets:
            return next(iter(self._datasets.values()))
        return self.dataset_for("val")

    @property
    def num_classes(self) -> int:
        return self.info_dataset.num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.info_dataset.class_names)

    @property
    def palette(self) -> list[list[int]]:
        return [list(c) for c in self.info_dataset.palette]

    @property
    def flip_pairs(self) -> list[tuple[int, int]]:
        return [tuple(p) for p in self.info_dataset.flip_pairs]

    @property
    def ignore_index(self) -> int:
        return IGNORE_INDEX

    # -- datasets --------------------------------------------------------------------------
    def dataset_for(self, stage: str) -> SegmentationDataset:
        """The dataset of a stage's split, built once per (split, train-or-eval transform)."""
        kind = "train" if stage == "train" else "eval"
        key = (self.splits[stage], kind)
        if key not in self._datasets:
            self._datasets[key] = self.dataset_factory(
                root=self.root, split=self.splits[stage], transform=None
            )
        dataset = self._datasets[key]
        if dataset.transform is None:
            dataset.transform = self.train_transform() if kind == "train" else self.eval_transform()
        return dataset

    def train_transform(self) -> Callable:
        return train_transform(
            self.crop_size,
            flip_pairs=self.flip_pairs,
            mean=self.mean,
            std=self.std,
            ignore_index=IGNORE_INDEX,
            **self.augmentation,
        )

    def eval_transform(self) -> Callable:
        return eval_transform(self.mean, self.std)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets a Lightning stage needs (fit, validate, test, predict)."""
        needs = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("predict",),
            None: ("train", "val", "test", "predict"),
        }
        if stage not in needs:
            raise ValueError(f"unknown stage {stage!r}; expected one of {list(needs)}")
        for split_stage in needs[stage]:
            self.dataset_for(split_stage)

    # -- loaders ---------------------------------------------------------------------------
    @property
    def _rank(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.global_rank) if trainer is not None else 0

    @property
    def _world_size(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.world_size) if trainer is not None else 1

    def _loader_options(self) -> dict:
        """DataLoader arguments shared by every split (workers, pinning, worker seeding)."""
        if self.num_workers > 0:
            cv2.setNumThreads(0)  # before the fork: see the class docstring
        return {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers,
            "worker_init_fn": partial(seed_worker, rank=self._rank) if self.num_workers else None,
            "generator": torch.Generator().manual_seed(derive_seed(self.seed, self._rank)),
        }

    def _eval_loader(self, stage: str, batch_size: int) -> DataLoader:
        """An ordered, complete loader of an evaluation split."""
        dataset = self.dataset_for(stage)
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, **self._loader_options())

    def train_dataloader(self) -> ResumableDataLoader:
        """Shuffled training batches of this rank, last partial batch dropped; resumable."""
        dataset = self.dataset_for("train")
        samples_per_step = self.batch_size * self._world_size
        if len(dataset) < samples_per_step:
            raise ValueError(
                f"the '{self.splits['train']}' split has {len(dataset)} samples, fewer than "
                f"one batch of {self.batch_size} per process over {self._world_size} "
                "process(es) (the last partial batch is dropped)"
            )
        sampler = ResumableSampler(
            dataset, self.seed, num_replicas=self._world_size, rank=self._rank
        )
        return ResumableDataLoader(
            SeededSamples(dataset),
            sampler=sampler,
            batch_size=self.batch_size,
            **self._loader_options(),
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val", self.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test", self.val_batch_size)

    def predict_dataloader(self) -> DataLoader:
        """Loader of the prediction split (Cityscapes: test, whose masks are all 255)."""
        return self._eval_loader("predict", self.val_batch_size)
