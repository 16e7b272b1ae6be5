"""Losses: CE with upsampling and ignore, OHEM as the official code, the category-consistent
loss against a hand computation, and their weighted sum."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from src.core.losses import (
    CCNetLoss,
    category_consistent_loss,
    cross_entropy,
    ohem_cross_entropy,
    ohem_mask,
    phi_var,
    resize_logits,
)

IGNORE = 255


# ---------------------------------------------------------------- cross-entropy and OHEM


def test_seg_loss_upsamples_logits_bilinearly_and_ignores_255():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 7)
    target = torch.randint(0, 4, (2, 37, 53))
    target[0, :10] = IGNORE
    out = CCNetLoss()({"out": logits}, target)
    up = F.interpolate(logits, size=(37, 53), mode="bilinear", align_corners=False)
    expected = F.cross_entropy(up, target, ignore_index=IGNORE)
    torch.testing.assert_close(out["seg"], expected)
    torch.testing.assert_close(out["loss"], expected)
    assert set(out) == {"loss", "seg"}


@pytest.mark.parametrize("align_corners", [False, True])
def test_logits_are_upsampled_with_the_models_align_corners(align_corners):
    """Both heads' logits are resized with the ``align_corners`` the caller passes (the
    model's); ``resize_logits`` alone defaults to False. The default aux weight is 0.4."""
    gen = torch.Generator().manual_seed(6)
    outputs = {name: torch.randn(2, 3, 5, 7, generator=gen) for name in ("out", "aux")}
    target = torch.randint(0, 3, (2, 37, 53), generator=gen)
    result = CCNetLoss()(outputs, target, align_corners=align_corners)

    def up(x):
        return F.interpolate(x, size=(37, 53), mode="bilinear", align_corners=align_corners)

    for name, head in (("seg", "out"), ("aux", "aux")):
        torch.testing.assert_close(result[name], F.cross_entropy(up(outputs[head]), target))
    torch.testing.assert_close(result["loss"], result["seg"] + 0.4 * result["aux"])
    plain = F.interpolate(outputs["out"], size=(37, 53), mode="bilinear", align_corners=False)
    torch.testing.assert_close(resize_logits(outputs["out"], (37, 53)), plain)


def test_logits_already_at_the_labels_size_are_used_as_they_are():
    """Logits at the label's size are not run through a bilinear resize: an identity resize is
    not exact for infinite logits (0 x -inf = NaN), so a class the model masks out with -inf
    would turn every pixel's loss into NaN. Both heads stay finite and equal the plain CE."""
    gen = torch.Generator().manual_seed(10)
    outputs = {name: torch.randn(2, 3, 4, 5, generator=gen) for name in ("out", "aux")}
    for logits in outputs.values():
        logits[:, 2] = float("-inf")  # class 2 masked out everywhere
    target = torch.randint(0, 2, (2, 4, 5), generator=gen)
    for align_corners in (False, True):
        assert torch.equal(resize_logits(outputs["out"], (4, 5), align_corners), outputs["out"])
        result = CCNetLoss()(outputs, target, align_corners=align_corners)
        for name, head in (("seg", "out"), ("aux", "aux")):
            expected = F.cross_entropy(outputs[head], target)
            assert torch.isfinite(expected)
            torch.testing.assert_close(result[name], expected)


def test_a_single_valid_pixel_is_its_own_mean():
    """The mean is over the valid pixels, also when there is one (the clamp of the count
    only keeps an all-ignored batch finite)."""
    logits = torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(7))
    target = torch.full((1, 2, 2), IGNORE)
    target[0, 1, 0] = 2
    expected = F.cross_entropy(logits[:, :, 1, 0], target[:, 1, 0])
    torch.testing.assert_close(cross_entropy(logits, target), expected)


