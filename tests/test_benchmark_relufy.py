"""``benchmarks/relufy.py --quick`` runs every arm and budget and writes every field; two runs with disjoint seeds merge.

The tasks that need the Debian package lists (``debian_cls``, ``embedder``) are left out: a fresh machine
has no lists until ``apt-get update``. Their data parser is tested on a fixed text.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from arch_matrix import build
from helpers import offline_env
from transformers import TrainerCallback

from hf_lambda_gelu import RelufyArguments, relufy
from hf_lambda_gelu.release.gate import dummy_inputs

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TASKS = ("sentiment_cls", "digits_vit", "docstrings_gpt2")


def _run(tmp_path: Path, out: Path, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "relufy.py"), "--quick", "--out", str(out), *args],
        capture_output=True, text=True, timeout=600, cwd=BENCHMARKS,
        env=offline_env(tmp_path, HF_LAMBDA_GELU_RELUFY_CACHE=str(tmp_path / "cache")),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "checks:" in proc.stdout
    return json.loads(out.read_text())


@pytest.mark.slow
def test_quick_run_every_arm_and_budget_and_merge(tmp_path):
    first = _run(tmp_path, tmp_path / "a.json", "--tasks", *TASKS, "--budgets", "0.125", "1", "--seeds", "1")
    second = ["--tasks", *TASKS, "--budgets", "1", "--seeds", "1", "--first-seed", "1", "--arms", "swap_distil"]
    _run(tmp_path, tmp_path / "b.json", *second)
    merged = _run_merge(tmp_path, tmp_path / "a.json", tmp_path / "b.json")
    for name in TASKS:
        result = merged["tasks"][name]
        arms = {(r["arm"], r["budget_epochs"], r["seed"]) for r in result["rows"]}
        assert {("naive_swap", 0.0, 0), ("refit", 0.0, 0)} <= arms  # no training: budget 0, once per seed
        for arm in ("swap_distil", "refit_distil", "lambda_distil"):
            assert {(arm, b, 0) for b in (0.125, 1.0)} <= arms
        assert ("swap_distil", 1.0, 1) in arms  # the second run's, merged
        assert "refit_distil" in result["time_to_fidelity"] and result["time_to_fidelity"]["target"] > 0
        assert result["summary"]["swap_distil@1"]["seconds"]["n"] == 2
        kind = result["kind"]
        key = {"classifier": "top1_agreement", "causal_lm": "next_token_agreement"}[kind]
        assert all(0.0 <= r[key] <= 1.0 for r in result["rows"])
        assert any("swap_distil ≥ lambda_distil" in check for check in result["checks"])
    rerun = _run_merge(tmp_path, tmp_path / "merged0.json", tmp_path / "b.json", "--replace")  # b's rows again
    assert [len(rerun["tasks"][n]["rows"]) for n in TASKS] == [len(merged["tasks"][n]["rows"]) for n in TASKS]
    assert first["tasks"]["docstrings_gpt2"]["original"]["perplexity"] > 1.0
    assert first["settings"]["lr"] > 0 and first["meta"]["quick"] is True


def _run_merge(tmp_path: Path, *paths: Path | str) -> dict:
    out = tmp_path / f"merged{len(list(tmp_path.glob('merged*.json')))}.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "relufy.py"), "--merge", *map(str, paths), "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=BENCHMARKS, env=offline_env(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| sentiment_cls | agreement % |" in proc.stdout  # the Markdown table the READMEs quote
    return json.loads(out.read_text())


@pytest.fixture
def bench(monkeypatch):
    """benchmarks/relufy.py as a module."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("relufy_bench", BENCHMARKS / "relufy.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, "relufy_bench", module)  # dataclasses look their module up
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


@pytest.mark.parametrize(
    ("family", "part", "trained"),
    [
        ("bert", "down_projections", ["output.dense"]),
        ("bert", "mlp", ["intermediate.dense", "output.dense"]),
        ("gpt2", "mlp", ["mlp.c_fc", "mlp.c_proj"]),
    ],
)
def test_train_only_freezes_every_other_weight(bench, tmp_path, family, part, trained):
    """``--train-only``: after the refit, only the named MLP weights of every block get a gradient step."""
    model = build(family).eval()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    seen = {}

    class Record(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            seen.update({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})

    args = RelufyArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, report_to="none",
                           save_strategy="no", use_cpu=True, disable_tqdm=True)  # fmt: skip
    data = [{"input_ids": dummy_inputs(model, batch_size=1, seq_len=8, seed=s)["input_ids"][0]} for s in range(16)]
    relufy(model, data, args, callbacks=[bench.TrainOnly(part), Record()])
    modules = {name.rsplit(".", 1)[0] for name in seen}  # weight and bias → their module
    assert len(modules) == 2 * len(trained) and all(m.endswith(tuple(trained)) for m in modules), modules
    assert all(not torch.equal(seen[n], before[n]) for n in seen if n.endswith("weight"))  # they did train


def test_debian_descriptions_parser(bench, monkeypatch):
    text = (
        "Package: a\nDescription-md5: 1\nDescription-en: Tool A for things\n first line of a long text that says\n"
        " .\n what tool A does, at length enough.\n\nPackage: b\nDescription-en: short only\n\n"
    )
    monkeypatch.setattr(bench, "_translation_text", lambda: text)
    assert bench.debian_descriptions() == [
        ("Tool A for things", "first line of a long text that says what tool A does, at length enough.")
    ]
