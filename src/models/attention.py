"""Criss-cross attention (CCNet) and the embedded-Gaussian non-local block it is compared with.

``criss_cross_attention`` is the pure op (no projections, no gamma, no residual); the modules
own the 1x1 projections, the learnable ``gamma`` and the residual connection.

How the op is computed: features are handled channels-last, ``(B, *S, C)``, so that every
line of positions (a row, a column, a time line) is a matrix with unit channel stride that
batched matmuls read without copies. Each axis gets its own energies ``(B, S without axis,
L, L)``; the joint softmax over all lines merges their partial maxima and sums instead of
concatenating them, and the centre, present in every line, is zeroed after the exponential
in all lines but the last axis's. Backward keeps only the inputs and the per-position
log-sum-exp, and recomputes the probabilities with two small matmuls.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# ----------------------------------------------------------------------------- helpers


def _acc_dtype(x: Tensor) -> torch.dtype:
    """fp32 for half types (softmax accumulated in fp32), the input's own dtype otherwise."""
    return torch.promote_types(x.dtype, torch.float32)


def _exporting() -> bool:
    """Whether the op is being traced (ONNX export, torch.export/compile, jit.trace).

    Tracing then sees plain ``torch.matmul`` calls instead of per-batch ``bmm`` loops.
    """
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.compiler.is_compiling()


def _eye_mask(n: int, device: torch.device) -> Tensor:
    """Boolean (n, n) identity built by comparing index grids (ONNX-friendly, no torch.diag)."""
    idx = torch.arange(n, device=device)
    return idx[:, None] == idx[None, :]


def _batch_dims_mergeable(t: Tensor) -> bool:
    """Whether all dims but the last two can be viewed as one batch dim without a copy."""
    expected = None
    for size, stride in reversed(list(zip(t.shape[:-2], t.stride()[:-2]))):
        if size == 1:
            continue
        if expected is not None and stride != expected:
            return False
        expected = stride * size
    return True


def _bmm_into(a: Tensor, b: Tensor, out: Tensor) -> None:
    """out = a @ b over matching leading dims, as bmm calls on views of a and b (no copies)."""
    if a.dim() == 2:
        torch.mm(a, b, out=out)
    elif _batch_dims_mergeable(a) and _batch_dims_mergeable(b):
        flat = (-1, *out.shape[-2:])
        torch.bmm(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]), out=out.view(flat))
    else:
        for i in range(a.shape[0]):
            _bmm_into(a[i], b[i], out[i])


def _line_matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b for strided line views (B, ..., L, M) @ (B, ..., M, N); contiguous result."""
    if _exporting():
        return torch.matmul(a, b)
    out = a.new_empty(*a.shape[:-1], b.shape[-1])
    _bmm_into(a, b, out)
    return out


# Dims below are non-negative: the TorchScript ONNX exporter mistranslates negative movedim dims.


def _channels_last(x: Tensor) -> Tensor:
    """(B, C, *S) -> contiguous (B, *S, C): a free view for channels_last inputs."""
    return x.movedim(1, x.dim() - 1).contiguous()


def _restore_layout(y: Tensor, like: Tensor) -> Tensor:
    """(B, *S, C) -> (B, C, *S) in the memory format of ``like`` (channels-last or not)."""
    y = y.movedim(y.dim() - 1, 1)
    return y if _is_channels_last(like) else y.contiguous()


def _is_channels_last(x: Tensor) -> bool:
    """Whether x is laid out channels-last (and not merely contiguous)."""
    fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    return x.is_contiguous(memory_format=fmt) and not x.is_contiguous()


def _lines(x: Tensor, axis: int) -> Tensor:
    """View (B, *S, C) as lines along spatial ``axis``: (B, S without axis, L, C)."""
    return x.movedim(1 + axis, x.dim() - 2)


def _from_lines(x: Tensor, axis: int) -> Tensor:
    """Inverse of ``_lines`` for a per-line tensor (B, S without axis, L, N)."""
    return x.movedim(x.dim() - 2, 1 + axis)


def _per_position(x: Tensor, axis: int) -> Tensor:
    """(B, S without axis, L) -> (B, *S): a per-line reduction back on the grid."""
    return x.movedim(x.dim() - 1, 1 + axis)


def _per_line(x: Tensor, axis: int) -> Tensor:
    """(B, *S) -> (B, S without axis, L, 1): a per-position value broadcast over a line."""
    return x.movedim(1 + axis, x.dim() - 1).unsqueeze(-1)


def _line_energies(q: Tensor, k: Tensor, axis: int) -> Tensor:
    """Energies of each position with its line along ``axis``, in the accumulation dtype."""
    energy = _line_matmul(_lines(q, axis), _lines(k, axis).transpose(-1, -2))
    return energy.to(_acc_dtype(q))


def _drop_centre(probs: Tensor) -> Tensor:
    """Zero each position's own entry (the line's diagonal) in place: counted once elsewhere."""
    n = probs.shape[-1]
    return probs.masked_fill_(_eye_mask(n, probs.device), 0.0)


def _accumulate_lines(parts: list[Tensor]) -> Tensor:
    """Sum per-axis line tensors (B, S without axis, L, C) into one (B, *S, C) tensor."""
    last = len(parts) - 1
    total = parts[last]
    for axis in range(last):
        total = total.add_(_from_lines(parts[axis], axis))
    return total


# ----------------------------------------------------------------------------- the op


def _criss_cross_forward(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Output (B, *S, C) and per-position log-sum-exp (B, *S) from channels-last q, k, v.

    The centre is kept in the last axis's line and zeroed in the others, so it counts once.
    """
    ndim = q.dim() - 2
    energies = [_line_energies(q, k, axis) for axis in range(ndim)]
    peak = torch.stack([_per_position(e.amax(-1), a) for a, e in enumerate(energies)]).amax(0)
    total = torch.zeros_like(peak)
    for axis, energy in enumerate(energies):
        energy.sub_(_per_line(peak, axis)).exp_()  # now unnormalised probabilities
        if axis < ndim - 1:
            _drop_centre(energy)
        total = total + _per_position(energy.sum(-1), axis)
    inv_total = total.reciprocal()
    parts = []
    for axis, probs in enumerate(energies):
        probs = probs.mul_(_per_line(inv_total, axis)).to(v.dtype)
        parts.append(_line_matmul(probs, _lines(v, axis)))
    return _accumulate_lines(parts), peak + total.log()


