"""Criss-cross attention: the op against the formula, its gradients, layouts, dtypes, modules."""

from __future__ import annotations

import io
import itertools
import json
import warnings

import onnxruntime as ort  # dev dependencies (pyproject.toml): missing is a failure, not a skip
import pytest
import torch
from attention_inputs import random_qkv as _qkv

from src.bench.common import saved_tensor_bytes
from src.models.attention import (
    CrissCrossAttention,
    CrissCrossAttention3d,
    NonLocalBlock,
    criss_cross_attention,
    criss_cross_residual,
)

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from threads, and on a busy machine each parallel op waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cross(position, spatial):
    """The criss-cross set of ``position``: every position sharing all but one coordinate."""
    cross = set()
    for axis, length in enumerate(spatial):
        for i in range(length):
            cross.add(position[:axis] + (i,) + position[axis + 1 :])
    return sorted(cross)


def _slow_cca(query, key, value):
    """Per-position loop straight from the formula: softmax of q_u . k_i over u's cross."""
    out = torch.zeros_like(value)
    spatial = tuple(query.shape[2:])
    for b in range(query.shape[0]):
        for u in itertools.product(*[range(n) for n in spatial]):
            cross = _cross(u, spatial)
            energy = torch.stack(
                [query[(b, slice(None), *u)] @ key[(b, slice(None), *i)] for i in cross]
            )
            weights = torch.softmax(energy, dim=0)
            out[(b, slice(None), *u)] = sum(
                w * value[(b, slice(None), *i)] for w, i in zip(weights, cross)
            )
    return out


@pytest.mark.parametrize(
    "spatial", [(5, 7), (3, 4, 5), (1, 4), (4, 1), (1, 4, 5), (3, 1, 5), (3, 4, 1)]
)
def test_op_matches_per_position_loop(spatial):
    query, key, value = _qkv(spatial)
    out = criss_cross_attention(query, key, value)
    assert out.shape == value.shape and out.dtype == value.dtype
    torch.testing.assert_close(out, _slow_cca(query, key, value), rtol=1e-12, atol=1e-12)


def test_op_is_stable_for_large_energies():
    query, key, value = _qkv((4, 6))
    query = query * 200.0  # energies in the thousands: exp would overflow without a shift
    out = criss_cross_attention(query, key, value)
    torch.testing.assert_close(out, _slow_cca(query, key, value), rtol=1e-10, atol=1e-10)


def test_cross_sizes_count_centre_once():
    # With all energies equal, each position weighs its cross uniformly: 1 / (H+W-1) in 2D.
    query = torch.zeros(1, 2, 5, 7, dtype=torch.float64)
    value = torch.zeros(1, 1, 5, 7, dtype=torch.float64)
    value[0, 0, 2, 3] = 1.0
    out = criss_cross_attention(query, query, value)
    assert out[0, 0, 2, 3].item() == pytest.approx(1 / (5 + 7 - 1))
    query3 = torch.zeros(1, 2, 3, 4, 5, dtype=torch.float64)
    value3 = torch.zeros(1, 1, 3, 4, 5, dtype=torch.float64)
    value3[0, 0, 1, 2, 3] = 1.0
    out3 = criss_cross_attention(query3, query3, value3)
    assert out3[0, 0, 1, 2, 3].item() == pytest.approx(1 / (3 + 4 + 5 - 2))


@pytest.mark.parametrize("spatial", [(3, 4), (2, 3, 4)])
def test_gradcheck(spatial):
    inputs = _qkv(spatial, key_channels=2, channels=3, grad=True)
    assert torch.autograd.gradcheck(criss_cross_attention, inputs)


@pytest.mark.parametrize("spatial", [(5, 7), (3, 4, 5)])
def test_autograd_path_matches_no_grad_path(spatial):
    inputs = _qkv(spatial, grad=True)
    out = criss_cross_attention(*inputs)
    with torch.no_grad():
        torch.testing.assert_close(out, criss_cross_attention(*inputs))


def test_backward_keeps_only_inputs_and_log_sum_exp():
    query, key, value = _qkv((6, 9), batch=2, dtype=torch.float32, grad=True)
    kept = saved_tensor_bytes(lambda: criss_cross_attention(query, key, value))
    inputs = sum(t.numel() * t.element_size() for t in (query, key, value))
    assert kept == inputs + 2 * 6 * 9 * 4  # plus one fp32 log-sum-exp per position


