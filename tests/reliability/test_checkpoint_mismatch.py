"""A checkpoint made for another backbone or number of classes fails up front, naming both
sides and the config keys: resume (train), eval, predict and export."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_helpers import CONF, ROOT, TINY
from cli_helpers import run_cli
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from src.app.checkpoint import CheckpointMismatchError, load_checkpoint, net_from_checkpoint


def last_checkpoint(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.ckpt"


def test_checkpoints_record_the_model_they_were_trained_with(uninterrupted_run):
    hparams = load_checkpoint(last_checkpoint(uninterrupted_run))["hyper_parameters"]
    model = hparams["model_config"]
    assert model["target"] == "src.models.ccnet.CCNet" and model["backbone"] == "resnet10t"
    assert hparams["num_classes"] == 5


def test_resume_with_another_backbone_fails_before_building_it(uninterrupted_run, tmp_path):
    run_dir = tmp_path / "run"
    ckpt = last_checkpoint(uninterrupted_run)
    output = run_cli(
        "train",
        *TINY,
        "model.backbone=resnet18d",
        f"ckpt_path={ckpt}",
        f"hydra.run.dir={run_dir}",
        check=False,
    )
    expected = (
        f"CheckpointMismatchError: ckpt_path='{ckpt}' was trained with backbone resnet10t; "
        "the config asks for backbone resnet18d (model.backbone)"
    )
    assert expected in output
    assert "Trainable params" not in output  # failed before the model summary
    assert not (run_dir / "results.json").exists()


def compose_eval(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "eval",
            overrides=[*TINY, f"paths.root_dir={ROOT}", f"paths.output_dir={tmp_path}", *overrides],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_eval_names_backbone_and_classes(uninterrupted_run, tmp_path):
    from src.eval import evaluate

    ckpt = last_checkpoint(uninterrupted_run)
    cfg = compose_eval(
        tmp_path, f"ckpt_path={ckpt}", "model.backbone=resnet18d", "data.dataset.num_classes=4"
    )
    message = (
        f"ckpt_path='{ckpt}' was trained with backbone resnet10t and 5 classes; the config asks "
        "for backbone resnet18d and 4 classes (model.backbone, data)"
    )
    with pytest.raises(CheckpointMismatchError) as err:
        evaluate(cfg)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "override, named",
    [("model.context=nonlocal", "context rcca"), ("model.channels=32", "channels 16")],
)
def test_predict_and_export_name_the_architecture_key(uninterrupted_run, tmp_path, override, named):
    """predict and export rebuild the net with net_from_checkpoint (classes from the checkpoint)."""
    ckpt = last_checkpoint(uninterrupted_run)
    cfg = compose_eval(tmp_path, f"ckpt_path={ckpt}", override)
    key = override.split("=")[0]
    with pytest.raises(CheckpointMismatchError, match=rf"trained with {named};.*\({key}\)"):
        net_from_checkpoint(cfg.model, load_checkpoint(ckpt), path=ckpt)


def test_matching_config_rebuilds_the_net(uninterrupted_run, tmp_path):
    ckpt = last_checkpoint(uninterrupted_run)
    cfg = compose_eval(tmp_path, f"ckpt_path={ckpt}", "model.recurrence=1")  # no weight change
    net = net_from_checkpoint(cfg.model, load_checkpoint(ckpt), path=ckpt)
    assert net.num_classes == 5 and not net.training
