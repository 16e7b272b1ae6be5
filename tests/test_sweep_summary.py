"""The multirun summary: swept keys, table rows and the plot, from hand-made results."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pytest

from src.app.sweep_summary import (
    figure,
    load_runs,
    markdown,
    parse_overrides,
    plot,
    summarize,
    swept_keys,
)


def write_job(sweep_dir, job: int, overrides: list[str], miou: float | None) -> None:
    folder = sweep_dir / str(job)
    folder.mkdir(parents=True)
    results = {"overrides": overrides, "metrics": {"val/mIoU": miou}, "global_step": 10}
    (folder / "results.json").write_text(json.dumps(results))


@pytest.fixture
def recurrence_sweep(tmp_path):
    # Job 10 sorts after job 2: job folders are ordered as numbers, not as strings.
    for job, (r, miou) in {0: (0, 0.48), 1: (1, 0.51), 2: (2, 0.93), 10: (3, None)}.items():
        write_job(tmp_path, job, ["experiment=context_toy", f"model.recurrence={r}"], miou)
    return tmp_path


def test_overrides_and_swept_keys():
    assert parse_overrides(["model.recurrence=2", "+x=a=b", "~y="]) == {
        "model.recurrence": "2",
        "x": "a=b",
        "y": "",
    }
    runs = [{"overrides": ["a=1", "b=2"]}, {"overrides": ["a=1", "b=3"]}]
    assert swept_keys(runs) == ["b"]


def test_summary_rows_follow_the_jobs(recurrence_sweep):
    runs = load_runs(recurrence_sweep)
    assert [r["job"] for r in runs] == ["0", "1", "2", "10"]
    rows, columns = summarize(runs, "val/mIoU")
    assert columns[:3] == ["job", "model.recurrence", "val/mIoU"]
    assert [(r["model.recurrence"], r["val/mIoU"]) for r in rows] == [
        ("0", 0.48),
        ("1", 0.51),
        ("2", 0.93),
        ("3", None),
    ]
    table = markdown(rows, columns).splitlines()
    assert len(table) == 6 and "| 2 | 2 | 93.00 |" in table[4] and "—" in table[5]  # percent


def test_numeric_sweep_plots_a_line_ticked_at_the_swept_values(recurrence_sweep):
    rows, _ = summarize(load_runs(recurrence_sweep), "val/mIoU")
    fig = figure(rows, ["model.recurrence"], "val/mIoU")
    (ax,) = fig.axes
    (line,) = ax.lines
    assert list(line.get_xdata()) == [0.0, 1.0, 2.0]  # the unscored job is left out
    assert list(line.get_ydata()) == pytest.approx([48.0, 51.0, 93.0])  # mIoU in percent
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    assert [t.get_text() for t in ax.texts] == ["48.00", "51.00", "93.00"]
    plt.close(fig)


def test_non_numeric_sweep_plots_one_bar_per_job(tmp_path):
    for job, backbone in enumerate(["resnet18d", "resnet50d"]):
        write_job(tmp_path, job, [f"model.backbone={backbone}"], 0.5 + job / 10)
    rows, _ = summarize(load_runs(tmp_path), "val/mIoU")
    fig = figure(rows, swept_keys(load_runs(tmp_path)), "val/mIoU")
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["model.backbone=resnet18d", "model.backbone=resnet50d"]
    plt.close(fig)
    plot(rows, ["model.backbone"], "val/mIoU", tmp_path / "summary.png")
    assert (tmp_path / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