@pytest.mark.parametrize("spatial", [(3, 4), (2, 3, 4)])
def test_residual_form_matches_and_gradchecks(spatial):
    query, key, value = _qkv(spatial, key_channels=2, channels=3, grad=True)
    x = torch.randn_like(value).requires_grad_()
    gamma = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    out = criss_cross_residual(query, key, value, gamma, x)
    torch.testing.assert_close(out, x + gamma * criss_cross_attention(query, key, value))
    assert torch.autograd.gradcheck(criss_cross_residual, (query, key, value, gamma, x))


def test_module_keeps_projections_not_its_output():
    # Saved: x (shared by the three convs), the conv weights, q, k, v, the log-sum-exp and
    # gamma; no copy of the attention output (gamma's gradient is fused into the op).
    module = CrissCrossAttention(16)
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(2, 16, 6, 9).contiguous(memory_format=fmt).requires_grad_()
        weights = sum(c.weight.numel() for c in (module.query, module.key, module.value))
        projections = 2 * 6 * 9 * (2 + 2 + 16)
        expected = 4 * (x.numel() + weights + projections + 2 * 6 * 9 + 1)
        assert saved_tensor_bytes(lambda x=x: module(x)) == expected
        assert module(x).is_contiguous(memory_format=fmt)


def _receptive_field(module, spatial, passes):
    """Positions whose input changes the output at the centre position after ``passes``."""
    torch.manual_seed(0)
    with torch.no_grad():
        module.gamma.fill_(1.0)
    x = torch.randn(1, 8, *spatial, dtype=torch.float64, requires_grad=True)
    out = x
    for _ in range(passes):
        out = module(out)
    centre = tuple(n // 2 for n in spatial)
    out[(0, slice(None), *centre)].sum().backward()
    return x.grad.abs().sum(1)[0] > 0, centre


def test_one_pass_reaches_the_cross_two_passes_everything():
    module = CrissCrossAttention(8).double()
    reached, (h, w) = _receptive_field(module, (5, 7), passes=1)
    cross = torch.zeros(5, 7, dtype=torch.bool)
    cross[h, :] = True
    cross[:, w] = True
    assert torch.equal(reached, cross)
    reached, _ = _receptive_field(module, (5, 7), passes=2)
    assert reached.all()


def test_3d_passes_reach_lines_then_planes_then_everything():
    module = CrissCrossAttention3d(8).double()
    reached, (t, h, w) = _receptive_field(module, (3, 4, 5), passes=1)
    lines = torch.zeros(3, 4, 5, dtype=torch.bool)
    lines[:, h, w] = lines[t, :, w] = lines[t, h, :] = True
    assert torch.equal(reached, lines)
    reached, _ = _receptive_field(module, (3, 4, 5), passes=2)
    planes = torch.zeros(3, 4, 5, dtype=torch.bool)
    planes[t] = planes[:, h] = planes[:, :, w] = True
    assert torch.equal(reached, planes)
    reached, _ = _receptive_field(module, (3, 4, 5), passes=3)
    assert reached.all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("spatial", [(6, 9), (3, 4, 5)])
def test_half_precision_close_to_fp32(dtype, spatial):
    inputs32 = _qkv(spatial, key_channels=8, channels=16, dtype=torch.float32)
    inputs = [t.to(dtype).requires_grad_() for t in inputs32]
    out = criss_cross_attention(*inputs)
    assert out.dtype == dtype
    ref = criss_cross_attention(*[t.to(dtype).float() for t in inputs32])
    tol = 3e-2 if dtype == torch.bfloat16 else 5e-3
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol)
    out.float().square().sum().backward()
    assert all(t.grad.dtype == dtype and torch.isfinite(t.grad).all() for t in inputs)


