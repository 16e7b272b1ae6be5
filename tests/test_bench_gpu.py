"""``python -m src.bench gpu`` runs end to end on the CPU at tiny sizes (so it cannot rot);
its einsum contender computes the op."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from src.bench.gpu import einsum_cca
from src.models.attention import criss_cross_attention

ROOT = Path(__file__).resolve().parents[1]


def test_einsum_formulation_is_the_op() -> None:
    gen = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, 4, 5, 7, generator=gen, dtype=torch.float64) for _ in range(2))
    v = torch.randn(2, 6, 5, 7, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(einsum_cca(q, k, v), criss_cross_attention(q, k, v))


@pytest.mark.slow  # ~1 min of CPU: five model builds and a compile
def test_quick_cpu_run_writes_every_part(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "src.bench", "gpu", "--device", "cpu", "--quick",
               "--repeats", "1", "--warmup", "0", "--compile-backend", "aot_eager",
               "--out", str(tmp_path)]  # fmt: skip
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert {r["variant"] for r in result["train"]} == {
        "eager fp32", "bf16-mixed", "+ channels_last", "+ compile"
    }  # fmt: skip
    assert all(r["images_per_s"] > 0 for r in result["train"] + result["infer"])
    assert {r["dtype"] for r in result["op"]} == {"fp32", "bf16"}
    names = ("ours", "ours_fused", "einsum", "nonlocal")  # ours_fused: kernel="fused"
    assert all(r[f"{n}_ms"] > 0 for r in result["op"] for n in names)
    assert "6.0 GB" in proc.stdout and "published anchors" in proc.stdout
