"""LIPDataset on the fake layout, its label range, and the left/right swap on flips."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from src.data.fake import write_fake_lip
from src.data.lip import LIPDataset
from src.data.transforms import train_transform


def test_reads_layout_in_id_file_order(fake_data):
    root = fake_data["lip"]
    for split, count in (("train", 4), ("val", 3)):
        ds = LIPDataset(root, split)
        ids = (root / f"{split}_id.txt").read_text().split()
        assert len(ds) == count
        assert [ds[i]["name"] for i in range(count)] == ids
    sample = LIPDataset(root, "val")[2]
    label_dir = root / "TrainVal_parsing_annotations/val_segmentations"
    raw = np.array(Image.open(label_dir / f"{ids[2]}.png"))
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, *raw.shape)
    assert sample["mask"].dtype == torch.int64
    np.testing.assert_array_equal(sample["mask"].numpy(), raw)


def test_classes_palette_and_pairs():
    assert LIPDataset.num_classes == 20
    names = LIPDataset.class_names
    assert names[0] == "Background" and names[5] == "UpperClothes" and names[19] == "Right-shoe"
    assert len(LIPDataset.palette) == 20
    assert len({tuple(c) for c in LIPDataset.palette}) == 20
    for left, right in LIPDataset.flip_pairs:
        assert names[left].startswith("Left-") and names[right] == "Right-" + names[left][5:]
    assert LIPDataset.flip_pairs == [(14, 15), (16, 17), (18, 19)]


def test_values_beyond_the_classes_become_ignore(tmp_path):
    root = write_fake_lip(tmp_path, counts={"val": 1})
    sample_id = (root / "val_id.txt").read_text().split()[0]
    label_path = root / "TrainVal_parsing_annotations/val_segmentations" / f"{sample_id}.png"
    label = np.array(Image.open(label_path))
    label[0, :4] = [19, 20, 254, 0]
    Image.fromarray(label).save(label_path)
    assert LIPDataset(root, "val")[0]["mask"][0, :4].tolist() == [19, 255, 255, 0]


def test_flip_swaps_left_and_right_labels(fake_data):
    ds = LIPDataset(fake_data["lip"], "train")
    image, mask, _ = ds.read(0)
    mask = mask.copy()
    mask[:, : mask.shape[1] // 2] = 14  # left half: Left-arm; then a Left-leg / Right-shoe strip
    mask[0, :] = 16
    mask[1, :] = 19
    h, w = mask.shape
    flip = train_transform(
        (h, w), scale_range=(1, 1), flip_prob=1.0, flip_pairs=ds.flip_pairs, photometric=False
    )
    out = flip(image=image, mask=mask)["mask"].numpy()
    swap = np.arange(256)
    swap[[14, 15, 16, 17, 18, 19]] = [15, 14, 17, 16, 19, 18]
    np.testing.assert_array_equal(out, swap[mask[:, ::-1]])
    assert (out[2:, w - w // 2 :] == 15).all() and (out[0] == 17).all() and (out[1] == 18).all()

    keep = train_transform(
        (h, w), scale_range=(1, 1), flip_prob=0.0, flip_pairs=ds.flip_pairs, photometric=False
    )
    np.testing.assert_array_equal(keep(image=image, mask=mask)["mask"].numpy(), mask)
