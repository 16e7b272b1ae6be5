"""CCNet3D: CCNet on video clips, criss-cross attention over time, rows and columns (TPAMI 2020).

A clip (B, T, 3, H, W) goes through the dilated backbone frame by frame (one batched call);
the head's reduce conv works per frame, then the 3D criss-cross attention (lines along T, H and
W: T+H+W-2 positions, the centre once) is applied R times with shared weights on
(B, C, T, h, w). The rest of the head (projection, concatenation with the backbone features,
classifier) and the auxiliary FCN head run on the labelled (*target*) frame only, which is the
``last`` of the clip (causal use) or its ``centre``. The output is :class:`CCNet`'s dict at 1/8
of the target frame.

Reach of R passes: one pass reaches a position's three lines (its time line, row and column),
two reach the three planes through it (e.g. the whole row of another frame), and only three
reach every position of the clip. The default stays the paper's R=2: what a pixel needs from
other frames is mostly what was at or near its place (the time line) or what moved along a
line through it (one more pass), and each pass costs as much as the others; use
``model.recurrence=3`` for full-clip context.

Every tensor of a 2D CCNet fits the 3D one (a 1×1 conv is a 1×1×1 conv), so
:meth:`CCNet3D.from_2d` and ``model.init_from`` (any 2D format :func:`load_pretrained` reads)
start a video model from image weights; with T=1 it then gives the 2D model's logits.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from src.data.clips import TARGETS, target_index

from .ccnet import CCNet
from .pretrained import inflate_conv


def check_target_frame(target_frame: Any) -> str:
    """``target_frame`` if it names a place of the labelled frame in a clip (``last`` or
    ``centre``, the data's ``clip.target``)."""
    if target_frame not in TARGETS:
        raise ValueError(
            f"model.target_frame must be one of {TARGETS} (data.clip.target); got {target_frame!r}"
        )
    return str(target_frame)


class CCNet3D(CCNet):
    """CCNet with 3D criss-cross attention over clips; ``target_frame``: where the labelled frame
    is (``last`` or ``centre``, the data's ``clip.target``). Other arguments: :class:`CCNet`'s."""

    context_dims = 3

    def __init__(self, num_classes: int, target_frame: str = "last", **kwargs: Any) -> None:
        self.target_frame = check_target_frame(target_frame)  # plain str: before Module init
        super().__init__(num_classes, **kwargs)
        self.architecture["target_frame"] = self.target_frame

    @classmethod
    def from_2d(cls, ccnet: CCNet, target_frame: str = "last") -> CCNet3D:
        """The 3D model with every weight of the 2D ``ccnet`` (same architecture, dtype, device
        and mode)."""
        if isinstance(ccnet, CCNet3D) or type(ccnet) is not CCNet:
            raise TypeError(f"from_2d takes a 2D CCNet, got {type(ccnet).__name__}")
        arguments = {k: v for k, v in ccnet.architecture.items() if k != "num_classes"}
        reference = next(ccnet.parameters())
        net = cls(ccnet.num_classes, target_frame=target_frame, **arguments)
        net.to(device=reference.device, dtype=reference.dtype)
        expected = net.state_dict()
        state = {k: inflate_conv(v, expected[k].shape) for k, v in ccnet.state_dict().items()}
        net.load_state_dict(state)
        net.pretrained_cfg = ccnet.pretrained_cfg
        return net.train(ccnet.training)

    def forward(self, clips: Tensor) -> dict[str, Tensor]:
        if clips.dim() != 5:
            raise ValueError(f"CCNet3D takes clips (B, T, 3, H, W); got shape {tuple(clips.shape)}")
        batch, length = clips.shape[:2]
        index = target_index(length, self.target_frame)
        stage3, stage4 = self.backbone(clips.flatten(0, 1))
        frames = self.head.reduce(stage4)
        # (B, T, C, h, w) by reshape: traced for ONNX, ``unflatten`` here leaves the attention's
        # line masks fixed at the traced height and width (the graph then fails at other sizes)
        reduced = frames.reshape(batch, length, *frames.shape[1:])
        volume = self.head.context(reduced.transpose(1, 2))  # (B, C, T, h, w)
        features = self.head.project(volume[:, :, index])
        frame4 = stage4.unflatten(0, (batch, length))[:, index]
        outputs = {"out": self.head.classify(frame4, features)}
        if self.training and self.aux_head is not None:
            outputs["aux"] = self.aux_head(stage3.unflatten(0, (batch, length))[:, index])
        if self.training and self.embed is not None:
            outputs["embedding"] = self.embed(features)
        return outputs


__all__ = ["CCNet3D", "check_target_frame"]
