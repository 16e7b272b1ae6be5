"""The data benchmark runs end to end in its quick mode and writes its JSON."""

from __future__ import annotations

import json

from src.bench import data


def test_quick_run_reports_every_worker_count(tmp_path, capsys):
    result = data.main(["--quick", "--out", str(tmp_path)])
    assert [row["workers"] for row in result["rows"]] == [0, 1]
    assert all(row["images/s"] > 0 for row in result["rows"])
    assert result["images_per_pass"] == 4 and result["crop_size"] == [64, 64]
    saved = json.loads((tmp_path / "data.json").read_text())
    assert saved["benchmark"] == "data" and saved["rows"] == result["rows"]
    assert "images/s" in capsys.readouterr().out