def test_a_custom_ignore_index_reaches_every_term():
    """``CCNetLoss(ignore_index=k)``: label k takes no part in the main loss (plain and OHEM,
    with the given thresh and min_kept), the aux loss or the category-consistent loss."""
    gen = torch.Generator().manual_seed(8)
    outputs = {
        "out": torch.randn(2, 4, 6, 6, generator=gen) * 3,
        "aux": torch.randn(2, 4, 6, 6, generator=gen),
        "embedding": torch.randn(2, 2, 6, 6, generator=gen),
    }
    target = torch.randint(0, 4, (2, 6, 6), generator=gen)  # label 3 is the ignored one
    result = CCNetLoss(ignore_index=3, ccl=True)(outputs, target)
    torch.testing.assert_close(
        result["seg"], F.cross_entropy(outputs["out"], target, ignore_index=3)
    )
    torch.testing.assert_close(
        result["aux"], F.cross_entropy(outputs["aux"], target, ignore_index=3)
    )
    ccl = category_consistent_loss(outputs["embedding"], target, ignore_index=3)
    for name in ("var", "dis", "reg"):
        torch.testing.assert_close(result[name], ccl[name])

    keep = ohem_mask(outputs["out"], target, 3, thresh=0.6, min_kept=5)
    assert 5 <= keep.sum() < (target != 3).sum()  # OHEM drops pixels: thresh and min_kept matter
    ohem = CCNetLoss(ignore_index=3, ohem=True, ohem_thresh=0.6, ohem_min_kept=5)
    per_pixel = F.cross_entropy(outputs["out"], target, reduction="none")
    torch.testing.assert_close(ohem(outputs, target)["seg"], per_pixel[keep].mean())
    torch.testing.assert_close(
        ohem_cross_entropy(outputs["out"], target, 3, 0.6, 5), per_pixel[keep].mean()
    )


def _binary_logits(probs: list[float], shape: tuple[int, int]) -> torch.Tensor:
    """2-class logits whose class-1 probability is ``probs`` (row-major over ``shape``)."""
    p = torch.tensor(probs, dtype=torch.float64).view(1, *shape)
    return torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))], dim=1).float()


def _official_ohem(gt_prob: list[float], valid: list[bool], thresh: float, min_kept: int):
    """The official CCNet OHEM selection, written out in plain python."""
    kept = [False] * len(gt_prob)
    valid_probs = sorted(p for p, v in zip(gt_prob, valid) if v)
    if min_kept >= len(valid_probs):
        return list(valid)
    threshold = thresh
    if min_kept > 0 and valid_probs[min_kept - 1] > thresh:
        threshold = valid_probs[min_kept - 1]
    for i, (p, v) in enumerate(zip(gt_prob, valid)):
        kept[i] = v and p <= threshold
    return kept


def test_ohem_keeps_the_pixels_below_thresh_when_there_are_enough():
    probs = [0.05, 0.95, 0.3, 0.9, 0.6, 0.99, 0.7, 0.8, 0.2, 0.75, 0.1, 0.98]
    logits = _binary_logits(probs, (3, 4))
    target = torch.ones(1, 3, 4, dtype=torch.long)
    keep = ohem_mask(logits, target, IGNORE, thresh=0.7, min_kept=3).flatten().tolist()
    assert keep == [p <= 0.7 + 1e-6 for p in probs]


def test_ohem_keeps_at_least_min_kept_and_only_the_hardest():
    torch.manual_seed(1)
    probs = torch.rand(40).mul(0.5).add(0.45).tolist()  # in (0.45, 0.95)
    logits = _binary_logits(probs, (5, 8))
    target = torch.ones(1, 5, 8, dtype=torch.long)
    target.view(-1)[::7] = IGNORE
    min_kept = 12
    keep = ohem_mask(logits, target, IGNORE, thresh=0.3, min_kept=min_kept).flatten()
    valid = (target != IGNORE).flatten()
    gt = torch.tensor(probs)
    assert keep.sum() >= min_kept
    assert not keep[~valid].any()
    assert gt[keep].max() <= gt[valid & ~keep].min()  # every dropped pixel is easier


def test_ohem_keeps_exactly_the_min_kept_hardest_when_the_kth_lies_above_thresh():
    """Only 2 pixels are below thresh (0.3) but min_kept is 5: the threshold becomes the 5th
    smallest ground-truth probability (0.62), kept itself (``<=``), so exactly the 5 hardest
    valid pixels stay. The ignored pixel is the "hardest" of all (probability 0.005 of class
    0, the class it is gathered at) and must neither be kept nor count among the 5."""
    probs = [0.9, 0.62, 0.1, 0.99, 0.61, 0.2, 0.63, 0.6, 0.95, 0.995]
    logits = _binary_logits(probs, (2, 5))
    target = torch.ones(1, 2, 5, dtype=torch.long)
    target.view(-1)[9] = IGNORE
    keep = ohem_mask(logits, target, IGNORE, thresh=0.3, min_kept=5).flatten().tolist()
    assert keep == [p in (0.1, 0.2, 0.6, 0.61, 0.62) for p in probs]
    # min_kept below the count under thresh: thresh alone decides (the max of the two)
    keep = ohem_mask(logits, target, IGNORE, thresh=0.3, min_kept=1).flatten().tolist()
    assert keep == [p in (0.1, 0.2) for p in probs]


