"""The albumentations pipelines: crop size, ignore padding, nearest masks, scale always on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augmentation,
    eval_transform,
    train_transform,
)


def normalised(image: np.ndarray) -> np.ndarray:
    """ImageNet normalisation of an HWC uint8 image, as CHW."""
    out = (image / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    return out.transpose(2, 0, 1)


def two_label_sample(h: int, w: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.full((h, w), 3, dtype=np.uint8)
    mask[:, w // 3 :] = 7
    return image, mask


def test_small_image_is_padded_to_the_crop_with_ignore():
    image, mask = two_label_sample(20, 30)
    t = train_transform((64, 48), scale_range=(1.0, 1.0), photometric=False, flip_prob=0.0)
    out = t(image=image, mask=mask)
    assert out["image"].shape == (3, 64, 48) and out["image"].dtype == torch.float32
    assert out["mask"].shape == (64, 48)
    m = out["mask"].numpy()
    assert (m == 255).sum() == 64 * 48 - 20 * 30
    np.testing.assert_array_equal(m[:20, :30], mask)  # padding goes below and right
    np.testing.assert_allclose(out["image"].numpy()[:, :20, :30], normalised(image), atol=1e-5)
    padded_pixel = out["image"][:, 40, 40].numpy()
    np.testing.assert_allclose(padded_pixel, -np.array(IMAGENET_MEAN) / IMAGENET_STD, atol=1e-5)


def test_output_is_always_the_crop_size_and_masks_stay_nearest():
    image, mask = two_label_sample(50, 70)
    t = train_transform((40, 60))
    t.set_random_seed(0)
    for _ in range(20):
        out = t(image=image, mask=mask)
        assert out["image"].shape == (3, 40, 60) and out["mask"].shape == (40, 60)
        assert set(np.unique(out["mask"].numpy())) <= {3, 7, 255}


def test_random_scale_is_always_applied():
    image, mask = two_label_sample(32, 32)
    t = train_transform((64, 64), scale_range=(2.0, 2.0), photometric=False)
    t.set_random_seed(1)
    for _ in range(10):  # scaled ×2 every time: never any padding
        assert not (t(image=image, mask=mask)["mask"] == 255).any()


def test_photometric_changes_colour_only():
    image, mask = two_label_sample(32, 32)
    kwargs = {"scale_range": (1.0, 1.0), "flip_prob": 0.0, "photometric_prob": 1.0}
    plain = train_transform((32, 32), photometric=False, **kwargs)(image=image, mask=mask)
    jittered = train_transform((32, 32), photometric=True, **kwargs)(image=image, mask=mask)
    assert torch.equal(plain["mask"], jittered["mask"])
    np.testing.assert_allclose(plain["image"].numpy(), normalised(image), atol=1e-5)
    assert not torch.allclose(plain["image"], jittered["image"], atol=1e-3)


def test_seeded_pipelines_repeat():
    image, mask = two_label_sample(50, 70)
    a, b = train_transform((32, 32)), train_transform((32, 32))
    a.set_random_seed(5)
    b.set_random_seed(5)
    for _ in range(3):
        assert torch.equal(a(image=image, mask=mask)["image"], b(image=image, mask=mask)["image"])


def test_eval_transform_normalises_the_full_image():
    image, mask = two_label_sample(37, 53)
    out = eval_transform()(image=image, mask=mask)
    np.testing.assert_allclose(out["image"].numpy(), normalised(image), atol=1e-5)
    np.testing.assert_array_equal(out["mask"].numpy(), mask)


def test_bad_scale_range_is_refused():
    with pytest.raises(ValueError, match="scale_range"):
        train_transform((32, 32), scale_range=(2.0, 0.5))


def test_augmentation_settings_come_from_one_place():
    """Augmentation holds the defaults; train_transform takes it, and named settings in place
    of some of its fields."""
    aug = Augmentation.from_config({"scale_range": [1, 1], "photometric": False})
    assert aug.scale_range == (1.0, 1.0) and aug.flip_prob == Augmentation().flip_prob
    assert Augmentation.from_config(aug) is aug and Augmentation.from_config(None) == Augmentation()
    with_photometric = train_transform((32, 32), augmentation=aug, photometric=True)
    without = train_transform((32, 32), augmentation=aug)
    assert len(with_photometric.transforms) == len(without.transforms) + 2


def test_unknown_augmentation_settings_are_named():
    with pytest.raises(ValueError, match=r"data\.augmentation\.flip\b.*flip_prob"):
        Augmentation.from_config({"flip": 0.5}, where="data.augmentation")
    with pytest.raises(ValueError, match=r"augmentation\.hue"):
        train_transform((32, 32), hue=10)
    with pytest.raises(ValueError, match="scale_range"):
        Augmentation(scale_range=(0.0, 1.0))
