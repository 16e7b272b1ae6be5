"""A dataset that injects NaN, for the CLI runs of the non-finite loss tests (the
subprocesses import it through PYTHONPATH: ``data.dataset._target_=poisoned_data.…``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from src.data.synthetic import SyntheticSegmentationDataset


class PoisonedSynthetic(SyntheticSegmentationDataset):
    """The synthetic dataset with NaN images at the ``poisoned`` indices of the train split:
    any batch holding one of them has a NaN loss (BatchNorm spreads it over the batch)."""

    def __init__(self, *args: Any, poisoned: Sequence[int] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.poisoned = set(poisoned) if kwargs.get("split", "train") == "train" else set()

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = super().__getitem__(index)
        if index in self.poisoned:
            sample["image"] = torch.full_like(sample["image"], float("nan"))
        return sample
