"""The instance-segmentation wing's DataModule: COCO instance data in loaders for Mask R-CNN."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import DataLoader

from src.core.datamodule import BaseDataModule
from src.data.coco_instance import CocoInstanceDataset, collate_instances, train_transform
from src.data.resumable import derive_seed


class InstanceDataModule(BaseDataModule):
    """Train/val/test loaders of COCO instance data (``root`` in COCO's own layout).

    The training split gets :func:`train_transform` and training targets; val and test keep
    full images and every annotation (crowds flagged) for COCO-style evaluation. Batches are
    lists (:func:`collate_instances`: images differ in size). The same ``seed`` and number of
    workers give the same batches. ``loader`` takes :class:`BaseDataModule`'s loader options
    (``val_batch_size``, ``num_workers``, ``pin_memory``, ``persistent_workers``, ``seed``).
    """

    collate_fn = staticmethod(collate_instances)

    def __init__(
        self,
        root: str | None,
        train_split: str = "train2017",
        val_split: str = "val2017",
        test_split: str = "val2017",
        batch_size: int = 2,
        flip_prob: float = 0.5,
        scale_range: Sequence[float] | None = None,
        crop_size: Sequence[int] | None = None,
        min_visibility: float = 0.0,
        min_area: float = 1.0,
        **loader: Any,
    ) -> None:
        splits = {"train": train_split, "val": val_split, "test": test_split}
        super().__init__(root, splits, batch_size, **loader)
        self.augmentation = {
            "flip_prob": float(flip_prob),
            "scale_range": None if scale_range is None else tuple(scale_range),
            "crop_size": None if crop_size is None else tuple(crop_size),
            "min_visibility": float(min_visibility),
            "min_area": float(min_area),
        }

    # -- what the model and the metrics need, available before setup ------------------------
    @property
    def num_classes(self) -> int:
        """Categories + background (torchvision's count), from the validation split's json."""
        return self.dataset_for("val").num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset_for("val").class_names)

    # -- datasets --------------------------------------------------------------------------
    def build_dataset(self, stage: str) -> CocoInstanceDataset:
        """The split's dataset (training targets and transform for ``train``), its categories
        checked against every split built before."""
        training = stage == "train"
        dataset = CocoInstanceDataset(
            self.root,
            self.splits[stage],
            transform=train_transform(**self.augmentation) if training else None,
            training=training,
        )
        self._check_categories(stage, dataset)
        return dataset

    def _check_categories(self, stage: str, dataset: CocoInstanceDataset) -> None:
        """Every split must map categories to the same labels, or a model trained on one
        would be scored against different classes on another."""
        for (other_split, _), other in self._datasets.items():
            if other.category_ids != dataset.category_ids:
                raise ValueError(
                    f"the {stage} split '{self.splits[stage]}' has category ids "
                    f"{dataset.category_ids}, the split '{other_split}' has "
                    f"{other.category_ids}: labels 1…K would not mean the same classes"
                )

    # -- loaders ---------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches, last partial batch dropped."""
        dataset = self.train_dataset()
        if self.num_workers == 0:  # workers seed the pipeline themselves (seed_worker)
            dataset.transform.set_random_seed(derive_seed(self.seed, self._rank, 1))
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            **self.loader_options(),
        )
