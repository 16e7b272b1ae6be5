"""Trained CCNet weights from any source, as this project's :class:`~src.models.ccnet.CCNet`.

Three file formats are read, told apart by their keys:

- ``lightning``: this project's checkpoints (``state_dict`` with ``net.*`` keys, the
  architecture in ``hyper_parameters.model_config``);
- ``mmseg``: mmsegmentation's CCNet (``backbone.stem.*``, ``backbone.layer*``,
  ``decode_head.*``, ``auxiliary_head.*``; ResNetV1c = timm's ``resnet*c``);
- ``official``: the official code's (speedinghzl/CCNet: ``conv1``/``bn1``..., ``layer*``,
  ``head.conva.*``, ``head.cca.*``, ``dsn.*``; InPlaceABN norms, BGR 0–255 input).

A foreign file is converted by renaming its keys (:data:`MMSEG_KEYS`, :data:`OFFICIAL_KEYS`)
and folding what is only a parametrisation (InPlaceABN's ``|weight| + eps`` scale, a conv
bias before a norm, BGR input channels); the architecture (depth, stem, widths, classes, aux
head) is read from the tensors, and the format decides the rest (:data:`FORMAT_OPTIONS`).
Every tensor is consumed and none is invented; anything else is one clear error naming the
format the file looks like and the keys missing or left over.

Names in :data:`ZOO` are downloaded once into torch.hub's cache
(``$TORCH_HOME/hub/checkpoints``). Files are read with ``torch.load(weights_only=True)``: a
``.pth`` never runs code when loaded.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor, nn

from .backbone import _examples  # the one list-of-keys shortener of the models

log = logging.getLogger(__name__)

CCNET_TARGET = "src.models.ccnet.CCNet"
CCNET3D_TARGET = "src.models.ccnet3d.CCNet3D"  # its checkpoints initialise CCNet3D too
FORMATS = ("lightning", "mmseg", "official")

OFFICIAL_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
"""The official code's input: BGR, 0–255, minus this mean, no std."""
OFFICIAL_MEAN = tuple(m / 255 for m in reversed(OFFICIAL_MEAN_BGR))
OFFICIAL_STD = (1 / 255,) * 3
"""``data.mean`` / ``data.std`` (RGB, 0–1 scale) under which this project's normalised input
equals the official one: (x·255 − mean·255) / (std·255) = x·255 − mean_BGR, channel by
channel once conv1 reads RGB."""

FORMAT_OPTIONS: dict[str, dict[str, Any]] = {
    "lightning": {},
    "mmseg": {},  # align_corners: from the zoo entry or the config in the file's meta
    "official": {
        "contract_dilation": False,  # layer3/layer4 first blocks dilated 2/4
        "pool_ceil_mode": True,
        "head_activation": "leaky_relu",  # InPlaceABN's default activation in the heads
        "align_corners": True,
        "recurrence": 2,  # the released model
    },
}
"""CCNet arguments a format implies beyond what its tensors say."""

FORMAT_DATA: dict[str, dict[str, tuple[float, ...]]] = {
    "official": {"mean": OFFICIAL_MEAN, "std": OFFICIAL_STD},
}
"""Input normalisation a format needs when it is not ImageNet's (mmseg's is ImageNet's)."""


@dataclass(frozen=True)
class ZooEntry:
    """A published CCNet checkpoint: where it is and what it needs."""

    url: str
    dataset: str  # cityscapes | ade20k
    experiment: str  # the experiment holding its evaluation protocol
    align_corners: bool
    miou: tuple[float, float]  # published val mIoU: single scale, multi-scale + flip


_MMSEG = "https://download.openmmlab.com/mmsegmentation/v0.5/ccnet"


def _mmseg(name: str, stamp: str, dataset: str, experiment: str, miou: tuple[float, float]):
    return ZooEntry(
        f"{_MMSEG}/{name}/{name}_{stamp}.pth", dataset, experiment, "769x769" in name, miou
    )


