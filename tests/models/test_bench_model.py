"""The model cost benchmark runs end to end (quick mode) and writes a consistent JSON."""

from __future__ import annotations

import json

import pytest

from src.bench.model import CONTENDERS, main

pytestmark = pytest.mark.usefixtures("single_thread")


def test_quick_model_benchmark_writes_consistent_json(tmp_path):
    args = ["--quick", "--backbone", "resnet10t", "--size", "49", "--channels", "32"]
    main([*args, "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "model.json").read_text())
    assert payload["benchmark"] == "model" and payload["backbone"] == "resnet10t"
    rows = {row["model"]: row for row in payload["rows"]}
    assert list(rows) == list(CONTENDERS)
    base = rows["none"]
    for row in rows.values():
        assert row["params"] > 0 and row["gflops"] > 0 and row["saved_mib"] > 0
        assert row["d_gflops"] == row["gflops"] - base["gflops"]
        assert row["d_saved_mib"] == row["saved_mib"] - base["saved_mib"]
    # "none" has no context module; RCCA's parameters do not depend on R, and each
    # recurrence adds the same attention cost
    assert len({rows[f"rcca R={r}"]["params"] for r in (1, 2, 3)}) == 1
    assert rows["rcca R=1"]["params"] > base["params"]
    steps = [rows[f"rcca R={r}"]["d_gflops"] for r in (1, 2, 3)]
    assert 0 < steps[0] < steps[1] < steps[2]
    assert abs(steps[2] - 3 * steps[0]) < 1e-6 * max(1.0, base["gflops"])
    assert rows["nonlocal"]["d_params"] > 0 and rows["nonlocal"]["d_gflops"] > 0
    assert rows["rcca R=2"]["d_saved_mib"] > 0