def test_module_under_autocast_bf16():
    # Under autocast the projections are bf16 while x and gamma stay fp32.
    module = _randomised(CrissCrossAttention(8)).train()
    x = torch.randn(2, 8, 5, 6, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(x)
    with torch.no_grad():
        expected = module(x)
    # bf16 keeps 8 significant bits (relative rounding 2**-9 ≈ 0.002 per stored value); the
    # projections, energies and weights are each rounded once. Measured on this input: at
    # most 0.0074 absolute, i.e. |error| <= 0.0047 * (1 + |expected|), on outputs up to ~4
    # whose attention term reaches ~1.2. 1e-2 leaves a 2x margin (5e-2 was 10x) and stays
    # far below the attention term it checks.
    torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-2)
    out.float().square().sum().backward()
    grads = [x.grad, module.gamma.grad, module.value.weight.grad, module.query.weight.grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("spatial", [(6, 9), (3, 4, 5)])
def test_channels_last_equals_contiguous(spatial):
    fmt = torch.channels_last if len(spatial) == 2 else torch.channels_last_3d
    inputs = _qkv(spatial, batch=3, dtype=torch.float32, grad=True)
    inputs_cl = [t.detach().contiguous(memory_format=fmt).requires_grad_() for t in inputs]
    out, out_cl = criss_cross_attention(*inputs), criss_cross_attention(*inputs_cl)
    assert out.is_contiguous() and out_cl.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(out_cl, out)
    grad = torch.randn_like(out)
    out.backward(grad)
    out_cl.backward(grad.contiguous(memory_format=fmt))
    for a, b in zip(inputs, inputs_cl):
        torch.testing.assert_close(b.grad, a.grad)


def test_non_contiguous_views_work():
    query, key, value = _qkv((7, 5), batch=2)
    views = [t.transpose(2, 3) for t in (query, key, value)]  # (B, C, 5, 7), odd strides
    expected = criss_cross_attention(*[v.contiguous() for v in views])
    torch.testing.assert_close(criss_cross_attention(*views), expected)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="4D or 5D"):
        criss_cross_attention(*[torch.zeros(2, 3, 4)] * 3)
    with pytest.raises(ValueError, match="mismatch"):
        criss_cross_attention(
            torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 4, 3)
        )


def test_module_shapes_and_identity_at_init():
    x = torch.randn(2, 16, 5, 6)
    cca = CrissCrossAttention(16)
    assert cca.query.out_channels == cca.key.out_channels == 2
    assert cca.value.out_channels == 16 and cca.gamma.item() == 0.0
    torch.testing.assert_close(cca(x), x)  # gamma = 0: identity, as in the paper
    assert CrissCrossAttention(4).query.out_channels == 1  # C/8, at least one channel
    x3 = torch.randn(1, 16, 3, 4, 5)
    assert CrissCrossAttention3d(16)(x3).shape == x3.shape
    nl = NonLocalBlock(16)
    assert nl.theta.out_channels == nl.phi.out_channels == nl.g.out_channels == 8
    torch.testing.assert_close(nl(x), x)  # zero-initialised BN scale


def test_non_local_matches_formula():
    torch.manual_seed(0)
    block = NonLocalBlock(6).double().eval()
    with torch.no_grad():
        block.norm.weight.fill_(1.0)
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64)
    theta, phi, g = (conv(x).flatten(2) for conv in (block.theta, block.phi, block.g))
    expected = torch.empty_like(g)
    for b in range(2):
        for i in range(12):  # softmax over all positions j of theta_i . phi_j, no scaling
            weights = torch.softmax(theta[b, :, i] @ phi[b], dim=0)
            expected[b, :, i] = g[b] @ weights
    y = expected.view(2, 3, 3, 4)
    torch.testing.assert_close(block(x), x + block.norm(block.out(y)))


def test_space_time_non_local_attends_over_the_clip_and_matches_2d_on_one_frame():
    """NonLocalBlock(dims=3) takes clips (1x1x1 convs, BatchNorm3d) and attends over all T*H*W
    positions; a one-frame clip gives the 2D block's output with the same weights."""
    torch.manual_seed(0)
    block2d = _randomised(NonLocalBlock(6)).double()
    block3d = NonLocalBlock(6, dims=3).double().eval()
    assert isinstance(block3d.theta, torch.nn.Conv3d)
    assert isinstance(block3d.norm, torch.nn.BatchNorm3d)
    state = {k: v.view(block3d.state_dict()[k].shape) for k, v in block2d.state_dict().items()}
    block3d.load_state_dict(state)
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(block3d(x.unsqueeze(2)).squeeze(2), block2d(x))
    clip = torch.randn(1, 6, 2, 3, 4, dtype=torch.float64)
    changed = clip.clone()
    changed[:, :, 0, 0, 0] += 1.0  # one position of frame 0 moves every output of frame 1
    with torch.no_grad():
        delta = (block3d(changed) - block3d(clip))[:, :, 1].abs().amax(dim=1)
    assert (delta > 0).all()
    with pytest.raises(ValueError, match="dims"):
        NonLocalBlock(6, dims=1)


