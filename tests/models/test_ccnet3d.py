"""CCNet3D: a 2D CCNet's weights carry over exactly (T=1 gives the 2D logits), the head works
on the clip's labelled frame, the attention reaches other frames, 2D checkpoints initialise it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from src.models import CCNet, CCNet3D
from src.models.context import RecurrentCrissCross

TINY = dict(backbone="resnet10t", channels=32, aux_channels=16)


def randomised(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-zero attention scales and random BN statistics, so that every tensor matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("gamma"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith("running_mean"):
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=generator))
            elif name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
    return net


@pytest.fixture(scope="module")
def net2d() -> CCNet:
    torch.manual_seed(0)
    return randomised(CCNet(5, **TINY)).double().eval()


def test_one_frame_clips_give_the_2d_logits_exactly(net2d: CCNet) -> None:
    net3d = CCNet3D.from_2d(net2d)
    assert not net3d.training
    images = torch.randn(2, 3, 40, 56, dtype=torch.float64)
    expected = net2d(images)["out"]
    assert expected.abs().max() > 0.01
    torch.testing.assert_close(net3d(images[:, None])["out"], expected, rtol=1e-12, atol=1e-12)


def test_every_2d_tensor_carries_over(net2d: CCNet) -> None:
    net3d = CCNet3D.from_2d(net2d)
    state2d, state3d = net2d.state_dict(), net3d.state_dict()
    assert state2d.keys() == state3d.keys()
    query = "head.context.cca.query.weight"
    assert state3d[query].shape == (*state2d[query].shape[:2], 1, 1, 1)
    for name, tensor in state2d.items():
        assert torch.equal(state3d[name].reshape(tensor.shape), tensor), name


def test_the_head_classifies_the_labelled_frame(net2d: CCNet) -> None:
    """With the attention scale at 0 the context is the identity, so a clip's logits are the
    2D logits of its labelled frame: the last one, or the centre one."""
    flat = CCNet(5, **TINY).double().eval()
    flat.load_state_dict({**net2d.state_dict(), "head.context.cca.gamma": torch.zeros(1)})
    clip = torch.randn(1, 3, 3, 40, 56, dtype=torch.float64)
    for target, index in (("last", 2), ("centre", 1)):
        net3d = CCNet3D.from_2d(flat, target_frame=target)
        expected = flat(clip[:, index])["out"]
        torch.testing.assert_close(net3d(clip)["out"], expected, rtol=1e-12, atol=1e-12)


def test_training_outputs_are_for_the_labelled_frame(net2d: CCNet) -> None:
    net3d = CCNet3D(5, embed_dim=4, **TINY).train()
    outputs = net3d(torch.randn(2, 4, 3, 40, 56))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "out": (2, 5, 5, 7),
        "aux": (2, 5, 5, 7),
        "embedding": (2, 4, 5, 7),
    }


@pytest.mark.parametrize("recurrence", [1, 2, 3])
def test_each_pass_reaches_one_more_level_of_the_clip(recurrence: int) -> None:
    """From (t=2, y=1, x=1) of a 3×4×4 clip: R=1 reaches its three lines, R=2 the three planes
    through it, R=3 every position (the docs' statement about R in 3D)."""
    torch.manual_seed(recurrence)
    context = RecurrentCrissCross(8, recurrence, dims=3).double()
    nn.init.constant_(context.cca.gamma, 1.0)
    volume = torch.randn(1, 8, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    context(volume)[0, :, 2, 1, 1].sum().backward()
    reached = volume.grad[0].abs().sum(0) > 0
    t, y, x = torch.meshgrid(torch.arange(3), torch.arange(4), torch.arange(4), indexing="ij")
    on_lines = ((y == 1) & (x == 1)) | ((t == 2) & (x == 1)) | ((t == 2) & (y == 1))
    on_planes = (t == 2) | (y == 1) | (x == 1)
    expected = {1: on_lines, 2: on_planes, 3: torch.ones_like(on_lines)}[recurrence]
    assert torch.equal(reached, expected)


def test_init_from_takes_a_2d_checkpoint(tmp_path: Path, net2d: CCNet) -> None:
    """This project's 2D checkpoint (Lightning layout) initialises the 3D model: all tensors."""
    source = CCNet(5, **TINY)
    source.load_state_dict(net2d.state_dict())
    path = tmp_path / "ccnet2d.ckpt"
    torch.save(
        {
            "pytorch-lightning_version": "2",
            "state_dict": {f"net.{k}": v.float() for k, v in source.state_dict().items()},
            "hyper_parameters": {"num_classes": 5, "model_config": {**TINY}},
        },
        path,
    )
    net3d = CCNet3D(5, init_from=str(path), **TINY)
    for name, tensor in source.state_dict().items():
        assert torch.equal(net3d.state_dict()[name].reshape(tensor.shape), tensor.float()), name
    fresh = CCNet3D(3, init_from=str(path), **TINY)  # other classes: the classifiers start fresh
    assert fresh.head.classifier.out_channels == 3


def test_bad_inputs_are_clear_errors(net2d: CCNet) -> None:
    with pytest.raises(ValueError, match=r"CCNet3D takes clips \(B, T, 3, H, W\)"):
        CCNet3D.from_2d(net2d)(torch.randn(1, 3, 32, 32, dtype=torch.float64))
    with pytest.raises(ValueError, match="model.target_frame must be one of"):
        CCNet3D(5, target_frame="first", **TINY)
    with pytest.raises(TypeError, match="from_2d takes a 2D CCNet"):
        CCNet3D.from_2d(CCNet3D(5, **TINY))
    with pytest.raises(ValueError, match="nonlocal is a 2D block"):
        CCNet3D(5, context="nonlocal", **TINY)
