"""A failed run as a user sees it: one clear line (no traceback) and exit code != 0, the
traceback in the run's log file, ``failure.json`` instead of ``results.json``; and in a
multirun, a failed job leaves the others running and is marked in the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from app_helpers import TINY
from cli_helpers import run_cli_status

# callbacks=none and an interval longer than the run: it still validates at its last step
FAST = [*TINY, "trainer.max_steps=2", "trainer.val_check_interval=100", "callbacks=none"]


def test_a_data_error_is_one_line_and_the_traceback_goes_to_the_log_file(tmp_path: Path):
    run_dir = tmp_path / "run"
    missing = tmp_path / "nowhere"
    code, output = run_cli_status(
        "train",
        "data=cityscapes",
        f"data.root={missing}",
        f"hydra.run.dir={run_dir}",
        full_error=False,
    )
    assert code == 1
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert (
        len(errors) == 1
        and f"DatasetNotFoundError: Cityscapes root not found: {missing}" in errors[0]
    )
    assert "Traceback" in (run_dir / "train.log").read_text()
    failure = json.loads((run_dir / "failure.json").read_text())
    assert failure["exit_code"] == 1 and "DatasetNotFoundError" in failure["error"]
    assert not (run_dir / "results.json").exists()


@pytest.mark.slow  # Hydra's own switch; the default path is the test above
def test_hydra_full_error_shows_the_traceback(tmp_path: Path):
    code, output = run_cli_status(
        "train", "data=cityscapes", f"data.root={tmp_path}", f"hydra.run.dir={tmp_path / 'r'}"
    )
    assert code == 1 and "Traceback" in output


def test_a_failed_multirun_job_does_not_end_the_sweep(tmp_path: Path):
    sweep = tmp_path / "sweep"
    code, output = run_cli_status(
        "train", "-m", *FAST, "model.recurrence=0,-1,1", f"hydra.sweep.dir={sweep}",
        full_error=False,
    )  # fmt: skip
    assert code == 0, output[-3000:]
    assert "invalid config: model.recurrence must be an int >= 0; got -1" in output
    assert (sweep / "0" / "results.json").is_file() and (sweep / "2" / "results.json").is_file()
    assert json.loads((sweep / "1" / "failure.json").read_text())["exit_code"] == 2
    summary = json.loads((sweep / "summary.json").read_text())
    status = {run["model.recurrence"]: run["status"] for run in summary["runs"]}
    assert status["0"] == status["1"] == "ok" and status["-1"].startswith("failed: invalid")
    assert all(run["val/mIoU_best"] is not None for run in summary["runs"] if run["status"] == "ok")
    assert not (sweep / "0" / "failure.json").exists()
