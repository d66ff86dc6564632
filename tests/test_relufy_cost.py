"""benchmarks/relufy_cost.py: its ``--quick`` run writes one row per grid cell with sane values and prints the table."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import offline_env

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "relufy_cost.py"


@pytest.mark.slow
def test_quick_run_times_every_cell_of_the_grid(tmp_path):
    out = tmp_path / "cost.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)], capture_output=True, text=True,
                          timeout=300, env=offline_env(tmp_path, OMP_NUM_THREADS="1"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["meta"]["quick"] is True and report["road"] == "swap"
    rows = report["rows"]
    assert [(r["seq"], r["batch"]) for r in rows] == [(16, 2), (32, 2), (16, 4)]
    for r in rows:
        assert r["steps"] == 3 and r["parameters"] > 0
        assert math.isfinite(r["step_s"]) and 0 < r["step_s_min"] <= r["step_s"]
        assert 0 < r["teacher_share"] < 1  # the teacher forward is a part of the step
        assert r["model_rss_mb"] > 0 and r["peak_rss_over_model_mb"] >= 0
    assert "s / step (median)" in proc.stdout and proc.stdout.count("bert_tiny") >= 3
