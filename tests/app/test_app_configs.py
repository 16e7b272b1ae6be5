"""Every experiment composes, every ``_target_`` resolves, and each builds its data and module.

Models are built with a small backbone (the recipes' ResNet-101 is checked by name only) on
tiny fake copies of the real dataset layouts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from app_helpers import CONF, ROOT
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, WandbLogger

from src.app import instantiate_callbacks, instantiate_loggers, instantiate_module
from src.data.fake import write_all
from src.tasks.semantic.module import SegmentationModule

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def _module_choice(experiment: str) -> str:
    """The module config an experiment selects (segmentation unless it overrides /module)."""
    defaults = OmegaConf.load(CONF / "experiment" / f"{experiment}.yaml").get("defaults", [])
    for entry in defaults:
        if isinstance(entry, DictConfig) and "override /module" in entry:
            return entry["override /module"]
        if isinstance(entry, str) and entry != "_self_":  # another experiment it extends
            return _module_choice(entry)
    return "segmentation"


# Experiments on SegmentationModule (others, e.g. instance segmentation, have their own tests).
SEGMENTATION = [e for e in EXPERIMENTS if _module_choice(e) == "segmentation"]
SMALL_MODEL = [
    "model.backbone=resnet10t",
    "model.pretrained=false",
    "model.channels=16",
    "model.aux_channels=16",
    "data.num_workers=0",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fake_data")
    write_all(root)
    return root


def load(config: str, *overrides: str, output_dir: Path | None = None) -> DictConfig:
    """The composed config (Hydra's node included) with the paths a CLI run would resolve."""
    paths = [f"paths.root_dir={ROOT}", f"paths.output_dir={output_dir or ROOT / 'logs' / 'x'}"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config, overrides=[*paths, *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def targets(node) -> list[str]:
    """Every ``_target_`` string in a (plain, unresolved) config tree."""
    if isinstance(node, dict):
        own = [node["_target_"]] if "_target_" in node else []
        return own + [t for key, value in node.items() if key != "_target_" for t in targets(value)]
    if isinstance(node, list):
        return [t for item in node for t in targets(item)]
    return []


def test_the_expected_experiments_exist():
    expected = {
        "synthetic",
        "cityscapes_rcca",
        "cityscapes_baseline",
        "cityscapes_nonlocal",
        "lip_rcca",
        "coco_rcca",
    }
    assert expected <= set(SEGMENTATION)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("config", ["train", "eval"])
def test_every_target_resolves(config, experiment):
    cfg = load(config, f"experiment={experiment}")
    found = targets(OmegaConf.to_container(cfg, resolve=False))
    assert cfg.module._target_ in found and cfg.model._target_ in found
    for target in found:
        assert get_object(target) is not None, target
    app = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    OmegaConf.to_container(app, resolve=True)  # every interpolation of the app config resolves


# The fake Cityscapes sequences have a tree of their own (the real archive unzips into the
# Cityscapes root, whose fake gtFine stems have no sequence frames).
FAKE_ROOTS = {"cityscapes_seq_rcca3d": "cityscapes_sequence"}


@pytest.mark.parametrize("experiment", SEGMENTATION)
def test_experiment_builds_its_data_and_module(experiment, data_dir, tmp_path):
    root = [f"data.root={data_dir / FAKE_ROOTS[experiment]}"] if experiment in FAKE_ROOTS else []
    cfg = load(
        "train",
        f"experiment={experiment}",
        f"paths.data_dir={data_dir}",
        *root,
        *SMALL_MODEL,
        output_dir=tmp_path,
    )
    datamodule = instantiate(cfg.data)
    module = instantiate_module(cfg, datamodule)
    assert isinstance(module, SegmentationModule)
    assert module.net.num_classes == datamodule.num_classes == module.hparams.num_classes
    assert module.hparams.class_names == datamodule.class_names
    assert module.hparams.lr == cfg.module.lr
    assert module.inference.mode == cfg.inference.mode
    callbacks = instantiate_callbacks(cfg.callbacks)
    assert sum(isinstance(c, ModelCheckpoint) for c in callbacks) == 2
    assert [type(lg) for lg in instantiate_loggers(cfg.logger)] == [CSVLogger]
    # Iteration-based training everywhere.
    assert cfg.trainer.max_epochs == -1 and cfg.trainer.check_val_every_n_epoch is None
    assert cfg.trainer.max_steps > 0 and cfg.trainer.max_steps % cfg.trainer.val_check_interval == 0


def test_default_run_is_the_synthetic_cpu_experiment():
    cfg = load("train")
    assert HydraConfig.get().runtime.choices["experiment"] == "synthetic"
    assert cfg.data.dataset._target_ == "src.data.synthetic.SyntheticSegmentationDataset"
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.devices == 1
    assert cfg.model.pretrained is False
    assert cfg.train is True and cfg.optimized_metric == "val/mIoU_best"


def test_cityscapes_rcca_is_the_paper_recipe():
    cfg = load("train", "experiment=cityscapes_rcca")
    assert cfg.model.backbone == "resnet101c" and cfg.model.recurrence == 2
    assert cfg.model.context == "rcca" and cfg.model.aux and cfg.loss.aux_weight == 0.4
    assert list(cfg.data.crop_size) == [769, 769] and cfg.data.batch_size == 2
    assert cfg.trainer.devices == 4 and cfg.trainer.strategy == "ddp"
    assert cfg.trainer.sync_batchnorm is True and cfg.trainer.max_steps == 60000
    assert (cfg.module.lr, cfg.module.momentum, cfg.module.weight_decay) == (0.01, 0.9, 5e-4)
    assert cfg.module.poly_power == 0.9 and cfg.module.head_lr_mult == 1.0
    assert cfg.loss.ohem and cfg.loss.ohem_thresh == 0.7 and cfg.loss.ohem_min_kept == 100000
    assert cfg.inference.mode == "slide"
    assert list(cfg.inference.crop_size) == [769, 769] and list(cfg.inference.stride) == [513, 513]


@pytest.mark.parametrize(
    "experiment, key, value",
    [
        ("cityscapes_baseline", "model.recurrence", 0),
        ("cityscapes_nonlocal", "model.context", "nonlocal"),
        ("cityscapes_rcca_ccl", "loss.ccl", True),
    ],
)
def test_cityscapes_variants_change_one_thing(experiment, key, value):
    base = OmegaConf.to_container(load("train", "experiment=cityscapes_rcca"), resolve=False)
    variant = load("train", f"experiment={experiment}")
    assert OmegaConf.select(variant, key) == value
    variant = OmegaConf.to_container(variant, resolve=False)
    for group in ("data", "trainer", "module", "inference"):
        assert variant[group] == base[group], group


def test_lip_uses_473_crops_20_classes_and_flip_pairs(data_dir, tmp_path):
    cfg = load(
        "train",
        "experiment=lip_rcca",
        f"paths.data_dir={data_dir}",
        *SMALL_MODEL,
        output_dir=tmp_path,
    )
    assert list(cfg.data.crop_size) == [473, 473] and cfg.inference.flip is True
    module = instantiate_module(cfg, instantiate(cfg.data))
    assert module.hparams.num_classes == 20
    assert module.hparams.flip_pairs == [[14, 15], [16, 17], [18, 19]]


def test_ccl_without_an_embedding_is_a_clear_error(tmp_path):
    cfg = load("train", "loss.ccl=true", *SMALL_MODEL, output_dir=tmp_path)
    with pytest.raises(ValueError, match="model.embed_dim"):
        instantiate_module(cfg, instantiate(cfg.data))


def test_trainer_configs():
    ddp = load("train", "trainer=ddp").trainer
    assert ddp.strategy == "ddp" and ddp.sync_batchnorm is True and ddp.accelerator == "gpu"
    sim = load("train", "trainer=ddp_sim").trainer
    assert (sim.accelerator, sim.devices, sim.strategy) == ("cpu", 2, "ddp")
    assert sim.sync_batchnorm is False  # Lightning's SyncBatchNorm needs GPUs
    assert load("train", "trainer=gpu").trainer.accelerator == "gpu"
    assert load("train", "trainer.deterministic=warn").trainer.deterministic == "warn"


def test_loggers(tmp_path):
    assert instantiate_loggers(load("train", "logger=none").logger) == []
    (wandb,) = instantiate_loggers(load("train", "logger=wandb", output_dir=tmp_path).logger)
    assert isinstance(wandb, WandbLogger)


def test_output_folders_have_sub_second_precision():
    cfg = load("train")
    assert "%f" in OmegaConf.to_container(cfg.hydra.run)["dir"]
    assert "%f" in OmegaConf.to_container(cfg.hydra.sweep)["dir"]
    assert cfg.hydra.callbacks.sweep_summary._target_ == "src.app.sweep_summary.SweepSummary"


def test_slurm_launcher_sizes_the_job_from_the_trainer():
    cfg = load("train", "experiment=cityscapes_rcca", "hydra/launcher=slurm", "trainer.num_nodes=2")
    launcher = cfg.hydra.launcher
    assert get_object(launcher._target_).__name__ == "SlurmLauncher"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)


def test_optuna_search_config():
    cfg = load("train", "hparams_search=optuna")
    sweeper = cfg.hydra.sweeper
    assert get_object(sweeper._target_).__name__ == "OptunaSweeper"
    assert sweeper.storage is None and sweeper.direction == "maximize"
    assert cfg.optimized_metric == "val/mIoU_best" and "model.recurrence" in sweeper.params


def test_inference_settings_are_built_and_checked_once_per_run(data_dir, tmp_path, monkeypatch):
    """validate_config builds the InferenceConfig; the module takes that object as it is, and
    validation batches check no setting again."""
    import torch

    from src.app.validate import validate_config
    from src.core.inference import InferenceConfig

    built = []
    original = InferenceConfig.__post_init__
    monkeypatch.setattr(
        InferenceConfig, "__post_init__", lambda self: built.append(1) or original(self)
    )
    cfg = load(
        "train",
        "experiment=synthetic",
        "inference=slide",
        "inference.crop_size=[32,32]",
        "inference.stride=[16,16]",
        *SMALL_MODEL,
        output_dir=tmp_path,
    )
    checked = validate_config(cfg)
    module = instantiate_module(cfg, instantiate(cfg.data), checked.inference)
    assert module.inference is checked.inference and built == [1]
    assert module.hparams.inference == checked.inference.as_dict()  # plain, for checkpoints
    module.eval()
    batch = {"image": torch.randn(2, 3, 40, 40), "mask": torch.zeros(2, 40, 40, dtype=torch.long)}
    module.log = lambda *args, **kwargs: None  # no trainer attached
    for index in range(3):
        module.validation_step(batch, index)
    assert built == [1]
