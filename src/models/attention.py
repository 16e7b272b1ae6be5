"""Criss-cross attention (CCNet) and the embedded-Gaussian non-local block it is compared with.

``criss_cross_attention`` is the pure op (no projections, no gamma, no residual); the modules
own the 1x1 projections, the learnable ``gamma`` and the residual connection.

How the op is computed: features are handled channels-last, ``(B, *S, C)``, so that every
line of positions (a row, a column, a time line) is a matrix with unit channel stride that
batched matmuls read without copies. Each axis gets its own energies ``(B, S without axis,
L, L)`` and its own log-softmax; the joint softmax over all lines rescales each part by
exp(lse_part - lse) instead of concatenating the energies. The centre, present in every
line, is kept in the last axis's lines only (masked with -inf in the others). Backward
keeps only q, k, v and the per-position log-sum-exp and recomputes the probabilities with
two small matmuls (C' = C/8 channels).

``kernel="fused"`` computes the same forward as one attention call per axis (the lines as a
batch, the centre masked with an additive -inf bias in every axis but the last), each
returning its output and its log-sum-exp, merged as out = sum_axis exp(lse_axis - lse) *
out_axis; no (L, L) energies are materialised on the CUDA backend. Backward is the same
hand-written one (it needs only q, k, v and the merged log-sum-exp). See
:func:`criss_cross_attention` for the backends and why ``lines`` stays the default.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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
    """out = a @ b over matching leading dims (3 or more), as bmm calls on views of a and b (no
    copies); a single leading dim is always mergeable, so the recursion stops at 3 dims."""
    if _batch_dims_mergeable(a) and _batch_dims_mergeable(b):
        flat = (-1, *out.shape[-2:])
        torch.bmm(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]), out=out.view(flat))
    else:
        for i in range(a.shape[0]):
            _bmm_into(a[i], b[i], out[i])


def _line_matmul(a: Tensor, b: Tensor, eager: bool = True) -> Tensor:
    """a @ b for strided line views (B, ..., L, M) @ (B, ..., M, N); contiguous result.

    ``eager=False`` (tracing) uses one plain ``torch.matmul`` instead of per-batch ``bmm``.
    """
    if not eager:
        return torch.matmul(a, b)
    out = a.new_empty(*a.shape[:-1], b.shape[-1])
    _bmm_into(a, b, out)
    return out


# Dims below are non-negative: the TorchScript ONNX exporter mistranslates negative movedim dims.


def _swap_channels(x: Tensor, out_shape: tuple[int, ...], rows: int) -> Tensor:
    """Copy x's per-sample (rows, cols) matrices transposed into a new tensor of out_shape.

    PyTorch copies a plain transposed 2D matrix with a cache-blocked kernel on the CPU, much
    faster than a generic strided copy between (C, H*W) and (H*W, C) orders.
    """
    out = x.new_empty(out_shape)
    for src, dst in zip(x, out):
        dst.view(-1, rows).copy_(src.reshape(rows, -1).t())
    return out


def _channels_last(x: Tensor, eager: bool = True) -> Tensor:
    """(B, C, *S) -> contiguous (B, *S, C): a free view for channels_last inputs."""
    y = x.movedim(1, x.dim() - 1)
    if y.is_contiguous() or x.device.type != "cpu" or not eager:
        return y.contiguous()
    return _swap_channels(x, tuple(y.shape), x.shape[1])


def _restore_layout(y: Tensor, channels_last: bool, eager: bool = True) -> Tensor:
    """(B, *S, C) -> (B, C, *S), channels-last or made contiguous."""
    x = y.movedim(y.dim() - 1, 1)
    if channels_last or x.is_contiguous():
        return x
    if y.device.type != "cpu" or not eager:
        return x.contiguous()
    return _swap_channels(y, tuple(x.shape), y[0].numel() // y.shape[-1])


def _is_channels_last(x: Tensor) -> bool:
    """Whether x is laid out channels-last (and not merely contiguous)."""
    fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    return x.is_contiguous(memory_format=fmt) and not x.is_contiguous()


def _move(x: Tensor, source: int, destination: int) -> Tensor:
    """``x.movedim`` that skips the call when nothing moves (this op makes many of them)."""
    return x if source == destination else x.movedim(source, destination)


def _lines(x: Tensor, axis: int) -> Tensor:
    """View (B, *S, C) as lines along spatial ``axis``: (B, S without axis, L, C)."""
    return _move(x, 1 + axis, x.dim() - 2)


def _from_lines(x: Tensor, axis: int) -> Tensor:
    """Inverse of ``_lines`` for a per-line tensor (B, S without axis, L, N)."""
    return _move(x, x.dim() - 2, 1 + axis)


def _per_position(x: Tensor, axis: int) -> Tensor:
    """(B, S without axis, L) -> (B, *S): a per-line reduction back on the grid."""
    return _move(x, x.dim() - 1, 1 + axis)


def _per_line(x: Tensor, axis: int) -> Tensor:
    """(B, *S) -> (B, S without axis, L, 1): a per-position value broadcast over a line."""
    return _move(x, 1 + axis, x.dim() - 1).unsqueeze(-1)


def _line_energies(q: Tensor, k: Tensor, axis: int, eager: bool = True) -> Tensor:
    """Energies of each position with its line along ``axis``, in the accumulation dtype."""
    energy = _line_matmul(_lines(q, axis), _lines(k, axis).transpose(-1, -2), eager)
    return energy.to(_acc_dtype(q))


def _drop_centre(probs: Tensor) -> Tensor:
    """Zero each position's own entry (the line's diagonal) in place: counted once elsewhere."""
    n = probs.shape[-1]
    return probs.masked_fill_(_eye_mask(n, probs.device), 0.0)


def _active_axes(x: Tensor) -> list[int]:
    """Spatial axes of channels-last x whose lines are attended, the last axis last.

    The centre is counted in the last axis's lines; a length-1 line of another axis would
    hold nothing but the centre, so that axis is skipped.
    """
    last = x.dim() - 3
    return [a for a in range(last) if x.shape[1 + a] > 1] + [last]


def _accumulate_lines(axes: list[int], parts: list[Tensor]) -> Tensor:
    """Sum per-axis line tensors (B, S without axis, L, C) into one (B, *S, C) tensor."""
    total = parts[-1]  # the last axis's lines are already laid out as (B, *S, C)
    for axis, part in zip(axes[:-1], parts[:-1]):
        total = total.add_(_from_lines(part, axis))
    return total


# ----------------------------------------------------------------------------- the op


def _line_log_softmax(
    q: Tensor, k: Tensor, axis: int, drop_centre: bool, eager: bool = True
) -> tuple[Tensor, Tensor]:
    """Log-softmax over each line along ``axis`` and the line's log-sum-exp (per position).

    The log-sum-exp is read back as energy - log-softmax at an entry that is never masked
    (the first one, or the one after the centre when the centre is dropped).
    """
    energy = _line_energies(q, k, axis, eager)
    if not drop_centre:
        log_p = torch.log_softmax(energy, dim=-1)
        return log_p, energy[..., 0] - log_p[..., 0]
    n = energy.shape[-1]
    energy = energy.masked_fill_(_eye_mask(n, energy.device), float("-inf"))
    log_p = torch.log_softmax(energy, dim=-1)
    after = (torch.arange(n, device=energy.device) + 1) % n
    index = after.view(n, 1).expand(*energy.shape[:-1], 1)
    return log_p, (energy.gather(-1, index) - log_p.gather(-1, index)).squeeze(-1)


def _criss_cross_forward(
    q: Tensor, k: Tensor, v: Tensor, eager: bool = True
) -> tuple[Tensor, Tensor]:
    """Output (B, *S, C) and per-position log-sum-exp (B, *S) from channels-last q, k, v.

    Each axis's lines get their own log-softmax; the joint softmax rescales each part by
    exp(lse_part - lse) instead of concatenating the energies.
    """
    axes = _active_axes(q)
    parts = {a: _line_log_softmax(q, k, a, a != axes[-1], eager) for a in axes}
    part_lse = {a: _per_position(lse, a) for a, (_, lse) in parts.items()}
    lse = torch.logsumexp(torch.stack(list(part_lse.values())), dim=0)
    outputs = []
    for axis, (log_p, _) in parts.items():
        shift = _per_line(part_lse[axis] - lse, axis)
        # in place when eager (memory); out of place when traced: autograd through a traced
        # graph (torch.compile training) keeps log_softmax's output for its backward
        log_p = log_p.add_(shift).exp_() if eager else (log_p + shift).exp()
        outputs.append(_line_matmul(log_p.to(v.dtype), _lines(v, axis), eager))
    return _accumulate_lines(axes, outputs), lse


def _criss_cross_backward(
    q: Tensor, k: Tensor, v: Tensor, lse: Tensor, grad: Tensor, gamma: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Gradients for channels-last q, k, v (and gamma) from the output gradient.

    The probabilities are recomputed from q, k and the log-sum-exp. With ``gamma`` the output
    was ``x + gamma * CCA``: q, k, v gradients scale by gamma and gamma's gradient is
    sum_u grad_u . CCA_u, which the softmax backward computes anyway (``dot`` below).
    """
    axes = _active_axes(q)
    probs, grad_probs = [], []
    dot = torch.zeros_like(lse)  # sum_i A_ui dA_ui = grad_u . CCA_u
    for axis in axes:
        p = _line_energies(q, k, axis).sub_(_per_line(lse, axis)).exp_()
        if axis != axes[-1]:
            _drop_centre(p)
        dp = _line_matmul(_lines(grad, axis), _lines(v, axis).transpose(-1, -2))
        dp = dp.to(p.dtype).mul_(p)
        dot = dot + _per_position(dp.sum(-1), axis)
        probs.append(p)
        grad_probs.append(dp)
    grad_q, grad_k, grad_v = [], [], []
    for axis, p, dp in zip(axes, probs, grad_probs):
        de = dp.addcmul_(p, _per_line(dot, axis), value=-1.0).to(q.dtype)
        grad_q.append(_line_matmul(de, _lines(k, axis)))
        grad_k.append(_line_matmul(de.transpose(-1, -2), _lines(q, axis)))
        if gamma is not None:
            p = p.mul_(gamma.to(p.dtype))
        grad_v.append(_line_matmul(p.to(v.dtype).transpose(-1, -2), _lines(grad, axis)))
    dq, dk, dv = (_accumulate_lines(axes, g) for g in (grad_q, grad_k, grad_v))
    if gamma is None:
        return dq, dk, dv, None
    scale = gamma.to(dq.dtype)
    return dq.mul_(scale), dk.mul_(scale), dv, dot.sum().reshape(gamma.shape).to(gamma.dtype)


