"""The criss-cross op and its modules at the edges `make mutate` found no test pinning down: the
fused kernel runs when asked (from every entry point), a gradient reaches any one input that
needs it, the plain-torch fused backend and the non-local op in half precision, the projection
widths of the modules, gradients on a grid one row high, the traced path under autograd, query
and key wider than the value, the fp32 parts of half and mixed-dtype inputs (the fused merge,
the softmax, the softmax backward), an axis of length 2, and the output's memory format."""

from __future__ import annotations

import warnings

import pytest
import torch
from attention_inputs import random_qkv

import src.models.attention as attention
from src.models.attention import (
    CrissCrossAttention,
    CrissCrossAttention3d,
    NonLocalBlock,
    criss_cross_attention,
    criss_cross_residual,
    non_local_attention,
)


def _qkv(spatial=(3, 4), **kwargs):
    return random_qkv(spatial, **{"channels": 5, "seed": 7, **kwargs})


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


@pytest.mark.parametrize("kernel", ["lines", "fused"])
@pytest.mark.parametrize("spatial", [(1, 5), (1, 1, 5)])
def test_gradients_on_a_single_row(spatial, kernel):
    """A grid one row high (and a clip of one such frame): each position's cross is its row,
    so the op is plain softmax attention along the row, and so are its gradients. The axes of
    length 1 hold nothing but the centre and are skipped: the row's axis is the only one."""
    q, k, v = (t.requires_grad_() for t in _qkv(spatial))
    weights = torch.randn(v.shape, dtype=v.dtype, generator=torch.Generator().manual_seed(2))

    def row_attention(q, k, v):
        attn = torch.softmax(q.flatten(2).transpose(1, 2) @ k.flatten(2), dim=-1)  # (B, W, W)
        return (v.flatten(2) @ attn.transpose(1, 2)).view_as(v)

    expected = torch.autograd.grad((row_attention(q, k, v) * weights).sum(), (q, k, v))
    out = criss_cross_attention(q, k, v, kernel=kernel)
    got = torch.autograd.grad((out * weights).sum(), (q, k, v))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:.*jit.trace.* is deprecated")
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_the_traced_op_trains_with_the_eager_gradients():
    """Traced (jit.trace here; torch.compile and ONNX export take the same path), the op runs
    as plain torch ops under autograd: it must not modify in place a tensor autograd keeps
    (log_softmax's output), and its gradients are the eager op's. A fast stand-in for the
    torch.compile test, which `make mutate` leaves out."""
    q, k, v = (t.requires_grad_() for t in _qkv())
    weights = torch.randn(v.shape, dtype=v.dtype, generator=torch.Generator().manual_seed(3))
    expected = torch.autograd.grad((criss_cross_attention(q, k, v) * weights).sum(), (q, k, v))
    traced = torch.jit.trace(criss_cross_attention, (q, k, v))
    got = torch.autograd.grad((traced(q, k, v) * weights).sum(), (q, k, v))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("spatial", [(5, 4), (3, 4, 2)])
def test_fused_takes_query_and_key_wider_than_the_value(spatial):
    """The CPU kernel wants equal head sizes: with more query/key channels (8) than value
    channels (3) and than the last spatial size, the value is zero-padded to 8 channels and
    the output keeps its 3."""
    inputs = _qkv(spatial, key_channels=8, channels=3)
    out = criss_cross_attention(*inputs, kernel="fused")
    assert out.shape == inputs[2].shape
    torch.testing.assert_close(out, criss_cross_attention(*inputs), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_fused_merge_of_half_inputs_rounds_once(dtype):
    """Half inputs: the fused path merges its per-axis outputs in fp32 and rounds once to the
    input's dtype. With equal energies each position averages its cross (2 column entries,
    weight 1/3; 4 row entries, weight 2/3): at the top-left corner the two weighted parts,
    97/3 and -47.25 * 2/3, nearly cancel to 5/6, which a merge in half precision would miss
    by 10% (bf16; 97/3 rounded to 32.25)."""
    v = [[-48, -48, -48, -45], [96, 1, 2, 3], [98, 4, 5, 6]]
    value = torch.tensor(v, dtype=torch.float64).view(1, 1, 3, 4)
    query = torch.zeros(1, 1, 3, 4, dtype=dtype)
    out = criss_cross_attention(query, query, value.to(dtype), kernel="fused")
    assert out.dtype == dtype
    expected = (value.sum(-1, keepdim=True) + value.sum(-2, keepdim=True) - value) / (3 + 4 - 1)
    eps = torch.finfo(dtype).eps  # twice the rounding error
    torch.testing.assert_close(out.double(), expected, rtol=eps, atol=1e-4)


@pytest.mark.parametrize("kernel", ["lines", "fused"])
def test_a_bf16_query_and_key_with_a_fp32_value_keep_the_softmax_in_fp32(kernel):
    """Mixed dtypes (the fused path then runs its plain-torch backend): energies of bf16 q and
    k are exact here (integers, up to 60), the softmax and its log-sum-exp run in fp32, so the
    fp32 output is the fp64 one to fp32 accuracy (seen: 5e-6). A log-sum-exp in the tens kept
    in bf16 (spacing 0.25) would put weights off by up to 13%."""
    gen = torch.Generator().manual_seed(5)
    query, key = (torch.randint(-4, 5, (2, 8, 4, 6), generator=gen).double() for _ in range(2))
    value = torch.randn(2, 5, 4, 6, generator=gen, dtype=torch.float64)
    out = criss_cross_attention(query.bfloat16(), key.bfloat16(), value.float(), kernel=kernel)
    assert out.dtype == torch.float32
    expected = criss_cross_attention(query, key, value)
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-4)


