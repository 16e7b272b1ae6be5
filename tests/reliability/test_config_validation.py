"""A misspelt key fails with Hydra's struct error; invalid values fail at start, before any
work, with one line naming the key (src/app/validate.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_helpers import CONF, ROOT, TINY
from cli_helpers import run_cli_status
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig

from src.app.validate import EXIT_CODE, ConfigError, dataset_num_classes, validate_config

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def composed(*overrides: str, config: str = "train", tiny: bool = True) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            config,
            overrides=[
                *(TINY if tiny else []),
                f"paths.root_dir={ROOT}",
                "paths.output_dir=/nonexistent/run",
                *overrides,
            ],
        )


INVALID = {
    "negative recurrence": (["model.recurrence=-1"], r"model\.recurrence must be an int >= 0"),
    "fractional recurrence": (["model.recurrence=1.5"], r"model\.recurrence must be an int"),
    "unknown context": (["model.context=transformer"], r"model\.context must be one of"),
    "unknown backbone": (
        ["model.backbone=resnt18d"],
        r"model\.backbone='resnt18d' is not a timm model name \(did you mean resnet18d",
    ),
    "backbone that cannot be dilated": (
        ["model.backbone=convnext_tiny"],
        r"model\.backbone='convnext_tiny' cannot run dilated at output stride 8 .*resnet",
    ),
    "added misspelt model key": (
        ["+model.recurence=2"],
        r"model\.recurence is not an argument of src\.models\.ccnet\.CCNet "
        r"\(did you mean recurrence",
    ),
    "added misspelt trainer key": (
        ["+trainer.max_step=3"],
        r"trainer\.max_step is not an argument of pytorch_lightning\.Trainer",
    ),
    "zero crop": (["data.crop_size=[0,64]"], r"data\.crop_size must be two positive ints"),
    "one-number crop": (["data.crop_size=[64]"], r"data\.crop_size must be two positive ints"),
    "crop BatchNorm cannot train on": (
        ["data.crop_size=[8,8]", "data.batch_size=1"],
        r"data\.crop_size=\[8, 8\] with data\.batch_size=1 .*BatchNorm",
    ),
    "num_classes against the data": (
        ["+model.num_classes=19"],
        r"model\.num_classes=19 disagrees with the dataset's 5 classes \(data\)",
    ),
    "slide stride beyond the tile": (
        ["inference=slide", "inference.crop_size=[64,64]", "inference.stride=[96,96]"],
        r"inference\.stride .* is larger than inference\.crop_size",
    ),
    "endless training": (["trainer.max_steps=-1"], r"trainer\.max_steps must be a positive int"),
    "missing checkpoint": (["ckpt_path=/nonexistent.ckpt"], r"ckpt_path='/nonexistent.ckpt'"),
}


@pytest.mark.parametrize("overrides, message", INVALID.values(), ids=list(INVALID))
def test_invalid_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(composed(*overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        ["+model.num_classes=5"],  # agrees with the data
        ["data.crop_size=[8,8]", "data.batch_size=2"],  # two feature values: BatchNorm trains
        ["data.crop_size=[1000,7]"],  # larger than the image: padded, any crop is possible
        ["trainer.max_steps=-1", "trainer.max_epochs=2"],  # epoch-based length
    ],
)
def test_valid_edge_values_pass(overrides):
    validate_config(composed(*overrides))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("config", ["train", "eval"])
def test_every_experiment_passes(experiment, config):
    validate_config(composed(f"experiment={experiment}", config=config, tiny=False))


def test_class_count_from_the_config_alone():
    assert dataset_num_classes(composed()) == 5
    assert dataset_num_classes(composed("experiment=cityscapes_rcca", tiny=False)) == 19


def test_misspelt_override_fails_with_hydras_message():
    """Struct mode: the CLI composes exactly like this, and prints this message."""
    with pytest.raises(ConfigCompositionException) as err:
        composed("model.recurence=2")
    message = f"{err.value} {err.value.__cause__}"
    assert "Could not override 'model.recurence'" in message
    assert "Key 'recurence' is not in struct" in message


def test_invalid_value_fails_at_start_with_one_line(tmp_path: Path):
    run_dir = tmp_path / "run"
    code, output = run_cli_status("train", "model.recurrence=-1", f"hydra.run.dir={run_dir}")
    assert code == EXIT_CODE
    lines = [line for line in output.splitlines() if "invalid config" in line]
    assert len(lines) == 1 and lines[0].endswith("model.recurrence must be an int >= 0; got -1")
    assert "Traceback" not in output
    assert "Seed set to" not in output  # nothing ran: not even seeding
    assert not (run_dir / "results.json").exists()


def test_dilation_check_applies_to_ccnet_only():
    """legacy_seresnet18 has no output_stride: no CCNet backbone, but a fine Mask R-CNN one
    (stride 4-32, undilated); the check goes by the model's _target_."""
    with pytest.raises(ConfigError, match=r"model\.backbone='legacy_seresnet18' cannot run"):
        validate_config(composed("model.backbone=legacy_seresnet18"))
    instance = composed(
        "experiment=coco_instance_rcca", "model.backbone=legacy_seresnet18", tiny=False
    )
    validate_config(instance)


def test_undilatable_backbone_fails_at_start_with_one_line(tmp_path: Path):
    """Before: it passed the check and failed later with ``list index out of range``."""
    run_dir = tmp_path / "run"
    code, output = run_cli_status(
        "train", "model.backbone=convnext_tiny", f"hydra.run.dir={run_dir}", full_error=False
    )
    assert code == EXIT_CODE
    lines = [line for line in output.splitlines() if "invalid config" in line]
    assert len(lines) == 1 and "model.backbone='convnext_tiny' cannot run dilated" in lines[0]
    assert "resnet101c" in lines[0] and "Traceback" not in output
    assert not (run_dir / "results.json").exists()