ZOO: dict[str, ZooEntry] = {
    e[0]: _mmseg(*e)
    for e in [
        # mmsegmentation configs/ccnet/metafile.yaml (val mIoU as published)
        ("ccnet_r50-d8_512x1024_40k_cityscapes", "20200616_142517-4123f401", "cityscapes",
         "cityscapes_rcca_mmseg_512x1024", (77.76, 78.87)),
        ("ccnet_r101-d8_512x1024_40k_cityscapes", "20200616_142540-a3b84ba6", "cityscapes",
         "cityscapes_rcca_mmseg_512x1024", (76.35, 78.19)),
        ("ccnet_r50-d8_769x769_40k_cityscapes", "20200616_145125-76d11884", "cityscapes",
         "cityscapes_rcca_mmseg", (78.46, 79.93)),
        ("ccnet_r101-d8_769x769_40k_cityscapes", "20200617_101428-4f57c8d0", "cityscapes",
         "cityscapes_rcca_mmseg", (76.94, 78.62)),
        ("ccnet_r50-d8_512x1024_80k_cityscapes", "20200617_010421-869a3423", "cityscapes",
         "cityscapes_rcca_mmseg_512x1024", (79.03, 80.16)),
        ("ccnet_r101-d8_512x1024_80k_cityscapes", "20200617_203935-ffae8917", "cityscapes",
         "cityscapes_rcca_mmseg_512x1024", (78.87, 79.90)),
        ("ccnet_r50-d8_769x769_80k_cityscapes", "20200617_010421-73eed8ca", "cityscapes",
         "cityscapes_rcca_mmseg", (79.29, 81.08)),
        ("ccnet_r101-d8_769x769_80k_cityscapes", "20200618_011502-ad3cd481", "cityscapes",
         "cityscapes_rcca_mmseg", (79.45, 80.66)),
        ("ccnet_r50-d8_512x512_80k_ade20k", "20200615_014848-aa37f61e", "ade20k",
         "ade20k_rcca", (41.78, 42.98)),
        ("ccnet_r101-d8_512x512_80k_ade20k", "20200615_014848-1f4929a3", "ade20k",
         "ade20k_rcca", (43.97, 45.13)),
        ("ccnet_r50-d8_512x512_160k_ade20k", "20200616_084435-7c97193b", "ade20k",
         "ade20k_rcca", (42.08, 43.13)),
        ("ccnet_r101-d8_512x512_160k_ade20k", "20200616_000644-e849e007", "ade20k",
         "ade20k_rcca", (43.71, 45.04)),
    ]
}  # fmt: skip
"""Model-zoo name → entry. The official code's Cityscapes model (79.74 val) is published on a
file-sharing site without a stable URL: download it yourself and pass the file."""

# Foreign key prefix → this project's, first match wins (a key matching none is left over).
_CCA = [("query_conv.", "query."), ("key_conv.", "key."), ("value_conv.", "value.")]
MMSEG_KEYS: tuple[tuple[str, str], ...] = (
    *[(f"backbone.stem.{i}.", f"backbone.conv1.{i}.") for i in (0, 1, 3, 4, 6)],
    ("backbone.stem.7.", "backbone.bn1."),
    ("backbone.layer", "backbone.layer"),
    ("decode_head.convs.0.conv.", "head.reduce.0."),
    ("decode_head.convs.0.bn.", "head.reduce.1."),
    *[(f"decode_head.cca.{a}", f"head.context.cca.{b}") for a, b in _CCA],
    ("decode_head.cca.gamma.scale", "head.context.cca.gamma"),
    ("decode_head.convs.1.conv.", "head.project.0."),
    ("decode_head.convs.1.bn.", "head.project.1."),
    ("decode_head.conv_cat.conv.", "head.fuse.0."),
    ("decode_head.conv_cat.bn.", "head.fuse.1."),
    ("decode_head.conv_seg.", "head.classifier."),
    ("auxiliary_head.convs.0.conv.", "aux_head.conv.0."),
    ("auxiliary_head.convs.0.bn.", "aux_head.conv.1."),
    ("auxiliary_head.conv_seg.", "aux_head.classifier."),
)
OFFICIAL_KEYS: tuple[tuple[str, str], ...] = (
    ("conv1.", "backbone.conv1.0."),
    ("bn1.", "backbone.conv1.1."),
    ("conv2.", "backbone.conv1.3."),
    ("bn2.", "backbone.conv1.4."),
    ("conv3.", "backbone.conv1.6."),
    ("bn3.", "backbone.bn1."),
    ("layer", "backbone.layer"),
    ("head.conva.0.", "head.reduce.0."),
    ("head.conva.1.", "head.reduce.1."),
    *[(f"head.cca.{a}", f"head.context.cca.{b}") for a, b in _CCA],
    ("head.cca.gamma", "head.context.cca.gamma"),
    ("head.convb.0.", "head.project.0."),
    ("head.convb.1.", "head.project.1."),
    ("head.bottleneck.0.", "head.fuse.0."),
    ("head.bottleneck.1.", "head.fuse.1."),
    ("head.bottleneck.3.", "head.classifier."),
    ("dsn.0.", "aux_head.conv.0."),
    ("dsn.1.", "aux_head.conv.1."),
    ("dsn.3.", "aux_head.classifier."),
)
RULES = {"mmseg": MMSEG_KEYS, "official": OFFICIAL_KEYS}

