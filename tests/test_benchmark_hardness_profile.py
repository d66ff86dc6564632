"""``benchmarks/hardness_profile.py``: its ``--quick`` run writes every field and the figure; its rank correlation."""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import offline_env

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _module():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("hardness_profile_bench", BENCHMARKS / "hardness_profile.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    spearman = _module().spearman
    rng = random.Random(0)
    for _ in range(20):
        a = [rng.choice([1.0, 1.0, 1.2, 1.5, 2.0, 3.0]) for _ in range(6)]  # ties, as at λ's floor
        b = [rng.random() for _ in range(6)]
        if len(set(a)) > 1:
            assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b)[0])
    assert spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None  # no ranking to compare


@pytest.mark.slow
def test_quick_run_writes_profile_cost_and_figure(tmp_path):
    out = tmp_path / "h.json"
    figure = BENCHMARKS.parent / "docs" / "hardness_profile_minilm.png"
    committed = {path: path.read_bytes() for path in [*(BENCHMARKS / "results").glob("*.json"), figure]}
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "hardness_profile.py"), "--quick", "--seeds", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=offline_env(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "checks:" in proc.stdout and "Spearman between seeds: 0-1:" in proc.stdout
    assert {path: path.read_bytes() for path in committed} == committed, "--quick overwrote committed results"
    result = json.loads(out.read_text())
    settings = result["settings"]
    assert (settings["hardening_start"], settings["distill_alpha"]) == (1.0, 0.0)
    assert settings["lambda_learning_rate"] > 0 and result["meta"]["quick"] is True
    layers = result["summary"]["layers"]
    assert len(layers) == 6 and all("layer" in name for name in layers)  # MiniLM's six MLPs
    for seed in ("0", "1"):
        gelu, profile = result["per_seed"][seed]["gelu"], result["per_seed"][seed]["profile"]
        assert 0.0 <= gelu["accuracy"] <= 100.0 and 0.0 <= profile["accuracy"] <= 100.0
        assert all(run[key] > 0 for run in (gelu, profile) for key in ("train_seconds", "train_cpu_seconds"))
        assert "lambdas" not in gelu
        assert list(profile["lambdas"]) == layers and all(lam >= 1.0 for lam in profile["lambdas"].values())
        assert any(lam > 1.0 for lam in profile["lambdas"].values())  # λ was learned
        for name in layers:  # the road: step 0, then each logged step, ending at the final λ
            steps = [step for step, _ in profile["road"][name]]
            assert steps == [0, 1, 2, 3] and profile["road"][name][-1][1] == pytest.approx(profile["lambdas"][name])
        # the trainer kept the λ-GELU model and wrote its profile beside it; no ReLU swap, no report
        assert {"hardness_profile.json", "hardness_profile.png"} <= set(profile["trainer_files"])
        assert "reluization_report.json" not in profile["trainer_files"]
    summary = result["summary"]
    assert set(summary["spearman_between_seeds"]["pairwise"]) == {"0-1"}
    for ratio in ("time_ratio_profile_over_gelu", "cpu_time_ratio_profile_over_gelu"):
        assert summary[ratio]["n"] == 2 and summary[ratio]["mean"] > 0
    assert set(summary["accuracy"]) == {"gelu", "profile"} and summary["lambda_mean"][layers[0]]["n"] == 2
    assert Path(result["figure"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
