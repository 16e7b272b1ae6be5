"""``module.compile`` and ``module.channels_last``: the same training as the default, a
checkpoint that resumes either way, and clear errors for bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from src.core.losses import CCNetLoss
from src.core.module import compile_options
from src.models.ccnet import CCNet
from src.tasks.semantic.module import SegmentationModule

CLASSES = 3


class Shapes(Dataset):
    """Eight 32×32 images whose mask is a bright square (learnable, deterministic)."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(index)
        image = torch.randn(3, 32, 32, generator=gen) * 0.1
        mask = torch.zeros(32, 32, dtype=torch.long)
        y, x = (index * 5) % 16, (index * 3) % 16
        image[:, y : y + 12, x : x + 12] += 1.0
        mask[y : y + 12, x : x + 12] = 1 + index % 2
        return {"image": image, "mask": mask}


class LossRecorder(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

        self.layouts: set[bool] = set()

    def on_train_start(self, trainer, module) -> None:
        def record(net, inputs):  # the layout of the images the net sees
            self.layouts.add(inputs[0].is_contiguous(memory_format=torch.channels_last))

        module.net.register_forward_pre_hook(record)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def train(steps: int = 3, ckpt: Path | None = None, resume: Path | None = None, **speed):
    """Losses of ``steps`` SGD steps of a tiny CCNet (fixed seed) with the given options."""
    pl.seed_everything(0)
    net = CCNet(CLASSES, backbone="resnet10t", channels=16, aux_channels=16, dropout=0.0)
    net.aux_head.dropout.p = 0.0  # compiled dropout draws other random numbers than eager
    module = SegmentationModule(net, CCNetLoss(), CLASSES, lr=0.05, **speed)
    recorder = LossRecorder()
    trainer = pl.Trainer(
        max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, callbacks=[recorder],
        deterministic=True,
    )  # fmt: skip
    loader = DataLoader(Shapes(), batch_size=2, shuffle=False)
    trainer.fit(module, loader, ckpt_path=str(resume) if resume else None)
    if ckpt is not None:
        trainer.save_checkpoint(ckpt)
    module.layouts = recorder.layouts
    return recorder.losses, module


def test_channels_last_trains_like_the_default_layout() -> None:
    expected, default = train()
    got, module = train(channels_last=True)
    assert default.layouts == {False} and module.layouts == {True}
    assert module.net.head.reduce[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow  # ~1 minute; the compiled op's gradients: tests/test_attention.py (default)
def test_compiled_training_matches_eager_and_checkpoints_resume(tmp_path: Path) -> None:
    """aot_eager = dynamo + AOTAutograd (the graph capture and the traced backward that
    inductor also uses; inductor's kernels add float reordering only)."""
    expected, _ = train(steps=4)
    ckpt = tmp_path / "compiled.ckpt"
    got, _ = train(steps=4, ckpt=ckpt, compile={"backend": "aot_eager"})
    assert got == pytest.approx(expected, rel=1e-5)
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert "net.head.classifier.weight" in state  # plain names: no _orig_mod
    resumed, module = train(steps=5, resume=ckpt)  # resumed without compile: same names
    assert len(resumed) == 1 and module.global_step == 5


def test_compile_settings_are_checked() -> None:
    assert compile_options(False) is None and compile_options(True) == {}
    assert compile_options({"mode": "max-autotune"}) == {"mode": "max-autotune"}
    with pytest.raises(ValueError, match="module.compile.fulgraph is not a torch.compile"):
        compile_options({"fulgraph": True})
    with pytest.raises(ValueError, match="module.compile must be true, false"):
        compile_options("yes")


def test_fp16_autocast_with_gradient_scaling_matches_fp32() -> None:
    """What ``trainer.precision=16-mixed`` does on a GPU (Lightning substitutes bf16 on a CPU):
    fp16 autocast with a GradScaler. The op runs its half path, the losses stay fp32, and one
    scaled step's loss and gradients (all parameters) agree with fp32's."""
    torch.manual_seed(0)
    net = CCNet(CLASSES, backbone="resnet10t", channels=16, aux_channels=16, dropout=0.0)
    net.aux_head.dropout.p = 0.0
    torch.nn.init.constant_(net.head.context.cca.gamma, 0.5)  # the attention takes part
    batch = [Shapes()[i] for i in range(2)]
    images = torch.stack([b["image"] for b in batch])
    masks = torch.stack([b["mask"] for b in batch])
    criterion = CCNetLoss()

    def step(fp16: bool) -> tuple[float, torch.Tensor]:
        net.zero_grad()
        scaler = torch.amp.GradScaler("cpu", enabled=fp16, init_scale=2.0**10)
        with torch.autocast("cpu", dtype=torch.float16, enabled=fp16):
            outputs = net(images)
            assert outputs["out"].dtype == (torch.float16 if fp16 else torch.float32)
            loss = criterion(outputs, masks)["loss"]
        assert loss.dtype == torch.float32
        scaler.scale(loss).backward()
        scaler.unscale_(torch.optim.SGD(net.parameters(), lr=0.0))
        return float(loss.detach()), torch.cat([p.grad.flatten() for p in net.parameters()])

    loss32, grad32 = step(False)
    loss16, grad16 = step(True)
    assert torch.isfinite(grad16).all()
    assert abs(loss16 - loss32) < 1e-2 * abs(loss32)
    cosine = float(torch.nn.functional.cosine_similarity(grad16, grad32, dim=0))
    assert cosine > 0.999  # measured 0.9997 (relative error of all gradients: 2.3 %)
    assert float((grad16 - grad32).norm() / grad32.norm()) < 0.05
