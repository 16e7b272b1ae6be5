"""SIGKILL mid-training, resume from last.ckpt: the same final step and weights, bit for bit.

Run A trains 12 steps uninterrupted; run B, the same config, is killed as soon as its first
``last.ckpt`` exists and resumed with ``ckpt_path=`` into the same run folder. Epochs are 4
batches long and ``last.ckpt`` is written every 3 steps, so every checkpoint B can be killed
after (step 3, 6 or 9) is mid-epoch: the resume must restore the loader's position, the
dropout generator, the optimiser and the poly schedule, and cross later epoch boundaries with
the same shuffles as A. Validation runs every 6 steps: the saves at steps 6 and 12 are made
after it, so a resume misses no validation (same best checkpoint, same best mIoU). B is in
practice always killed at step 3, before any validation: a resume from a save at a validation
step is tested on a scripted run in tests/callbacks/test_checkpoint_choice.py.

The same holds for video training (``video``: clips of the video toy through CCNet3D, the
same schedule; slow, three runs of a bigger model).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from app_helpers import read_results
from cli_helpers import run_cli
from reliability_helpers import (
    EPOCH,
    RESUMABLE_RUN,
    RESUMABLE_VIDEO_RUN,
    STEPS,
    VAL_BATCHES,
    VALIDATE,
    differing_tensors,
    load,
    start_cli,
    wait_for_file,
)

# run -> (its overrides, the session fixture holding its uninterrupted run)
RUNS = {
    "image": (RESUMABLE_RUN, "uninterrupted_run"),
    "video": (RESUMABLE_VIDEO_RUN, "uninterrupted_video_run"),
}


@pytest.mark.parametrize("run", ["image", pytest.param("video", marks=pytest.mark.slow)])
def test_killed_run_resumes_to_the_weights_of_an_uninterrupted_run(run, request, tmp_path):
    overrides, fixture = RUNS[run]
    uninterrupted_run = request.getfixturevalue(fixture)
    run_dir = tmp_path / "killed"
    last = run_dir / "checkpoints" / "last.ckpt"
    log = tmp_path / "killed.log"
    proc = start_cli("train", *overrides, f"hydra.run.dir={run_dir}", log=log)
    try:
        wait_for_file(last, proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    assert not (run_dir / "results.json").exists()  # a killed run leaves no results
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))  # nor half-written files

    killed_at = load(last)["global_step"]
    assert killed_at in (3, 6, 9) and killed_at % EPOCH != 0  # mid-epoch, before the end

    output = run_cli("train", *overrides, f"ckpt_path={last}", f"hydra.run.dir={run_dir}")
    assert "Restoring states from the checkpoint" in output
    assert "dataloader is not resumable" not in output  # Lightning's mid-epoch warning

    expected = load(uninterrupted_run / "checkpoints" / "last.ckpt")
    resumed = load(last)
    assert resumed["global_step"] == expected["global_step"] == STEPS
    assert read_results(run_dir)["global_step"] == STEPS
    for part in ("state_dict", "optimizer_states", "lr_schedulers"):
        assert differing_tensors(expected[part], resumed[part]) == [], part
    loader = resumed["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader == expected["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader[0]["epoch"] == STEPS // EPOCH and loader[0]["consumed"] == 0
    best = [Path(read_results(d)["best_model_path"]).name for d in (uninterrupted_run, run_dir)]
    assert best[0] == best[1]
    schedule = resumed["lr_schedulers"][0]
    assert schedule["last_epoch"] == STEPS
    assert schedule["lr_lambdas"][0]["total_steps"] == STEPS


def test_final_last_checkpoint_holds_the_run_s_best_miou(uninterrupted_run):
    """A's final last.ckpt is the last step's, after a validation, with the best mIoU the run
    reported. (That a step save waits for the validation due at its step, and that a resume
    from it misses no validation, is tested on a scripted run whose validations are counted:
    tests/callbacks/test_checkpoint_choice.py. Here every checkpoint's val-loop progress reads
    the same whether step 12's save came before or after step 12's validation.)"""
    checkpoint = load(uninterrupted_run / "checkpoints" / "last.ckpt")
    validation = checkpoint["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]
    assert checkpoint["global_step"] == STEPS and STEPS % VALIDATE == 0
    assert validation["current"]["completed"] == VAL_BATCHES
    best = checkpoint["state_dict"]["val_miou_best.max_value"]
    assert best.isfinite() and best.item() == pytest.approx(
        read_results(uninterrupted_run)["metrics"]["val/mIoU_best"]
    )