_RESNET_DEPTHS = {
    (2, 2, 2, 2, False): 18,
    (3, 4, 6, 3, False): 34,
    (3, 4, 6, 3, True): 50,
    (3, 4, 23, 3, True): 101,
    (3, 8, 36, 3, True): 152,
    (3, 24, 36, 3, True): 200,
}
_OPTIONAL = ("num_batches_tracked",)  # BN counters: absent from InPlaceABN and old files
CLASSIFIERS = ("head.classifier.", "aux_head.classifier.")
"""The layers whose shape depends on the number of classes."""


class PretrainedFormatError(ValueError):
    """A weights file that is not a CCNet checkpoint in a format this project reads."""


@dataclass
class Pretrained:
    """Weights converted to this project's CCNet: its state dict and constructor arguments."""

    source: str
    format: str
    state_dict: dict[str, Tensor]
    architecture: dict[str, Any]
    class_names: list[str] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    experiment: str | None = None
    dataset: str | None = None
    key: str = "source"
    renamed: dict[str, str] = field(default_factory=dict)  # our key → the file's

    @property
    def num_classes(self) -> int:
        return int(self.architecture["num_classes"])

    def config(self) -> dict[str, Any]:
        """What :attr:`CCNet.pretrained_cfg` records: source, format, preprocessing, classes."""
        return {
            "source": self.source,
            "format": self.format,
            "mean": list(self.mean) if self.mean else None,
            "std": list(self.std) if self.std else None,
            "class_names": self.class_names,
            "align_corners": self.architecture.get("align_corners", False),
        }

    def load_into(
        self, net: nn.Module, fresh_classifiers: bool = False, optional: Sequence[str] = ()
    ) -> list[str]:
        """Copy the weights into ``net`` (built with :attr:`architecture`, maybe another
        class count); with ``fresh_classifiers`` the classifiers keep ``net``'s own init, and
        layers under the ``optional`` prefixes (e.g. the training-only CCL embedding) are
        taken when both sides have them and left alone otherwise. Every other tensor of
        ``net`` must come from the file and every tensor of the file must land. Returns the
        names of the tensors left as ``net`` initialised them."""
        expected = net.state_dict()
        skip = CLASSIFIERS if fresh_classifiers else ()
        optional = tuple(optional)
        state = {
            k: inflate_conv(v, expected[k].shape) if k in expected else v
            for k, v in self.state_dict.items()
            if not k.startswith(skip) and (k in expected or not k.startswith(optional or ("\0",)))
        }
        fresh = [
            k
            for k in expected
            if k.startswith(skip) or (optional and k.startswith(optional) and k not in state)
        ]
        missing = [
            k for k in expected if k not in state and k not in fresh and not k.endswith(_OPTIONAL)
        ]
        extra = [k for k in state if k not in expected]
        shapes = [
            f"{self.renamed.get(k, k)}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
            for k, v in state.items()
            if k in expected and v.shape != expected[k].shape
        ]
        if missing or extra or shapes:
            self._fail(missing, extra, shapes)
        filled = {k: v for k, v in expected.items() if k.endswith(_OPTIONAL) and k not in state}
        with torch.no_grad():
            net.load_state_dict({**filled, **state, **{k: expected[k] for k in fresh}})
        return fresh

    def _fail(self, missing: list[str], extra: list[str], shapes: list[str]) -> None:
        problems = []
        if missing:
            names = [_foreign_name(k, RULES.get(self.format, ())) for k in missing]
            problems.append(f"{len(missing)} keys missing (e.g. {_examples(names)})")
        if extra:
            names = [self.renamed.get(k, k) for k in extra]
            problems.append(f"{len(extra)} keys left over (e.g. {_examples(names)})")
        if shapes:
            problems.append(f"{len(shapes)} shape mismatches (e.g. {_examples(shapes)})")
        raise PretrainedFormatError(
            f"{self.key}={self.source!r} looks like {describe_format(self.format)} but does not "
            f"fit a CCNet({_arguments(self.architecture)}): " + "; ".join(problems)
        )


