"""The semantic wing's DataModule: any segmentation dataset, its transforms, resumable loading."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch.utils.data import DataLoader

from src.core.datamodule import BaseDataModule
from src.data.base import SegmentationDataset
from src.data.clips import ClipSpec
from src.data.resumable import ResumableDataLoader, ResumableSampler, SeededSamples
from src.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augmentation,
    eval_transform,
    train_transform,
)


class SegmentationDataModule(BaseDataModule):
    """Train/val/test/predict loaders for a dataset class given as a partial
    (``dataset(root=, split=, transform=)``), with the training augmentation on the train
    split and full-image normalisation elsewhere.

    ``augmentation`` holds the training augmentation's settings (:class:`Augmentation`, a
    mapping of some of its fields — the config's ``data.augmentation`` node —, or None for the
    defaults). ``clip`` (the config's ``data.clip`` node, :class:`ClipSpec`) makes it a video
    module: it is passed to the dataset, whose samples are then clips (T, 3, H, W) transformed
    frame by frame alike; None for image datasets. ``loader`` takes :class:`BaseDataModule`'s
    loader options (``val_batch_size``, ``num_workers``, ``pin_memory``,
    ``persistent_workers``, ``seed``).

    The training data is a function of (``seed``, epoch, position) only (see
    ``src/data/resumable.py``): two runs with the same ``seed`` draw identical training
    batches (shuffle order and augmentation) whatever ``num_workers``, ranks draw different
    samples, and a run resumed from a checkpoint continues the data stream exactly, also
    mid-epoch (the loader's position is saved in the checkpoint).
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
        augmentation: Mapping[str, Any] | Augmentation | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        clip: Mapping[str, Any] | ClipSpec | None = None,
        **loader: Any,
    ) -> None:
        splits = {"train": train_split, "val": val_split, "test": test_split}
        super().__init__(root, {**splits, "predict": predict_split}, batch_size, **loader)
        self.dataset_factory = dataset
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.augmentation = Augmentation.from_config(augmentation, where="data.augmentation")
        self.mean, self.std = tuple(mean), tuple(std)
        self.clip = None if clip is None else ClipSpec.from_config(clip)

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

    # -- datasets and transforms -----------------------------------------------------------
    def build_dataset(self, stage: str) -> SegmentationDataset:
        """The split's dataset, its transform set by :meth:`dataset_for` once it is cached (the
        training transform asks the cached dataset for its flip pairs)."""
        clip = {} if self.clip is None else {"clip": self.clip}
        return self.dataset_factory(
            root=self.root, split=self.splits[stage], transform=None, **clip
        )

    def dataset_for(self, stage: str) -> SegmentationDataset:
        """The dataset of a stage's split with the training or the evaluation transform."""
        dataset = super().dataset_for(stage)
        if dataset.transform is None:
            training = stage == "train"
            dataset.transform = self.train_transform() if training else self.eval_transform()
        return dataset

    def train_transform(self) -> Callable:
        return train_transform(
            self.crop_size,
            augmentation=self.augmentation,
            flip_pairs=self.flip_pairs,
            mean=self.mean,
            std=self.std,
            ignore_index=self.ignore_index,
        )

    def eval_transform(self) -> Callable:
        return eval_transform(self.mean, self.std)

    # -- loaders ---------------------------------------------------------------------------
    def train_dataloader(self) -> ResumableDataLoader:
        """Shuffled training batches of this rank, last partial batch dropped; resumable."""
        dataset = self.train_dataset()
        sampler = ResumableSampler(
            dataset, self.seed, num_replicas=self._world_size, rank=self._rank
        )
        return ResumableDataLoader(
            SeededSamples(dataset),
            sampler=sampler,
            batch_size=self.batch_size,
            **self.loader_options(),
        )

    def predict_dataloader(self) -> DataLoader:
        """Loader of the prediction split (Cityscapes: test, whose masks are all 255)."""
        return self.eval_loader("predict")
