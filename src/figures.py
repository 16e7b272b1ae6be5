"""The README's figures, made from runs this script performs itself on the CPU.

    python -m src.figures                # or: make figures   (writes docs/figures/*.png)
    python -m src.figures --quick        # tiny runs, a smoke test (writes to a temporary folder)
    python -m src.figures --fresh        # rerun everything instead of reusing finished runs

Every number in a figure comes from the project's own entry points, started in subprocesses
as a user starts them, each in its own folder under ``--cache`` (default ``logs/figures/``,
git-ignored): a finished run is reused by the next call, so a second ``make figures`` only
redraws. A run's folder is named after a hash of its command, so changing a setting here (or
``--quick``) starts new runs instead of reusing stale ones; ``--fresh`` (or deleting the
folder) reruns everything, e.g. after the code changed.

1. ``python -m src.train -m experiment=context_toy model.recurrence=0,1,2`` (``make sweep``):
   its ``summary.png`` (mIoU against R) is copied as is.
2. From the R=2 job's best checkpoint: the criss-cross attention of one off-band shape pixel
   after pass 1, pass 2 and both (A2·A1), computed as ``notebooks/01_criss_cross_attention``
   does (:mod:`src.models.attention_maps` on the model's own Q/K projections).
3. ``python -m src.eval ckpt_path=... split=test``: its ``per_class_iou.png`` and
   ``confusion_matrix.png``, copied as is.
4. ``python -m src.predict ckpt_path=... input=... output=...`` on test images written as PNG
   files: its overlays (legend below each), beside the ground truth drawn by the same
   overlay function.
5. ``python -m src.bench attention --sizes S --rcca-size S`` for each size S: forward+backward
   time and bytes kept for backward against the number of positions, log-log, each curve's
   fitted exponent (slope of log y against log positions) in the legend.

The sweeps are listed in :data:`SWEEPS`; the video toy's (``make sweep-video``) is one more
entry once that experiment exists. PNGs are drawn with matplotlib's Agg canvas (no pyplot)
and stored with a 256-colour palette to stay small.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "figures"
DEFAULT_CACHE = ROOT / "logs" / "figures"
DONE_FILE = "figures-done.json"
"""Written into a run's folder once its command succeeded: the folder is then reused."""
LOG_FILE = "figures-run.log"
MAX_PNG_BYTES = 150 * 1024


@dataclass(frozen=True)
class Sweep:
    """A recurrence sweep whose summary plot the README shows."""

    experiment: str
    swept: tuple[str, ...]  # the multirun overrides, as the Makefile target passes them
    figure: str  # file name of the copied summary.png
    target: str  # the Makefile target that runs the same sweep


SWEEPS = (Sweep("context_toy", ("model.recurrence=0,1,2",), "sweep_context_toy.png", "make sweep"),)
MAIN_SWEEP = SWEEPS[0]  # its R=2 model is the one looked at, evaluated and run on images

FIGURES = {
    "attention_passes.png": "criss-cross attention of one pixel after pass 1, pass 2, A2·A1",
    "sweep_context_toy.png": "make sweep: val mIoU against R on the context toy",
    "prediction_overlay.png": "src.predict overlays (class legend below) beside ground truth",
    "eval_per_class_iou.png": "src.eval per-class IoU chart",
    "eval_confusion_matrix.png": "src.eval row-normalised confusion matrix",
    "attention_cost.png": "src.bench attention: time and bytes against positions, log-log",
}

# Quick mode: the same commands on tiny settings (seconds each), so that a test runs it all.
QUICK_TRAIN = (
    "trainer.max_steps=2",
    "data.dataset.num_samples={train:8,val:4,test:4}",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "model.channels=16",
    "model.aux_channels=8",
)
BENCH_SIZES = (24, 32, 48, 64, 97)  # square feature maps; 97 is the paper's (769 / 8)
QUICK_BENCH_SIZES = (8, 12)
BENCH_ARGS = ("--dims", "2", "--threads", "1", "--repeats", "3", "--warmup", "1")
QUICK_BENCH_ARGS = ("--dims", "2", "--quick", "--threads", "1", "--repeats", "1", "--warmup", "0")
PREDICT_IMAGES = 3


class FigureError(RuntimeError):
    """A run that a figure needs failed."""


# -- runs -----------------------------------------------------------------------------------