def inflate_conv(tensor: Tensor, shape: Sequence[int]) -> Tensor:
    """A 2D conv weight (O, I, kh, kw) as the 3D weight of ``shape`` (O, I, 1, kh, kw), since a
    1×1 conv is a 1×1×1 conv (2D weights initialise the video model); other tensors as they are."""
    fits = len(shape) == 5 and shape[2] == 1 and (*shape[:2], *shape[3:]) == tuple(tensor.shape)
    return tensor.unsqueeze(2) if tensor.dim() == 4 and fits else tensor


def describe_format(name: str) -> str:
    """A format's name for messages."""
    return {
        "lightning": "this project's Lightning checkpoint",
        "mmseg": "an mmsegmentation CCNet checkpoint",
        "official": "an official CCNet (speedinghzl/CCNet) checkpoint",
    }[name]


def read_weights_file(path: str | Path, key: str = "source", mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; errors name the config ``key``:
    no such file, objects that would run code to rebuild, not a PyTorch file (truncated)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{key}={str(path)!r} is not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{key}={str(path)!r} holds objects that weights_only loading refuses "
            f"(it would run code to rebuild them): {_refused_global(err)}"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        message = f"{key}={str(path)!r} is not a readable PyTorch checkpoint: {err}"
        raise ValueError(message) from err


def _refused_global(err: BaseException) -> str:
    """The one line of torch's weights_only refusal that names what it refused."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "global" in line]
    return (named or lines or [type(err).__name__])[0]


def zoo_file(name: str) -> Path:
    """The file of zoo entry ``name`` in torch.hub's cache, downloaded on first use."""
    entry = ZOO[name]
    target = Path(torch.hub.get_dir()) / "checkpoints" / entry.url.rsplit("/", 1)[-1]
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", entry.url, target)
    try:
        torch.hub.download_url_to_file(entry.url, str(target), progress=True)
    except Exception as err:  # urllib/HTTP/SSL errors: all become one line
        raise OSError(
            f"model zoo entry {name!r} could not be downloaded from {entry.url} "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); download "
            f"it yourself and pass the file's path instead of the name"
        ) from err
    return target


def is_source_name(source: str | Path) -> bool:
    """Whether ``source`` names a model-zoo entry (and is not a file path)."""
    return isinstance(source, str) and source in ZOO and not Path(source).is_file()


def load_pretrained(source: str | Path, key: str = "source") -> Pretrained:
    """The weights at ``source`` (a file in any of :data:`FORMATS`, or a :data:`ZOO` name)
    converted to this project's CCNet; errors name the config ``key``."""
    entry = None
    if is_source_name(source):
        entry = ZOO[str(source)]
        path = zoo_file(str(source))
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            close = [n for n in ZOO if str(source) in n or n in str(source)]
            hint = f" (model zoo names: {', '.join(close or list(ZOO)[:3])}, ...)"
            raise FileNotFoundError(
                f"{key}={str(source)!r} is neither a file nor a known name{hint}"
            )
    checkpoint = read_weights_file(path, key)
    weights = convert_checkpoint(checkpoint, str(source), key)
    if entry is not None:
        weights.architecture["align_corners"] = entry.align_corners
        weights.experiment = entry.experiment
        weights.dataset = entry.dataset
    return weights


def detect_format(checkpoint: Any) -> str | None:
    """The format of a loaded checkpoint, from its keys; None when it is none of them."""
    if not isinstance(checkpoint, Mapping):
        return None
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping):
        return None
    keys = [_strip_module(str(k)) for k in state]
    if "pytorch-lightning_version" in checkpoint or (
        any(k.startswith("net.") for k in keys) and "hyper_parameters" in checkpoint
    ):
        return "lightning"
    if any(k.startswith("decode_head.") for k in keys):
        return "mmseg"
    if any(k.startswith(("head.conva.", "dsn.")) for k in keys):
        return "official"
    return None


