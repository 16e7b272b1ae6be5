"""``python -m src.export``: an ONNX graph with dynamic batch/height/width whose full-resolution
logits match PyTorch's whole-image inference in onnxruntime, for RCCA and non-local heads."""

from __future__ import annotations

import json

import numpy as np
import onnx  # onnx, onnxruntime: dev dependencies (pyproject.toml); missing fails, not skips
import onnxruntime as ort
import pytest
import torch
from prediction_helpers import MODEL, TinyCityscapes, compose_config, run_cli, tiny_cityscapes

from src.app.checkpoint import load_checkpoint, net_from_checkpoint
from src.core.inference import predict_logits
from src.data.cityscapes import CLASS_NAMES, PALETTE
from src.data.transforms import eval_transform
from src.export import check_shapes, compare_onnx, export, export_onnx, onnx_metadata, read_metadata
from src.models.ccnet import CCNet

# Two sizes and batches: the traced one would pass even with static axes, the other not.
SHAPES = [(1, 3, 64, 64), (2, 3, 75, 50)]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyCityscapes:
    return tiny_cityscapes(tmp_path_factory.getbasetemp() / "tiny_cityscapes")


@pytest.fixture
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _onnx_logits(path, images: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["logits"], {"image": images.numpy()})[0])


def test_export_cli_matches_pytorch_inference_at_two_sizes(tiny, tmp_path, single_thread):
    path, run_dir = tmp_path / "model.onnx", tmp_path / "run"
    run_cli(
        "export",
        *tiny.overrides(),
        f"ckpt_path={tiny.ckpt}",
        f"output={path}",
        "input_size=[64,64]",
        f"hydra.run.dir={run_dir}",
    )
    results = json.loads((run_dir / "results.json").read_text())
    assert results["exporter"].startswith("torchscript")
    assert [c["shape"] for c in results["checks"]] == check_shapes([64, 64])
    assert all(c["max_abs_diff"] < 1e-3 for c in results["checks"])

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    for value in (model.graph.input[0], model.graph.output[0]):
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        assert dims[0] == "batch" and dims[2:] == ["height", "width"], dims
    assert model.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 19

    # Metadata, JSON-encoded, the same through onnx and through onnxruntime.
    props = {prop.key: json.loads(prop.value) for prop in model.metadata_props}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    custom = session.get_modelmeta().custom_metadata_map
    assert {key: json.loads(value) for key, value in custom.items()} == props
    assert props["num_classes"] == 19 and props["class_names"] == list(CLASS_NAMES)
    assert props["palette"] == [list(colour) for colour in PALETTE]
    norm = props["normalization"]
    assert (norm["channel_order"], norm["scale"], norm["pixel_divisor"]) == ("RGB", "0-1", 255)
    assert norm["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert norm["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert props["input"]["name"] == "image" and "whole input" in props["input"]["size"]
    assert props["output"]["shape"] == ["batch", 19, "height", "width"]
    assert sorted(props) == results["metadata_props"]

    net = net_from_checkpoint(compose_config("export", MODEL).model, load_checkpoint(tiny.ckpt))
    generator = torch.Generator().manual_seed(1)
    for shape in SHAPES:
        images = torch.randn(*shape, generator=generator)
        expected = predict_logits(net, images, mode="whole")
        got = _onnx_logits(path, images)
        assert got.shape == (shape[0], 19, *shape[2:])
        assert (got - expected).abs().max().item() < 1e-3, shape
        assert (got.argmax(1) == expected.argmax(1)).float().mean() > 0.999


def _set_attention_scale(net: CCNet, value: float) -> None:
    """Fill the parameter that scales the attention's residual branch: RCCA's ``gamma``,
    the non-local block's output BatchNorm weight (both zero at init)."""
    names = ("head.context.cca.gamma", "head.context.norm.weight")
    params = [p for n, p in net.named_parameters() if n in names]
    assert len(params) == 1
    with torch.no_grad():
        params[0].fill_(value)


@pytest.mark.parametrize("context", ["rcca", "nonlocal"])
def test_exported_attention_is_size_independent(context, tmp_path, single_thread):
    torch.manual_seed(0)
    net = CCNet(5, "resnet10t", context=context, channels=16, aux_channels=16).eval()
    _set_attention_scale(net, 1.0)  # 0 at init would hide the attention from the check
    path = export_onnx(net, tmp_path / f"{context}.onnx", input_size=(48, 40))
    assert read_metadata(path)["num_classes"] == 5  # the graph's own, without a config
    rows = compare_onnx(path, net, [(1, 3, 48, 40), (2, 3, 72, 57), (1, 3, 33, 96)])
    assert [r["shape"][2:] for r in rows] == [[48, 40], [72, 57], [33, 96]]
    assert max(r["max_abs_diff"] for r in rows) < 1e-3
    # gamma matters: without the attention the logits of the large input differ.
    images = torch.randn(1, 3, 72, 57)
    with_attention = predict_logits(net, images)
    _set_attention_scale(net, 0.0)
    without = predict_logits(net, images)
    assert (with_attention - without).abs().max() > 1e-3
    assert np.isfinite(_onnx_logits(path, images).numpy()).all()


def test_metadata_normalisation_reproduces_the_transform():
    """A consumer following the file's ``normalization`` gets what predict and eval feed."""
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    norm = onnx_metadata(["a", "b"], [[0, 0, 0], [9, 9, 9], [1, 2, 3]], mean, std)["normalization"]
    rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    theirs = (rgb / norm["pixel_divisor"] - np.array(norm["mean"])) / np.array(norm["std"])
    ours = eval_transform(mean, std)(image=rgb)["image"].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    with pytest.raises(ValueError, match="palette colours for 2 classes"):
        onnx_metadata(["a", "b"], [[0, 0, 0]], mean, std)


@pytest.mark.parametrize("key", ["ckpt_path", "output"])
def test_missing_setting_names_its_key(tiny, tmp_path, key):
    values = {"ckpt_path": tiny.ckpt, "output": tmp_path / "m.onnx"}
    del values[key]
    overrides = [*tiny.overrides(), *(f"{k}={v}" for k, v in values.items())]
    with pytest.raises(ValueError, match=f"^{key} is required"):
        export(compose_config("export", overrides))


def test_checkpoint_for_another_model_is_a_clear_error(tiny):
    cfg = compose_config("export", ["model.backbone=resnet10t", "model.channels=8"])
    with pytest.raises(ValueError, match="do not fit the model config"):
        net_from_checkpoint(cfg.model, load_checkpoint(tiny.ckpt))
