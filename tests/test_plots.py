"""Evaluation figures: row normalisation, labelled axes, PNG files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from src.app.plots import (
    normalise_rows,
    plot_confusion_matrix,
    plot_per_class_iou,
    save_evaluation_plots,
)

PNG = b"\x89PNG\r\n\x1a\n"
COUNTS = np.array([[6, 2, 0], [0, 0, 0], [1, 0, 3]])  # class 1 has no ground truth


def test_rows_sum_to_one_and_empty_rows_are_nan():
    shares = normalise_rows(torch.as_tensor(COUNTS))
    np.testing.assert_allclose(shares[[0, 2]].sum(axis=1), [1.0, 1.0])
    np.testing.assert_allclose(shares[0], [0.75, 0.25, 0.0])
    np.testing.assert_allclose(shares[2], [0.25, 0.0, 0.75])
    assert np.isnan(shares[1]).all()


def test_normalise_rows_rejects_non_square_matrices():
    with pytest.raises(ValueError, match="square"):
        normalise_rows(np.zeros((2, 3)))


def test_confusion_matrix_figure_names_classes_on_both_axes():
    fig = plot_confusion_matrix(COUNTS, ["road", "wall", "sky"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["road", "wall", "sky"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["road", "wall (no GT)", "sky"]
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "ground truth"
    drawn = ax.images[0].get_array()
    assert drawn.mask[1].all() and not drawn.mask[[0, 2]].any()  # the empty row is blank
    np.testing.assert_allclose(drawn.filled(0).sum(axis=1), [1.0, 0.0, 1.0])
    cells = {t.get_text() for t in ax.texts}
    assert {"0.75", "0.25"} <= cells
    with pytest.raises(ValueError, match="class names"):
        plot_confusion_matrix(COUNTS, ["road", "sky"])


def test_per_class_iou_bars_in_percent_with_missing_classes_marked():
    fig = plot_per_class_iou({"road": 0.9, "wall": None, "sky": math.nan}, miou=0.9)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["road", "wall", "sky"]
    assert [p.get_width() for p in ax.patches] == pytest.approx([90.0, 0.0, 0.0])
    assert [t.get_text() for t in ax.texts] == ["90.0", "n/a", "n/a"]
    assert ax.get_legend().get_texts()[0].get_text() == "mIoU 90.0"


def test_save_evaluation_plots_writes_both_pngs(tmp_path):
    paths = save_evaluation_plots(
        tmp_path / "run", {"a": 0.5, "b": None, "c": 0.25}, 0.375, COUNTS, ["a", "b", "c"], "val"
    )
    assert {p.name for p in paths.values()} == {"per_class_iou.png", "confusion_matrix.png"}
    for path in paths.values():
        assert path.parent == tmp_path / "run" and path.read_bytes()[:8] == PNG
