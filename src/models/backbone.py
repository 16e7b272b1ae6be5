"""Dilated timm backbone at output stride 8: stage 3 (aux head) and stage 4 (context head).

Weights come from nowhere (``pretrained=False``), timm's own source (``True``, needs a network;
a failed download is one line saying how to go on offline), or a local ``.pth`` /
``.safetensors`` file, checked against the architecture before and after timm loads it, because
timm loads ``features_only`` models non-strictly. :func:`check_dilated_backbone` tells at start,
on the meta device, whether a timm model can serve at all.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import timm
import torch
from timm.models import get_pretrained_cfg_value, load_state_dict
from torch import nn

OUTPUT_STRIDE = 8
OUT_INDICES = (3, 4)
DILATABLE_FAMILIES = (
    "ResNet and its variants (resnet*, also with the c/d/s/t stems as in resnet101c; resnext*, "
    "seresnet*, seresnext*, ecaresnet*, skresnet*, resnest*, res2net*, resnetv2*), regnet*, "
    "efficientnet*, mobilenetv3*, xception*, cspresnet*, repvgg*"
)
"""timm families checked to build dilated at output stride 8 with stage 3 and 4 features."""


class PretrainedDownloadError(OSError):
    """timm's pretrained weights could not be downloaded (offline, no access, no such file)."""


def _build(name: str, output_stride: int, out_indices: Sequence[int], **kwargs) -> nn.Module:
    """``timm.create_model`` as a dilated feature extractor."""
    return timm.create_model(
        name,
        features_only=True,
        output_stride=output_stride,
        out_indices=tuple(out_indices),
        **kwargs,
    )


def check_backbone_name(name: object) -> str:
    """``name`` if timm knows it; else an error naming ``model.backbone`` with close names."""
    if not isinstance(name, str) or not timm.is_model(name):
        close = difflib.get_close_matches(str(name), timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"model.backbone={name!r} is not a timm model name{hint}")
    return name


def _not_dilatable(name: str, output_stride: int, out_indices: Sequence[int], why: str) -> str:
    return (
        f"model.backbone={name!r} cannot run dilated at output stride {output_stride} with "
        f"out_indices {tuple(out_indices)} ({why}); timm families that can: {DILATABLE_FAMILIES}"
    )


def _skeleton(name: str, output_stride: int, out_indices: Sequence[int]) -> nn.Module:
    """The backbone on the meta device: validates the name and the architecture, costs nothing."""
    check_backbone_name(name)
    try:
        with torch.device("meta"):
            model = _build(name, output_stride, out_indices)
    except (TypeError, ValueError, IndexError, AssertionError, RuntimeError) as err:
        why = f"timm: {type(err).__name__}" + (f": {err}" if str(err) else "")
        raise ValueError(_not_dilatable(name, output_stride, out_indices, why)) from err
    reductions = model.feature_info.reduction()
    if any(r != output_stride for r in reductions):
        why = f"its features come at strides {reductions}"
        raise ValueError(_not_dilatable(name, output_stride, out_indices, why))
    return model


def check_dilated_backbone(
    name: object, output_stride: int = OUTPUT_STRIDE, out_indices: Sequence[int] = OUT_INDICES
) -> str:
    """``name`` if timm builds it as a dilated feature extractor (output stride 8, stage 3 and
    4 features, as CCNet needs); else one line naming ``model.backbone`` and the families that
    can. Builds on the meta device: a fraction of a second, no memory, no download."""
    _skeleton(name, output_stride, out_indices)  # checks the name first
    return str(name)


def _download_reason(err: BaseException) -> str:
    """The first sentence of a download error, with its type (hub messages run long)."""
    text = str(err).strip().split("\n")[0]
    text = text.split(". ")[0].rstrip(".")
    reason = f"{type(err).__name__}: {text}" if text else type(err).__name__
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        reason += "; HF_HUB_OFFLINE is set"
    return reason


@contextmanager
def timm_download(name: str) -> Iterator[None]:
    """Turn a failed download of timm's weights for ``name`` into a
    :class:`PretrainedDownloadError` whose one line says how to go on (no weights, or a local
    file, and where to get one)."""
    try:
        yield
    except OSError as err:  # hub, requests and urllib errors are all OSErrors
        hub_id = get_pretrained_cfg_value(name, "hf_hub_id")
        source = f", e.g. model.safetensors of https://huggingface.co/{hub_id}" if hub_id else ""
        raise PretrainedDownloadError(
            f"model.pretrained=true needs timm's weights for {name} from the internet, and they "
            f"could not be downloaded ({_download_reason(err)}): set model.pretrained=false, or "
            f"model.pretrained=/path/to/{name}.safetensors (a local file{source})"
        ) from err


