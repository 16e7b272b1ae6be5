"""SegmentationDataModule: info before setup, loaders per stage, seeded determinism."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from src.core.datamodule import BaseDataModule
from src.data.base import SegmentationDataset
from src.data.cityscapes import CityscapesDataset
from src.data.lip import LIPDataset
from src.data.synthetic import SyntheticSegmentationDataset
from src.data.transforms import Augmentation, PairSwappingHorizontalFlip
from src.tasks.instance.datamodule import InstanceDataModule
from src.tasks.semantic.datamodule import SegmentationDataModule


def synthetic_module(
    seed: int = 0, num_workers: int = 0, batch_size: int = 4, **kwargs
) -> SegmentationDataModule:
    dataset = partial(
        SyntheticSegmentationDataset,
        num_samples={"train": 12, "val": 3, "test": 2},
        image_size=(40, 48),
        num_classes=4,
    )
    return SegmentationDataModule(
        dataset=dataset,
        crop_size=(32, 32),
        batch_size=batch_size,
        num_workers=num_workers,
        seed=seed,
        **kwargs,
    )


def batches(loader, count: int) -> list[dict]:
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == count:
            break
    return out


def same_batches(a: list[dict], b: list[dict]) -> bool:
    return all(
        x["name"] == y["name"]
        and torch.equal(x["image"], y["image"])
        and torch.equal(x["mask"], y["mask"])
        for x, y in zip(a, b, strict=True)
    )


def test_info_is_available_before_setup(fake_data):
    dm = synthetic_module()
    assert dm.num_classes == 4 and dm.class_names[0] == "background"
    assert len(dm.palette) == 4 and dm.flip_pairs == [] and dm.ignore_index == 255
    lip = SegmentationDataModule(dataset=LIPDataset, root=str(fake_data["lip"]), crop_size=(32, 32))
    assert lip.num_classes == 20 and lip.flip_pairs == [(14, 15), (16, 17), (18, 19)]
    steps = lip.train_transform().transforms
    flips = [t for t in steps if isinstance(t, PairSwappingHorizontalFlip)]
    assert len(flips) == 1 and flips[0].flip_pairs == lip.flip_pairs


def test_loaders_for_every_stage(fake_data):
    dm = SegmentationDataModule(
        dataset=partial(CityscapesDataset),
        root=str(fake_data["cityscapes"]),
        crop_size=(32, 48),
        batch_size=2,
        augmentation={"photometric": True},
    )
    assert dm.num_classes == 19
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    assert train["image"].shape == (2, 3, 32, 48) and train["image"].dtype == torch.float32
    assert train["mask"].shape == (2, 32, 48) and train["mask"].dtype == torch.int64
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (1, 3, 64, 128) and val["name"] == ["frankfurt_000000_000019"]
    dm.setup("test")
    assert next(iter(dm.test_dataloader()))["mask"].shape == (1, 64, 128)
    dm.setup("predict")
    predict = list(dm.predict_dataloader())
    assert len(predict) == 4 and predict[0]["name"] == ["berlin_000000_000019"]
    assert all(torch.all(b["mask"] == 255) for b in predict)


def test_train_loader_shuffles_and_drops_the_last_partial_batch():
    dm = synthetic_module(batch_size=5)
    loader = dm.train_dataloader()
    assert len(loader) == 2 and loader.drop_last
    names = [n for batch in loader for n in batch["name"]]
    assert len(names) == 10 and names != sorted(names)


def test_too_small_a_train_split_is_an_error():
    with pytest.raises(ValueError, match="fewer than one batch"):
        synthetic_module(batch_size=13).train_dataloader()


def test_persistent_workers_only_with_workers():
    no_workers = synthetic_module(num_workers=0, persistent_workers=True)
    assert not no_workers.train_dataloader().persistent_workers
    assert synthetic_module(num_workers=1, persistent_workers=True).persistent_workers


@pytest.mark.parametrize("num_workers", [0, 2])
def test_same_seed_same_batches(num_workers):
    first = batches(synthetic_module(seed=3, num_workers=num_workers).train_dataloader(), 3)
    again = batches(synthetic_module(seed=3, num_workers=num_workers).train_dataloader(), 3)
    other = batches(synthetic_module(seed=4, num_workers=num_workers).train_dataloader(), 3)
    assert same_batches(first, again)
    assert not same_batches(first, other)


class SameImage(SegmentationDataset):
    """Four copies of one image: only the augmentation can tell the samples apart."""

    class_names = ["a", "b"]
    palette = [[0, 0, 0], [255, 255, 255]]

    def __init__(self, root=None, split="train", transform=None):
        super().__init__(transform)
        self.image, self.mask, _ = SyntheticSegmentationDataset(image_size=(64, 64)).read(0)

    def __len__(self) -> int:
        return 4

    def read(self, index: int):
        return self.image, (self.mask > 0).astype(np.uint8), f"copy_{index}"


def test_each_worker_and_epoch_augments_differently():
    dm = SegmentationDataModule(
        dataset=SameImage, crop_size=(16, 16), batch_size=1, num_workers=2, seed=0
    )
    loader = dm.train_dataloader()
    epochs = [[b["image"] for b in loader] for _ in range(2)]
    # batches 0 and 1 come from different workers; epoch 2 starts fresh workers
    assert not torch.equal(epochs[0][0], epochs[0][1])
    assert not torch.equal(epochs[0][0], epochs[1][0])


def test_augmentation_is_a_mapping_of_some_settings_or_an_augmentation():
    dm = synthetic_module(augmentation={"scale_range": [1, 1], "photometric": False})
    assert dm.augmentation == Augmentation(scale_range=(1.0, 1.0), photometric=False)
    assert synthetic_module().augmentation == Augmentation()
    with pytest.raises(ValueError, match=r"data\.augmentation\.scale\b"):
        synthetic_module(augmentation={"scale": [1, 1]})


def test_both_wings_share_the_base_module():
    assert issubclass(SegmentationDataModule, BaseDataModule)
    assert issubclass(InstanceDataModule, BaseDataModule)
    dm = synthetic_module(seed=None, num_workers=0, pin_memory=True)
    assert isinstance(dm.seed, int) and dm.pin_memory == torch.cuda.is_available()
    with pytest.raises(ValueError, match="batch_size"):
        synthetic_module(val_batch_size=0)
    with pytest.raises(ValueError, match="unknown stage 'fitting'"):
        dm.setup("fitting")
    with pytest.raises(TypeError, match="shuffle"):
        synthetic_module(shuffle=True)  # not a loader option: refused, not ignored