def test_ohem_with_min_kept_one_keeps_the_hardest_pixel_above_thresh():
    logits = _binary_logits([0.9, 0.8, 0.95], (1, 3))
    target = torch.ones(1, 1, 3, dtype=torch.long)
    keep = ohem_mask(logits, target, IGNORE, thresh=0.5, min_kept=1).flatten().tolist()
    assert keep == [False, True, False]


def test_ohem_defaults_are_the_official_thresh_and_min_kept():
    """The defaults (thresh 0.7, min_kept 100000: the official code's) on a batch larger than
    min_kept: 100000 pixels at ground-truth probability 0.8 and 1000 easier ones at 0.95. The
    100000th smallest (0.8) lies above thresh, so exactly the 100000 harder pixels are kept.
    ``CCNetLoss`` uses OHEM only when asked, with the same defaults."""
    n_hard, n_easy = 100_000, 1_000
    logits = _binary_logits([0.8] * n_hard + [0.95] * n_easy, (1, n_hard + n_easy))
    target = torch.ones(1, 1, n_hard + n_easy, dtype=torch.long)
    keep = ohem_mask(logits, target).flatten()
    assert keep[:n_hard].all() and not keep[n_hard:].any()
    hard = -math.log(0.8)
    everything = (n_hard * hard - n_easy * math.log(0.95)) / (n_hard + n_easy)
    assert ohem_cross_entropy(logits, target).item() == pytest.approx(hard, rel=1e-5)
    assert CCNetLoss(ohem=True)({"out": logits}, target)["seg"].item() == pytest.approx(
        hard, rel=1e-5
    )
    assert CCNetLoss()({"out": logits}, target)["seg"].item() == pytest.approx(everything, rel=1e-5)


def test_ohem_keeps_every_valid_pixel_when_too_few():
    logits = torch.randn(1, 3, 4, 4)
    target = torch.randint(0, 3, (1, 4, 4))
    target[0, 0] = IGNORE
    keep = ohem_mask(logits, target, IGNORE, thresh=0.7, min_kept=100)
    assert torch.equal(keep, target != IGNORE)


@pytest.mark.parametrize(("thresh", "min_kept"), [(0.7, 50), (0.2, 50), (0.5, 0), (0.9, 200)])
def test_ohem_selection_equals_the_official_algorithm(thresh, min_kept):
    torch.manual_seed(2)
    logits = torch.randn(2, 4, 9, 11) * 2
    target = torch.randint(0, 4, (2, 9, 11))
    target[target == 3] = IGNORE
    valid = target != IGNORE
    gt = torch.softmax(logits, 1).gather(1, target.clamp(max=3)[:, None])[:, 0]
    expected = _official_ohem(gt.flatten().tolist(), valid.flatten().tolist(), thresh, min_kept)
    keep = ohem_mask(logits, target, IGNORE, thresh, min_kept)
    assert keep.flatten().tolist() == expected


def test_ohem_loss_is_the_mean_over_kept_pixels():
    torch.manual_seed(3)
    logits = torch.randn(1, 3, 6, 6, requires_grad=True)
    target = torch.randint(0, 3, (1, 6, 6))
    keep = ohem_mask(logits, target, IGNORE, 0.5, 10)
    per_pixel = F.cross_entropy(logits, target, reduction="none")
    torch.testing.assert_close(
        ohem_cross_entropy(logits, target, IGNORE, 0.5, 10), per_pixel[keep].mean()
    )


def test_all_ignore_batch_gives_zero_loss_and_finite_gradients():
    torch.manual_seed(4)
    outputs = {
        "out": torch.randn(2, 3, 4, 4, requires_grad=True),
        "aux": torch.randn(2, 3, 4, 4, requires_grad=True),
        "embedding": torch.randn(2, 2, 4, 4, requires_grad=True),
    }
    target = torch.full((2, 32, 32), IGNORE)
    for ohem in (False, True):
        result = CCNetLoss(ohem=ohem, ccl=True, ohem_min_kept=10)(outputs, target)
        assert torch.isfinite(result["loss"]) and result["loss"].item() == 0.0
        result["loss"].backward()
        for tensor in outputs.values():
            assert torch.isfinite(tensor.grad).all()
    assert cross_entropy(outputs["out"], target[:, :4, :4]).item() == 0.0


