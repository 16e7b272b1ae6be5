"""The fused path of the criss-cross op (``kernel="fused"``: one attention call per axis, merged
by log-sum-exps): the same outputs, log-sum-exps and gradients as the lines path, per backend."""

from __future__ import annotations

import itertools
import re

import pytest
import torch
from attention_inputs import random_qkv

import src.models.attention as attention
from src.models.attention import (
    KERNELS,
    CrissCrossAttention,
    CrissCrossAttention3d,
    check_kernel,
    criss_cross_attention,
    criss_cross_residual,
)
from src.models.ccnet import CCNet
from src.models.context import RecurrentCrissCross, build_context

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
KERNEL_MESSAGE = "model.attention_kernel must be one of lines, fused; got 'flash'"
SPATIAL = [(5, 7), (3, 4, 6), (1, 4), (4, 1), (1, 4, 5), (3, 1, 5), (3, 4, 1)]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from threads, and on a busy machine each parallel op waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=["cpu_kernel", "math"])
def backend(request, monkeypatch):
    """Run a test with ATen's CPU flash kernel and with the plain-torch fallback."""
    if request.param == "math":
        monkeypatch.setattr(attention, "_fused_backend", lambda q, k, v: attention._attend_math)
    return request.param


def _qkv(spatial, **kwargs):
    return random_qkv(spatial, **{"channels": 5, **kwargs})


def _slow_cca(query, key, value):
    """Per-position loop straight from the formula: softmax of q_u . k_i over u's cross."""
    out = torch.zeros_like(value)
    spatial = tuple(query.shape[2:])
    for b in range(query.shape[0]):
        for u in itertools.product(*[range(n) for n in spatial]):
            cross = sorted(
                {u[:a] + (i,) + u[a + 1 :] for a, n in enumerate(spatial) for i in range(n)}
            )
            energy = torch.stack(
                [query[(b, slice(None), *u)] @ key[(b, slice(None), *i)] for i in cross]
            )
            weights = torch.softmax(energy, dim=0)
            out[(b, slice(None), *u)] = sum(
                w * value[(b, slice(None), *i)] for w, i in zip(weights, cross)
            )
    return out


def _forwards(query, key, value):
    """(output, log-sum-exp) of the lines and the fused forward on channels-last copies."""
    lines = [attention._channels_last(t) for t in (query, key, value)]
    return attention._criss_cross_forward(*lines), attention._fused_forward(*lines)


