"""Evaluation figures: a per-class IoU bar chart and a row-normalised confusion matrix.

Figures are built on ``matplotlib.figure.Figure`` and drawn by the Agg canvas directly, never
through pyplot: no global figure state, no GUI backend, safe in any process (a training run,
a Hydra sweep, a notebook). :func:`save_evaluation_plots` writes both PNGs into a run folder.

Confusion matrices follow torchmetrics' orientation: rows are ground-truth classes, columns
predicted classes, pixels labelled with the ignore index left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

PER_CLASS_IOU_FILE = "per_class_iou.png"
CONFUSION_MATRIX_FILE = "confusion_matrix.png"
ANNOTATE_MAX_CLASSES = 25
"""Cells of larger confusion matrices are too small to print their values in."""


def normalise_rows(counts: np.ndarray | Tensor) -> np.ndarray:
    """The confusion counts with each row divided by its sum (float64).

    Entry (t, p) becomes the share of class ``t``'s ground-truth pixels predicted as ``p``,
    so every row sums to 1. A class with no ground-truth pixel gets a row of NaN, not of
    zeros: it has no recall to show, which is different from a recall of 0 (and a row of
    zeros would not sum to 1). The plot draws those rows grey.
    """
    counts = _as_array(counts)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"a confusion matrix must be square; got shape {counts.shape}")
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / totals, np.nan)


def plot_per_class_iou(
    per_class: Mapping[str, float | None],
    miou: float | None = None,
    title: str = "per-class IoU",
) -> Figure:
    """Horizontal bars of each class's IoU in %, the mean as a dashed line.

    Classes without an IoU (None or NaN: no pixel in ground truth or prediction) get no bar
    and an "n/a" label, as they are left out of the mean.
    """
    names = list(per_class)
    values = [_finite_or_nan(v) * 100 for v in per_class.values()]
    fig = _figure(width=7.0, height=1.2 + 0.28 * max(len(names), 1))
    ax = fig.add_subplot()
    positions = np.arange(len(names))
    ax.barh(positions, np.nan_to_num(values, nan=0.0), color="tab:blue", height=0.7)
    for y, value in zip(positions, values):
        text = "n/a" if math.isnan(value) else f"{value:.1f}"
        x = 1.0 if math.isnan(value) else value + 1.0
        ax.text(x, y, text, va="center", fontsize=7)
    ax.set_yticks(positions, names, fontsize=8)
    ax.invert_yaxis()  # first class on top, as in the console table
    ax.set_xlim(0, 110)
    ax.set_xlabel("IoU (%)")
    miou = _finite_or_nan(miou) * 100
    if not math.isnan(miou):
        ax.axvline(miou, color="tab:red", linestyle="--", linewidth=1, label=f"mIoU {miou:.1f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_confusion_matrix(
    counts: np.ndarray | Tensor,
    class_names: Sequence[str],
    title: str = "confusion matrix (rows: ground truth, normalised)",
) -> Figure:
    """The row-normalised confusion matrix as a heat map with class names on both axes.

    Rows are ground-truth classes, columns predictions; a cell is the share of the row's
    pixels (0..1). Rows of classes without ground truth are NaN, drawn grey and marked
    "(no GT)" (see :func:`normalise_rows`). Up to :data:`ANNOTATE_MAX_CLASSES` classes,
    cells print their value.
    """
    shares = normalise_rows(counts)
    k = shares.shape[0]
    if len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for a {k}×{k} confusion matrix")
    side = min(4.0 + 0.45 * k, 30.0)
    fig = _figure(width=side + 1.5, height=side)
    ax = fig.add_subplot()
    cmap = colormaps["Blues"].with_extremes(bad="0.85")
    image = ax.imshow(np.ma.masked_invalid(shares), cmap=cmap, vmin=0.0, vmax=1.0)
    fontsize = 8 if k <= 20 else max(3, int(160 / k))
    ticks = np.arange(k)
    no_truth = np.isnan(shares).all(axis=1)
    rows = [f"{name} (no GT)" if empty else name for name, empty in zip(class_names, no_truth)]
    ax.set_xticks(ticks, class_names, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, rows, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if k <= ANNOTATE_MAX_CLASSES:
        for t in range(k):
            for p in range(k):
                value = shares[t, p]
                if math.isnan(value) or value < 0.005:
                    continue
                colour = "white" if value > 0.5 else "black"
                ax.text(p, t, f"{value:.2f}", ha="center", va="center", fontsize=6, color=colour)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of ground-truth pixels")
    ax.set_title(title, fontsize=10)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG (parent folders created; cropped to what is drawn, so no label
    falls off) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def save_evaluation_plots(
    output_dir: str | Path,
    per_class_iou: Mapping[str, float | None],
    miou: float | None,
    confusion: np.ndarray | Tensor,
    class_names: Sequence[str],
    split: str,
) -> dict[str, Path]:
    """Write ``per_class_iou.png`` and ``confusion_matrix.png`` of ``split`` into
    ``output_dir``; returns their paths by name."""
    output_dir = Path(output_dir)
    iou_fig = plot_per_class_iou(per_class_iou, miou, title=f"{split} per-class IoU")
    matrix_fig = plot_confusion_matrix(
        confusion, class_names, title=f"{split} confusion matrix (rows: ground truth, normalised)"
    )
    return {
        "per_class_iou": save_figure(iou_fig, output_dir / PER_CLASS_IOU_FILE),
        "confusion_matrix": save_figure(matrix_fig, output_dir / CONFUSION_MATRIX_FILE),
    }


def _figure(width: float, height: float) -> Figure:
    """A pyplot-free figure with an Agg canvas attached (constrained layout: long class names
    and the colour bar never clip the axis labels)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _as_array(values: np.ndarray | Tensor) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def _finite_or_nan(value: float | Tensor | None) -> float:
    if value is None:
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


__all__ = [
    "CONFUSION_MATRIX_FILE",
    "PER_CLASS_IOU_FILE",
    "normalise_rows",
    "plot_confusion_matrix",
    "plot_per_class_iou",
    "save_evaluation_plots",
    "save_figure",
]