# ---------------------------------------------------------------- category-consistent loss


def _phi(d: float, dv: float, dd: float) -> float:
    if d <= dv:
        return 0.0
    if d <= dd:
        return (d - dv) ** 2
    return d - dd + (dd - dv) ** 2


def _mean(points):
    return tuple(sum(c) / len(points) for c in zip(*points))


def _hand_ccl(classes: dict[int, list[tuple[float, float]]], dv: float, dd: float):
    """l_var, l_dis, l_reg of one image by the formulas, in plain python."""
    means = {c: _mean(pts) for c, pts in classes.items()}
    n = len(classes)
    var = (
        sum(
            sum(_phi(math.dist(means[c], p), dv, dd) for p in pts) / len(pts)
            for c, pts in classes.items()
        )
        / n
    )
    dis = 0.0
    if n > 1:
        pairs = [(a, b) for a in means for b in means if a != b]
        dis = sum(max(0.0, 2 * dd - math.dist(means[a], means[b])) ** 2 for a, b in pairs)
        dis /= n * (n - 1)
    reg = sum(math.hypot(*m) for m in means.values()) / n
    return var, dis, reg


def test_phi_var_is_quadratic_up_to_and_at_delta_d_and_linear_only_beyond():
    """The paper's pull term: 0 up to delta_v, (d - delta_v)^2 for delta_v < d <= delta_d,
    d - delta_d + (delta_d - delta_v)^2 beyond. The pieces meet at d = delta_d, but their
    slopes differ there (2 (delta_d - delta_v) = 2 against 1), so the quadratic piece must
    hold at delta_d itself: it sets the gradient of a pixel exactly delta_d from its mean."""
    distance = torch.tensor([0.25, 0.5, 1.0, 1.5, 2.5], dtype=torch.float64, requires_grad=True)
    value = phi_var(distance, 0.5, 1.5)
    assert value.tolist() == [0.0, 0.0, 0.25, 1.0, 2.0]
    value.sum().backward()
    assert distance.grad.tolist() == [0.0, 0.0, 1.0, 2.0, 1.0]


# class 3 spans all three pieces of phi_var (around its mean (0, 0): d = 2, 2, 0.3, 0.3);
# class 7 sits in the quadratic piece (d = 1) and close enough to class 3 to be pushed.
CLASSES = {
    3: [(-2.0, 0.0), (2.0, 0.0), (0.0, 0.3), (0.0, -0.3)],
    7: [(1.0, 1.0), (1.0, 3.0)],
}
IGNORED = [(100.0, -50.0), (7.0, 7.0)]


def _image(classes, ignored) -> tuple[torch.Tensor, torch.Tensor]:
    """(D=2, 2, 4) embedding and (2, 4) mask holding the points of ``classes`` and ``ignored``."""
    points = [(p, c) for c, pts in classes.items() for p in pts] + [(p, IGNORE) for p in ignored]
    assert len(points) == 8
    embedding = torch.tensor([p for p, _ in points], dtype=torch.float64).T.reshape(2, 2, 4)
    mask = torch.tensor([c for _, c in points]).reshape(2, 4)
    return embedding, mask


def test_hand_example_hits_every_piece_of_phi_var():
    distances = [math.dist(_mean(pts), p) for pts in CLASSES.values() for p in pts]
    pieces = {0 if d <= 0.5 else 1 if d <= 1.5 else 2 for d in distances}
    assert pieces == {0, 1, 2}
    assert math.dist(_mean(CLASSES[3]), _mean(CLASSES[7])) < 2 * 1.5  # l_dis is non-zero


@pytest.mark.parametrize(("dv", "dd"), [(0.5, 1.5), (0.2, 1.25)])
def test_category_consistent_loss_equals_the_formulas(dv, dd):
    embedding, mask = _image(CLASSES, IGNORED)
    result = category_consistent_loss(embedding[None], mask[None], delta_v=dv, delta_d=dd)
    var, dis, reg = _hand_ccl(CLASSES, dv, dd)
    assert dis > 0 and var > 0
    assert result["var"].item() == pytest.approx(var, rel=1e-12)
    assert result["dis"].item() == pytest.approx(dis, rel=1e-12)
    assert result["reg"].item() == pytest.approx(reg, rel=1e-12)


