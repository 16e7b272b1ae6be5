"""Global random generator states in checkpoints, so a resumed run draws the same numbers.

Lightning checkpoints hold weights, optimiser, schedulers, loops and callback states, but not
the process-wide generators: torch's (dropout masks), CUDA's, NumPy's legacy one and Python's
``random``. :class:`RandomStateCheckpoint` saves them with every checkpoint and puts them back
when a resumed fit starts training, so the next batch sees the generators exactly as the
interrupted run left them. States are plain tensors, lists and tuples: checkpoints still load
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning import Callback


def collect_rng_states() -> dict[str, Any]:
    """The global generator states of this process, in weights_only-loadable types."""
    kind, keys, position, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Set the generators from :func:`collect_rng_states`' output (missing parts are kept)."""
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "numpy" in states:
        kind, keys, position, has_gauss, cached = states["numpy"]
        np.random.set_state(  # noqa: NPY002
            (kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached)
        )
    if "python" in states:
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))
    cuda = states.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class RandomStateCheckpoint(Callback):
    """Save the global generator states in checkpoints; restore them when a fit resumes.

    The states are restored at ``on_train_start`` (after Lightning's sanity check, which runs
    with isolated generators anyway), i.e. right before the first resumed batch. Under DDP the
    checkpoint holds rank 0's states; ``seed_everything`` gives every rank the same ones.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return collect_rng_states()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is not None:
            restore_rng_states(self._pending)
            self._pending = None
