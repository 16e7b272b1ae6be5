"""``python -m src.figures --quick``: every README figure made from tiny runs, so the script
cannot rot; a second call reuses the finished runs. And the committed figures: each one the
script makes is in docs/figures/, small, and shown by the README."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from src.figures import FIGURES, MAX_PNG_BYTES, fitted_exponent

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_figures(*args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run(
        [sys.executable, "-m", "src.figures", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"src.figures failed ({proc.returncode}):\n{output[-6000:]}"
    return output


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(figures folder, runs folder, output) of one quick run."""
    base = tmp_path_factory.mktemp("figures")
    out, cache = base / "figures", base / "runs"
    return out, cache, run_figures("--quick", "--out", str(out), "--cache", str(cache))


@pytest.mark.slow  # ~1-2 minutes: tiny training runs, benchmarks and evals for every figure
def test_quick_mode_makes_every_figure(quick):
    out, _, output = quick
    assert sorted(p.name for p in out.glob("*.png")) == sorted(FIGURES)
    for name in FIGURES:
        path = out / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE, name
        with Image.open(path) as image:
            image.verify()  # a complete, uncorrupted PNG
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        assert min(pixels.shape[:2]) >= 200, f"{name} is only {pixels.shape[:2]}"
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 8, f"{name} is (nearly) blank"
        assert 5_000 < path.stat().st_size <= MAX_PNG_BYTES, name
        # the script reports what it made: name and size on one line
        assert re.search(rf"^\s+{re.escape(name)}\s+[\d.]+ KB", output, re.MULTILINE), name
    assert f"{len(FIGURES)} figures in {out}" in output


@pytest.mark.slow
def test_second_call_reuses_the_runs(quick):
    out, cache, _ = quick
    first = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    output = run_figures("--quick", "--out", str(out), "--cache", str(cache))
    assert "reusing" in output and " done in " not in output  # no run started again
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir() if p.name in first} == first


def test_fitted_exponent():
    positions = [100, 400, 1600]
    assert fitted_exponent(positions, [3 * n**1.5 for n in positions]) == pytest.approx(1.5)


def test_committed_figures_are_shown_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    shown = set(re.findall(r"docs/figures/([\w.-]+\.png)", readme))
    committed = {p.name for p in (ROOT / "docs" / "figures").glob("*.png")}
    assert set(FIGURES) <= committed, "run `make figures`"
    assert set(FIGURES) <= shown, "every figure belongs next to the sentence it illustrates"
    assert shown <= committed
    for name in FIGURES:
        assert (ROOT / "docs" / "figures" / name).stat().st_size <= MAX_PNG_BYTES, name
    assert "make figures" in readme
