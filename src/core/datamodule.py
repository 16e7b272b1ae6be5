"""What every task's LightningDataModule shares: worker seeding."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import get_worker_info

from src.data.resumable import derive_seed


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
