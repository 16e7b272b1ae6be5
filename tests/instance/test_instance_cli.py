"""The instance experiments through the real CLI: ``python -m src.train`` then ``src.eval``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import ROOT, run_cli
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from instance_helpers import TINY_DETECTOR_OVERRIDES

from src.app import instantiate_module
from src.tasks.instance.module import InstanceSegmentationModule

# A CPU run of a few seconds: one process, tiny detector, one image per step.
TINY_RUN = [
    *TINY_DETECTOR_OVERRIDES,
    "trainer=cpu",
    "trainer.devices=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "data.batch_size=1",
    "data.num_workers=0",
    "module.warmup_steps=1",
]


@pytest.mark.parametrize("name", ["coco_instance_rcca", "coco_instance_baseline"])
def test_experiments_hold_the_1x_recipe(name):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={name}"])
    assert cfg.model._target_ == "src.models.mask_rcnn.RCCAMaskRCNN"
    assert cfg.module._target_ == "src.tasks.instance.module.InstanceSegmentationModule"
    assert cfg.data._target_ == "src.tasks.instance.datamodule.InstanceDataModule"
    assert "loss" not in cfg and cfg.get("inference") is None
    assert (cfg.model.context, cfg.model.recurrence) == (
        ("rcca", 2) if name == "coco_instance_rcca" else ("none", 0)
    )
    assert cfg.model.backbone == "resnet50" and cfg.model.pretrained is True
    assert cfg.data.batch_size * cfg.trainer.devices == 16 and cfg.module.lr == 0.02
    assert cfg.trainer.max_steps == 90000
    steps = [round(m * cfg.trainer.max_steps) for m in cfg.module.milestones]
    assert steps == [60000, 80000] and cfg.module.warmup_steps == 1000
    assert cfg.callbacks.model_checkpoint.monitor == "val/segm_mAP"


def test_the_app_builds_the_detector_module_without_a_loss(fake_coco):
    """instantiate_module passes a detector's module only what it takes (no criterion)."""
    overrides = [
        "experiment=coco_instance_rcca",
        f"data.root={fake_coco}",
        *TINY_DETECTOR_OVERRIDES,
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
        with_loss = compose("train", overrides=[*overrides, "loss=ccnet"])
    datamodule = instantiate(cfg.data)
    module = instantiate_module(cfg, datamodule)
    assert isinstance(module, InstanceSegmentationModule)
    assert module.hparams.class_names == ["background", "person", "car", "dog"]
    assert module.net.num_classes == 4 and not hasattr(module, "criterion")
    with pytest.raises(ValueError, match="takes no criterion"):
        instantiate_module(with_loss, datamodule)


@pytest.mark.slow  # AP against COCOeval stays in the default run (test_metric_vs_cocoeval)
def test_train_then_eval_write_box_and_mask_ap(fake_coco, tmp_path):
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    run_cli(
        "train",
        "experiment=coco_instance_rcca",
        f"data.root={fake_coco}",
        *TINY_RUN,
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "test=true",
        f"hydra.run.dir={train_dir}",
    )
    trained = json.loads((train_dir / "results.json").read_text())
    assert trained["global_step"] == 2
    metrics = ("val/bbox_mAP", "val/segm_mAP", "val/segm_mAP_best", "test/segm_mAP", "train/loss")
    for key in metrics:
        assert trained["metrics"][key] is not None, key
    assert trained["optimized_metric"] == "val/segm_mAP"
    assert trained["config"]["model.context"] == "rcca"
    checkpoint = Path(trained["last_model_path"])
    assert checkpoint.is_file()

    run_cli(
        "eval",
        "experiment=coco_instance_rcca",
        f"ckpt_path={checkpoint}",
        f"data.root={fake_coco}",
        *TINY_RUN,
        f"hydra.run.dir={eval_dir}",
    )
    evaluated = json.loads((eval_dir / "results.json").read_text())
    assert evaluated["checkpoint_global_step"] == 2
    for iou_type in ("bbox", "segm"):
        for key in ("mAP", "mAP_50", "mAP_75", "mAR_100"):
            name = f"val/{iou_type}_{key}"
            value = evaluated["metrics"][name]
            assert value == -1.0 or 0.0 <= value <= 1.0, (name, value)
        # The same weights on the same images: eval reproduces the run's last validation.
        name = f"val/{iou_type}_mAP"
        assert evaluated["metrics"][name] == pytest.approx(trained["metrics"][name], abs=1e-6)
