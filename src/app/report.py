"""Rich tables for the console: per-class IoU of one run, and the runs of a sweep."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from src.app.console import log_to_file


def _fmt(value: Any, digits: int = 2, percent: bool = False) -> str:
    """Numbers with fixed digits (percent: ×100), None/NaN as a dash."""
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    if isinstance(value, float):
        return f"{value * 100 if percent else value:.{digits}f}"
    return str(value)


def run_cell(value: Any, column: str) -> str:
    """A sweep table's cell: mIoU columns in percent (as every table shows mIoU), other
    numbers to 4 digits; the console table and the sweep's markdown both use it."""
    return _fmt(value, percent=True) if "mIoU" in column else _fmt(value, digits=4)


def iou_table(per_class: Mapping[str, float | None], miou: float | None, title: str) -> Table:
    """Per-class IoU (in %) with the mean as the last row; classes left out of it show a dash."""
    table = Table(title=title)
    table.add_column("class")
    table.add_column("IoU %", justify="right")
    for name, value in per_class.items():
        table.add_row(name, _fmt(value, percent=True))
    table.add_section()
    table.add_row("mIoU", _fmt(miou, percent=True), style="bold")
    return table


def runs_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], title: str) -> Table:
    """One row per run of a sweep, the given columns in order (mIoU columns in percent)."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column == "job" else "right")
    for row in rows:
        table.add_row(*(run_cell(row.get(c), c) for c in columns))
    return table


def print_table(table: Table) -> None:
    """Print a rich table, wide enough that class names never wrap; the run's log file gets
    the same table as plain text."""
    Console(width=max(100, Console().width)).print(table)
    plain = Console(width=100, color_system=None, record=True, file=io.StringIO())
    plain.print(table)
    log_to_file("\n" + plain.export_text())