@dataclass
class Runner:
    """Starts the entry points in subprocesses, one cached folder per command."""

    cache: Path
    fresh: bool = False

    def run(self, name: str, module: str, *args: str, expect: Sequence[str] = ()) -> Path:
        """``python -m <module> <args>`` with ``{dir}`` in the args replaced by the run's
        folder ``<cache>/<name>-<hash of the command>``; a folder that holds a finished run
        of the same command is reused (unless ``fresh``). The run has finished when it exited
        with 0 and wrote every file of ``expect`` (glob patterns, relative to its folder)."""
        command = [module, *args]
        digest = hashlib.sha1(json.dumps(command).encode()).hexdigest()[:10]
        folder = self.cache / f"{name}-{digest}"
        done = folder / DONE_FILE
        if done.is_file() and not self.fresh:
            print(f"[figures] {name}: reusing {folder}", flush=True)
            return folder
        shutil.rmtree(folder, ignore_errors=True)  # a run that died half-way starts over
        folder.mkdir(parents=True)
        argv = [sys.executable, "-m", module, *(a.replace("{dir}", str(folder)) for a in args)]
        shown = " ".join(["python", *argv[1:]])
        print(f"[figures] {name}: {shown}", flush=True)
        env = dict(os.environ)  # threads as the user set them (OMP_NUM_THREADS: see README)
        env.setdefault("WANDB_MODE", "offline")
        env["HYDRA_FULL_ERROR"] = "1"  # a failure's traceback lands in the log below
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        start = time.perf_counter()
        with (folder / LOG_FILE).open("w") as log:
            code = subprocess.run(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - start
        if code.returncode != 0:
            tail = (folder / LOG_FILE).read_text()[-3000:]
            raise FigureError(
                f"{name}: `{shown}` failed (exit {code.returncode}); log {folder / LOG_FILE}:\n"
                f"{tail}"
            )
        missing = [pattern for pattern in expect if not any(folder.glob(pattern))]
        if missing:
            raise FigureError(
                f"{name}: `{shown}` did not write {', '.join(missing)}; log {folder / LOG_FILE}"
            )
        done.write_text(json.dumps({"command": shown, "seconds": round(seconds, 1)}, indent=2))
        print(f"[figures] {name}: done in {seconds:.0f} s", flush=True)
        return folder

    def run_all(
        self,
        commands: Mapping[str, Sequence[str]],
        parallel: int = 1,
        expect: Mapping[str, Sequence[str]] | None = None,
    ) -> dict[str, Path]:
        """:meth:`run` every ``name: (module, *args)`` (expecting ``expect[name]``),
        ``parallel`` at a time; their folders by name (the first failure is raised once all
        have ended)."""
        expect = expect or {}
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            futures = {
                name: pool.submit(self.run, name, *cmd, expect=expect.get(name, ()))
                for name, cmd in commands.items()
            }
        return {name: future.result() for name, future in futures.items()}


def run_sweep(runner: Runner, sweep: Sweep, quick: bool) -> Path:
    """The multirun of ``sweep`` (``summary.{json,md,png}`` in the returned folder); a job
    that failed (the multirun goes on and exits with 0) fails it, so it is not reused."""
    extra = QUICK_TRAIN if quick else ()
    folder = runner.run(
        f"sweep-{sweep.experiment}",
        "src.train",
        "-m",
        f"experiment={sweep.experiment}",
        *sweep.swept,
        *extra,
        "hydra.sweep.dir={dir}",
        expect=("summary.json", "summary.png"),
    )
    failed = [
        r
        for r in json.loads((folder / "summary.json").read_text())["runs"]
        if "failed" in str(r.get("status", ""))
    ]
    if failed:
        (folder / DONE_FILE).unlink()
        jobs = "; ".join(f"job {r['job']}: {r['status']}" for r in failed)
        raise FigureError(f"sweep {folder}: {jobs} (log: {folder / LOG_FILE})")
    return folder


def sweep_job(sweep_dir: Path, recurrence: int) -> dict[str, Any]:
    """The results.json (plus ``job``) of the sweep's job with ``model.recurrence``."""
    from src.app.sweep_summary import load_runs, parse_overrides

    for run in load_runs(sweep_dir):
        if parse_overrides(run.get("overrides", [])).get("model.recurrence") == str(recurrence):
            if "failed" in run:
                raise FigureError(f"the R={recurrence} job of {sweep_dir} failed: {run['failed']}")
            return run
    raise FigureError(f"no job with model.recurrence={recurrence} in {sweep_dir}")


# -- the figures ----------------------------------------------------------------------------


def new_figure(width: float, height: float):
    """A pyplot-free matplotlib figure on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path: Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a 256-colour palette PNG (a fraction of the RGBA size)."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    return path


def copy_png(source: Path, path: Path) -> Path:
    """Copy a PNG an entry point wrote, as it is."""
    if not source.is_file():
        raise FigureError(f"expected {source} to have been written")
    shutil.copyfile(source, path)
    return path


def load_job_model(job: Mapping[str, Any]):
    """(net, job config) of a sweep job's best checkpoint, rebuilt as the job configured it."""
    from omegaconf import OmegaConf

    from src.app.checkpoint import load_checkpoint, net_from_checkpoint

    run_dir = Path(job["best_model_path"]).parents[1]
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    path = job["best_model_path"]
    return net_from_checkpoint(config.model, load_checkpoint(path), path=path), config


def job_dataset(config, split: str):
    """The job's dataset of ``split`` with the evaluation transform."""
    from hydra.utils import instantiate

    from src.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform

    transform = eval_transform(
        config.data.get("mean", IMAGENET_MEAN), config.data.get("std", IMAGENET_STD)
    )
    return instantiate(config.data.dataset)(split=split, transform=transform)


def shape_masks(dataset, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (H, W) of the aligned and of the off-band shapes of one sample."""
    from src.data.context_toy import draw

    aligned = np.zeros(dataset.image_size, bool)
    off_band = np.zeros(dataset.image_size, bool)
    for shape in dataset.layout(index).shapes:
        canvas = np.zeros(dataset.image_size, np.uint8)
        draw(canvas, shape)
        (aligned if shape.aligned else off_band)[canvas > 0] = True
    return aligned, off_band


def key_cells(layout, grid: Sequence[int], stride: int) -> np.ndarray:
    """Boolean (h, w): the feature positions whose centre pixel lies inside the key."""
    centres_y = np.arange(grid[0]) * stride + stride // 2
    centres_x = np.arange(grid[1]) * stride + stride // 2
    key = layout.key
    rows = (centres_y >= key.top) & (centres_y < key.bottom)
    cols = (centres_x >= key.left) & (centres_x < key.right)
    return rows[:, None] & cols[None, :]


def attention_figure(job: Mapping[str, Any], path: Path) -> dict[str, float]:
    """One off-band shape pixel's attention after pass 1, pass 2 and both (A2·A1), on the
    first val image with an off-band shape, drawn as the notebook draws it; the title gives
    the share of two-pass attention that the off-band shape positions of every val image
    put on the key."""
    import torch
    from matplotlib.patches import Rectangle

    from src.models.attention_maps import compose_passes, position_map, recurrent_attention_weights

    net, config = load_job_model(job)
    val = job_dataset(config, config.data.val_split)
    stride = 8  # CCNet's output stride
    height, width = val.image_size
    grid = (height // stride, width // stride)

    def off_band_shapes(i: int) -> list:
        return [s for s in val.layout(i).shapes if not s.aligned]

    index = next((i for i in range(len(val)) if off_band_shapes(i)), 0)
    layout = val.layout(index)
    shape = (off_band_shapes(index) or list(layout.shapes))[0]
    row = min((shape.box.top + shape.box.size // 2) // stride, grid[0] - 1)
    col = min((shape.box.left + shape.box.size // 2) // stride, grid[1] - 1)
    picture = val.read(index)[0]
    passes = recurrent_attention_weights(net, val[index]["image"][None])
    if len(passes) != 2:
        raise FigureError(f"expected the 2 passes of an R=2 model, got {len(passes)}")
    maps = [position_map(w, (row, col), grid)[0].numpy() for w in (*passes, compose_passes(passes))]
    on_key = key_cells(layout, grid, stride)

    shares, uniform = [], []  # over every val image: off-band positions' weight on the key
    for i in range(len(val)):
        positions = shape_masks(val, i)[1][stride // 2 :: stride, stride // 2 :: stride]
        if positions.any():
            key_i = torch.from_numpy(key_cells(val.layout(i), grid, stride).ravel())
            effective = compose_passes(recurrent_attention_weights(net, val[i]["image"][None]))[0]
            rows = effective[torch.from_numpy(positions.ravel())]
            shares.append(rows[:, key_i].sum(-1).mean().item())
            uniform.append(key_i.float().mean().item())

    fig = new_figure(13.5, 4.4)
    axes = fig.subplots(1, 3)
    titles = ("pass 1: $A_1$", "pass 2 alone: $A_2$", "two passes: $A_2A_1$")
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)
    for ax, weights, title in zip(axes, maps, titles):
        ax.imshow(picture, alpha=0.55)
        shown = np.ma.masked_equal(weights, 0.0)  # exact zeros: positions not attended at all
        handle = ax.imshow(shown, cmap="magma", alpha=0.75, extent=extent, interpolation="nearest")
        key = layout.key
        ax.add_patch(
            Rectangle(
                (key.left - 0.5, key.top - 0.5),
                key.size,
                key.size,
                fill=False,
                edgecolor="cyan",
                linewidth=1.5,
                linestyle="--",
            )
        )
        ax.plot((col + 0.5) * stride - 0.5, (row + 0.5) * stride - 0.5, "c+", ms=12, mew=2)
        count = np.count_nonzero(weights)
        ax.set_title(
            f"{title}: {count} positions, {weights[on_key].sum():.0%} on the key", fontsize=10
        )
        ax.set_axis_off()
        fig.colorbar(handle, ax=ax, fraction=0.046, pad=0.03)
    share = float(np.mean(shares)) if shares else float("nan")
    steps = job.get("global_step")
    covered = float(np.mean(uniform)) if uniform else float("nan")
    fig.suptitle(
        f"attention of the marked pixel (+) of an off-band shape; dashed: the key. R=2 model "
        f"of `{MAIN_SWEEP.target}` ({steps} steps).\nOver {len(shares)} val images, an "
        f"off-band shape position gives {share:.0%} of its two-pass weight to the key, which "
        f"covers {covered:.0%} of the positions.",
        fontsize=10,
    )
    save_png(fig, path, dpi=80)
    return {"key_share_two_passes": share, "key_share_uniform": covered}


def predict_inputs(job: Mapping[str, Any], split: str, cache: Path):
    """Write the first :data:`PREDICT_IMAGES` images of ``split`` that hold an off-band shape
    as PNG files for ``src.predict``; returns (dataset, chosen indices, folder)."""
    from PIL import Image

    _, config = load_job_model(job)
    dataset = job_dataset(config, config.data.get(f"{split}_split", split))
    chosen = [i for i in range(len(dataset)) if shape_masks(dataset, i)[1].any()]
    chosen = (chosen + [i for i in range(len(dataset)) if i not in chosen])[:PREDICT_IMAGES]
    digest = hashlib.sha1(json.dumps([job["best_model_path"], chosen]).encode()).hexdigest()
    folder = cache / f"predict-input-{digest[:10]}"
    names = [f"{split}_{i:05d}.png" for i in chosen]
    if sorted(p.name for p in folder.glob("*")) != sorted(names):  # else: written before
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for i, name in zip(chosen, names):
            Image.fromarray(dataset.read(i)[0]).save(folder / name)
    return dataset, chosen, folder


def prediction_figure(
    job: Mapping[str, Any], dataset, chosen: Sequence[int], predicted: Path, split: str, path: Path
) -> Path:
    """The overlays ``src.predict`` wrote into ``predicted`` (bottom row) under the ground
    truth drawn by the same overlay-with-legend function (top row)."""
    from PIL import Image

    from src.core.prediction_files import overlay_with_legend

    fig = new_figure(3.0 * len(chosen), 7.2)
    axes = fig.subplots(2, len(chosen), squeeze=False)
    for column, i in enumerate(chosen):
        picture, truth, _ = dataset.read(i)
        truth_view = overlay_with_legend(picture, truth, dataset.palette, 0.5, dataset.class_names)
        overlay = np.asarray(Image.open(predicted / f"{split}_{i:05d}_overlay.jpg"))
        for row, (image, what) in enumerate(
            ((truth_view, "ground truth"), (overlay, "src.predict overlay"))
        ):
            ax = axes[row, column]
            ax.imshow(image, interpolation="nearest")
            ax.set_title(f"{split} image {i}: {what}", fontsize=9)
            ax.set_axis_off()
    steps = job.get("global_step")
    fig.suptitle(f"R=2 model of `{MAIN_SWEEP.target}` ({steps} steps)", fontsize=10)
    return save_png(fig, path, dpi=100)


def fitted_exponent(positions: Sequence[float], values: Sequence[float]) -> float:
    """The slope of log(value) against log(positions), least squares."""
    return float(np.polyfit(np.log(positions), np.log(values), 1)[0])


def bench_commands(sizes: Sequence[int], quick: bool) -> dict[str, tuple[str, ...]]:
    """One ``src.bench attention`` run per square size S: the op, and RCCA against the
    non-local block, all at S×S."""
    args = QUICK_BENCH_ARGS if quick else BENCH_ARGS
    return {
        f"bench-attention-{size}": (
            "src.bench",
            "attention",
            "--sizes",
            str(size),
            "--rcca-size",
            str(size),
            *args,
            "--out",
            "{dir}",
        )
        for size in sizes
    }


def bench_rows(folders: Mapping[str, Path], sizes: Sequence[int]) -> list[dict[str, Any]]:
    """Per size: the contiguous op row, the ``rcca`` and ``nonlocal`` rows, the JSON."""
    rows = []
    for size in sizes:
        payload = json.loads((folders[f"bench-attention-{size}"] / "attention.json").read_text())
        op = next(r for r in payload["op"] if r["layout"] == "contiguous")
        modules = {r["module"].split()[0]: r for r in payload["rcca_vs_nonlocal"]}
        rows.append({"size": size, "op": op, **modules, "payload": payload})
    return rows


def cost_figure(rows: Sequence[Mapping[str, Any]], path: Path) -> dict[str, dict[str, float]]:
    """Time and bytes against positions (log-log), the fitted exponent in each label."""
    positions = [r["size"] ** 2 for r in rows]
    first = rows[0]["payload"]
    recurrence = first["recurrence"]
    series = {  # label: (time ms, bytes MiB, style)
        "criss-cross op (ours)": (
            [r["op"]["ours_ms"] for r in rows],
            [r["op"]["ours_mib"] for r in rows],
            ("tab:blue", "-", "o"),
        ),
        "batched-matmul formulation": (
            [r["op"]["naive_ms"] for r in rows],
            [r["op"]["naive_mib"] for r in rows],
            ("tab:orange", "-", "s"),
        ),
        f"RCCA module, R={recurrence}": (
            [r["rcca"]["fwd_bwd_ms"] for r in rows],
            [r["rcca"]["saved_mib"] for r in rows],
            ("tab:green", "--", "^"),
        ),
        "non-local block": (
            [r["nonlocal"]["fwd_bwd_ms"] for r in rows],
            [r["nonlocal"]["saved_mib"] for r in rows],
            ("tab:red", "--", "D"),
        ),
    }
    fig = new_figure(11.0, 4.4)
    axes = fig.subplots(1, 2)
    exponents: dict[str, dict[str, float]] = {}
    for ax, which, unit in zip(axes, (0, 1), ("forward+backward time (ms)", "bytes kept (MiB)")):
        for label, values in series.items():
            colour, line, marker = values[2]
            slope = fitted_exponent(positions, values[which])
            exponents.setdefault(label, {})["time" if which == 0 else "bytes"] = slope
            ax.plot(
                positions,
                values[which],
                color=colour,
                linestyle=line,
                marker=marker,
                label=f"{label}: $\\propto N^{{{slope:.2f}}}$",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("feature-map positions N = S × S")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, title="fitted exponent", title_fontsize=8)
    axes[0].set_title("time, forward + backward (median)", fontsize=10)
    axes[1].set_title("bytes kept for backward", fontsize=10)
    sizes = ", ".join(str(r["size"]) for r in rows)
    loads = [r["payload"].get("load_avg_1min") for r in rows]
    loads = [x for x in loads if x is not None]
    load = f", 1-min load {min(loads):.1f}–{max(loads):.1f}" if loads else ""
    fig.suptitle(
        f"src.bench attention, S = {sizes}: op q/k {first['key_channels']} and v "
        f"{first['channels']} channels (contiguous), modules on {first['channels']} channels; "
        f"{first['device']} {first['dtype']}, {first['threads']} thread{load}, "
        f"torch {first['torch']}",
        fontsize=9,
    )
    save_png(fig, path, dpi=90)
    return exponents


# -- main -----------------------------------------------------------------------------------


def make_figures(out: Path, cache: Path, quick: bool = False, fresh: bool = False) -> dict:
    """Run (or reuse) what the figures need and write them into ``out``; returns a report:
    ``figures`` (name -> path), ``measured`` (the numbers printed), ``seconds``."""
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    runner = Runner(cache, fresh)
    made: dict[str, Path] = {}
    measured: dict[str, Any] = {}

    sweep_dirs = {}
    for sweep in SWEEPS:
        sweep_dir = sweep_dirs[sweep] = run_sweep(runner, sweep, quick)
        made[sweep.figure] = copy_png(sweep_dir / "summary.png", out / sweep.figure)
        summary = json.loads((sweep_dir / "summary.json").read_text())
        metric = summary["metric"]
        measured[sweep.figure] = {
            str(r.get("model.recurrence", r["job"])): r.get(metric) for r in summary["runs"]
        }
    job = sweep_job(sweep_dirs[MAIN_SWEEP], 2)

    measured["attention_passes.png"] = attention_figure(job, out / "attention_passes.png")
    made["attention_passes.png"] = out / "attention_passes.png"

    # eval and predict of the R=2 model side by side; the benchmark runs alone (its timings
    # would feel the other runs), except in quick mode, where only speed matters
    split = "test"
    dataset, chosen, inputs = predict_inputs(job, split, cache)
    checkpoint = f"ckpt_path={job['best_model_path']}"
    commands: dict[str, tuple[str, ...]] = {
        "eval": ("src.eval", checkpoint, f"split={split}", "hydra.run.dir={dir}"),
        "predict": ("src.predict", checkpoint, f"input={inputs}", "output={dir}/out")
        + ("hydra.run.dir={dir}",),
    }
    sizes = QUICK_BENCH_SIZES if quick else BENCH_SIZES
    benches = bench_commands(sizes, quick)
    expect = {
        "eval": ("results.json", "per_class_iou.png", "confusion_matrix.png"),
        "predict": ("results.json", "out/*_overlay.jpg"),
        **{name: ("attention.json",) for name in benches},
    }
    folders = runner.run_all({**commands, **benches} if quick else commands, 2, expect)
    if not quick:
        folders.update(runner.run_all(benches, 1, expect))

    results = json.loads((folders["eval"] / "results.json").read_text())
    measured["eval"] = {f"{split}/mIoU": results["metrics"].get(f"{split}/mIoU")}
    for name in ("per_class_iou", "confusion_matrix"):
        made[f"eval_{name}.png"] = copy_png(
            folders["eval"] / f"{name}.png", out / f"eval_{name}.png"
        )
    made["prediction_overlay.png"] = prediction_figure(
        job, dataset, chosen, folders["predict"] / "out", split, out / "prediction_overlay.png"
    )
    rows = bench_rows(folders, sizes)
    measured["attention_cost.png"] = cost_figure(rows, out / "attention_cost.png")
    made["attention_cost.png"] = out / "attention_cost.png"

    missing = set(FIGURES) - set(made)
    if missing:
        raise FigureError(f"not made: {sorted(missing)}")
    return {"figures": made, "measured": measured, "seconds": time.perf_counter() - start}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m src.figures", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny runs (a smoke test)")
    parser.add_argument(
        "--out",
        type=Path,
        help=f"folder for the PNGs (default {DEFAULT_OUT.relative_to(ROOT)}; "
        "--quick: a temporary folder)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        help=f"folder for the runs (default {DEFAULT_CACHE.relative_to(ROOT)}"
        "; --quick: a temporary folder)",
    )
    parser.add_argument("--fresh", action="store_true", help="rerun instead of reusing runs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="ccnet-figures-")) if args.quick else None
    out = (args.out or (scratch / "figures" if scratch else DEFAULT_OUT)).resolve()
    cache = (args.cache or (scratch / "runs" if scratch else DEFAULT_CACHE)).resolve()
    try:
        report = make_figures(out, cache, quick=args.quick, fresh=args.fresh)
    except FigureError as err:
        print(f"[figures] error: {err}", file=sys.stderr)
        return 1
    print(f"\n[figures] measured: {json.dumps(report['measured'], default=float)}")
    print(f"[figures] {len(report['figures'])} figures in {out} ({report['seconds']:.0f} s):")
    too_big = []
    for name, path in sorted(report["figures"].items()):
        size = path.stat().st_size
        too_big += [name] if size > MAX_PNG_BYTES else []
        print(f"  {name:28s} {size / 1024:6.1f} KB  {FIGURES[name]}")
    if too_big:
        print(f"[figures] over {MAX_PNG_BYTES // 1024} KB: {', '.join(too_big)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