def _criss_cross_backward(
    q: Tensor, k: Tensor, v: Tensor, lse: Tensor, grad: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients for q, k, v (all channels-last) from the output gradient, recomputing A."""
    ndim = q.dim() - 2
    probs, grad_probs, grad_v = [], [], []
    dot = torch.zeros_like(lse)  # sum_i A_ui dA_ui = grad_u . out_u
    for axis in range(ndim):
        p = _line_energies(q, k, axis).sub_(_per_line(lse, axis)).exp_()
        if axis < ndim - 1:
            _drop_centre(p)
        g_lines = _lines(grad, axis)
        dp = _line_matmul(g_lines, _lines(v, axis).transpose(-1, -2)).to(p.dtype).mul_(p)
        dot = dot + _per_position(dp.sum(-1), axis)
        grad_v.append(_line_matmul(p.to(v.dtype).transpose(-1, -2), g_lines))
        probs.append(p)
        grad_probs.append(dp)
    grad_q, grad_k = [], []
    for axis, (p, dp) in enumerate(zip(probs, grad_probs)):
        de = dp.addcmul_(p, _per_line(dot, axis), value=-1.0).to(q.dtype)
        grad_q.append(_line_matmul(de, _lines(k, axis)))
        grad_k.append(_line_matmul(de.transpose(-1, -2), _lines(q, axis)))
    return _accumulate_lines(grad_q), _accumulate_lines(grad_k), _accumulate_lines(grad_v)


class _CrissCrossFunction(torch.autograd.Function):
    """Autograd wrapper that keeps only q, k, v and the log-sum-exp for backward."""

    @staticmethod
    def forward(ctx, query: Tensor, key: Tensor, value: Tensor) -> Tensor:  # noqa: D102
        out, lse = _criss_cross_forward(
            _channels_last(query), _channels_last(key), _channels_last(value)
        )
        ctx.save_for_backward(query, key, value, lse)
        return _restore_layout(out, value)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # noqa: D102
        query, key, value, lse = ctx.saved_tensors
        grads = _criss_cross_backward(
            _channels_last(query),
            _channels_last(key),
            _channels_last(value),
            lse,
            _channels_last(grad),
        )
        return tuple(_restore_layout(g, x) for g, x in zip(grads, (query, key, value)))


def criss_cross_attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Attend from each position to its criss-cross (2D: row + column; 3D: T, H, W lines).

    query/key (B, C', *S), value (B, C, *S) with S = (H, W) or (T, H, W); returns (B, C, *S)
    in value's memory format. No scaling; one softmax (accumulated in fp32) over the whole
    set, in which the centre appears once: H+W-1 positions in 2D, T+H+W-2 in 3D.
    """
    if query.dim() not in (4, 5):
        raise ValueError(f"expected a 4D or 5D query, got shape {tuple(query.shape)}")
    if query.shape != key.shape or query.shape[2:] != value.shape[2:]:
        raise ValueError(
            f"shape mismatch: query {tuple(query.shape)}, key {tuple(key.shape)}, "
            f"value {tuple(value.shape)}"
        )
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    if needs_grad and not _exporting():
        return _CrissCrossFunction.apply(query, key, value)
    out, _ = _criss_cross_forward(_channels_last(query), _channels_last(key), _channels_last(value))
    return _restore_layout(out, value)


# ----------------------------------------------------------------------------- modules


class CrissCrossAttention(nn.Module):
    """CCA module: 1x1 projections Q, K (C -> C/8) and V (C -> C), out = gamma * CCA + x.

    ``gamma`` starts at 0, so a fresh module is the identity (as in the paper).
    """

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


class CrissCrossAttention3d(nn.Module):
    """3D CCA module on (B, C, T, H, W): 1x1x1 projections, lines along T, H and W."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        inner = max(in_channels // 8, 1)
        self.query = nn.Conv3d(in_channels, inner, 1)
        self.key = nn.Conv3d(in_channels, inner, 1)
        self.value = nn.Conv3d(in_channels, in_channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        out = criss_cross_attention(self.query(x), self.key(x), self.value(x))
        return self.gamma * out + x


def non_local_attention(theta: Tensor, phi: Tensor, g: Tensor) -> Tensor:
    """Embedded-Gaussian non-local op: softmax(theta^T phi) over all positions, applied to g."""
    b, c = g.shape[:2]
    query = theta.flatten(2).transpose(1, 2)  # (B, N, C')
    attn = torch.softmax(torch.bmm(query, phi.flatten(2)).to(_acc_dtype(g)), dim=-1)
    y = torch.bmm(g.flatten(2), attn.to(g.dtype).transpose(1, 2))  # (B, C, N)
    return y.view(b, c, *g.shape[2:])


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al.): x + BN(W(y)), no subsampling.

    theta/phi/g are 1x1 convs C -> C/2; W is a 1x1 conv C/2 -> C followed by a BatchNorm whose
    weight starts at zero (the non-local paper's choice), so a fresh block is the identity.
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
