"""The criss-cross op and its modules at the edges `make mutate` found no test pinning down: the
fused kernel runs when asked (from every entry point), a gradient reaches any one input that
needs it, the plain-torch fused backend and the non-local op in half precision, and the
projection widths of the modules."""

from __future__ import annotations

import pytest
import torch

import src.models.attention as attention
from src.models.attention import (
    CrissCrossAttention,
    CrissCrossAttention3d,
    NonLocalBlock,
    criss_cross_attention,
    criss_cross_residual,
    non_local_attention,
)


def _qkv(spatial=(3, 4), dtype=torch.float64, key_channels=3, channels=5):
    gen = torch.Generator().manual_seed(7)
    shapes = [(2, key_channels), (2, key_channels), (2, channels)]
    return [torch.randn(*s, *spatial, generator=gen, dtype=dtype) for s in shapes]


@pytest.fixture
def fused_calls(monkeypatch) -> list[int]:
    """Counts the calls of the fused forward (it still runs)."""
    calls: list[int] = []
    original = attention._fused_forward

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(attention, "_fused_forward", counted)
    return calls


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_the_fused_kernel_runs_when_asked_and_only_then(fused_calls, grad):
    query, key, value = (t.requires_grad_(grad) for t in _qkv())
    gamma = torch.full((1,), 0.5, dtype=torch.float64, requires_grad=grad)
    x = torch.randn_like(value)
    for kernel, expected in (("lines", 0), ("fused", 1)):
        fused_calls.clear()
        criss_cross_attention(query, key, value, kernel=kernel)
        criss_cross_residual(query, key, value, gamma, x, kernel=kernel)
        assert len(fused_calls) == 2 * expected, kernel
    for module in (
        CrissCrossAttention(8, kernel="fused"),
        CrissCrossAttention3d(8, kernel="fused"),
    ):
        fused_calls.clear()
        spatial = (3, 4) if isinstance(module, CrissCrossAttention) else (2, 3, 4)
        with torch.set_grad_enabled(grad):
            module(torch.randn(1, 8, *spatial))
        assert len(fused_calls) == 1, type(module).__name__


@pytest.mark.parametrize("kernel", ["lines", "fused"])
def test_a_gradient_reaches_any_single_input_that_needs_it(kernel):
    """Only one of query, key, value (and, for the residual form, gamma or x) requires a
    gradient, as when the rest is frozen: its gradient is the one it gets when all do."""
    inputs = _qkv()
    gamma = torch.full((1,), 0.5, dtype=torch.float64)
    x = torch.randn_like(inputs[2])
    weights = torch.randn_like(inputs[2])

    def gradients(needs: set[int], residual: bool) -> list[torch.Tensor | None]:
        tensors = [t.clone().requires_grad_(i in needs) for i, t in enumerate([*inputs, gamma, x])]
        if residual:
            out = criss_cross_residual(*tensors, kernel=kernel)
        else:
            out = criss_cross_attention(*tensors[:3], kernel=kernel)
        (out * weights).sum().backward()
        return [t.grad for t in tensors]

    for residual, count in ((False, 3), (True, 5)):
        everything = gradients(set(range(count)), residual)
        for i in range(count):
            alone = gradients({i}, residual)
            assert alone[i] is not None, (residual, i)
            torch.testing.assert_close(alone[i], everything[i], rtol=1e-10, atol=1e-10)


def test_the_plain_torch_fused_backend_in_half_precision(monkeypatch):
    """The fallback backend (mixed dtypes, float64 on CUDA, ...) keeps its softmax in fp32 and
    returns the inputs' dtype, like the kernels."""
    monkeypatch.setattr(attention, "_fused_backend", lambda q, k, v: attention._attend_math)
    inputs32 = _qkv((4, 6), dtype=torch.float32, key_channels=8, channels=16)
    inputs = [t.bfloat16() for t in inputs32]
    out = criss_cross_attention(*inputs, kernel="fused")
    assert out.dtype == torch.bfloat16
    reference = criss_cross_attention(*[t.float() for t in inputs])
    torch.testing.assert_close(out.float(), reference, rtol=3e-2, atol=3e-2)


def test_the_non_local_op_in_half_precision():
    gen = torch.Generator().manual_seed(3)
    theta, phi, g = (torch.randn(2, c, 4, 5, generator=gen) for c in (4, 4, 6))
    out = non_local_attention(theta.bfloat16(), phi.bfloat16(), g.bfloat16())
    assert out.dtype == torch.bfloat16 and out.shape == (2, 6, 4, 5)
    reference = non_local_attention(
        theta.bfloat16().float(), phi.bfloat16().float(), g.bfloat16().float()
    )
    torch.testing.assert_close(out.float(), reference, rtol=3e-2, atol=3e-2)


def test_projection_widths():
    """Query/key project C to C/8 (at least 1) in 2D and 3D; the non-local block to C/2."""
    for cls in (CrissCrossAttention, CrissCrossAttention3d):
        assert cls(16).query.out_channels == cls(16).key.out_channels == 2
        assert cls(8).query.out_channels == 1 and cls(8).value.out_channels == 8
    assert NonLocalBlock(2).theta.out_channels == 1 and NonLocalBlock(8).g.out_channels == 4