# ----------------------------------------------------------------------------- the fused path

KERNELS = ("lines", "fused")
"""``model.attention_kernel`` values: ``lines`` (per-axis energies and log-softmax, the
default) and ``fused`` (one attention call per axis, merged by their log-sum-exps)."""

_Attend = Callable[[Tensor, Tensor, Tensor, bool], tuple[Tensor, Tensor]]
_FUSED_CPU_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)
_FUSED_CUDA_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_CUDA_GRID_MAX = 65535  # the efficient kernel puts batch and heads on grid z and y


def check_kernel(kernel: object) -> str:
    """``kernel`` if it names a path of the op (one of :data:`KERNELS`)."""
    if not isinstance(kernel, str) or kernel not in KERNELS:
        raise ValueError(
            f"model.attention_kernel must be one of {', '.join(KERNELS)}; got {kernel!r}"
        )
    return kernel


def _centre_bias(
    n: int, dtype: torch.dtype, device: torch.device, cols: int | None = None
) -> Tensor:
    """Additive (n, n) bias: -inf on the diagonal, 0 elsewhere (a view of (n, cols) rows)."""
    bias = torch.zeros(n, cols or n, dtype=dtype, device=device)
    return bias[:, :n].masked_fill_(_eye_mask(n, device), float("-inf"))


