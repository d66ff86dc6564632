"""Smoke test of benchmarks/bench_activation.py: it runs, covers every variant and writes its JSON."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import offline_env

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_activation.py"
VARIANTS = {"relu", "gelu_eager", "gelu_compiled", "lambda_gelu_eager", "lambda_gelu_compiled", "naive_eager"}


@pytest.mark.slow
def test_quick_benchmark_writes_every_variant(tmp_path):
    committed = SCRIPT.parent / "results" / "bench_activation.json"
    before = committed.read_bytes()
    # aot_eager keeps the smoke test free of Inductor's C++ compilation; the full run uses Inductor.
    # No --out: --quick must write a temporary file, never the committed full-run results.
    cmd = [sys.executable, str(SCRIPT), "--quick", "--compile-backend", "aot_eager"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=offline_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert committed.read_bytes() == before
    out = Path(proc.stdout.rsplit("wrote ", 1)[1].split()[0])
    assert out.name == "bench_activation.json" and committed.parent not in out.parents

    report = json.loads(out.read_text())
    assert set(report["results"]) == VARIANTS
    results = report["results"]
    for name, r in results.items():
        base = results["gelu_compiled" if name.endswith("_compiled") else "gelu_eager"]
        assert len(r["times_ms"]) >= 5 and r["median_ms"] == pytest.approx(statistics.median(r["times_ms"])), name
        assert r["time_ratio_to_gelu"] == pytest.approx(r["median_ms"] / base["median_ms"]), name
        assert r["saved_extra_bytes_vs_gelu"] == r["saved_bytes"] - base["saved_bytes"], name
    assert results["gelu_eager"]["time_ratio_to_gelu"] == 1.0
    checks, targets = report["checks"], report["targets"]
    for mode in ("eager", "compiled"):
        ratio = results[f"lambda_gelu_{mode}"]["time_ratio_to_gelu"]
        assert checks[f"{mode}_time_ratio"] == ratio
        assert checks[f"{mode}_time_ok"] is (ratio <= targets[f"{mode}_time_ratio_max"])
    meta = report["meta"]
    for key in ("torch", "cpu_count", "date", "shape", "device", "compile_backend"):
        assert meta[key], key
    assert meta["quick"] is True and meta["compile_backend"] == "aot_eager"
    # Saved memory is a structural property, not a timing: it must hold even on a tiny tensor.
    assert report["checks"]["saved_memory_equal_to_gelu_eager"] is True
    assert report["checks"]["saved_memory_equal_to_gelu_compiled"] is True
    x_bytes = 4 * math.prod(meta["shape"])
    assert report["results"]["lambda_gelu_eager"]["saved_bytes"] == x_bytes + 4  # x and λ
    assert report["results"]["gelu_eager"]["saved_bytes"] == x_bytes
    assert "lambda_gelu_eager" in proc.stdout and "x GELU" in proc.stdout