def convert_checkpoint(checkpoint: Any, source: str, key: str = "source") -> Pretrained:
    """A loaded checkpoint (any of :data:`FORMATS`) as :class:`Pretrained`."""
    fmt = detect_format(checkpoint)
    if fmt is None:
        raise PretrainedFormatError(
            f"{key}={source!r} is not a CCNet checkpoint this project reads "
            f"({'; '.join(describe_format(f) for f in FORMATS)}): {_key_summary(checkpoint)}"
        )
    if fmt == "lightning":
        return _from_lightning(checkpoint, source, key)
    raw = checkpoint.get("state_dict", checkpoint)
    state = {_strip_module(str(k)): v for k, v in raw.items() if isinstance(v, Tensor)}
    renamed, leftover = _rename(state, RULES[fmt])
    if leftover:
        raise PretrainedFormatError(
            f"{key}={source!r} looks like {describe_format(fmt)}, but {len(leftover)} keys are "
            f"left over that no CCNet part takes (e.g. {_examples(leftover)})"
        )
    ours = {new: state[old] for new, old in renamed.items()}
    if fmt == "mmseg":
        ours["head.context.cca.gamma"] = ours.get("head.context.cca.gamma", torch.zeros(1)).reshape(
            1
        )
    else:
        ours = _fold_official(ours)
    architecture = {**infer_architecture(ours, source, key, fmt), **FORMAT_OPTIONS[fmt]}
    meta = checkpoint.get("meta") if isinstance(checkpoint.get("meta"), Mapping) else {}
    if fmt == "mmseg":
        architecture["align_corners"] = _meta_align_corners(meta)
    names = meta.get("CLASSES") or (meta.get("dataset_meta") or {}).get("classes")
    data = FORMAT_DATA.get(fmt, {})
    return Pretrained(
        source=source,
        format=fmt,
        state_dict=ours,
        architecture=architecture,
        class_names=[str(n) for n in names] if names else None,
        mean=data.get("mean"),
        std=data.get("std"),
        key=key,
        renamed=renamed,
    )


