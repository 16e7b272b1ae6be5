"""The instance-segmentation wing's DataModule: COCO instance data in loaders for Mask R-CNN."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from src.core.datamodule import seed_worker
from src.data.coco_instance import CocoInstanceDataset, collate_instances, train_transform


def _seed_of(*entropy: int) -> int:
    """A 32-bit seed mixed from several integers (seed, rank, …)."""
    return int(np.random.SeedSequence([e % 2**64 for e in entropy]).generate_state(1)[0])


class InstanceDataModule(pl.LightningDataModule):
    """Train/val/test loaders of COCO instance data (``root`` in COCO's own layout).

    The training split gets :func:`train_transform` and training targets; val and test keep
    full images and every annotation (crowds flagged) for COCO-style evaluation. The same
    ``seed`` and number of workers give the same batches.
    """

    def __init__(
        self,
        root: str | None,
        train_split: str = "train2017",
        val_split: str = "val2017",
        test_split: str = "val2017",
        batch_size: int = 2,
        val_batch_size: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        seed: int | None = 0,
        flip_prob: float = 0.5,
        scale_range: Sequence[float] | None = None,
        crop_size: Sequence[int] | None = None,
        min_visibility: float = 0.0,
        min_area: float = 1.0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or val_batch_size < 1 or num_workers < 0:
            raise ValueError(
                f"need batch_size ≥ 1, val_batch_size ≥ 1, num_workers ≥ 0; got {batch_size}, "
                f"{val_batch_size}, {num_workers}"
            )
        self.root = None if root is None else str(root)
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory) and torch.cuda.is_available()
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.seed = int(torch.randint(2**31, ()).item()) if seed is None else int(seed)
        self.augmentation = {
            "flip_prob": float(flip_prob),
            "scale_range": None if scale_range is None else tuple(scale_range),
            "crop_size": None if crop_size is None else tuple(crop_size),
            "min_visibility": float(min_visibility),
            "min_area": float(min_area),
        }
        self._datasets: dict[str, CocoInstanceDataset] = {}

    # -- what the model and the metrics need, available before setup ------------------------
    @property
    def num_classes(self) -> int:
        """Categories + background (torchvision's count), from the validation split's json."""
        return self.dataset_for("val").num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset_for("val").class_names)

    # -- datasets --------------------------------------------------------------------------
    def dataset_for(self, stage: str) -> CocoInstanceDataset:
        """The dataset of a stage (train, val or test), built once, categories checked."""
        if stage not in self.splits:
            raise ValueError(f"unknown stage {stage!r}; expected one of {list(self.splits)}")
        if stage not in self._datasets:
            training = stage == "train"
            dataset = CocoInstanceDataset(
                self.root,
                self.splits[stage],
                transform=train_transform(**self.augmentation) if training else None,
                training=training,
            )
            self._check_categories(stage, dataset)
            self._datasets[stage] = dataset
        return self._datasets[stage]

    def _check_categories(self, stage: str, dataset: CocoInstanceDataset) -> None:
        """Every split must map categories to the same labels, or a model trained on one
        would be scored against different classes on another."""
        for other_stage, other in self._datasets.items():
            if other.category_ids != dataset.category_ids:
                raise ValueError(
                    f"the {stage} split '{self.splits[stage]}' has category ids "
                    f"{dataset.category_ids}, the {other_stage} split '{self.splits[other_stage]}'"
                    f" has {other.category_ids}: labels 1…K would not mean the same classes"
                )

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets a Lightning stage needs (fit, validate, test)."""
        needs = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        needs[None] = ("train", "val", "test")
        if stage not in needs:
            raise ValueError(f"unknown stage {stage!r}; expected one of {list(needs)}")
        for split_stage in needs[stage]:
            self.dataset_for(split_stage)

    # -- loaders ---------------------------------------------------------------------------
    @property
    def _rank(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.global_rank) if trainer is not None else 0

    def _loader(self, stage: str, batch_size: int) -> DataLoader:
        dataset = self.dataset_for(stage)
        train = stage == "train"
        if self.num_workers > 0:
            cv2.setNumThreads(0)  # forked workers can hang in OpenCV's thread pool
        if train:
            if len(dataset) < batch_size:
                raise ValueError(
                    f"the '{self.splits[stage]}' split has {len(dataset)} training images, "
                    f"fewer than one batch of {batch_size} (the last partial batch is dropped)"
                )
            if self.num_workers == 0:
                dataset.transform.set_random_seed(_seed_of(self.seed, self._rank, 1))
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            drop_last=train,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=collate_instances,
            worker_init_fn=partial(seed_worker, rank=self._rank) if self.num_workers else None,
            generator=torch.Generator().manual_seed(_seed_of(self.seed, self._rank)),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.val_batch_size)
