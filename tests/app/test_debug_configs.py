"""``debug=NAME`` (conf/debug/) turns any experiment into a short one-process CPU run, and
``trainer=cpu`` means one CPU process whatever the experiment chose."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from app_helpers import CONF, ROOT, read_results
from cli_helpers import run_cli
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from src.app.validate import validate_config
from src.data.fake import (
    write_fake_camvid,
    write_fake_cityscapes,
    write_fake_cityscapes_sequence,
    write_fake_coco,
)

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
ONE_CPU_PROCESS = dict(
    accelerator="cpu", devices=1, num_nodes=1, strategy="auto", sync_batchnorm=False
)


def load(config: str, *overrides: str) -> DictConfig:
    """The composed config with Hydra's node, as a CLI run of ``config`` would see it."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config,
            overrides=[f"paths.root_dir={ROOT}", "paths.output_dir=/nonexistent/run", *overrides],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    return cfg


def trainer_values(cfg: DictConfig) -> dict:
    return {key: cfg.trainer[key] for key in ONE_CPU_PROCESS}


@pytest.mark.parametrize(
    "experiment, debug",
    [(e, "default") for e in EXPERIMENTS]
    + [("cityscapes_rcca", "tiny"), ("coco_instance_baseline", "tiny")],
)
def test_every_experiment_composes_as_a_short_cpu_run(experiment, debug):
    cfg = load("train", f"experiment={experiment}", f"debug={debug}")
    validate_config(cfg)
    assert trainer_values(cfg) == ONE_CPU_PROCESS
    assert cfg.trainer.max_steps <= 20 and cfg.trainer.val_check_interval == cfg.trainer.max_steps
    assert cfg.model.pretrained is False and cfg.model.backbone == "resnet10t"
    assert list(cfg.data.crop_size) == [64, 64] and cfg.data.batch_size == 2
    assert cfg.data.num_workers == 0
    if cfg.get("inference"):
        assert list(cfg.inference.crop_size) == [64, 64]  # sliding-window tiles
    run_dir = Path(cfg.hydra.run.dir)
    assert run_dir.is_relative_to(ROOT / "logs" / "debugs" / "train" / "runs" / experiment)


@pytest.mark.parametrize(
    "config, required",
    [("eval", ["ckpt_path=/x"]), ("predict", ["input=/x"]), ("export", ["output=/x"])],
)
def test_debug_composes_for_the_other_entry_points(config, required):
    """Their checkpoints' launch records carry debug=NAME: eval, predict and export compose it
    too, with the same tiny network."""
    cfg = load(config, "experiment=cityscapes_rcca", "debug=default", *required)
    assert trainer_values(cfg) == ONE_CPU_PROCESS
    assert cfg.model.backbone == "resnet10t" and cfg.model.channels == 64


def test_debug_networks_follow_the_model_and_only_when_asked():
    """The network part is chosen by the model the experiment selected (CCNet, CCNet3D or
    Mask R-CNN keys), and nothing of it applies without debug=."""
    semantic = load("train", "experiment=cityscapes_rcca", "debug=default")
    assert (semantic.model.channels, semantic.model.aux_channels) == (64, 32)
    for debug in ("default", "tiny"):
        video = load("train", "experiment=camvid_rcca3d", f"debug={debug}")
        assert video.model._target_ == "src.models.ccnet3d.CCNet3D"
        assert (video.model.channels, video.model.aux_channels) == (64, 32)
        assert video.data.clip.length == 5  # the recipe's clips stay
    instance = load("train", "experiment=coco_instance_rcca", "debug=default")
    assert instance.model.min_size == 64 and instance.model.fpn_channels == 32
    assert "channels" not in instance.model and "inference" not in instance
    recipe = load("train", "experiment=cityscapes_rcca")
    assert recipe.model.backbone == "resnet101c" and recipe.model.channels == 512
    assert list(recipe.inference.crop_size) == [769, 769]


def test_command_line_values_win_over_debug():
    cfg = load("train", "debug=default", "trainer.max_steps=50", "model.channels=32")
    assert cfg.trainer.max_steps == cfg.trainer.val_check_interval == 50
    assert cfg.model.channels == 32


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_trainer_cpu_is_one_cpu_process_whatever_the_experiment(experiment):
    cfg = load("train", f"experiment={experiment}", "trainer=cpu")
    assert trainer_values(cfg) == ONE_CPU_PROCESS


def test_recipes_keep_their_gpus_without_trainer_cpu():
    cityscapes = load("train", "experiment=cityscapes_rcca").trainer
    assert (cityscapes.devices, cityscapes.sync_batchnorm, cityscapes.strategy) == (4, True, "ddp")
    coco = load("train", "experiment=coco_instance_rcca").trainer
    assert (coco.devices, coco.sync_batchnorm, coco.strategy) == (8, False, "ddp")


@pytest.mark.parametrize(
    "experiment, writer, metric",
    [
        ("cityscapes_rcca", write_fake_cityscapes, "val/mIoU"),
        pytest.param("coco_instance_rcca", write_fake_coco, "val/segm_mAP", marks=pytest.mark.slow),
        # the video recipes: CCNet3D on 5-frame clips (debug/model/default_ccnet3d.yaml); their
        # eval and predict: tests/app/test_video_cli.py
        pytest.param("camvid_rcca3d", write_fake_camvid, "val/mIoU", marks=pytest.mark.slow),
        pytest.param(
            "cityscapes_seq_rcca3d",
            write_fake_cityscapes_sequence,
            "val/mIoU",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_paper_experiment_trains_with_debug_default_only(experiment, writer, metric, tmp_path):
    """The recipe (4 GPUs, sync BN, ImageNet weights, 769 crops...) on a CPU with one
    override, on the fake dataset tree."""
    root, run_dir = writer(tmp_path / "data"), tmp_path / "run"
    run_cli(
        "train",
        f"experiment={experiment}",
        "debug=default",
        f"data.root={root}",
        f"hydra.run.dir={run_dir}",
    )
    results = read_results(run_dir)
    assert results["global_step"] == 20 and results["world_size"] == 1
    assert math.isfinite(results["metrics"][metric])
    checkpoints = run_dir / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file() and len(list(checkpoints.glob("best_*"))) == 1
