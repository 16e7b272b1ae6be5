"""Dense criss-cross attention maps, for looking at what a trained CCA module attends to.

The op in :mod:`src.models.attention` never materialises the attention: it works line by
line. To draw the paper's figure (one pixel's attention after one and after two passes) we
need the weights themselves, as an N×N matrix over the N = H·W (or T·H·W) positions:
``weights[b, u, i]`` is the weight of position ``i`` in position ``u``'s output, zero off
``u``'s criss-cross, so that ``CCA(q, k, v)_u = Σ_i weights[b, u, i] · v_i``.

The matrix is computed straight from the formula (energies ``q_u · k_i`` over the cross,
centre counted once, one softmax), independently of the op's line-wise code, so it doubles
as a check of it. It costs N² memory: meant for the small maps of a demo, not for training.

Recurrent passes compose as matrices: with ``A1`` and ``A2`` the weights of pass 1 and 2,
``A2 @ A1`` gives each position's weight on every position of the input of pass 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .attention import CrissCrossAttention, CrissCrossAttention3d

DEFAULT_MAX_POSITIONS = 4096
"""Largest N for which a dense N×N map is built (4096² fp32 = 64 MiB per image)."""


def criss_cross_mask(spatial: Sequence[int], device: torch.device | None = None) -> Tensor:
    """Boolean (N, N): True where position ``i`` lies on position ``u``'s criss-cross.

    The cross of ``u`` is every position that differs from ``u`` in at most one coordinate:
    its row and column in 2D (H+W−1 positions), its T, H and W lines in 3D (T+H+W−2).
    """
    grids = torch.meshgrid(*[torch.arange(n, device=device) for n in spatial], indexing="ij")
    coords = torch.stack([g.reshape(-1) for g in grids], dim=1)  # (N, dims)
    differing = (coords[:, None, :] != coords[None, :, :]).sum(dim=-1)
    return differing <= 1


def criss_cross_weights(
    query: Tensor, key: Tensor, max_positions: int = DEFAULT_MAX_POSITIONS
) -> Tensor:
    """The dense criss-cross attention (B, N, N) of ``query``/``key`` (B, C', *S), in fp32
    or better.

    Row ``u`` is the softmax of the energies ``q_u · k_i`` (no scaling) over ``u``'s cross
    and zero elsewhere; positions are flattened in row-major order of ``S``.
    """
    if query.dim() not in (4, 5) or query.shape != key.shape:
        raise ValueError(
            f"expected query and key of one shape (B, C', H, W) or (B, C', T, H, W); got "
            f"{tuple(query.shape)} and {tuple(key.shape)}"
        )
    spatial = tuple(query.shape[2:])
    n = int(torch.tensor(spatial).prod())
    if n > max_positions:
        raise ValueError(
            f"a dense attention map of {spatial} has {n}² entries per image; "
            f"max_positions={max_positions} (use a smaller input)"
        )
    dtype = torch.promote_types(query.dtype, torch.float32)
    q = query.flatten(2).transpose(1, 2).to(dtype)  # (B, N, C')
    k = key.flatten(2).to(dtype)  # (B, C', N)
    energy = torch.bmm(q, k)
    energy = energy.masked_fill(~criss_cross_mask(spatial, query.device), float("-inf"))
    return torch.softmax(energy, dim=-1)


def attention_weights(
    module: CrissCrossAttention | CrissCrossAttention3d,
    x: Tensor,
    max_positions: int = DEFAULT_MAX_POSITIONS,
) -> Tensor:
    """The dense weights (B, N, N) that a CCA module applies to its input ``x``.

    Uses the module's own Q and K projections, so that
    ``module(x) == x + gamma · (weights @ V(x))`` (positions flattened row-major).
    """
    if not isinstance(module, CrissCrossAttention | CrissCrossAttention3d):
        raise TypeError(f"expected a criss-cross attention module, got {type(module).__name__}")
    with torch.no_grad():
        return criss_cross_weights(module.query(x), module.key(x), max_positions)


def recurrent_attention_weights(
    net: nn.Module,
    inputs: Tensor,
    module: nn.Module | None = None,
    max_positions: int = DEFAULT_MAX_POSITIONS,
) -> list[Tensor]:
    """The dense weights of every pass of a (shared) CCA module while ``net`` runs ``inputs``.

    ``net`` runs once, in eval mode and without gradients; a forward pre-hook records the
    input of each call of ``module`` (default: the one CCA module inside ``net``), and each
    recorded input gives that pass's weights. An RCCA head with R = 2 therefore returns
    ``[A1, A2]``. The mode of ``net`` is restored afterwards.
    """
    module = module if module is not None else _single_cca(net)
    recorded: list[Tensor] = []
    handle = module.register_forward_pre_hook(lambda _, args: recorded.append(args[0].detach()))
    training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(inputs)
    finally:
        handle.remove()
        net.train(training)
    return [attention_weights(module, x, max_positions) for x in recorded]


def compose_passes(weights: Sequence[Tensor]) -> Tensor:
    """The effective attention of recurrent passes: ``A_R @ … @ A_2 @ A_1`` (B, N, N).

    Row ``u`` says how much each position of the first pass's input reaches ``u`` through
    the chain of attentions (residual paths not counted). Each row still sums to 1.
    """
    if not weights:
        raise ValueError("compose_passes needs the weights of at least one pass")
    total = weights[0]
    for step in weights[1:]:
        total = torch.bmm(step, total)
    return total


def position_map(weights: Tensor, position: Sequence[int], spatial: Sequence[int]) -> Tensor:
    """One position's row of ``weights`` (B, N, N) reshaped to the grid: (B, *spatial).

    ``position`` is (row, column) in 2D or (t, row, column) in 3D.
    """
    if len(position) != len(spatial):
        raise ValueError(f"position {tuple(position)} does not match the grid {tuple(spatial)}")
    for p, n in zip(position, spatial):
        if not 0 <= p < n:
            raise ValueError(f"position {tuple(position)} lies outside the grid {tuple(spatial)}")
    index = 0
    for p, n in zip(position, spatial):
        index = index * n + int(p)
    return weights[:, index].reshape(weights.shape[0], *spatial)


def _single_cca(net: nn.Module) -> nn.Module:
    """The one criss-cross attention module inside ``net`` (an error if there are 0 or ≥2)."""
    found = [m for m in net.modules() if isinstance(m, CrissCrossAttention | CrissCrossAttention3d)]
    if len(found) != 1:
        raise ValueError(
            f"{type(net).__name__} holds {len(found)} criss-cross attention modules; "
            "pass the one to read as `module`"
        )
    return found[0]


__all__ = [
    "attention_weights",
    "compose_passes",
    "criss_cross_mask",
    "criss_cross_weights",
    "position_map",
    "recurrent_attention_weights",
]
