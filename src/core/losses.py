"""CCNet losses: (OHEM) cross-entropy on the main head, plain CE on the aux head, and the
category-consistent loss (TPAMI) on the embedding, summed with their weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.data.base import IGNORE_INDEX


def resize_logits(logits: Tensor, size: tuple[int, int], align_corners: bool = False) -> Tensor:
    """Bilinear resize of logits to ``size`` (the label's); ``align_corners`` as the model
    was trained with (``model.align_corners``). The one resize of logits in the project."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=align_corners)


def cross_entropy(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Mean CE over the non-ignored pixels; 0 (finite gradients) when every pixel is ignored."""
    total = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    count = (target != ignore_index).sum().clamp(min=1)
    return total / count


def ohem_mask(
    logits: Tensor,
    target: Tensor,
    ignore_index: int = IGNORE_INDEX,
    thresh: float = 0.7,
    min_kept: int = 100000,
) -> Tensor:
    """Pixels that OHEM keeps (as the official CCNet code): those whose ground-truth probability
    is at or below max(thresh, the min_kept-th smallest one) over the whole batch; all valid
    pixels when there are at most min_kept of them. Computed on the device, without syncs."""
    valid = target != ignore_index
    with torch.no_grad():
        prob = torch.softmax(logits.float(), dim=1)
        gt_prob = prob.gather(1, target.masked_fill(~valid, 0).unsqueeze(1)).squeeze(1)
        # Ignored pixels sort last, so the k-th smallest is +inf when k exceeds the valid count.
        ranked = gt_prob.masked_fill(~valid, float("inf")).flatten()
        threshold = torch.full((), thresh, device=logits.device)
        k = min(min_kept, ranked.numel())
        if k > 0:
            threshold = torch.maximum(threshold, ranked.kthvalue(k).values)
    return valid & (gt_prob <= threshold)


def ohem_cross_entropy(
    logits: Tensor,
    target: Tensor,
    ignore_index: int = IGNORE_INDEX,
    thresh: float = 0.7,
    min_kept: int = 100000,
) -> Tensor:
    """Cross-entropy averaged over the hard pixels chosen by :func:`ohem_mask`."""
    keep = ohem_mask(logits, target, ignore_index, thresh, min_kept)
    return cross_entropy(logits, target.masked_fill(~keep, ignore_index), ignore_index)


def phi_var(distance: Tensor, delta_v: float, delta_d: float) -> Tensor:
    """Piecewise pull term: 0 within delta_v, quadratic up to delta_d, linear beyond."""
    quadratic = (distance - delta_v).clamp(min=0) ** 2
    linear = distance - delta_d + (delta_d - delta_v) ** 2
    return torch.where(distance > delta_d, linear, quadratic)


def _image_ccl(
    embedding: Tensor, labels: Tensor, delta_v: float, delta_d: float
) -> tuple[Tensor, Tensor, Tensor]:
    """(l_var, l_dis, l_reg) of one image: embedding (N, D) and labels (N,) of valid pixels."""
    classes, index = torch.unique(labels, return_inverse=True)
    num = classes.numel()
    counts = torch.bincount(index, minlength=num).to(embedding.dtype)
    sums = embedding.new_zeros(num, embedding.shape[1]).index_add(0, index, embedding)
    means = sums / counts[:, None]
    distance = torch.linalg.vector_norm(embedding - means[index], dim=1)
    pull = embedding.new_zeros(num).index_add(0, index, phi_var(distance, delta_v, delta_d))
    l_var = (pull / counts).mean()
    l_reg = torch.linalg.vector_norm(means, dim=1).mean()
    if num < 2:
        return l_var, embedding.sum() * 0.0, l_reg
    gaps = torch.linalg.vector_norm(means[:, None] - means[None], dim=-1)
    push = (2 * delta_d - gaps).clamp(min=0) ** 2
    off_diagonal = ~torch.eye(num, dtype=torch.bool, device=embedding.device)
    l_dis = push[off_diagonal].sum() / (num * (num - 1))
    return l_var, l_dis, l_reg


def category_consistent_loss(
    embedding: Tensor,
    mask: Tensor,
    delta_v: float = 0.5,
    delta_d: float = 1.5,
    ignore_index: int = IGNORE_INDEX,
) -> dict[str, Tensor]:
    """Category-consistent loss terms ``var``, ``dis``, ``reg``, each averaged over the images.

    ``embedding`` (B, D, h, w), ``mask`` (B, h, w) at the embedding's size. Ignored pixels take
    no part; an image without valid pixels contributes 0; ``dis`` is 0 with fewer than 2 classes.
    """
    if embedding.shape[0] != mask.shape[0] or embedding.shape[2:] != mask.shape[1:]:
        raise ValueError(
            f"embedding {tuple(embedding.shape)} and mask {tuple(mask.shape)} must agree on "
            "batch and spatial size"
        )
    embedding = embedding.to(torch.promote_types(embedding.dtype, torch.float32))  # AMP-safe
    zero = embedding.sum() * 0.0
    terms: dict[str, list[Tensor]] = {"var": [], "dis": [], "reg": []}
    for emb, labels in zip(embedding.flatten(2).transpose(1, 2), mask.flatten(1)):
        valid = labels != ignore_index
        if valid.any():
            values = _image_ccl(emb[valid], labels[valid], delta_v, delta_d)
        else:
            values = (zero, zero, zero)
        for name, value in zip(terms, values):
            terms[name].append(value)
    return {name: torch.stack(values).mean() for name, values in terms.items()}


class CCNetLoss(nn.Module):
    """Weighted sum of the CCNet losses; returns ``loss`` (to backprop) and each term unweighted
    and detached for logging: ``seg``, ``aux`` (with aux logits), ``var``/``dis``/``reg`` (with
    ``ccl`` and an embedding)."""

    def __init__(
        self,
        ignore_index: int = IGNORE_INDEX,
        aux_weight: float = 0.4,
        ohem: bool = False,
        ohem_thresh: float = 0.7,
        ohem_min_kept: int = 100000,
        ccl: bool = False,
        var_weight: float = 1.0,
        dis_weight: float = 1.0,
        reg_weight: float = 0.001,
        delta_v: float = 0.5,
        delta_d: float = 1.5,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.aux_weight = aux_weight
        self.ohem = ohem
        self.ohem_thresh = ohem_thresh
        self.ohem_min_kept = ohem_min_kept
        self.ccl = ccl
        self.ccl_weights = {"var": var_weight, "dis": dis_weight, "reg": reg_weight}
        self.delta_v = delta_v
        self.delta_d = delta_d

    def forward(
        self, outputs: dict[str, Tensor], target: Tensor, align_corners: bool = False
    ) -> dict[str, Tensor]:
        """The loss terms and their weighted sum; logits are resized to the target with
        ``align_corners`` (the model's, see :func:`src.core.inference.align_corners_of`).
        Computed in float32 whatever the autocast (bf16/fp16-mixed): OHEM's probabilities,
        the cross-entropies and the category-consistent loss's distances all need its range."""
        device = target.device.type
        with torch.autocast(device, enabled=False):
            return self._terms({k: v.float() for k, v in outputs.items()}, target, align_corners)

    def _terms(
        self, outputs: dict[str, Tensor], target: Tensor, align_corners: bool
    ) -> dict[str, Tensor]:
        size = tuple(target.shape[-2:])
        main = resize_logits(outputs["out"], size, align_corners)
        if self.ohem:
            seg = ohem_cross_entropy(
                main, target, self.ignore_index, self.ohem_thresh, self.ohem_min_kept
            )
        else:
            seg = cross_entropy(main, target, self.ignore_index)
        terms = {"seg": seg}
        total = seg
        if "aux" in outputs:
            terms["aux"] = cross_entropy(
                resize_logits(outputs["aux"], size, align_corners), target, self.ignore_index
            )
            total = total + self.aux_weight * terms["aux"]
        if self.ccl and "embedding" in outputs:
            embedding = outputs["embedding"]
            small = F.interpolate(
                target[:, None].float(), size=embedding.shape[-2:], mode="nearest"
            )
            ccl = category_consistent_loss(
                embedding, small[:, 0].long(), self.delta_v, self.delta_d, self.ignore_index
            )
            for name, value in ccl.items():
                terms[name] = value
                total = total + self.ccl_weights[name] * value
        return {"loss": total, **{k: v.detach() for k, v in terms.items()}}

    def extra_repr(self) -> str:
        return f"aux_weight={self.aux_weight}, ohem={self.ohem}, ccl={self.ccl}"


__all__ = [
    "CCNetLoss",
    "category_consistent_loss",
    "cross_entropy",
    "ohem_cross_entropy",
    "ohem_mask",
    "phi_var",
    "resize_logits",
]
