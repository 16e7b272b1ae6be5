"""conf/data/*.yaml compose through their shared bases (conf/data/base/) and instantiate the
DataModule with the stable keys, on the fake layouts; the YAML augmentation defaults are the
Python ones."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import hydra
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, ListConfig, OmegaConf

from src.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Augmentation
from src.tasks.instance.datamodule import InstanceDataModule
from src.tasks.semantic.datamodule import SegmentationDataModule

CONF = Path(__file__).resolve().parents[2] / "conf"
DATA_CONFIGS = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
SEMANTIC = [n for n in DATA_CONFIGS if n != "coco_instance"]
STABLE_KEYS = ("root", "batch_size", "crop_size", "num_workers")


def load(name: str, data_dir: Path, *extra: str, **overrides) -> DictConfig:
    """The data group option ``name`` as Hydra composes it (its bases included), next to the
    ``paths.data_dir`` and ``seed`` it interpolates; ``overrides`` set ``data.<key>``."""
    keys = [f"data.{key}={value}" for key, value in overrides.items()]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            overrides=[f"+data={name}", f"+paths.data_dir={data_dir}", "+seed=7", *keys, *extra]
        )


def compose_app(*overrides: str) -> DictConfig:
    """The training config as the CLI composes it (without resolving interpolations)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_there_are_data_configs():
    expected = {"synthetic", "cityscapes", "lip", "coco", "ade20k", "context_toy", "coco_instance"}
    assert expected <= set(DATA_CONFIGS)


@pytest.mark.parametrize("name", DATA_CONFIGS)
def test_every_data_config_composes_with_the_stable_keys(name, tmp_path):
    data = load(name, tmp_path).data
    assert all(key in data for key in ("root", "batch_size", "num_workers", "seed"))
    assert data.seed == 7 and data.val_batch_size >= 1
    if name in SEMANTIC:
        assert all(key in data for key in STABLE_KEYS)
        assert data._target_ == "src.tasks.semantic.datamodule.SegmentationDataModule"
        assert data.dataset._partial_ is True
        Augmentation.from_config(data.augmentation)  # every key known, every value valid
    # and it composes in the application's config, chosen on the command line
    assert compose_app(f"data={name}").data._target_ == data._target_


def test_base_augmentation_is_the_python_default_field_by_field():
    """conf/data/base/segmentation.yaml restates Augmentation's defaults: keep them equal."""
    base = OmegaConf.to_container(OmegaConf.load(CONF / "data/base/segmentation.yaml"))
    defaults = asdict(Augmentation())
    assert list(base["augmentation"]) == list(defaults)  # same fields, same order
    for field, value in defaults.items():
        expected = list(value) if isinstance(value, tuple) else value
        assert base["augmentation"][field] == expected, field
    assert base["mean"] == list(IMAGENET_MEAN) and base["std"] == list(IMAGENET_STD)


@pytest.mark.parametrize("name", SEMANTIC)
def test_dataset_configs_set_only_what_differs(name):
    """Values equal to the base's are not restated (they would hide a change of the base)."""
    own = OmegaConf.to_container(OmegaConf.load(CONF / "data" / f"{name}.yaml"))
    base = OmegaConf.to_container(OmegaConf.load(CONF / "data/base/segmentation.yaml"))
    base.update(OmegaConf.to_container(OmegaConf.load(CONF / "data/base/loader.yaml")))
    assert own.pop("defaults") == ["base/segmentation@_here_", "_self_"]
    for key, value in own.items():
        if key == "augmentation":
            for field, setting in value.items():
                assert setting != base[key][field], f"{name}: augmentation.{field}"
        else:
            assert base.get(key, object()) != value, f"{name}: {key}"


def test_dataset_configs_override_the_base(tmp_path):
    synthetic = load("synthetic", tmp_path).data
    assert synthetic.num_workers == 0 and synthetic.pin_memory is False
    assert list(synthetic.augmentation.scale_range) == [0.75, 1.5]
    assert synthetic.augmentation.photometric is False and synthetic.augmentation.flip_prob == 0.5
    cityscapes = load("cityscapes", tmp_path).data
    assert cityscapes.num_workers == 4 and cityscapes.augmentation.photometric is True
    assert list(cityscapes.mean) == list(IMAGENET_MEAN)


@pytest.mark.parametrize(
    "name, classes, val_names",
    [
        ("synthetic", 5, ["synthetic_val_00000"]),
        ("cityscapes", 19, ["frankfurt_000000_000019"]),
        ("lip", 20, None),
        ("coco", 4, ["000000000007"]),
        ("ade20k", 150, ["ADE_val_00000001"]),
    ],
)
def test_config_builds_a_working_datamodule(fake_data, name, classes, val_names):
    data_dir = next(iter(fake_data.values())).parent
    cfg = load(name, data_dir, num_workers=0, crop_size=[32, 32], batch_size=2)
    dm = hydra.utils.instantiate(cfg.data)
    assert isinstance(dm, SegmentationDataModule)
    assert dm.num_classes == classes and dm.ignore_index == 255 and dm.seed == 7
    assert dm.augmentation == Augmentation.from_config(cfg.data.augmentation)
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    assert train["image"].shape == (2, 3, 32, 32)
    val = next(iter(dm.val_dataloader()))
    if val_names is not None:
        assert val["name"][: len(val_names)] == val_names


def test_instance_config_builds_a_working_datamodule(fake_data):
    cfg = load("coco_instance", fake_data["coco"].parent, num_workers=0)
    dm = hydra.utils.instantiate(cfg.data)
    assert isinstance(dm, InstanceDataModule)
    assert dm.num_classes == 4 and dm.seed == 7 and dm.val_batch_size == 1
    assert dm.persistent_workers is False  # no workers: nothing to keep alive


def test_an_unknown_augmentation_key_is_named(tmp_path):
    cfg = load("synthetic", tmp_path, "+data.augmentation.flip=0.5")
    with pytest.raises(Exception, match=r"data\.augmentation\.flip") as error:
        hydra.utils.instantiate(cfg.data)
    assert "flip_prob" in str(error.value)  # and lists the known settings


def test_default_roots_follow_paths_data_dir(tmp_path):
    for name in ("cityscapes", "lip", "coco", "ade20k", "coco_instance"):
        cfg = load(name, tmp_path)
        assert cfg.data.root == f"{tmp_path}/{name.removesuffix('_instance')}"


@pytest.mark.parametrize(
    "choice, key, value",
    [
        ("data=synthetic", "data.crop_size", [96, 96]),
        ("data=synthetic", "data.batch_size", 8),
        ("inference=whole", "inference.mode", "whole"),
    ],
)
def test_a_group_chosen_on_the_command_line_wins_over_the_experiment(choice, key, value):
    """An experiment sets only what differs from its groups, so another group chosen on the
    command line keeps its own values (cityscapes_rcca used to force slide inference and
    Cityscapes crops on whatever was chosen)."""
    found = OmegaConf.select(compose_app("experiment=cityscapes_rcca", choice), key)
    assert (list(found) if isinstance(found, ListConfig) else found) == value