def test_the_non_local_softmax_runs_in_fp32_for_bf16_theta_and_phi():
    """theta/phi in bf16 with a fp32 g: the softmax runs in fp32 (the wider of fp32 and g's
    dtype). The energies are exact here (small integers), so the output is the fp64 one to fp32
    accuracy; weights rounded to bf16 would be off by up to 2^-9 (0.2%)."""
    gen = torch.Generator().manual_seed(6)
    theta, phi = (torch.randint(-2, 3, (2, 4, 3, 5), generator=gen).double() for _ in range(2))
    g = torch.randn(2, 6, 3, 5, generator=gen, dtype=torch.float64)
    out = non_local_attention(theta.bfloat16(), phi.bfloat16(), g.float())
    assert out.dtype == torch.float32
    expected = non_local_attention(theta, phi, g)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_bf16_gradients_keep_the_softmax_backward_in_fp32():
    """bf16 inputs: the softmax backward (per entry grad . v, less its probability-weighted
    mean over the cross) runs in fp32. Values with a large shared part (50 in one channel, the
    output gradient 2 there) make grad . v = 100 + (-2..2) at every entry, exact in bf16:
    the differences that make the q and k gradients come out right to bf16's ~1%, where
    rounding the ~100-sized terms to bf16 first (spacing 0.5) would leave tens of percent."""
    gen = torch.Generator().manual_seed(11)
    spatial = (4, 6)
    query, key = (torch.randint(-1, 2, (1, 2, *spatial), generator=gen).double() for _ in range(2))
    shared = torch.full(spatial, 50.0, dtype=torch.float64)
    value = torch.stack([shared, torch.randint(-2, 3, spatial, generator=gen).double()])[None]
    grad = torch.tensor([2.0, 1.0], dtype=torch.float64).view(1, 2, 1, 1).expand_as(value)
    exact = [t.clone().requires_grad_() for t in (query, key, value)]
    expected = torch.autograd.grad(criss_cross_attention(*exact), exact[:2], grad)
    half = [t.bfloat16().requires_grad_() for t in (query, key, value)]
    got = torch.autograd.grad(criss_cross_attention(*half), half[:2], grad.bfloat16())
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == torch.bfloat16
        torch.testing.assert_close(a.double(), b, rtol=0, atol=0.02 * b.abs().max().item())


@pytest.mark.parametrize("kernel", ["lines", "fused"])
@pytest.mark.parametrize("spatial", [(2, 5), (2, 2, 3)])
def test_an_axis_of_length_two_is_attended(spatial, kernel):
    """Only length-1 axes are skipped (their lines hold nothing but the centre): an axis of
    length 2 adds one neighbour to every cross. With equal energies each position averages its
    cross, the sum of its lines less the centre counted once per extra axis, over H+W-1
    positions (T+H+W-2 in 3D): 6 in (2, 5), 5 in (2, 2, 3)."""
    gen = torch.Generator().manual_seed(4)
    value = torch.randn(2, 3, *spatial, generator=gen, dtype=torch.float64)
    query = torch.zeros(2, 2, *spatial, dtype=torch.float64)
    out = criss_cross_attention(query, query, value, kernel=kernel)
    dims = range(2, value.dim())
    lines = sum(value.sum(d, keepdim=True) for d in dims)
    expected = (lines - (len(spatial) - 1) * value) / (sum(spatial) - len(spatial) + 1)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel", ["lines", "fused"])
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("spatial", [(3, 4), (2, 3, 4)])
def test_the_output_takes_the_value_memory_format(spatial, grad, kernel):
    """The op returns value's memory format, with or without autograd: a channels-last value
    gives a channels-last output, any other layout (here a transposed view, neither contiguous
    nor channels-last) a contiguous one, which callers can ``view`` (flatten the positions)."""
    fmt = torch.channels_last if len(spatial) == 2 else torch.channels_last_3d
    query, key, value = _qkv(spatial)
    channels_last = [
        t.contiguous(memory_format=fmt).requires_grad_(grad) for t in (query, key, value)
    ]
    out = criss_cross_attention(*channels_last, kernel=kernel)
    assert out.is_contiguous(memory_format=fmt) and not out.is_contiguous()
    transposed = [
        t.transpose(-1, -2).contiguous().transpose(-1, -2).requires_grad_(grad)
        for t in (query, key, value)
    ]
    assert not transposed[2].is_contiguous(memory_format=fmt)
    out = criss_cross_attention(*transposed, kernel=kernel)
    assert out.is_contiguous()
    expected = criss_cross_attention(query, key, value, kernel=kernel)
    torch.testing.assert_close(out.view(2, 5, -1), expected.view(2, 5, -1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel", ["lines", "fused"])
@pytest.mark.parametrize("spatial", [(3, 4), (6, 5), (2, 3, 4), (3, 2, 4)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_forward_and_backward_raise_no_warning(spatial, layout, kernel):
    """The op raises no warning in any layout, forward or backward: a buffer resized by a
    matmul's ``out=`` (a wrong view of the output) is deprecated in torch and would warn."""
    fmt = torch.channels_last if len(spatial) == 2 else torch.channels_last_3d
    tensors = _qkv(spatial)
    if layout == "channels_last":
        tensors = [t.contiguous(memory_format=fmt) for t in tensors]
    query, key, value = (t.requires_grad_() for t in tensors)
    gamma = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = criss_cross_residual(query, key, value, gamma, value, kernel=kernel)
        out.square().sum().backward()
    assert all(t.grad is not None for t in (query, key, value, gamma))