def _randomised(module):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.5)
    return module.eval()


@pytest.mark.parametrize(
    "cls, shape",
    [
        (CrissCrossAttention, (2, 8, 5, 6)),
        (CrissCrossAttention3d, (1, 8, 3, 4, 5)),
        (NonLocalBlock, (2, 8, 5, 6)),
    ],
)
def test_state_dict_round_trip(cls, shape):
    module = _randomised(cls(8))
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    fresh = cls(8).eval()
    x = torch.randn(*shape)
    assert not torch.allclose(fresh(x), module(x))
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(fresh(x), module(x))


def _onnx_run(module, x, **export_kwargs):
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (x,), buffer, input_names=["x"], output_names=["y"], **export_kwargs
        )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"x": x.numpy()})[0])


def test_onnx_export_matches_onnxruntime():
    module = _randomised(CrissCrossAttention(8))
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        expected = module(x)
    torch.testing.assert_close(_onnx_run(module, x), expected, rtol=1e-4, atol=1e-5)


def test_onnx_export_3d_torchscript_exporter():
    module = _randomised(CrissCrossAttention3d(8))
    x = torch.randn(1, 8, 3, 4, 5)
    with torch.no_grad():
        expected = module(x)
    got = _onnx_run(module, x, dynamo=False)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@requires_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("spatial", [(6, 9), (3, 4, 5)])
def test_cuda_matches_cpu(spatial):
    inputs = _qkv(spatial, dtype=torch.float32, grad=True)
    inputs_gpu = [t.detach().cuda().requires_grad_() for t in inputs]
    out, out_gpu = criss_cross_attention(*inputs), criss_cross_attention(*inputs_gpu)
    assert out_gpu.device.type == "cuda"
    torch.testing.assert_close(out_gpu.cpu(), out, rtol=1e-4, atol=1e-4)
    grad = torch.randn_like(out)
    out.backward(grad)
    out_gpu.backward(grad.cuda())
    for a, b in zip(inputs, inputs_gpu):
        torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=1e-3, atol=1e-4)


@requires_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_precision(dtype):
    inputs = _qkv((17, 23), key_channels=8, channels=16, dtype=torch.float32)
    ref = criss_cross_attention(*inputs)
    out = criss_cross_attention(*[t.cuda().to(dtype).requires_grad_() for t in inputs])
    assert out.dtype == dtype
    torch.testing.assert_close(out.float().cpu(), ref, rtol=3e-2, atol=3e-2)
    out.float().sum().backward()


def test_benchmark_quick_writes_positive_fields(tmp_path, capsys):
    from src.bench.attention import main

    payload = main(["--quick", "--repeats", "1", "--warmup", "0", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "attention.json").read_text())
    assert saved["op"] == payload["op"] and len(saved["op"]) == 2 * 2  # 2 sizes x 2 layouts
    for row in saved["op"]:
        for field in ("naive_ms", "ours_ms", "speedup", "naive_mib", "ours_mib", "bytes_ratio"):
            assert row[field] > 0, field
        assert row["naive_gflops"] == pytest.approx(row["ours_gflops"])
        assert row["max_abs_err"] < 1e-4
    assert {r["layout"] for r in saved["op"]} == {"contiguous", "channels_last"}
    rcca, nonlocal_row = saved["rcca_vs_nonlocal"]
    for field in ("gflops", "saved_mib", "fwd_bwd_ms"):
        assert rcca[field] > 0 and nonlocal_row[field] > 0
    for field in ("flops_ratio", "bytes_reduction", "speedup"):
        assert rcca[field] > 0
    assert set(saved["targets_met"]) >= {"op_bytes_ratio", "rcca_flops_ratio", "rcca_speedup"}
    # part 3 (default --dims both): 3D RCCA R=2 and R=3 against a space-time non-local block
    assert saved["clip"] == [3, 6, 8] and saved["memory_budget_gib"] > 0
    rows = {row["module"]: row for row in saved["rcca_vs_nonlocal_3d"]}
    assert list(rows) == ["3d rcca R=2", "3d rcca R=3", "3d nonlocal"]
    for row in rows.values():
        for field in ("gflops", "saved_mib", "extra_mib", "fwd_bwd_ms"):
            assert row[field] > 0, (row["module"], field)
        assert row["note"] == ""  # a tiny clip: the non-local fits any budget and is timed
    # each pass costs the same: R=3 is 1.5x R=2's FLOPs
    assert rows["3d rcca R=3"]["gflops"] == pytest.approx(1.5 * rows["3d rcca R=2"]["gflops"])
    for name in ("3d rcca R=2", "3d rcca R=3"):
        for field in ("flops_ratio", "bytes_reduction", "speedup"):
            assert rows[name][field] > 0
    out = capsys.readouterr().out
    assert "naive_ms" in out and "3d nonlocal" in out


