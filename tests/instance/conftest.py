"""Fixtures of the instance segmentation tests (helpers in instance_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from src.data.fake import write_fake_coco


@pytest.fixture(scope="session")
def fake_coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only fake COCO root (train2017 and val2017) written by src.data.fake."""
    return write_fake_coco(tmp_path_factory.mktemp("fake_coco"))


@pytest.fixture(autouse=True)
def single_thread():
    """One intra-op thread: on a busy 2-core machine two OpenMP threads waiting on each other
    make small convolutions many times slower; results do not depend on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
