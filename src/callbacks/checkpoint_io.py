"""Lightning ``CheckpointIO`` that never leaves a truncated checkpoint behind.

:class:`AtomicCheckpointIO` streams ``torch.save`` into a temporary file next to the target,
fsyncs it and renames it over the target (:mod:`src.core.atomic`): a run killed or failing
while saving ``last.ckpt`` keeps the previous ``last.ckpt`` intact, and a checkpoint file
that exists is always complete. Loading uses ``torch.load(weights_only=True)`` unless a
caller asks otherwise, so resuming never runs code stored in a checkpoint. Plugged into the
trainer by ``conf/trainer/default.yaml`` (``plugins``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning_fabric.utilities.cloud_io import get_filesystem
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.plugins.io import TorchCheckpointIO
from typing_extensions import override

from src.core.atomic import atomic_open


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with atomic local saves and weights-only loads by default."""

    @override
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)  # remote: fsspec's way
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_open(path, "wb") as handle:
            torch.save(checkpoint, handle)

    @override
    def load_checkpoint(
        self,
        path: _PATH,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if weights_only is None:
            weights_only = True
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)


def _is_local(path: _PATH) -> bool:
    """Whether ``path`` is on the local file system (not s3://, gs://...)."""
    protocol = get_filesystem(path).protocol
    return "file" in ((protocol,) if isinstance(protocol, str) else protocol)
