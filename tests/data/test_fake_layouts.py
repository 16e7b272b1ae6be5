"""src.data.fake writes the real layouts, with the features the dataset tests rely on."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from src.data.ade20k import FOLDER as ADE20K_FOLDER
from src.data.cityscapes import LABEL_ID_TO_TRAIN_ID
from src.data.fake import main


def test_cli_writes_every_layout(tmp_path, capsys):
    main(["--out", str(tmp_path)])
    assert "cityscapes:" in capsys.readouterr().out
    cs = tmp_path / "cityscapes"
    for split in ("train", "val", "test"):
        assert len(list((cs / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))) == 4
        assert len({p.parent.name for p in (cs / "leftImg8bit" / split).glob("*/*")}) == 2
    labels = np.concatenate(
        [np.array(Image.open(p)).ravel() for p in (cs / "gtFine/train").rglob("*_labelIds.png")]
    )
    assert (LABEL_ID_TO_TRAIN_ID[labels] == 255).any() and (LABEL_ID_TO_TRAIN_ID[labels] < 19).any()
    assert labels.max() <= 33

    lip = tmp_path / "lip"
    assert len((lip / "train_id.txt").read_text().split()) == 4
    assert len(list((lip / "TrainVal_images/val_images").glob("*.jpg"))) == 3

    coco = json.loads((tmp_path / "coco/annotations/instances_val2017.json").read_text())
    kinds = {
        "polygon"
        if isinstance(a["segmentation"], list)
        else "rle"
        if isinstance(a["segmentation"]["counts"], str)
        else "raw_rle"
        for a in coco["annotations"]
    }
    assert kinds == {"polygon", "rle", "raw_rle"}
    assert any(a["iscrowd"] for a in coco["annotations"])
    assert len(list((tmp_path / "coco/val2017").glob("*.jpg"))) == len(coco["images"])

    ade = tmp_path / "ade20k" / ADE20K_FOLDER
    for folder, count in (("training", 4), ("validation", 3)):
        images = sorted((ade / "images" / folder).glob("ADE_*.jpg"))
        assert len(images) == count
        assert all((ade / "annotations" / folder / f"{p.stem}.png").is_file() for p in images)
    values = np.unique(
        np.concatenate(
            [np.array(Image.open(p)).ravel() for p in (ade / "annotations").rglob("*.png")]
        )
    )
    assert values[0] == 0 and values[-1] == 150 and len(values) > 3  # 0 and several of 1..150