def _examples(items: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return shown + (", ..." if len(items) > n else "")


def check_weights(
    expected: Mapping[str, torch.Tensor],
    loaded: Mapping[str, torch.Tensor],
    name: str,
    path: Path,
    ignore_prefixes: Sequence[str] = (),
) -> None:
    """Raise a ValueError unless ``loaded`` holds exactly ``expected``'s keys with its shapes.

    Keys under ``ignore_prefixes`` (the classifier a features-only model drops) may be extra;
    BatchNorm's ``num_batches_tracked`` counters may be absent (older checkpoints lack them).
    """
    missing = [k for k in expected if k not in loaded and not k.endswith("num_batches_tracked")]
    unexpected = [
        k for k in loaded if k not in expected and not k.startswith(tuple(ignore_prefixes))
    ]
    mismatched = [
        f"{k}: file {tuple(loaded[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in loaded and tuple(loaded[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or mismatched):
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {_examples(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {_examples(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (e.g. {_examples(mismatched)})")
    raise ValueError(
        f"model.pretrained={str(path)!r} does not fit the backbone model.backbone={name!r}: "
        + "; ".join(problems)
        + f". Expected the state_dict of timm.create_model({name!r})."
    )


def _classifier_prefixes(name: str) -> tuple[str, ...]:
    """Prefixes of the classifier layers a features-only model drops (e.g. ``fc.``)."""
    classifier = get_pretrained_cfg_value(name, "classifier") or ()
    if isinstance(classifier, str):
        classifier = (classifier,)
    return tuple(f"{c}." for c in classifier)


def _load_file(name: str, path: Path, output_stride: int, out_indices: Sequence[int]) -> nn.Module:
    """Build the backbone with a local weights file, checked before and after timm loads it."""
    skeleton = _skeleton(name, output_stride, out_indices)
    state = load_state_dict(str(path))
    expected = skeleton.state_dict()
    check_weights(expected, state, name, path, ignore_prefixes=_classifier_prefixes(name))
    model = _build(
        name,
        output_stride,
        out_indices,
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(path), source=None),
    )
    stale = [
        k for k, v in model.state_dict().items() if k in state and not torch.equal(v, state[k])
    ]
    if stale:
        raise RuntimeError(
            f"model.pretrained={str(path)!r}: timm did not load {len(stale)} tensors into "
            f"{name!r} (e.g. {_examples(stale)})"
        )
    return model


def _stages(model: nn.Module, name: str, key: str) -> list[nn.Sequential]:
    """The dilated stages (``layer3``, ``layer4``) of a ResNet-family feature extractor."""
    stages = [getattr(model, f"layer{i}", None) for i in (3, 4)]
    if not all(isinstance(stage, nn.Sequential) and len(stage) > 0 for stage in stages):
        raise ValueError(
            f"{key} needs a ResNet-family backbone (stages layer3 and layer4 of blocks); "
            f"model.backbone={name!r} has none"
        )
    return stages


def undo_dilation_contraction(model: nn.Module, name: str) -> None:
    """Dilate the first block of each dilated stage like the rest of its stage (2 in layer3,
    4 in layer4), as the official CCNet code does; timm, like mmseg, runs it at half the
    dilation. Only the 3×3 convs' dilation and padding change: the weights are the same."""
    for stage in _stages(model, name, "model.contract_dilation=false"):
        last = [
            m for m in stage[-1].modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)
        ]
        dilation = max(m.dilation[0] for m in last)
        for conv in stage[0].modules():
            if isinstance(conv, nn.Conv2d) and conv.kernel_size != (1, 1):
                conv.dilation = (dilation, dilation)
                conv.padding = ((conv.kernel_size[0] - 1) // 2 * dilation,) * 2


def ceil_mode_pool(model: nn.Module, name: str) -> None:
    """Round the stem's max-pool output up (``ceil_mode=True``), as the official CCNet code
    does: on an even-sized input its features are one row and column larger."""
    pool = getattr(model, "maxpool", None)
    if not isinstance(pool, nn.MaxPool2d):
        raise ValueError(
            f"model.pool_ceil_mode=true needs a backbone with a max-pool stem; "
            f"model.backbone={name!r} has none"
        )
    pool.ceil_mode = True


def create_backbone(
    name: str = "resnet101c",
    pretrained: bool | str | Path = False,
    output_stride: int = OUTPUT_STRIDE,
    out_indices: Sequence[int] = OUT_INDICES,
    contract_dilation: bool = True,
    pool_ceil_mode: bool = False,
) -> nn.Module:
    """A timm feature extractor returning ``[stage 3, stage 4]`` at output stride 8.

    ``pretrained``: False (random init), True (timm's own weights source, online) or a path to
    a local ``.pth`` / ``.safetensors`` state_dict of ``timm.create_model(name)``. The result's
    ``feature_info.channels()`` gives the channel count of each returned feature map.
    ``contract_dilation=False`` and ``pool_ceil_mode=True`` give the official CCNet code's
    ResNet (see :func:`undo_dilation_contraction`, :func:`ceil_mode_pool`); the defaults are
    timm's and mmseg's.
    """
    model = _backbone(name, pretrained, output_stride, out_indices)
    if not contract_dilation:
        undo_dilation_contraction(model, name)
    if pool_ceil_mode:
        ceil_mode_pool(model, name)
    return model


def _backbone(
    name: str, pretrained: bool | str | Path, output_stride: int, out_indices: Sequence[int]
) -> nn.Module:
    """:func:`create_backbone` before the official code's options."""
    if pretrained is None or pretrained is False:
        _skeleton(name, output_stride, out_indices)
        return _build(name, output_stride, out_indices)
    if pretrained is True:
        _skeleton(name, output_stride, out_indices)
        with timm_download(name):
            return _build(name, output_stride, out_indices, pretrained=True)
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"model.pretrained={str(pretrained)!r}: no weights file at {str(path.resolve())!r}"
        )
    return _load_file(name, path, output_stride, out_indices)


__all__ = [
    "DILATABLE_FAMILIES",
    "OUTPUT_STRIDE",
    "OUT_INDICES",
    "PretrainedDownloadError",
    "check_backbone_name",
    "check_dilated_backbone",
    "check_weights",
    "ceil_mode_pool",
    "create_backbone",
    "timm_download",
    "undo_dilation_contraction",
]
