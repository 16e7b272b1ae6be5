"""Fixtures of the data tests: one tiny fake copy of every real layout per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.data.fake import write_all


@pytest.fixture(scope="session")
def fake_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Read-only fake Cityscapes, LIP, COCO and ADE20K roots (tests that damage files make
    their own)."""
    return write_all(tmp_path_factory.mktemp("fake_data"))