def test_category_consistent_loss_equals_the_formulas_for_three_classes_off_the_origin():
    """Three classes, no mean at the origin: ``dis`` averages over the num × (num - 1) ordered
    pairs and pushes on the distance between means (a difference, not a sum)."""
    classes = {
        0: [(1.0, 2.0), (1.5, 2.0), (1.0, 2.5)],
        4: [(2.0, 1.0), (2.5, 0.5)],
        9: [(0.5, 0.5), (3.0, 3.0), (1.2, 1.0)],
    }
    embedding, mask = _image(classes, [])
    result = category_consistent_loss(embedding[None], mask[None])
    for name, expected in zip(("var", "dis", "reg"), _hand_ccl(classes, 0.5, 1.5)):
        assert expected > 0
        assert result[name].item() == pytest.approx(expected, rel=1e-12), name


def test_category_consistent_loss_rejects_a_mask_of_another_size():
    embedding = torch.randn(2, 3, 4, 4)
    for mask in (torch.zeros(1, 4, 4), torch.zeros(2, 4, 5)):  # batch, then spatial size
        with pytest.raises(ValueError, match="must agree"):
            category_consistent_loss(embedding, mask.long())


def test_category_consistent_loss_averages_over_images_and_skips_empty_ones():
    embedding, mask = _image(CLASSES, IGNORED)
    one_class = {5: [(0.5, 0.5)] * 2 + [(3.0, 0.0)] * 5 + [(1.0, 1.0)]}
    embedding2, mask2 = _image(one_class, [])
    empty = torch.full_like(mask, IGNORE)
    batch = torch.stack([embedding, embedding2, embedding2.clone()]).requires_grad_(True)
    result = category_consistent_loss(batch, torch.stack([mask, mask2, empty]))
    first, second = _hand_ccl(CLASSES, 0.5, 1.5), _hand_ccl(one_class, 0.5, 1.5)
    assert second[1] == 0.0
    for i, name in enumerate(("var", "dis", "reg")):
        assert result[name].item() == pytest.approx((first[i] + second[i]) / 3, rel=1e-12)
    sum(result.values()).backward()
    assert torch.isfinite(batch.grad).all()
    assert batch.grad[2].abs().sum() == 0  # the empty image takes no part


def test_single_pixel_class_has_finite_gradients():
    embedding = torch.randn(1, 3, 2, 2, requires_grad=True)
    mask = torch.tensor([[[0, 1], [1, IGNORE]]])  # class 0 has one pixel: d = 0 to its mean
    result = category_consistent_loss(embedding, mask)
    sum(result.values()).backward()
    assert all(torch.isfinite(v) for v in result.values())
    assert torch.isfinite(embedding.grad).all()


# ---------------------------------------------------------------- the weighted sum


def test_ccnet_loss_weights_terms_and_downsamples_labels_for_ccl():
    torch.manual_seed(5)
    small = torch.randint(0, 3, (2, 4, 5))
    small[0, 0, 0] = IGNORE
    target = small.repeat_interleave(8, dim=1).repeat_interleave(8, dim=2)  # 32 x 40
    outputs = {
        "out": torch.randn(2, 3, 4, 5, requires_grad=True),
        "aux": torch.randn(2, 3, 4, 5, requires_grad=True),
        "embedding": torch.randn(2, 6, 4, 5, requires_grad=True),
    }
    weights = dict(aux_weight=0.3, var_weight=2.0, dis_weight=0.5, reg_weight=0.01)
    result = CCNetLoss(ccl=True, delta_v=0.4, delta_d=1.2, **weights)(outputs, target)
    assert set(result) == {"loss", "seg", "aux", "var", "dis", "reg"}
    ccl = category_consistent_loss(outputs["embedding"], small, delta_v=0.4, delta_d=1.2)
    for name in ("var", "dis", "reg"):
        torch.testing.assert_close(result[name], ccl[name].detach())
    total = (
        result["seg"]
        + 0.3 * result["aux"]
        + 2.0 * result["var"]
        + 0.5 * result["dis"]
        + 0.01 * result["reg"]
    )
    torch.testing.assert_close(result["loss"], total)
    assert all(not v.requires_grad for k, v in result.items() if k != "loss")
    result["loss"].backward()
    assert outputs["embedding"].grad.abs().sum() > 0


