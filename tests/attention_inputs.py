"""Seeded query, key and value tensors for the criss-cross attention tests."""

from __future__ import annotations

import torch


def random_qkv(
    spatial: tuple[int, ...],
    batch: int = 2,
    key_channels: int = 3,
    channels: int = 4,
    dtype: torch.dtype = torch.float64,
    grad: bool = False,
    seed: int | None = None,
) -> list[torch.Tensor]:
    """query and key (batch, key_channels, *spatial), value (batch, channels, *spatial), from a
    normal seeded with ``seed`` (default: ``sum(spatial) + batch``, so each size differs)."""
    gen = torch.Generator().manual_seed(sum(spatial) + batch if seed is None else seed)
    shapes = [(batch, key_channels), (batch, key_channels), (batch, channels)]
    return [
        torch.randn(*s, *spatial, generator=gen, dtype=dtype).requires_grad_(grad) for s in shapes
    ]
