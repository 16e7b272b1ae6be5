"""Criss-cross attention (CCNet) and the embedded-Gaussian non-local block it is compared with.

``criss_cross_attention`` is the pure op (no projections, no gamma, no residual); the modules
own the 1x1 projections, the learnable ``gamma`` and the residual connection.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _eye_mask(n: int, device: torch.device) -> Tensor:
    """Boolean (n, n) identity built by comparing index grids (ONNX-friendly, no torch.diag)."""
    idx = torch.arange(n, device=device)
    return idx[:, None] == idx[None, :]


def _softmax_dtype(x: Tensor) -> torch.dtype:
    """fp32 for half types (softmax accumulated in fp32), the input's own dtype otherwise."""
    return torch.promote_types(x.dtype, torch.float32)


def _cca_2d(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """2D criss-cross attention: row + column of each pixel, the centre counted once."""
    h = query.shape[2]
    e_row = torch.einsum("bchw,bchv->bhwv", query, key).to(_softmax_dtype(query))
    e_col = torch.einsum("bchw,bcgw->bhwg", query, key).to(_softmax_dtype(query))
    e_col = e_col.masked_fill(_eye_mask(h, query.device)[:, None, :], float("-inf"))
    attn = torch.softmax(torch.cat([e_row, e_col], dim=-1), dim=-1).to(value.dtype)
    a_row, a_col = attn.split([e_row.shape[-1], h], dim=-1)
    out = torch.einsum("bhwv,bchv->bchw", a_row, value)
    return out + torch.einsum("bhwg,bcgw->bchw", a_col, value)


def _cca_3d(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """3D criss-cross attention: lines along T, H and W, the centre counted once."""
    t, h = query.shape[2], query.shape[3]
    e_t = torch.einsum("bcthw,bcshw->bthws", query, key).to(_softmax_dtype(query))
    e_h = torch.einsum("bcthw,bctgw->bthwg", query, key).to(_softmax_dtype(query))
    e_w = torch.einsum("bcthw,bcthv->bthwv", query, key).to(_softmax_dtype(query))
    e_t = e_t.masked_fill(_eye_mask(t, query.device)[:, None, None, :], float("-inf"))
    e_h = e_h.masked_fill(_eye_mask(h, query.device)[:, None, :], float("-inf"))
    attn = torch.softmax(torch.cat([e_t, e_h, e_w], dim=-1), dim=-1).to(value.dtype)
    a_t, a_h, a_w = attn.split([t, h, e_w.shape[-1]], dim=-1)
    out = torch.einsum("bthws,bcshw->bcthw", a_t, value)
    out = out + torch.einsum("bthwg,bctgw->bcthw", a_h, value)
    return out + torch.einsum("bthwv,bcthv->bcthw", a_w, value)


def criss_cross_attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Attend from each position to its criss-cross (2D: row + column; 3D: T, H, W lines).

    query/key (B, C', *S), value (B, C, *S) with S = (H, W) or (T, H, W); returns (B, C, *S).
    No scaling; one softmax (in fp32) over the whole set, in which the centre appears once.
    """
    if query.dim() == 4:
        return _cca_2d(query, key, value)
    if query.dim() == 5:
        return _cca_3d(query, key, value)
    raise ValueError(f"expected a 4D or 5D query, got shape {tuple(query.shape)}")


class CrissCrossAttention(nn.Module):
    """CCA module: 1x1 projections Q, K (C -> C/8) and V (C -> C), out = gamma * CCA + x."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        inner = max(in_channels // 8, 1)
        self.query = nn.Conv2d(in_channels, inner, 1)
        self.key = nn.Conv2d(in_channels, inner, 1)
        self.value = nn.Conv2d(in_channels, in_channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        out = criss_cross_attention(self.query(x), self.key(x), self.value(x))
        return self.gamma * out + x


class CrissCrossAttention3d(CrissCrossAttention):
    """3D CCA module on (B, C, T, H, W): the same as CrissCrossAttention with 1x1x1 Conv3d."""

    def __init__(self, in_channels: int) -> None:
        nn.Module.__init__(self)
        inner = max(in_channels // 8, 1)
        self.query = nn.Conv3d(in_channels, inner, 1)
        self.key = nn.Conv3d(in_channels, inner, 1)
        self.value = nn.Conv3d(in_channels, in_channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))


def non_local_attention(theta: Tensor, phi: Tensor, g: Tensor) -> Tensor:
    """Embedded-Gaussian non-local op: softmax(theta^T phi) over all positions, applied to g."""
    b, c, h, w = g.shape
    q = theta.flatten(2).transpose(1, 2)  # (B, N, C')
    k = phi.flatten(2)  # (B, C', N)
    attn = torch.softmax(torch.bmm(q, k).to(_softmax_dtype(q)), dim=-1).to(g.dtype)
    y = torch.bmm(g.flatten(2), attn.transpose(1, 2))  # (B, C, N)
    return y.view(b, c, h, w)


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al.): x + BN(W(y)), no subsampling.

    theta/phi/g are 1x1 convs C -> C/2; W is a 1x1 conv C/2 -> C followed by a BatchNorm whose
    weight starts at zero (the original paper's choice), so a fresh block is the identity.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        inner = max(in_channels // 2, 1)
        self.theta = nn.Conv2d(in_channels, inner, 1)
        self.phi = nn.Conv2d(in_channels, inner, 1)
        self.g = nn.Conv2d(in_channels, inner, 1)
        self.out = nn.Conv2d(inner, in_channels, 1)
        self.norm = nn.BatchNorm2d(in_channels)
        nn.init.zeros_(self.norm.weight)

    def forward(self, x: Tensor) -> Tensor:
        y = non_local_attention(self.theta(x), self.phi(x), self.g(x))
        return x + self.norm(self.out(y))


__all__ = [
    "CrissCrossAttention",
    "CrissCrossAttention3d",
    "NonLocalBlock",
    "criss_cross_attention",
    "non_local_attention",
]