@pytest.mark.parametrize("spatial", SPATIAL)
def test_fused_matches_per_position_loop_in_float64(spatial, backend):
    query, key, value = _qkv(spatial)
    out = criss_cross_attention(query, key, value, kernel="fused")
    assert out.shape == value.shape and out.dtype == value.dtype
    torch.testing.assert_close(out, _slow_cca(query, key, value), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("spatial", [(5, 7), (3, 4, 6)])
def test_fused_output_and_log_sum_exp_equal_the_lines_forward(spatial, dtype, backend):
    """The saved log-sum-exp has the layout, dtype and values the hand-written backward needs."""
    (out, lse), (fused_out, fused_lse) = _forwards(*_qkv(spatial, dtype=dtype))
    assert fused_lse.shape == lse.shape and fused_lse.dtype == lse.dtype
    assert fused_lse.is_contiguous() and fused_out.is_contiguous()
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    torch.testing.assert_close(fused_out, out, rtol=tol, atol=tol)
    torch.testing.assert_close(fused_lse, lse, rtol=tol, atol=tol)


@pytest.mark.parametrize("key_channels, channels", [(2, 16), (8, 8), (6, 3)])
def test_fused_takes_any_channel_counts(key_channels, channels, backend):
    """The CPU kernel wants equal q/v head sizes: the narrower side is zero-padded."""
    inputs = _qkv((4, 6), key_channels=key_channels, channels=channels)
    torch.testing.assert_close(
        criss_cross_attention(*inputs, kernel="fused"), criss_cross_attention(*inputs)
    )


def test_fused_is_stable_for_large_energies(backend):
    query, key, value = _qkv((4, 6))
    query = query * 200.0  # energies in the thousands: exp would overflow without a shift
    out = criss_cross_attention(query, key, value, kernel="fused")
    torch.testing.assert_close(out, _slow_cca(query, key, value), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("spatial", [(3, 4), (2, 3, 4)])
def test_fused_gradcheck(spatial, backend):
    inputs = _qkv(spatial, key_channels=2, channels=3, grad=True)
    assert torch.autograd.gradcheck(lambda *t: criss_cross_attention(*t, kernel="fused"), inputs)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("spatial", [(5, 7), (3, 4, 6)])
@pytest.mark.parametrize("residual", [False, True])
def test_fused_gradients_equal_the_lines_path(spatial, dtype, residual, backend):
    """Gradients of q, k, v (and of gamma and x through the residual form)."""
    inputs = _qkv(spatial, dtype=dtype, grad=True)
    x = torch.randn_like(inputs[2]).requires_grad_()
    gamma = torch.tensor([0.7], dtype=dtype, requires_grad=True)
    leaves = (*inputs, gamma, x) if residual else tuple(inputs)
    grad = torch.randn_like(x)
    results = {}
    for kernel in KERNELS:
        if residual:
            out = criss_cross_residual(*inputs, gamma, x, kernel=kernel)
        else:
            out = criss_cross_attention(*inputs, kernel=kernel)
        results[kernel] = (out, torch.autograd.grad(out, leaves, grad))
    (out, grads), (fused_out, fused_grads) = results["lines"], results["fused"]
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(fused_out, out, rtol=tol, atol=tol)
    for a, b in zip(fused_grads, grads, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_fused_backward_keeps_only_inputs_and_log_sum_exp():
    from src.bench.common import saved_tensor_bytes

    query, key, value = _qkv((6, 9), dtype=torch.float32, grad=True)
    kept = saved_tensor_bytes(lambda: criss_cross_attention(query, key, value, kernel="fused"))
    inputs = sum(t.numel() * t.element_size() for t in (query, key, value))
    assert kept == inputs + 2 * 6 * 9 * 4  # plus one fp32 log-sum-exp per position


@pytest.mark.parametrize("spatial", [(6, 9), (3, 4, 5)])
def test_fused_channels_last_equals_contiguous(spatial):
    fmt = torch.channels_last if len(spatial) == 2 else torch.channels_last_3d
    inputs = _qkv(spatial, batch=3, dtype=torch.float32, grad=True)
    inputs_cl = [t.detach().contiguous(memory_format=fmt).requires_grad_() for t in inputs]
    out = criss_cross_attention(*inputs)  # the lines path on contiguous inputs
    out_cl = criss_cross_attention(*inputs_cl, kernel="fused")
    assert out_cl.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(out_cl, out)
    grad = torch.randn_like(out)
    out.backward(grad)
    out_cl.backward(grad.contiguous(memory_format=fmt))
    for a, b in zip(inputs, inputs_cl):  # fp32: the two log-sum-exps differ in rounding,
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-4)  # seen up to 1.4e-5


def test_fused_non_contiguous_views_work():
    query, key, value = _qkv((7, 5))
    views = [t.transpose(2, 3) for t in (query, key, value)]  # (B, C, 5, 7), odd strides
    expected = criss_cross_attention(*[v.contiguous() for v in views])
    torch.testing.assert_close(criss_cross_attention(*views, kernel="fused"), expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("spatial", [(6, 9), (3, 4, 5)])
def test_fused_half_precision_close_to_the_lines_path(dtype, spatial):
    """Half inputs: output in their dtype, softmax and merge in fp32. The fused kernel keeps
    its energies in fp32 where the lines path rounds them to the input dtype, so the two
    differ by that rounding, well within the tolerance of half precision against fp32."""
    inputs32 = _qkv(spatial, key_channels=8, channels=16, dtype=torch.float32)
    inputs = [t.to(dtype).requires_grad_() for t in inputs32]
    out = criss_cross_attention(*inputs, kernel="fused")
    assert out.dtype == dtype
    lines = criss_cross_attention(*[t.detach() for t in inputs])
    ref = criss_cross_attention(*[t.to(dtype).float() for t in inputs32])
    tol = 3e-2 if dtype == torch.bfloat16 else 5e-3
    torch.testing.assert_close(out.float(), lines.float(), rtol=tol, atol=tol)
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol)
    out.float().square().sum().backward()
    assert all(t.grad.dtype == dtype and torch.isfinite(t.grad).all() for t in inputs)


def test_fused_module_under_autocast_bf16():
    torch.manual_seed(1)
    module = CrissCrossAttention(8, kernel="fused")
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.5)
    x = torch.randn(2, 8, 5, 6, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(x)
    with torch.no_grad():
        expected = module(x)
    torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-2)
    out.float().square().sum().backward()
    assert all(g is not None and torch.isfinite(g).all() for g in (x.grad, module.gamma.grad))


def test_bad_kernel_names_the_config_key():
    assert check_kernel("fused") == "fused" and KERNELS == ("lines", "fused")
    inputs = _qkv((3, 4))
    gamma, x = torch.ones(1, dtype=torch.float64), torch.zeros_like(inputs[2])
    for make in (
        lambda: check_kernel("flash"),
        lambda: criss_cross_attention(*inputs, kernel="flash"),
        lambda: criss_cross_residual(*inputs, gamma, x, kernel="flash"),
        lambda: CrissCrossAttention(8, kernel="flash"),
        lambda: CrissCrossAttention3d(8, kernel="flash"),
        lambda: RecurrentCrissCross(8, kernel="flash"),
        lambda: build_context("none", 8, kernel="flash"),
        lambda: CCNet(3, "resnet10t", attention_kernel="flash"),
    ):
        with pytest.raises(ValueError, match=f"^{re.escape(KERNEL_MESSAGE)}$"):
            make()
    with pytest.raises(ValueError, match="model.attention_kernel must be one of"):
        check_kernel(None)


@pytest.mark.parametrize("dims", [2, 3])
def test_modules_store_the_kernel_and_give_the_same_results(dims):
    torch.manual_seed(0)
    lines = build_context("rcca", 16, recurrence=2, dims=dims).double()
    fused = build_context("rcca", 16, recurrence=2, dims=dims, kernel="fused").double()
    assert lines.cca.kernel == "lines" and fused.cca.kernel == "fused"
    fused.load_state_dict(lines.state_dict())  # the kernel is no weight
    with torch.no_grad():
        for module in (lines, fused):
            module.cca.gamma.fill_(0.5)
    spatial = (5, 7) if dims == 2 else (3, 4, 6)
    x = torch.randn(2, 16, *spatial, dtype=torch.float64)
    torch.testing.assert_close(fused(x), lines(x), rtol=1e-12, atol=1e-12)


def test_ccnet_with_fused_kernel_gives_the_same_logits():
    torch.manual_seed(0)
    small = dict(backbone="resnet10t", channels=32, aux_channels=16)
    lines = CCNet(3, **small).eval()
    fused = CCNet(3, attention_kernel="fused", **small).eval()
    assert fused.head.context.cca.kernel == "fused"
    fused.load_state_dict(lines.state_dict())
    with torch.no_grad():
        for net in (lines, fused):
            net.head.context.cca.gamma.fill_(0.5)  # a fresh gamma of 0 would hide the op
        images = torch.randn(1, 3, 65, 97)
        torch.testing.assert_close(fused(images)["out"], lines(images)["out"])


def test_traced_fused_path_falls_back_to_lines():
    """Under torch.compile (and export) the fused path runs as the lines path."""
    torch._dynamo.reset()
    query, key, value = _qkv((5, 6), grad=True)
    compiled = torch.compile(
        lambda *t: criss_cross_attention(*t, kernel="fused"), backend="aot_eager", fullgraph=True
    )
    out = compiled(query, key, value)
    torch.testing.assert_close(out, criss_cross_attention(query, key, value).detach())
    out.sum().backward()
    assert all(t.grad is not None for t in (query, key, value))


@requires_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("spatial", [(6, 9), (17, 23), (3, 4, 5)])
def test_cuda_fused_uses_the_efficient_kernel_and_matches(spatial):
    inputs = _qkv(spatial, key_channels=8, channels=16, dtype=torch.float32, grad=True)
    gpu = [t.detach().cuda().requires_grad_() for t in inputs]
    assert attention._fused_backend(*gpu) is attention._attend_cuda
    out = criss_cross_attention(*inputs)
    out_gpu = criss_cross_attention(*gpu, kernel="fused")
    torch.testing.assert_close(out_gpu.cpu(), out, rtol=1e-4, atol=1e-4)
    lines = [attention._channels_last(t.detach()) for t in gpu]
    _, lse = attention._criss_cross_forward(*lines)
    _, fused_lse = attention._fused_forward(*lines)
    torch.testing.assert_close(fused_lse, lse, rtol=1e-4, atol=1e-4)
    grad = torch.randn_like(out)
    out.backward(grad)
    out_gpu.backward(grad.cuda())
    for a, b in zip(inputs, gpu):
        torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=1e-3, atol=1e-4)


@requires_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_cuda_fused_other_dtypes(dtype):
    inputs = _qkv((17, 23), key_channels=8, channels=16, dtype=torch.float64)
    ref = criss_cross_attention(*inputs)
    gpu = [t.cuda().to(dtype).requires_grad_() for t in inputs]
    out = criss_cross_attention(*gpu, kernel="fused")
    assert out.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 3e-2
    torch.testing.assert_close(out.double().cpu(), ref, rtol=tol, atol=tol)
    out.float().sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in gpu)