def test_benchmark_3d_only_skips_a_non_local_over_budget(tmp_path, capsys):
    """``--dims 3`` runs part 3 alone; a non-local block whose estimated peak exceeds the
    memory budget is not run: its FLOPs (meta tensors) and bytes (formula) are still given."""
    from src.bench.attention import main

    args = ["--quick", "--dims", "3", "--repeats", "1", "--warmup", "0", "--out", str(tmp_path)]
    payload = main([*args, "--recurrence-3d", "2", "--memory-budget-gb", "0"])
    assert "op" not in payload and "rcca_vs_nonlocal" not in payload
    rcca, nonlocal_row = payload["rcca_vs_nonlocal_3d"]
    assert rcca["module"] == "3d rcca R=2" and rcca["fwd_bwd_ms"] > 0
    assert nonlocal_row["fwd_bwd_ms"] is None and nonlocal_row["note"].startswith("not timed")
    assert nonlocal_row["gflops"] > 0 and nonlocal_row["saved_mib"] > 0
    assert "speedup" not in rcca and rcca["bytes_reduction"] > 0
    assert "not timed: needs" in capsys.readouterr().out


@pytest.mark.parametrize("shape", [(2, 8, 5, 6), (1, 8, 3, 4, 5)])
def test_benchmark_non_local_bytes_formula_matches_the_measurement(shape):
    """What the 3D bench reports for a non-local block too big to run equals what
    ``saved_tensor_bytes`` measures on one that runs."""
    from src.bench.attention import nonlocal_peak_bytes, nonlocal_saved_bytes

    block = NonLocalBlock(8, dims=len(shape) - 2)
    x = torch.randn(*shape, requires_grad=True)
    measured = saved_tensor_bytes(lambda: block(x))
    assert nonlocal_saved_bytes(block, shape, torch.float32) == measured
    n = torch.Size(shape[2:]).numel()
    assert nonlocal_peak_bytes(block, shape, torch.float32) == measured + 2 * shape[0] * n * n * 4


@pytest.mark.parametrize("fullgraph", [False, True])
@pytest.mark.parametrize("spatial", [(5, 6), (3, 5, 6)])
def test_compiled_op_trains_with_the_eager_gradients(spatial, fullgraph):
    """Under torch.compile the op's traced path runs through autograd (training a compiled
    model): it must not modify a tensor autograd keeps (log_softmax's output), and its
    gradients equal the eager op's. ``aot_eager`` is dynamo + AOTAutograd, where that failed."""
    torch._dynamo.reset()
    q, k, v = _qkv(spatial, grad=True)
    weights = torch.randn(v.shape, dtype=v.dtype, generator=torch.Generator().manual_seed(1))
    expected = torch.autograd.grad((criss_cross_attention(q, k, v) * weights).sum(), (q, k, v))
    compiled = torch.compile(criss_cross_attention, backend="aot_eager", fullgraph=fullgraph)
    out = compiled(q, k, v)
    torch.testing.assert_close(out, criss_cross_attention(q, k, v).detach())
    got = torch.autograd.grad((out * weights).sum(), (q, k, v))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
