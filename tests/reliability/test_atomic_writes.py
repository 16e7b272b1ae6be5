"""results.json and checkpoints are written atomically: a failure halfway through a write
leaves the previous file intact and no partial file behind."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from app_helpers import CONF, ROOT, TINY
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import src.core.atomic as atomic
from src.app.results import RESULTS_FILE, write_results
from src.callbacks.checkpoint_io import AtomicCheckpointIO
from src.core.atomic import atomic_open, atomic_write_text


class HalfWrittenError(RuntimeError):
    """Raised by the patched writers after part of the content is on disk."""


def failing_save(obj, handle, *args, **kwargs) -> None:
    """``torch.save`` that writes the first half of the real bytes, then fails."""
    import io

    buffer = io.BytesIO()
    real_save(obj, buffer)
    data = buffer.getvalue()
    handle.write(data[: len(data) // 2])
    handle.flush()
    raise HalfWrittenError("disk full")


real_save = torch.save


def checkpoint(value: float) -> dict:
    return {"state_dict": {"w": torch.full((1000,), value)}, "global_step": int(value)}


def test_failed_checkpoint_save_keeps_the_previous_one(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint(checkpoint(1.0), path)
    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(HalfWrittenError):
        io.save_checkpoint(checkpoint(2.0), path)
    monkeypatch.undo()
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary left
    restored = io.load_checkpoint(path)
    assert restored["global_step"] == 1 and torch.equal(
        restored["state_dict"]["w"], torch.ones(1000)
    )


def test_failed_first_checkpoint_save_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(HalfWrittenError):
        AtomicCheckpointIO().save_checkpoint(checkpoint(1.0), tmp_path / "best.ckpt")
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_io_loads_weights_only(tmp_path):
    """A checkpoint holding a pickled object (code that would run when loaded) is refused."""
    path = tmp_path / "evil.ckpt"
    real_save({"state_dict": {}, "payload": HalfWrittenError("x")}, path)
    with pytest.raises(pickle.UnpicklingError):
        AtomicCheckpointIO().load_checkpoint(path)


def test_failed_results_write_keeps_the_previous_results(tmp_path, monkeypatch):
    write_results({"metrics": {"val/mIoU": 0.5}}, tmp_path)

    def fail_fsync(fd: int) -> None:
        raise OSError("I/O error")

    monkeypatch.setattr(atomic.os, "fsync", fail_fsync)
    with pytest.raises(OSError, match="I/O error"):
        write_results({"metrics": {"val/mIoU": 0.9}}, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [RESULTS_FILE]
    assert json.loads((tmp_path / RESULTS_FILE).read_text())["metrics"]["val/mIoU"] == 0.5


def test_atomic_text_and_binary_writes(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two" and [p.name for p in target.parent.iterdir()] == ["file.txt"]
    with pytest.raises(ValueError, match="mode"), atomic_open(target, "a"):
        pass
    with pytest.raises(KeyboardInterrupt), atomic_open(target, "wb") as handle:
        handle.write(b"partial")
        raise KeyboardInterrupt
    assert target.read_text() == "two" and len(list(target.parent.iterdir())) == 1


def test_trainer_config_plugs_the_atomic_checkpoint_io(tmp_path: Path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[*TINY, f"paths.root_dir={ROOT}", f"paths.output_dir={tmp_path}"],
        )
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
