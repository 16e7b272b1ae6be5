"""Fixtures of the model tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def single_thread():
    """Run on one intra-op thread: on a busy 2-core machine, two OpenMP threads waiting on each
    other make small convolutions ~50x slower; results do not depend on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
