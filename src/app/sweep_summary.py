"""Hydra callback: at the end of a multirun, tabulate and plot every job's ``results.json``.

Writes ``summary.json``, ``summary.md`` and ``summary.png`` (the optimised metric against the
swept parameter, e.g. mIoU against ``model.recurrence``) into the sweep folder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from src.app.report import print_table, run_cell, runs_table
from src.app.results import FAILURE_FILE, RESULTS_FILE

log = logging.getLogger(__name__)


def load_runs(sweep_dir: Path) -> list[dict[str, Any]]:
    """The results of every job under ``sweep_dir``, in job order; a job that failed gives
    its overrides and ``failed`` (the error line) instead of metrics."""
    runs = []
    for path in sorted(sweep_dir.glob(f"**/{RESULTS_FILE}")):
        results = json.loads(path.read_text())
        results["job"] = str(path.parent.relative_to(sweep_dir))
        runs.append(results)
    for path in sorted(sweep_dir.glob(f"**/{FAILURE_FILE}")):
        failure = json.loads(path.read_text())
        overrides = path.parent / ".hydra" / "overrides.yaml"
        runs.append(
            {
                "job": str(path.parent.relative_to(sweep_dir)),
                "failed": failure.get("error", "failed").splitlines()[0],
                "overrides": list(OmegaConf.load(overrides)) if overrides.is_file() else [],
            }
        )
    return sorted(runs, key=lambda r: (len(r["job"]), r["job"]))


def parse_overrides(overrides: Sequence[str]) -> dict[str, str]:
    """``["model.recurrence=2", "+x=1"]`` -> ``{"model.recurrence": "2", "x": "1"}``."""
    pairs = {}
    for item in overrides:
        key, _, value = item.partition("=")
        pairs[key.lstrip("+~")] = value
    return pairs


def swept_keys(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The override keys whose values differ between jobs (what the sweep varied)."""
    values: dict[str, set[str]] = {}
    for run in runs:
        for key, value in parse_overrides(run.get("overrides", [])).items():
            values.setdefault(key, set()).add(value)
    return [k for k, v in values.items() if len(v) > 1]


def summarize(runs: Sequence[Mapping[str, Any]], metric: str) -> tuple[list[dict], list[str]]:
    """Table rows (job, swept values, metric, step, time) and their column order."""
    keys = swept_keys(runs)
    rows = []
    for run in runs:
        overrides = parse_overrides(run.get("overrides", []))
        metrics = run.get("metrics", {})
        row = {"job": run["job"], **{k: overrides.get(k) for k in keys}}
        row[metric] = metrics.get(metric)
        if metric != "val/mIoU":
            row["val/mIoU"] = metrics.get("val/mIoU")
        row["global_step"] = run.get("global_step")
        row["wall_time_s"] = run.get("wall_time_s")
        if any("failed" in r for r in runs):
            row["status"] = f"failed: {run['failed']}" if "failed" in run else "ok"
        rows.append(row)
    columns = ["job", *keys, metric, *(["val/mIoU"] if metric != "val/mIoU" else [])]
    status = ["status"] if any("failed" in r for r in runs) else []
    return rows, [*columns, "global_step", "wall_time_s", *status]


def figure(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], metric: str) -> Any:
    """A line of ``metric`` against one numeric swept key; otherwise one bar per job."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in rows if r.get(metric) is not None]
    scale = 100.0 if "mIoU" in metric else 1.0  # mIoU in percent, as every table shows it
    fig, ax = plt.subplots(figsize=(6, 4))
    numeric = len(keys) == 1 and all(_is_number(r.get(keys[0])) for r in scored)
    if numeric and scored:
        points = sorted((float(r[keys[0]]), r[metric] * scale) for r in scored)
        ax.plot([x for x, _ in points], [y for _, y in points], marker="o")
        ticks = {float(r[keys[0]]): str(r[keys[0]]) for r in scored}  # value -> as swept
        if len(ticks) <= 12:  # few values (e.g. R = 0, 1, 2): tick exactly those
            ax.set_xticks(sorted(ticks), [ticks[x] for x in sorted(ticks)])
        for x, y in points:
            label = f"{y:.2f}" if scale != 1.0 else f"{y:.3f}"
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(0, 6), ha="center")
        ax.margins(y=0.15)  # room for the labels
        ax.set_xlabel(keys[0])
    else:
        labels = [", ".join(f"{k}={r.get(k)}" for k in keys) or r["job"] for r in scored]
        ax.bar(range(len(scored)), [r[metric] * scale for r in scored])
        ax.set_xticks(range(len(scored)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{metric} (%)" if scale != 1.0 else metric)
    ax.set_title(f"{metric} per sweep job")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], metric: str, path: Path) -> None:
    """Save :func:`figure` as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    fig = figure(rows, keys, metric)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """The rows as a Markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [run_cell(row.get(c), c) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


class SweepSummary(Callback):
    """Summarise a multirun from the ``results.json`` of its jobs (see the module docstring)."""

    def __init__(self, metric: str | None = None) -> None:
        self.metric = metric

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        runs = load_runs(sweep_dir)
        if not runs:
            log.warning("sweep summary: no %s under %s", RESULTS_FILE, sweep_dir)
            return
        metric = self.metric or config.get("optimized_metric") or "val/mIoU"
        rows, columns = summarize(runs, metric)
        keys = swept_keys(runs)
        (sweep_dir / "summary.json").write_text(
            json.dumps({"metric": metric, "swept": keys, "runs": rows}, indent=2) + "\n"
        )
        (sweep_dir / "summary.md").write_text(markdown(rows, columns))
        plot(rows, keys, metric, sweep_dir / "summary.png")
        print_table(runs_table(rows, columns, title=f"sweep {sweep_dir}"))
        log.info("sweep summary written to %s/summary.{json,md,png}", sweep_dir)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