def _from_lightning(checkpoint: Mapping[str, Any], source: str, key: str) -> Pretrained:
    """This project's checkpoint: the net's weights and its saved ``model:`` config."""
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    model = dict(hparams.get("model_config") or {})
    target = model.pop("target", CCNET_TARGET)
    if target not in (CCNET_TARGET, CCNET3D_TARGET):
        raise PretrainedFormatError(
            f"{key}={source!r} is this project's checkpoint of {target}, not of a CCNet"
        )
    state = {k[4:]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    for name in ("pretrained", "init_from"):
        model.pop(name, None)
    if not model:  # written before model_config was saved: read what the tensors say
        model = infer_architecture(state, source, key, "lightning")
    model["num_classes"] = int(
        hparams.get("num_classes") or state["head.classifier.weight"].shape[0]
    )
    names = hparams.get("class_names")
    return Pretrained(
        source=source,
        format="lightning",
        state_dict=state,
        architecture=model,
        class_names=list(names) if names else None,
        key=key,
    )


def _strip_module(name: str) -> str:
    """A key without the ``module.`` of a (Distributed)DataParallel wrapper."""
    return name[len("module.") :] if name.startswith("module.") else name


def _rename(state: Mapping[str, Tensor], rules: Sequence[tuple[str, str]]):
    """(our key → foreign key, foreign keys no rule takes)."""
    renamed: dict[str, str] = {}
    leftover = []
    for name in state:
        for old, new in rules:
            if name.startswith(old):
                renamed[new + name[len(old) :]] = name
                break
        else:
            leftover.append(name)
    return renamed, leftover


def _foreign_name(ours: str, rules: Sequence[tuple[str, str]]) -> str:
    """The file's name for one of our keys (for messages about missing keys)."""
    for old, new in rules:
        if ours.startswith(new):
            return old + ours[len(new) :]
    return ours


def _fold_official(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The official parametrisation as plain BatchNorm and RGB input: InPlaceABN scales by
    ``|weight| + eps``; the aux conv's bias folds into the next norm's running mean (BN(z + b)
    with mean μ equals BN(z) with mean μ − b); conv1 reads RGB instead of BGR."""
    state = dict(state)
    norms = [k[: -len("running_var")] for k in state if k.endswith("running_var")]
    for prefix in norms:
        weight = state[prefix + "weight"]
        state[prefix + "weight"] = weight.abs() + 1e-5  # InPlaceABN's eps (the default)
    bias = state.pop("aux_head.conv.0.bias", None)
    if bias is not None:
        mean = state["aux_head.conv.1.running_mean"]
        state["aux_head.conv.1.running_mean"] = mean - bias.to(mean.dtype)
    stem = "backbone.conv1.0.weight"
    state[stem] = state[stem].flip(1)
    state["head.context.cca.gamma"] = state["head.context.cca.gamma"].reshape(1)
    return state


def infer_architecture(
    state: Mapping[str, Tensor], source: str, key: str, fmt: str
) -> dict[str, Any]:
    """CCNet's arguments from the tensors: backbone (depth and stem), classes, widths, aux."""
    needed = ("head.classifier.weight", "head.reduce.0.weight")
    absent = [k for k in needed if k not in state]
    if absent:
        names = [_foreign_name(k, RULES.get(fmt, ())) for k in absent]
        raise PretrainedFormatError(
            f"{key}={source!r} looks like {describe_format(fmt)} but has no CCNet head "
            f"(missing {', '.join(names)})"
        )
    architecture: dict[str, Any] = {
        "num_classes": int(state["head.classifier.weight"].shape[0]),
        "backbone": _resnet_name(state, source, key, fmt),
        "channels": int(state["head.reduce.0.weight"].shape[0]),
        "context": "rcca" if "head.context.cca.query.weight" in state else "none",
        "aux": "aux_head.classifier.weight" in state,
    }
    if architecture["aux"]:
        architecture["aux_channels"] = int(state["aux_head.conv.0.weight"].shape[0])
    if "embed.weight" in state:
        architecture["embed_dim"] = int(state["embed.weight"].shape[0])
    return architecture


def _resnet_name(state: Mapping[str, Tensor], source: str, key: str, fmt: str) -> str:
    """The timm ResNet whose tensors these are: depth from the blocks per stage, stem from
    its widths (32: ``c``, or ``d`` with average-pool shortcuts; 64-64-128: ``s``)."""
    blocks = []
    for stage in range(1, 5):
        found = {int(k.split(".")[2]) for k in state if k.startswith(f"backbone.layer{stage}.")}
        blocks.append(len(found))
    bottleneck = "backbone.layer1.0.conv3.weight" in state
    depth = _RESNET_DEPTHS.get((*blocks, bottleneck))
    if "backbone.conv1.0.weight" in state:
        width = state["backbone.conv1.0.weight"].shape[0]
        avg_down = "backbone.layer2.0.downsample.2.weight" in state
        stem = {32: "d" if avg_down else "c", 64: "s"}.get(int(width))
    else:
        stem = "" if "backbone.conv1.weight" in state else None
    name = f"resnet{depth}{stem}"
    if depth is None or stem is None or not timm.is_model(name):
        raise PretrainedFormatError(
            f"{key}={source!r} looks like {describe_format(fmt)}, but its backbone is no ResNet "
            f"timm builds (blocks per stage {blocks}, bottleneck {bottleneck})"
        )
    return name


def _meta_align_corners(meta: Mapping[str, Any]) -> bool:
    """align_corners of an mmseg checkpoint, from the config text its meta keeps (False,
    mmseg's default, when there is none)."""
    text = meta.get("config") or meta.get("cfg") or ""
    return bool(re.search(r"align_corners\s*=\s*True", str(text)))


def _key_summary(checkpoint: Any) -> str:
    """What a checkpoint holds, for an error message."""
    if not isinstance(checkpoint, Mapping):
        return f"it holds a {type(checkpoint).__name__}, not a state dict"
    state = checkpoint.get("state_dict", checkpoint)
    keys = [str(k) for k in state] if isinstance(state, Mapping) else [str(k) for k in checkpoint]
    return f"its keys are {_examples(keys)}" if keys else "it is empty"


def _arguments(architecture: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in architecture.items())


__all__ = [
    "FORMATS",
    "FORMAT_DATA",
    "FORMAT_OPTIONS",
    "MMSEG_KEYS",
    "OFFICIAL_KEYS",
    "OFFICIAL_MEAN",
    "OFFICIAL_STD",
    "CLASSIFIERS",
    "Pretrained",
    "PretrainedFormatError",
    "ZOO",
    "ZooEntry",
    "convert_checkpoint",
    "detect_format",
    "infer_architecture",
    "is_source_name",
    "load_pretrained",
    "read_weights_file",
    "zoo_file",
]