def test_ccl_defaults_are_the_papers_weights_and_margins():
    """``CCNetLoss(ccl=True)`` weighs var, dis and reg by 1, 1 and 0.001 with margins
    delta_v 0.5 and delta_d 1.5; the plain ``CCNetLoss()`` has no CCL term even when the
    model returns an embedding."""
    gen = torch.Generator().manual_seed(9)
    outputs = {
        "out": torch.randn(2, 3, 4, 4, generator=gen),
        "aux": torch.randn(2, 3, 4, 4, generator=gen),
        "embedding": torch.randn(2, 2, 4, 4, generator=gen) * 2,
    }
    target = torch.randint(0, 3, (2, 4, 4), generator=gen)
    assert set(CCNetLoss()(outputs, target)) == {"loss", "seg", "aux"}
    result = CCNetLoss(ccl=True)(outputs, target)
    ccl = category_consistent_loss(outputs["embedding"], target, delta_v=0.5, delta_d=1.5)
    for name in ("var", "dis", "reg"):
        torch.testing.assert_close(result[name], ccl[name])
    total = result["seg"] + 0.4 * result["aux"] + ccl["var"] + ccl["dis"] + 0.001 * ccl["reg"]
    torch.testing.assert_close(result["loss"], total)


def test_ccl_needs_both_the_flag_and_an_embedding():
    outputs = {"out": torch.randn(1, 3, 4, 4), "embedding": torch.randn(1, 2, 4, 4)}
    target = torch.randint(0, 3, (1, 16, 16))
    assert set(CCNetLoss(ccl=False)(outputs, target)) == {"loss", "seg"}
    assert set(CCNetLoss(ccl=True)({"out": outputs["out"]}, target)) == {"loss", "seg"}


def test_category_consistent_loss_of_half_embeddings_is_computed_in_float32():
    embedding, mask = _image(CLASSES, IGNORED)
    half = category_consistent_loss(embedding[None].half(), mask[None])
    full = category_consistent_loss(embedding[None].float(), mask[None])
    for name in ("var", "dis", "reg"):
        assert half[name].dtype == torch.float32
        torch.testing.assert_close(half[name], full[name], rtol=1e-3, atol=1e-3)


def test_the_loss_is_computed_in_float32_under_autocast() -> None:
    """bf16/fp16-mixed training: OHEM, the cross-entropies and the CCL get float32 inputs."""
    gen = torch.Generator().manual_seed(0)
    outputs = {
        "out": torch.randn(2, 4, 8, 8, generator=gen).bfloat16(),
        "aux": torch.randn(2, 4, 8, 8, generator=gen).bfloat16(),
        "embedding": torch.randn(2, 3, 8, 8, generator=gen).bfloat16(),
    }
    target = torch.randint(0, 4, (2, 32, 32), generator=gen)
    criterion = CCNetLoss(ohem=True, ohem_min_kept=10, ccl=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = criterion(outputs, target)
    exact = criterion({k: v.float() for k, v in outputs.items()}, target)
    for name, value in mixed.items():
        assert value.dtype == torch.float32, name
        torch.testing.assert_close(value, exact[name], rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_full_loss_on_cuda_equals_the_cpu():
    """OHEM's threshold, the category-consistent loss's masks and counts are made on the
    logits' device: every term on CUDA, under fp16 autocast too, equals the CPU one."""
    gen = torch.Generator().manual_seed(3)
    outputs = {
        "out": torch.randn(2, 4, 6, 6, generator=gen),
        "aux": torch.randn(2, 4, 6, 6, generator=gen),
        "embedding": torch.randn(2, 3, 6, 6, generator=gen),
    }
    target = torch.randint(0, 4, (2, 12, 12), generator=gen)
    target[:, :2] = IGNORE
    loss = CCNetLoss(ohem=True, ohem_min_kept=50, ccl=True)
    cpu = loss(outputs, target)
    with torch.autocast("cuda", dtype=torch.float16):
        cuda = loss({k: v.cuda() for k, v in outputs.items()}, target.cuda())
    for name, value in cpu.items():
        assert cuda[name].dtype == torch.float32, name
        torch.testing.assert_close(cuda[name].cpu(), value, rtol=1e-4, atol=1e-5, msg=name)
