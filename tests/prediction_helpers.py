"""Shared by the predict / export / eval-export tests: a fake Cityscapes tree, a tiny
checkpoint trained on it for two steps, and the entry points run in a subprocess.

The checkpoint is made once per pytest session (cached in the session's temp folder) by a
real Lightning ``fit`` of the app's SegmentationModule; afterwards its attention ``gamma`` is
set to 0.5 so that the criss-cross path changes the logits (a fresh one is the identity).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cli_helpers
import torch

ROOT = cli_helpers.ROOT
CONF = ROOT / "conf"

# The model of every checkpoint here: resnet10t, 16-channel heads, RCCA with R=2.
MODEL = ["model.backbone=resnet10t", "model.channels=16", "model.aux_channels=16"]
GAMMA = 0.5


@dataclass(frozen=True)
class TinyCityscapes:
    """A fake Cityscapes root and a checkpoint of a 19-class model trained on it."""

    root: Path
    ckpt: Path

    def overrides(self) -> list[str]:
        """The CLI overrides that rebuild this model on this data (CPU, no workers)."""
        return [
            "data=cityscapes",
            f"data.root={self.root}",
            "data.num_workers=0",
            "data.persistent_workers=false",
            *MODEL,
        ]


def compose_config(name: str, overrides: list[str]):
    """The composed app config ``conf/<name>.yaml`` with ``overrides`` (no Hydra run)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose(config_name=name, overrides=overrides)


def tiny_cityscapes(base: Path) -> TinyCityscapes:
    """Write (once per ``base``) the fake tree and a two-step checkpoint under ``base``."""
    import hydra
    import pytorch_lightning as pl

    from src.app import instantiate_module
    from src.data.fake import write_fake_cityscapes

    root, ckpt = base / "cityscapes", base / "tiny.ckpt"
    tiny = TinyCityscapes(root, ckpt)
    if ckpt.is_file():
        return tiny
    write_fake_cityscapes(root, image_size=(64, 128), images_per_city=2, splits=("train", "val"))
    cfg = compose_config(
        "train", [*tiny.overrides(), "data.crop_size=[64,64]", "data.batch_size=2"]
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pl.seed_everything(0, verbose=False)
        datamodule = hydra.utils.instantiate(cfg.data)
        module = instantiate_module(cfg, datamodule)
        trainer = pl.Trainer(
            accelerator="cpu",
            max_steps=2,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
        )
        trainer.fit(module, datamodule=datamodule)
        gammas = [p for n, p in module.net.named_parameters() if n.endswith("gamma")]
        assert gammas, "the tiny model has no attention gamma"
        with torch.no_grad():
            for gamma in gammas:
                gamma.fill_(GAMMA)
        trainer.save_checkpoint(ckpt)
    finally:
        torch.set_num_threads(threads)
    return tiny


def run_cli(entry: str, *overrides: str, timeout: int = 300) -> str:
    """The shared :func:`cli_helpers.run_cli` with W&B disabled (these runs log to no W&B)."""
    return cli_helpers.run_cli(entry, *overrides, timeout=timeout, wandb_mode="disabled")