def _attend_cpu(q: Tensor, k: Tensor, v: Tensor, mask_centre: bool) -> tuple[Tensor, Tensor]:
    """ATen's CPU flash attention (blocked, online softmax, natural-log lse, fp32 accumulation
    for half types, float64 supported). It needs equal q/v head sizes (the caller pads) and
    an additive mask of the query's dtype; scale 1 (CCNet does not scale)."""
    bias = _centre_bias(q.shape[-2], q.dtype, q.device) if mask_centre else None
    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    out, lse = op(q, k, v, attn_mask=bias, scale=1.0)
    return out, lse


def _attend_cuda(q: Tensor, k: Tensor, v: Tensor, mask_centre: bool) -> tuple[Tensor, Tensor]:
    """ATen's memory-efficient CUDA attention (CUTLASS): q/k and v head sizes may differ, the
    bias is (batch, heads, L, L) of the query's dtype with rows aligned to 16 elements (the
    stride-0 expand of one padded (L, L) block), lse is fp32, natural log, padded to 32."""
    n = q.shape[-2]
    bias = None
    if mask_centre:
        block = _centre_bias(n, q.dtype, q.device, cols=-(-n // 16) * 16)
        bias = block.expand(q.shape[0], q.shape[1], n, n)
    op = torch.ops.aten._scaled_dot_product_efficient_attention
    out, lse, _, _ = op(q, k, v, bias, True, scale=1.0)
    return out, lse[..., :n]


def _attend_math(q: Tensor, k: Tensor, v: Tensor, mask_centre: bool) -> tuple[Tensor, Tensor]:
    """The same call in plain torch (materialises one axis's energies): any dtype and device."""
    energy = torch.matmul(q, k.transpose(-1, -2)).to(_acc_dtype(q))
    if mask_centre:
        energy = energy.masked_fill_(_eye_mask(energy.shape[-1], energy.device), float("-inf"))
    lse = torch.logsumexp(energy, dim=-1)
    probs = energy.sub_(lse.unsqueeze(-1)).exp_()
    return torch.matmul(probs.to(v.dtype), v), lse


def _fused_backend(q: Tensor, k: Tensor, v: Tensor) -> _Attend:
    """The attention call for these inputs: ATen's fused kernel where it takes them, else
    :func:`_attend_math`."""
    same = q.dtype == k.dtype == v.dtype
    if q.device.type == "cpu" and same and q.dtype in _FUSED_CPU_DTYPES:
        return _attend_cpu
    if q.device.type == "cuda" and same and q.dtype in _FUSED_CUDA_DTYPES:
        b, *spatial, cq = q.shape
        aligned = cq % 8 == 0 and v.shape[-1] % 8 == 0  # CUTLASS reads 8-element vectors
        small = all(b * math.prod(spatial[:a]) <= _CUDA_GRID_MAX for a in range(len(spatial)))
        small = small and all(
            math.prod(spatial[a + 1 :]) <= _CUDA_GRID_MAX for a in range(len(spatial))
        )
        if aligned and small:
            return _attend_cuda
    return _attend_math


def _pad_channels(x: Tensor, channels: int) -> Tensor:
    """x (.., C) with zero channels appended up to ``channels`` (x itself if none)."""
    extra = channels - x.shape[-1]
    return x if extra <= 0 else torch.nn.functional.pad(x, (0, extra))


def _axis_attention(
    attend: _Attend, q: Tensor, k: Tensor, v: Tensor, axis: int, mask_centre: bool
) -> tuple[Tensor, Tensor]:
    """One attention call over every line along ``axis``: output (B, *S, C), lse (B, *S).

    Lines are handed over as (batch, heads, L, C) views without copies: the spatial dims
    before ``axis`` join the batch, those after it become the heads (both mergeable in a
    contiguous (B, *S, C) tensor). The fused kernels write (batch, L, heads, C) memory,
    which is (B, *S, C) again.
    """
    b, *spatial, _ = q.shape
    n = spatial[axis]
    batch, heads = b * math.prod(spatial[:axis]), math.prod(spatial[axis + 1 :])

    def as_lines(t: Tensor) -> Tensor:
        return t.reshape(batch, n, heads, t.shape[-1]).transpose(1, 2)

    out, lse = attend(as_lines(q), as_lines(k), as_lines(v), mask_centre)
    out = out.transpose(1, 2).reshape(b, *spatial, out.shape[-1])
    lse = lse.transpose(1, 2).reshape(b, *spatial)
    return out, lse


def _fused_forward(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """``_criss_cross_forward``'s result (output (B, *S, C), per-position lse (B, *S) in the
    accumulation dtype) from one attention call per axis, merged by their log-sum-exps."""
    attend = _fused_backend(q, k, v)
    channels = v.shape[-1]
    if attend is _attend_cpu:  # equal head sizes: zero channels leave the energies alone
        width = max(q.shape[-1], channels)
        q, k, v = (_pad_channels(t, width) for t in (q, k, v))
    axes = _active_axes(q)
    parts = [_axis_attention(attend, q, k, v, a, a != axes[-1]) for a in axes]
    acc = _acc_dtype(v)
    part_lse = torch.stack([lse.to(acc) for _, lse in parts])
    lse = torch.logsumexp(part_lse, dim=0)
    weights = part_lse.sub_(lse).exp_().unsqueeze(-1)
    out = v.new_empty(*v.shape[:-1], channels, dtype=acc)  # (B, *S, C), whatever the parts
    torch.mul(parts[0][0][..., :channels], weights[0], out=out)  # half outputs: to fp32
    for (part, _), weight in zip(parts[1:], weights[1:]):
        out = out.addcmul_(part[..., :channels], weight)
    return out.to(v.dtype), lse


class _CrissCrossFunction(torch.autograd.Function):
    """Autograd for CCA(q, k, v), or x + gamma * CCA(q, k, v) when gamma and x are given.

    Backward needs q, k, v and the per-position log-sum-exp only. The plain op keeps its
    inputs as given (they belong to the caller); the residual form, used by the modules on
    their own projections, keeps the channels-last copies it computed with (the originals
    are freed, so this costs no memory and spares backward the layout copies). ``kernel``
    picks the forward (:data:`KERNELS`); both give backward the same log-sum-exp.
    """

    @staticmethod
    def forward(
        ctx,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        gamma: Tensor | None,
        x: Tensor | None,
        kernel: str = "lines",
    ) -> Tensor:
        inputs = (query, key, value)
        lines = [_channels_last(t) for t in inputs]
        forward = _fused_forward if kernel == "fused" else _criss_cross_forward
        out, lse = forward(*lines)
        ctx.channels_last = [_is_channels_last(t) for t in inputs]
        ctx.residual = x is not None
        if x is None:
            ctx.save_for_backward(*inputs, lse)
            return _restore_layout(out, ctx.channels_last[2])
        ctx.save_for_backward(*lines, lse, gamma)
        return torch.addcmul(x, _restore_layout(out, _is_channels_last(x)), gamma)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        if ctx.residual:
            *lines, lse, gamma = ctx.saved_tensors
        else:
            *inputs, lse = ctx.saved_tensors
            lines, gamma = [_channels_last(t) for t in inputs], None
        grad_lines = _channels_last(grad.to(lines[2].dtype))  # fp32 under a residual in fp32
        *grads, grad_gamma = _criss_cross_backward(*lines, lse, grad_lines, gamma)
        grads = [_restore_layout(g, cl) for g, cl in zip(grads, ctx.channels_last)]
        return (*grads, grad_gamma, grad if ctx.residual else None, None)


def _check_shapes(query: Tensor, key: Tensor, value: Tensor) -> None:
    """Raise on inputs the op cannot take (wrong rank or mismatched sizes)."""
    if query.dim() not in (4, 5):
        raise ValueError(f"expected a 4D or 5D query, got shape {tuple(query.shape)}")
    if query.shape != key.shape or query.shape[2:] != value.shape[2:]:
        raise ValueError(
            f"shape mismatch: query {tuple(query.shape)}, key {tuple(key.shape)}, "
            f"value {tuple(value.shape)}"
        )


def _use_function(*tensors: Tensor) -> bool:
    """Whether to run the hand-written autograd (a gradient is needed and nothing traces)."""
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    return needs_grad and not _exporting()


def criss_cross_attention(
    query: Tensor, key: Tensor, value: Tensor, kernel: str = "lines"
) -> Tensor:
    """Attend from each position to its criss-cross (2D: row + column; 3D: T, H, W lines).

    query/key (B, C', *S), value (B, C, *S) with S = (H, W) or (T, H, W); returns (B, C, *S)
    in value's memory format. No scaling; one softmax (accumulated in fp32) over the whole
    set, in which the centre appears once: H+W-1 positions in 2D, T+H+W-2 in 3D.

    ``kernel`` (:data:`KERNELS`, config key ``model.attention_kernel``) picks the forward;
    backward is the same hand-written one for both:

    - ``lines`` (default): per-axis energies (B, S without axis, L, L) and log-softmax.
    - ``fused``: one attention call per axis returning its log-sum-exp, merged by them. On
      CUDA: ATen's memory-efficient attention (no energies in memory; fp32/bf16/fp16 with
      channel counts divisible by 8). On the CPU: ATen's flash attention for the CPU, which
      needs equal q/v head sizes, so q and k are zero-padded to C channels (8x the energy
      FLOPs at C' = C/8). Elsewhere (float64 on CUDA, mixed dtypes, unaligned channels) the
      same per-axis calls and merge in plain torch. Not the default: not yet measured faster
      on a GPU (``python -m src.bench gpu``), and slower on the CPU. When traced (ONNX
      export, torch.export, torch.compile, jit.trace) it falls back to ``lines``.
    """
    kernel = check_kernel(kernel)
    _check_shapes(query, key, value)
    if _use_function(query, key, value):
        return _CrissCrossFunction.apply(query, key, value, None, None, kernel)
    eager = not _exporting()
    lines = [_channels_last(t, eager) for t in (query, key, value)]
    if kernel == "fused" and eager:
        out, _ = _fused_forward(*lines)
    else:
        out, _ = _criss_cross_forward(*lines, eager=eager)
    return _restore_layout(out, _is_channels_last(value), eager)


def criss_cross_residual(
    query: Tensor, key: Tensor, value: Tensor, gamma: Tensor, x: Tensor, kernel: str = "lines"
) -> Tensor:
    """``x + gamma * criss_cross_attention(query, key, value, kernel)`` in x's memory format.

    One fused autograd step: it keeps no copy of the attention output for gamma's gradient.
    """
    kernel = check_kernel(kernel)
    _check_shapes(query, key, value)
    if _use_function(query, key, value, gamma, x):
        return _CrissCrossFunction.apply(query, key, value, gamma, x, kernel)
    return torch.addcmul(x, criss_cross_attention(query, key, value, kernel), gamma)


# ----------------------------------------------------------------------------- modules


class CrissCrossAttention(nn.Module):
    """CCA module: 1x1 projections Q, K (C -> C/8) and V (C -> C), out = gamma * CCA + x.

    ``gamma`` starts at 0, so a fresh module is the identity (as in the paper). ``kernel``:
    the op's forward path (:data:`KERNELS`, see :func:`criss_cross_attention`).
    """

    def __init__(self, in_channels: int, kernel: str = "lines") -> None:
        super().__init__()
        self.kernel = check_kernel(kernel)
        inner = max(in_channels // 8, 1)
        self.query = nn.Conv2d(in_channels, inner, 1)
        self.key = nn.Conv2d(in_channels, inner, 1)
        self.value = nn.Conv2d(in_channels, in_channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.query(x), self.key(x), self.value(x)
        return criss_cross_residual(q, k, v, self.gamma, x, self.kernel)


class CrissCrossAttention3d(nn.Module):
    """3D CCA module on (B, C, T, H, W): 1x1x1 projections, lines along T, H and W."""

    def __init__(self, in_channels: int, kernel: str = "lines") -> None:
        super().__init__()
        self.kernel = check_kernel(kernel)
        inner = max(in_channels // 8, 1)
        self.query = nn.Conv3d(in_channels, inner, 1)
        self.key = nn.Conv3d(in_channels, inner, 1)
        self.value = nn.Conv3d(in_channels, in_channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.query(x), self.key(x), self.value(x)
        return criss_cross_residual(q, k, v, self.gamma, x, self.kernel)


def non_local_attention(theta: Tensor, phi: Tensor, g: Tensor) -> Tensor:
    """Embedded-Gaussian non-local op: softmax(theta^T phi) over all positions, applied to g.

    theta/phi (B, C', *S), g (B, C, *S) with any number of spatial dims (S = (H, W) or
    (T, H, W)): the positions are flattened, N = prod(S), and the (B, N, N) attention is
    materialised.
    """
    b, c = g.shape[:2]
    query = theta.flatten(2).transpose(1, 2)  # (B, N, C')
    attn = torch.softmax(torch.bmm(query, phi.flatten(2)).to(_acc_dtype(g)), dim=-1)
    y = torch.bmm(g.flatten(2), attn.to(g.dtype).transpose(1, 2))  # (B, C, N)
    return y.view(b, c, *g.shape[2:])


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al.): x + BN(W(y)), no subsampling.

    theta/phi/g are 1x1 convs C -> C/2; W is a 1x1 conv C/2 -> C followed by a BatchNorm whose
    weight starts at zero (the non-local paper's choice), so a fresh block is the identity.
    ``dims=3`` takes clips (B, C, T, H, W) (1x1x1 convs, BatchNorm3d) and attends over all
    T·H·W positions, the space-time non-local block of the video paper.
    """

    def __init__(self, in_channels: int, dims: int = 2) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"NonLocalBlock works on 2 or 3 spatial dims; got dims={dims!r}")
        conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
        inner = max(in_channels // 2, 1)
        self.theta = conv(in_channels, inner, 1)
        self.phi = conv(in_channels, inner, 1)
        self.g = conv(in_channels, inner, 1)
        self.out = conv(inner, in_channels, 1)
        self.norm = norm(in_channels)
        nn.init.zeros_(self.norm.weight)

    def forward(self, x: Tensor) -> Tensor:
        y = non_local_attention(self.theta(x), self.phi(x), self.g(x))
        return x + self.norm(self.out(y))


__all__ = [
    "KERNELS",
    "CrissCrossAttention",
    "CrissCrossAttention3d",
    "NonLocalBlock",
    "check_kernel",
    "criss_cross_attention",
    "criss_cross_residual",
    "non_local_attention",
]
