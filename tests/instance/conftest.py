"""Fixtures of the instance segmentation tests (helpers in instance_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.data.fake import write_fake_coco


@pytest.fixture(scope="session")
def fake_coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only fake COCO root (train2017 and val2017) written by src.data.fake."""
    return write_fake_coco(tmp_path_factory.mktemp("fake_coco"))
