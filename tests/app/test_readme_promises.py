"""The README's promises, each run the way the README states it, asserting the promised value.

Promises tested elsewhere are not repeated here: the official Cityscapes evaluator's own
command on exported files (tests/test_eval_export.py), folder predict (tests/test_predict.py),
kill-and-resume bit for bit (tests/reliability/test_kill_resume.py), ``callbacks=none`` in a
sweep that still validates at the last step (tests/app/test_failures_cli.py), W&B's overlays
and default loss terms in a sweep (tests/app/test_app_sweep.py), LIP's flip pairs in the
module (tests/app/test_app_module.py).

Only the cheap ones run by default (the Python API snippet, ``src.bench --help``, a short
``make train``, the one-line refusal of an unsafe checkpoint); the others are ``slow``
(``make test-all``), among them the README's default ``python -m src.train`` and ``make sweep``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from app_helpers import TINY, read_results
from cli_helpers import ROOT, run_cli, run_cli_status, wandb_config, wandb_summary

README = ROOT / "README.md"


# -- helpers -------------------------------------------------------------------------------------
def readme_section(title: str) -> str:
    """The text of the README's ``## <title>`` section (up to the next ``## ``)."""
    text = README.read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.M | re.S)


def make(target: str, args: list[str], timeout: int) -> subprocess.CompletedProcess:
    """``make <target> ARGS="..."`` in the repository, as the README writes it.

    The interpreter is this test's virtualenv (``VENV=``), and its install stamp is never
    remade (``-o``): a pyproject.toml edited after the install must not make a test run
    ``pip install``. Each override is shell-quoted inside ARGS, as a user quotes braces;
    ``args`` should move the run's folder out of the repository (``hydra.run.dir=...``)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = Path(sys.prefix)
    quoted = " ".join(shlex.quote(a) for a in args)
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(
        ["make", "-o", str(venv / ".installed"), f"VENV={venv}", target, f"ARGS={quoted}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def unsafe_checkpoint(path: Path, marker: Path) -> Path:
    """A checkpoint-looking file whose pickle holds a custom class: unpickling it would run
    ``os.mkdir(marker)`` (weights_only loading must refuse it before anything runs)."""

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": Payload()}, path)
    return path


# -- default: cheap ------------------------------------------------------------------------------
def test_python_api_snippet_runs_and_gives_the_shapes_its_comments_state():
    """The first ```python block under "## Python API" and the video one (CCNet3D), taken
    from the README at test time and executed; every ``name = ...  # (a, b, ...)`` comment is
    asserted as the shape."""
    blocks = code_blocks(readme_section("Python API"), "python")
    video = [block for block in blocks if "CCNet3D" in block]
    assert len(video) == 1
    snippet = blocks[0] + "\n" + video[0]
    assert "from_pretrained" not in snippet  # the second block downloads: never run here
    torch.manual_seed(0)
    namespace: dict[str, Any] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: more threads only wait on each other
    try:
        exec(compile(snippet, str(README), "exec"), namespace)
    finally:
        torch.set_num_threads(threads)

    shapes = re.findall(r"^(\w+) = .*#\s*\((\d+(?:,\s*\d+)*)\)", snippet, re.M)
    assert {name for name, _ in shapes} >= {"out", "logits", "effective", "clip_logits"}
    for name, shape in shapes:
        expected = tuple(int(n) for n in shape.split(","))
        assert tuple(namespace[name].shape) == expected, name
    # "[A1, A2]": one dense map per RCCA pass; "(1, 221, 221): every position reaches every
    # other" after two passes, and each composed row still sums to 1
    passes, effective = namespace["passes"], namespace["effective"]
    assert len(passes) == 2 and all(p.shape == effective.shape for p in passes)
    assert (passes[0] == 0).any(), "one pass reaches only the criss-cross"
    assert bool((effective > 0).all())
    assert torch.allclose(effective.sum(-1), torch.ones(1, 221), atol=1e-5)
    assert not namespace["model"].training  # ".eval()"
    assert not namespace["video"].training  # from_2d keeps the 2D model's mode


def readme_benchmarks() -> list[str]:
    """The benchmarks the README names: ``python -m src.bench {a,b,...,all}``."""
    match = re.search(r"python -m src\.bench \{([\w,]+)\}", readme_section("Benchmarks"))
    assert match, "the README's Benchmarks section names no `python -m src.bench {...}`"
    names = match.group(1).split(",")
    assert "all" in names
    return [name for name in names if name != "all"]


def test_bench_help_lists_the_benchmarks_and_each_ones_options(capsys):
    """``python -m src.bench --help`` (as a command) names every benchmark of the README;
    "``--help`` lists each one's options (``--device cuda``, ``--quick``, …)"."""
    proc = subprocess.run(
        [sys.executable, "-m", "src.bench", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (listed,) = re.findall(r"^benchmarks: (.*)$", proc.stdout, re.M)
    assert set(readme_benchmarks()) <= set(listed.split(", ")), listed

    from src.bench.__main__ import main

    for name in readme_benchmarks():
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        usage = capsys.readouterr().out
        assert f"python -m src.bench {name}" in usage
        for option in ("--device", "--quick", "--out"):
            assert option in usage, (name, option)


def test_make_train_passes_args_as_the_readme_writes_them(tmp_path: Path):
    """``make train ARGS="trainer.max_steps=..."``: the Makefile's train target runs
    ``src.train`` with the overrides (here a 3-step tiny run)."""
    run_dir = tmp_path / "run"
    proc = make(
        "train",
        [*TINY, "trainer.max_steps=3", "trainer.val_check_interval=3", f"hydra.run.dir={run_dir}"],
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "-m src.train" in proc.stdout  # make echoes the recipe it ran
    assert "pip install" not in proc.stdout
    results = read_results(run_dir)
    assert results["global_step"] == 3 and results["config"]["trainer.max_steps"] == 3
    assert results["config"]["model.backbone"] == "resnet10t"
    assert results["metrics"]["val/mIoU"] is not None
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_unsafe_checkpoint_is_refused_before_it_runs_in_one_line(tmp_path: Path):
    """ "Checkpoints are read with torch.load(weights_only=True) everywhere" and "a run that
    fails prints one line": eval, predict and export all load ``ckpt_path`` through
    :func:`src.app.checkpoint.load_checkpoint` (their CLIs: the slow test below)."""
    from src.app.checkpoint import load_checkpoint

    marker = tmp_path / "code_ran"
    path = unsafe_checkpoint(tmp_path / "unsafe.ckpt", marker)
    with pytest.raises(ValueError, match="weights_only") as error:
        load_checkpoint(path)
    assert not marker.exists()
    assert "ckpt_path=" in str(error.value)
    assert "\n" not in str(error.value), f"not one line:\n{error.value}"


# -- slow: the README's own runs -----------------------------------------------------------------
@pytest.mark.slow  # the README's default run: ~2.5 min on 2 idle cores, 300 steps
def test_default_train_is_the_synthetic_experiment_and_learns(tmp_path: Path):
    """``python -m src.train`` with no override at all, from an empty folder: the synthetic
    experiment, 300 steps, checkpoints and results.json under logs/train/runs/synthetic/."""
    code, output = run_cli_status("train", cwd=tmp_path, timeout=1800)
    assert code == 0, output[-4000:]
    (run_dir,) = (tmp_path / "logs" / "train" / "runs" / "synthetic").iterdir()
    results = read_results(run_dir)
    assert results["experiment"] == "synthetic" and results["overrides"] == []
    assert results["global_step"] == 300 and results["world_size"] == 1
    config = results["config"]
    assert config["model.backbone"] == "resnet10t" and config["model.recurrence"] == 2
    checkpoints = run_dir / "checkpoints"
    best = sorted(checkpoints.glob("best_step*_miou*.ckpt"))
    assert (checkpoints / "last.ckpt").is_file() and len(best) == 1
    # it learns the shapes: far above the all-background guess (mIoU ~0.15 at 5 classes)
    metrics = results["metrics"]
    assert metrics["val/mIoU_best"] > 0.75, metrics  # 0.87 measured
    assert results["optimized_value"] == metrics["val/mIoU_best"]
    percent = float(re.search(r"miou([\d.]+)\.ckpt$", best[0].name).group(1))
    assert percent == pytest.approx(100 * metrics["val/mIoU_best"], abs=0.01)


@pytest.mark.slow  # three CLI starts (~15 s each); the loader itself is tested by default above
@pytest.mark.parametrize(
    ("entry", "extra"),
    [
        ("eval", []),
        ("predict", ["input={tmp}", "output={tmp}/out"]),
        ("export", ["output={tmp}/m.onnx"]),
    ],
    ids=["eval", "predict", "export"],
)
def test_entry_points_refuse_an_unsafe_checkpoint(entry: str, extra: list[str], tmp_path: Path):
    """``src.eval`` / ``src.predict`` / ``src.export ckpt_path=<unsafe pickle>``: refused
    before any of its code runs, reported on one ERROR line without a traceback, the run
    marked failed (failure.json, no results.json)."""
    marker = tmp_path / "code_ran"
    path = unsafe_checkpoint(tmp_path / "unsafe.ckpt", marker)
    run_dir = tmp_path / "run"
    overrides = [e.format(tmp=tmp_path) for e in extra]
    code, output = run_cli_status(
        entry, f"ckpt_path={path}", *overrides, f"hydra.run.dir={run_dir}", full_error=False
    )
    assert code != 0 and not marker.exists()
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert len(errors) == 1, output
    assert f"ckpt_path={str(path)!r} holds objects that weights_only loading refuses" in errors[0]
    assert "weights_only" in json.loads((run_dir / "failure.json").read_text())["error"]
    assert not (run_dir / "results.json").exists()


@pytest.mark.slow  # a CLI run (~15 s); the folder case runs by default in tests/test_predict.py
def test_predict_a_single_image_through_the_cli(tmp_path: Path):
    """``python -m src.predict ... input=<one file> output=out/``: that image's mask, colour
    PNG and overlay, the app's own prediction, and predictions.json naming only it."""
    from PIL import Image
    from prediction_helpers import MODEL, compose_config, tiny_cityscapes

    from src.app.checkpoint import load_checkpoint, net_from_checkpoint
    from src.core.inference import predict_logits
    from src.data.base import read_image
    from src.data.transforms import eval_transform

    tiny = tiny_cityscapes(tmp_path / "tiny")
    photo = tmp_path / "photos" / "street.png"
    photo.parent.mkdir()
    y, x = np.mgrid[0:72, 0:100]
    image = np.stack([2.5 * y, 2.5 * x, np.full_like(y, 90)], axis=-1).astype(np.uint8)
    Image.fromarray(image).save(photo)
    Image.fromarray(image[::-1]).save(photo.with_name("other.png"))  # not asked for
    out, run_dir = tmp_path / "out", tmp_path / "run"
    run_cli(
        "predict",
        *tiny.overrides(),
        f"ckpt_path={tiny.ckpt}",
        f"input={photo}",
        f"output={out}",
        f"hydra.run.dir={run_dir}",
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "predictions.json", "street.png", "street_color.png", "street_overlay.jpg",
    ]  # fmt: skip
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["totals"] == {"inputs": 1, "predicted": 1, "skipped": 0}
    assert [entry["input"] for entry in summary["files"]] == ["street.png"]
    assert read_results(run_dir)["images"] == 1

    mask = np.asarray(Image.open(out / "street.png"))
    assert mask.shape == (72, 100)
    net = net_from_checkpoint(compose_config("predict", MODEL).model, load_checkpoint(tiny.ckpt))
    batch = eval_transform()(image=read_image(photo))["image"].float()[None]
    with torch.no_grad():
        expected = predict_logits(net, batch, mode="whole").argmax(1)[0].numpy()
    assert (mask == expected).mean() > 0.995


@pytest.mark.slow  # the README's `python -m src.data.fake`, a LIP training run and its eval
def test_lip_eval_with_slide_ms_flip_swaps_left_and_right_back(tmp_path: Path):
    """``python -m src.eval ckpt_path=PATH inference=slide_ms_flip data.root=...`` on the fake
    LIP tree: five scales and a flip (LIP's left/right classes swapped back), counted exactly
    as an independent in-process evaluation with LIP's flip pairs, and not as one without.

    The checkpoint's classifiers are randomised after training: a tiny run predicts only
    background, for which the flip pairs change nothing."""
    from hydra.utils import instantiate
    from prediction_helpers import compose_config

    from src.app.checkpoint import load_checkpoint, net_from_checkpoint
    from src.core.inference import InferenceConfig, predict_logits
    from src.data.lip import LIPDataset

    fake = tmp_path / "fake"
    proc = subprocess.run(
        [sys.executable, "-m", "src.data.fake", "--out", str(fake)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lip = fake / "lip"
    train_dir = tmp_path / "train"
    training = ["experiment=lip_rcca", "debug=tiny", f"data.root={lip}"]
    run_cli("train", *training, f"hydra.run.dir={train_dir}")

    # A classifier of random directions over the standardised features of the val images
    # (centred: the features' common part would otherwise pick one class everywhere).
    cfg = compose_config("train", training)
    datamodule = instantiate(cfg.data)
    datamodule.setup("validate")
    checkpoint = load_checkpoint(train_dir / "checkpoints" / "last.ckpt")
    net = net_from_checkpoint(cfg.model, checkpoint).eval()
    features: list[torch.Tensor] = []
    hook = net.head.classifier.register_forward_hook(lambda m, i, o: features.append(i[0]))
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            net(batch["image"])
    hook.remove()
    flat = torch.cat([f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]) for f in features])
    mean, std = flat.mean(0), flat.std(0) + 1e-3
    weight = torch.randn(20, flat.shape[1], generator=torch.Generator().manual_seed(0)) / std
    state = checkpoint["state_dict"]
    state["net.head.classifier.weight"] = weight[..., None, None].contiguous()
    state["net.head.classifier.bias"] = -(weight @ mean)
    ckpt = tmp_path / "lip.ckpt"
    torch.save(checkpoint, ckpt)

    eval_dir = tmp_path / "eval"
    run_cli(
        "eval",
        f"ckpt_path={ckpt}",
        "inference=slide_ms_flip",
        f"data.root={lip}",
        "++trainer.limit_val_batches=1.0",  # debug=tiny's checkpoint would score 2 images only
        f"hydra.run.dir={eval_dir}",
    )
    results = read_results(eval_dir)
    inference = results["config"]["inference"]
    assert inference["mode"] == "slide" and inference["flip"] is True
    assert inference["scales"] == [0.75, 1.0, 1.25, 1.5, 1.75]
    counted = np.asarray(results["confusion_matrix"]["val"])

    net = net_from_checkpoint(cfg.model, load_checkpoint(ckpt)).eval()
    config = InferenceConfig.from_config(inference)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the CLI run (OMP_NUM_THREADS=1): the same float sums
    try:
        paired, unpaired = np.zeros((2, 20, 20), dtype=np.int64)
        images = 0
        for batch in datamodule.val_dataloader():
            masks = batch["mask"].long()
            valid = masks != 255
            for pairs, confusion in ((LIPDataset.flip_pairs, paired), ((), unpaired)):
                preds = predict_logits(net, batch["image"], config, pairs, 20).argmax(1)
                counts = np.bincount((20 * masks[valid] + preds[valid]).numpy(), minlength=20 * 20)
                confusion += counts.reshape(20, 20)
            images += len(masks)
    finally:
        torch.set_num_threads(threads)
    assert images == 3  # the fake tree's val split, all of it
    # dropping the pairs changes the counts (~23 % of the pixels here): the test can fail
    assert np.abs(paired - unpaired).sum() > 0.02 * paired.sum()
    np.testing.assert_array_equal(counted, paired)


@pytest.mark.slow  # a 3-trial Optuna study of tiny runs
def test_optuna_search_maximises_the_value_train_returns(tmp_path: Path):
    """``python -m src.train -m hparams_search=optuna experiment=synthetic``: every trial
    returns its ``optimized_metric`` (val/mIoU_best) to the sweeper, which keeps the best."""
    sweep = tmp_path / "sweep"
    run_cli(
        "train",
        "-m",
        "hparams_search=optuna",
        "experiment=synthetic",
        *TINY,
        "trainer.max_steps=3",
        "trainer.val_check_interval=1",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2",
        f"hydra.sweep.dir={sweep}",
        timeout=900,
    )
    jobs = [read_results(sweep / str(i)) for i in range(3)]
    for job in jobs:
        assert job["optimized_metric"] == "val/mIoU_best"
        assert job["optimized_value"] == job["metrics"]["val/mIoU_best"]
    optuna = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = max(jobs, key=lambda job: job["optimized_value"])
    assert optuna["best_value"] == pytest.approx(best["optimized_value"])
    # the winner's sampled parameters are among its command-line overrides
    assert all(f"{k}={v}" in best["overrides"] for k, v in optuna["best_params"].items())
    assert len({tuple(job["overrides"]) for job in jobs}) == 3  # three different trials


@pytest.mark.slow  # two tiny CLI runs
def test_resume_with_another_batch_size_continues_at_the_same_sample(tmp_path: Path):
    """ "Resuming with another batch size ... continues at the same sample of the epoch": 8
    training samples; 1 step of batch 2 (2 consumed), resumed with batch 4 for 1 step: the
    epoch is then at sample 6 (not 4: restarted, nor 8: batches counted at the new size)."""
    first, resumed = tmp_path / "first", tmp_path / "resumed"
    run_cli("train", *TINY, "trainer.max_steps=1", f"hydra.run.dir={first}")
    last = first / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)["loops"]["fit_loop"]["state_dict"]
    assert saved["combined_loader"][0] == {
        "epoch": 0, "consumed": 2, "batch_size": 2, "num_replicas": 1,
    }  # fmt: skip
    output = run_cli(
        "train",
        *TINY,
        "data.batch_size=4",
        "trainer.max_steps=2",
        f"ckpt_path={last}",
        f"hydra.run.dir={resumed}",
    )
    assert "Restoring states from the checkpoint" in output
    results = read_results(resumed)
    assert results["global_step"] == 2 and results["config"]["data.batch_size"] == 4
    state = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    loader = state["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    assert loader == {"epoch": 0, "consumed": 6, "batch_size": 4, "num_replicas": 1}


def csv_epochs(run_dir: Path) -> dict[int, int]:
    """step -> epoch of the training rows of the run's metrics.csv."""
    rows = (run_dir / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    epoch, step, loss = (header.index(k) for k in ("epoch", "step", "train/loss"))
    cells = [row.split(",") for row in rows[1:]]
    return {int(c[step]): int(c[epoch]) for c in cells if c[loss]}


@pytest.fixture(scope="module")
def instance_resume(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny Mask R-CNN run stopped after step 1 of its 2-batch epochs (the fake COCO's two
    training images with objects, batch 1), then resumed to step 3."""
    from src.data.fake import write_fake_coco

    base = tmp_path_factory.mktemp("instance_resume")
    coco = write_fake_coco(base / "coco")
    sys.path.insert(0, str(ROOT / "tests" / "instance"))
    try:
        from instance_helpers import TINY_DETECTOR_OVERRIDES
    finally:
        sys.path.remove(str(ROOT / "tests" / "instance"))
    run = [
        "experiment=coco_instance_rcca",
        f"data.root={coco}",
        *TINY_DETECTOR_OVERRIDES,
        "trainer=cpu",
        "trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=1",
        "trainer.val_check_interval=1",
        "data.batch_size=1",
        "data.num_workers=0",
        "module.warmup_steps=1",
    ]
    first, resumed = base / "first", base / "resumed"
    run_cli("train", *run, "trainer.max_steps=1", f"hydra.run.dir={first}")
    last = first / "checkpoints" / "last.ckpt"
    output = run_cli(
        "train", *run, "trainer.max_steps=3", f"ckpt_path={last}", f"hydra.run.dir={resumed}"
    )
    return {"last": last, "resumed": resumed, "output": output}


@pytest.mark.slow  # two CLI runs of a tiny Mask R-CNN
def test_instance_training_resumes_from_a_fresh_loader(instance_resume):
    """The instance data module keeps no loader position (the semantic one does): a run
    resumed mid-epoch draws from a fresh iterator, from the loader's start, and still ends at
    the asked step."""
    saved = torch.load(instance_resume["last"], weights_only=True)
    assert saved["global_step"] == 1
    assert not saved["loops"]["fit_loop"]["state_dict"].get("combined_loader")  # no position
    assert "your dataloader is not resumable" in instance_resume["output"]  # Lightning's note
    results = read_results(instance_resume["resumed"])
    assert results["global_step"] == 3 and results["metrics"]["val/segm_mAP"] is not None


@pytest.mark.slow  # one tiny CLI run; callbacks=none in a sweep runs by default (test_failures_cli)
def test_callbacks_none_still_validates_at_the_last_step_and_keeps_no_rng_states(tmp_path: Path):
    """``callbacks=none``: none of the project's callbacks (no ``last.ckpt``, no best
    checkpoint, no RNG states: "callbacks=none drops it"), but the run still validates at its
    last step, before the interval is reached."""
    run_dir = tmp_path / "run"
    run_cli(
        "train",
        *TINY,
        "trainer.max_steps=2",
        "trainer.val_check_interval=100",
        "callbacks=none",
        f"hydra.run.dir={run_dir}",
    )
    results = read_results(run_dir)
    assert results["global_step"] == 2
    assert results["metrics"]["val/mIoU"] is not None
    assert results["metrics"]["val/mIoU_best"] == results["optimized_value"] is not None
    rows = (run_dir / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    validated = [r.split(",") for r in rows[1:] if r.split(",")[header.index("val/mIoU")]]
    assert [int(r[header.index("step")]) for r in validated] == [1]  # once, at the last step
    assert not (run_dir / "checkpoints").exists() and not results["best_model_path"]
    # Lightning's own default checkpoint (csv/checkpoints/epoch=0-step=2.ckpt) may remain:
    # whatever was saved holds no generator states
    for path in run_dir.rglob("*.ckpt"):
        saved = torch.load(path, weights_only=True)
        assert "RandomStateCheckpoint" not in saved.get("callbacks", {}), path


@pytest.mark.slow  # a tiny run with the category-consistent loss; the default terms: test_app_sweep
def test_wandb_logs_every_loss_term_and_labelled_overlays(tmp_path: Path):
    """``logger=wandb`` (offline): every loss term the module logs (seg, aux and the three
    CCL terms here) with the values of results.json, and overlays whose prediction and
    ground-truth masks carry the class names."""
    from src.data.synthetic import SyntheticSegmentationDataset

    run_dir = tmp_path / "run"
    run_cli(
        "train",
        *TINY,
        "trainer.max_steps=2",
        "loss.ccl=true",
        "model.embed_dim=8",
        "logger=wandb",
        f"hydra.run.dir={run_dir}",
    )
    results = read_results(run_dir)
    (wandb_dir,) = (run_dir / "wandb").glob("offline-run-*")
    summary = wandb_summary(wandb_dir)["summary"]
    terms = {k for k in results["metrics"] if k.startswith("train/") and k != "train/lr"}
    assert terms == {f"train/{t}" for t in ("loss", "seg", "aux", "var", "dis", "reg")}
    for key in terms:
        assert summary[key] == pytest.approx(results["metrics"][key]), key

    names = SyntheticSegmentationDataset(num_samples=1).class_names
    expected = {**{str(i): name for i, name in enumerate(names)}, "255": "ignore"}
    labels = wandb_config(wandb_dir)["_wandb"]["mask/class_labels"]
    for layer in ("prediction", "ground_truth"):
        assert labels[f"val/predictions_wandb_delimeter_{layer}"]["value"] == expected
    assert summary["val/predictions"]["count"] == 4


@pytest.mark.slow  # ~1.5 min: every benchmark in its quick mode
def test_bench_all_quick_prints_tables_and_writes_every_json(tmp_path: Path):
    """``python -m src.bench all --quick`` from a folder: a table and
    ``bench_results/<name>.json`` per benchmark."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "src.bench", "all", "--quick"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = ["attention", "model", "data", "inference"]  # the CPU-sized ones `all` runs
    assert set(names) <= set(readme_benchmarks())
    written = re.findall(r"^wrote (\S+)$", proc.stdout, re.M)
    assert written == [f"bench_results/{name}.json" for name in names]
    payload = {n: json.loads((tmp_path / "bench_results" / f"{n}.json").read_text()) for n in names}
    assert all(payload[n]["benchmark"] == n for n in names)
    assert {row["size"] for row in payload["attention"]["op"]} == {8, 13}  # --quick's sizes
    rows = {row["model"]: row for row in payload["model"]["rows"]}
    # RCCA shares one module over its passes: R=1 and R=2 have the same parameters
    assert rows["rcca R=1"]["d_params"] == rows["rcca R=2"]["d_params"] > 0
    assert rows["rcca R=2"]["d_gflops"] == pytest.approx(2 * rows["rcca R=1"]["d_gflops"], rel=0.01)
    assert [row["workers"] for row in payload["data"]["rows"]] == [0, 1]
    assert any("flip" in row["contender"] for row in payload["inference"]["rows"])


def readme_sweep_table() -> dict[int, float]:
    """R -> the seed-42 val mIoU (percent) of the README's ``make sweep`` table."""
    rows = re.findall(
        r"^\| (\d) \| ([\d.]+) \| [\d.]+ \| [\d.]+ \|$", readme_section("Sweeps"), re.M
    )
    assert len(rows) == 3, "the README's sweep table changed"
    return {int(r): float(v) for r, v in rows}


def check_recurrence_sweep(sweep: Path) -> None:
    """The README's claim on a finished ``make sweep`` folder: R=2 > R=1 > R=0, each job's
    1000 steps near the table's seed-42 value (3 points: thread counts change float sums)."""
    table = readme_sweep_table()
    assert sorted(table, key=table.get) == [0, 1, 2]  # what the README claims
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["swept"] == ["model.recurrence"] and summary["metric"] == "val/mIoU_best"
    miou = {int(run["model.recurrence"]): 100 * run["val/mIoU_best"] for run in summary["runs"]}
    assert miou[2] > miou[1] + 5 > miou[0] + 10, miou  # what the recurrence buys
    for r, value in miou.items():
        assert value == pytest.approx(table[r], abs=3.0), (r, miou)
    for job in range(3):
        results = read_results(sweep / str(job))
        assert results["global_step"] == 1000 and results["experiment"] == "context_toy"


@pytest.mark.slow  # the README's whole `make sweep`: 7-8 min on 2 idle cores, far more when busy
def test_make_sweep_reaches_the_readme_table_ordering(tmp_path: Path):
    """``make sweep`` (R = 0, 1, 2 on the context toy, 1000 steps each), as the README runs
    it; only the sweep folder is moved into the test's folder."""
    sweep = tmp_path / "sweep"
    proc = make("sweep", [f"hydra.sweep.dir={sweep}"], timeout=5400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "experiment=context_toy model.recurrence=0,1,2" in proc.stdout
    check_recurrence_sweep(sweep)
